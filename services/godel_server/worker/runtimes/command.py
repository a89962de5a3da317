"""The "command" runtime: runs config.command (an argv template) in the run's sandbox, in the
worktree; stdout/stderr lines become the run's log, exit code 0 means success, the result is the
tail of stdout."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
from pathlib import Path

from godel.v1 import agent_pb2
from godel_server.worker.procs import describe_exit
from godel_server.worker.runtimes.base import Outcome, RunContext

RESULT_BYTES = 4096
MAX_LINE = 16 * 1024
_PLACEHOLDER = re.compile(r"\{(task|worktree|agent_id|model)\}")
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash"})
# Shell options that take the next argument as their value (`bash -o pipefail -c ...`).
_VALUED = frozenset({"-o", "+o", "-O", "+O"})


def shell_script_index(argv: list[str]) -> int | None:
    """Index of SCRIPT in `<shell> [options] -c SCRIPT [name [args...]]`; None for any other argv."""
    if not argv or Path(argv[0]).name not in SHELLS:
        return None
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in _VALUED:
            i += 2
        elif arg == "--" or len(arg) < 2 or arg[0] not in "-+":
            return None  # the options ended without -c: a script file
        elif arg[0] == "-" and arg[1] != "-" and "c" in arg[1:]:
            return i + 1 if i + 1 < len(argv) else None
        else:
            i += 1  # another option (-e, -x, --norc, +x)
    return None


def render_argv(template: list[str], values: dict[str, str]) -> list[str]:
    """Substitutes {task}, {worktree}, {agent_id} and {model} in each element (one pass, no shell).
    Inside the script of `sh -c SCRIPT` the values are shell-quoted, so text spliced into a script
    stays data; a script that is nothing but a placeholder (`sh -c "{task}"`, the examples' one-liner
    steps) is that value: the config's author chose to run the task as the script."""
    script = shell_script_index(template)

    def render(index: int, part: str) -> str:
        if index == script and not _PLACEHOLDER.fullmatch(part):
            return _PLACEHOLDER.sub(lambda m: shlex.quote(values[m.group(1)]), part)
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], part)

    return [render(i, part) for i, part in enumerate(template)]


def _executable(program: str, cwd: Path, path: str | None) -> bool:
    if "/" in program:
        return os.access(cwd / program, os.X_OK)
    return shutil.which(program, path=path) is not None


class _Tail:
    def __init__(self, size: int) -> None:
        self.size = size
        self.data = bytearray()

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > self.size:
            del self.data[: len(self.data) - self.size]

    def text(self) -> str:
        return self.data.decode(errors="replace")


async def pump_lines(
    reader: asyncio.StreamReader | None,
    ctx: RunContext,
    stream: str,
    level: int,
    tail: _Tail | None = None,
) -> None:
    """Turns a pipe into log lines (long lines are cut at 16 KiB)."""
    if reader is None:
        return
    partial = b""
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            break
        if tail is not None:
            tail.add(chunk)
        lines = (partial + chunk).split(b"\n")
        partial = lines.pop()
        if len(partial) > MAX_LINE:
            lines.append(partial)
            partial = b""
        for line in lines:
            ctx.log(line[:MAX_LINE].decode(errors="replace").rstrip("\r"), stream, level)
    if partial:
        ctx.log(partial[:MAX_LINE].decode(errors="replace").rstrip("\r"), stream, level)


class CommandRuntime:
    cancel_on_stop = False

    async def run(self, ctx: RunContext) -> Outcome:
        assignment = ctx.assignment
        template = list(assignment.config.command)
        if not template:
            return Outcome(False, error="config.command is empty")
        argv = render_argv(
            template,
            {
                "task": assignment.task,
                "worktree": str(ctx.worktree_path),
                "agent_id": assignment.agent_id,
                "model": assignment.model,
            },
        )
        violation = ctx.guard.argv(argv)
        if violation is not None and not await ctx.safety_block(violation):
            return Outcome(False, error=violation.error)
        if not _executable(argv[0], ctx.worktree_path, ctx.child_env().get("PATH")):
            return Outcome(False, error=f"cannot start {argv[0]!r}: command not found or not executable")
        tail = _Tail(RESULT_BYTES)
        readers: list[asyncio.Task[None]] = []
        try:
            async with ctx.process(argv) as proc:
                ctx.started(proc.pid)
                readers = [
                    asyncio.create_task(
                        pump_lines(proc.stdout, ctx, "stdout", agent_pb2.LOG_LEVEL_INFO, tail)
                    ),
                    asyncio.create_task(pump_lines(proc.stderr, ctx, "stderr", agent_pb2.LOG_LEVEL_WARN)),
                ]
                code = ctx.exit_code(await proc.wait())
            # Leaving the block killed what the leader left in its group, so the pipes close.
        except OSError as exc:
            return Outcome(False, error=f"cannot start {argv[0]!r}: {exc.strerror or exc}")
        finally:
            if readers:
                _, pending = await asyncio.wait(readers, timeout=1.0)
                for task in pending:
                    task.cancel()
        if code == 0:
            return Outcome(True, result=tail.text(), exit_code=0)
        return Outcome(False, result=tail.text(), error=describe_exit(code), exit_code=code)
