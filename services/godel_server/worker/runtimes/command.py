"""The "command" runtime: runs config.command (an argv template) in the worktree; stdout/stderr
lines become the run's log, exit code 0 means success, the result is the tail of stdout."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
from pathlib import Path

from godel.v1 import agent_pb2
from godel_server.worker.procs import describe_exit, signal_group, spawn_group
from godel_server.worker.runtimes.base import Outcome, RunContext

RESULT_BYTES = 4096
MAX_LINE = 16 * 1024
_PLACEHOLDER = re.compile(r"\{(task|worktree|agent_id|model)\}")


def render_argv(template: list[str], values: dict[str, str]) -> list[str]:
    """Substitutes {task}, {worktree}, {agent_id} and {model} in each element (one pass, no shell)."""
    return [_PLACEHOLDER.sub(lambda m: values[m.group(1)], part) for part in template]


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
        env = ctx.child_env()
        if not _executable(argv[0], ctx.worktree_path, env.get("PATH")):
            return Outcome(False, error=f"cannot start {argv[0]!r}: command not found or not executable")
        try:
            proc = await spawn_group(argv, ctx.worktree_path, env)
        except OSError as exc:
            return Outcome(False, error=f"cannot start {argv[0]!r}: {exc.strerror or exc}")
        pgid = proc.pid
        ctx.add_process_group(pgid)
        ctx.started(pgid)
        tail = _Tail(RESULT_BYTES)
        readers = [
            asyncio.create_task(pump_lines(proc.stdout, ctx, "stdout", agent_pb2.LOG_LEVEL_INFO, tail)),
            asyncio.create_task(pump_lines(proc.stderr, ctx, "stderr", agent_pb2.LOG_LEVEL_WARN)),
        ]
        try:
            code = await proc.wait()
        finally:
            # The leader is gone: whatever it left in its group goes too (and the pipes close).
            signal_group(pgid, signal.SIGKILL)
            _, pending = await asyncio.wait(readers, timeout=1.0)
            for task in pending:
                task.cancel()
            ctx.remove_process_group(pgid)
        if code == 0:
            return Outcome(True, result=tail.text(), exit_code=0)
        return Outcome(False, result=tail.text(), error=describe_exit(code), exit_code=code)
