"""Tools of the "openai" runtime: shell, read_file, write_file and git_commit. Each runs as a process
in the run's sandbox (like the command runtime's command), so a tool sees and changes what the agent
may and nothing else; paths are also checked to stay inside the worktree. `config.tools` is an
allow-list: the model is offered only the granted tools (by default all but `shell`). A call to a
tool it was not granted, a shell command or a file its agent's safety rules forbid, and a write or
commit after which the run's changes break those rules are refusals (safety:block): the run stops,
or is held paused when the rules say so (a resume allows the call). A tool never raises for a bad
call: it returns an error text for the model instead."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from godel_server.runtime.agent_rules import DEFAULT_TOOLS
from godel_server.worker.procs import describe_exit
from godel_server.worker.runtimes.base import RunContext
from godel_server.worker.safety import Violation

SHELL_TIMEOUT_SECONDS = 120.0
MAX_OUTPUT = 16 * 1024
MAX_READ = 100 * 1024

# The file tools and git_commit as scripts run in the sandbox; their arguments are $1, $2 (never
# spliced into the script).
_READ = '[ -e "$1" ] || exit 3; [ -d "$1" ] && exit 4; stat -c %s -- "$1" && exec head -c "$2" -- "$1"'
_WRITE = 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1"'
_CLEAN = "<clean>"
_COMMIT = (
    'git add -A && if [ -z "$(git status --porcelain)" ]; then echo "' + _CLEAN + '"; '
    'else git commit -q -m "$1" && git rev-parse HEAD; fi'
)


def _fn(name: str, description: str, properties: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {
                    key: {"type": "string", "description": text} for key, text in properties.items()
                },
                "required": list(properties),
            },
        },
    }


# One spec per name of OPENAI_TOOLS (agent_rules), in that order.
TOOL_SPECS: dict[str, dict[str, Any]] = {
    "shell": _fn(
        "shell",
        "Run a shell command (sh -c) in the worktree; returns its exit code and output.",
        {"command": "the command line"},
    ),
    "read_file": _fn(
        "read_file", "Read a text file of the worktree.", {"path": "path relative to the worktree"}
    ),
    "write_file": _fn(
        "write_file",
        "Create or overwrite a file of the worktree.",
        {"path": "path relative to the worktree", "content": "the whole new content"},
    ),
    "git_commit": _fn(
        "git_commit", "Stage every change of the worktree and commit it.", {"message": "the commit message"}
    ),
}


class ToolRefused(Exception):
    """A guardrail refused a call (already reported as safety:block); the run stops."""


class ToolError(Exception):
    """A tool call the model got wrong; the message goes back to the model."""


def _truncate(text: str, limit: int = MAX_OUTPUT) -> str:
    if len(text) <= limit:
        return text
    return f"[... {len(text) - limit} characters cut ...]\n" + text[-limit:]


class ToolBox:
    def __init__(
        self,
        ctx: RunContext,
        granted: tuple[str, ...] = DEFAULT_TOOLS,
        shell_timeout: float = SHELL_TIMEOUT_SECONDS,
    ) -> None:
        self.ctx = ctx
        self.granted = granted
        self.root = ctx.worktree_path.resolve()
        self.shell_timeout = shell_timeout

    async def call(self, name: str, raw_arguments: str) -> str:
        """Runs one tool call and returns the text for the model (errors start with "error:");
        ToolRefused when a guardrail refuses it and the run must stop."""
        if name in TOOL_SPECS and name not in self.granted:
            await self._allow(
                Violation(
                    "config.tools",
                    f"the model called {name!r}, which is not granted (granted: {', '.join(self.granted)})",
                )
            )
        try:
            arguments = json.loads(raw_arguments or "{}")
            if not isinstance(arguments, dict):
                raise ToolError("arguments must be a JSON object")
            if name == "shell":
                command = self._arg(arguments, "command")
                await self._allow(self.ctx.guard.command(command))
                return await self.shell(command)
            if name == "read_file":
                return await self.read_file(await self._allowed_path(self._arg(arguments, "path")))
            if name == "write_file":
                path = await self._allowed_path(self._arg(arguments, "path"))
                written = await self.write_file(path, self._arg(arguments, "content", allow_empty=True))
                await self._allow(await self.ctx.check_changes())
                return written
            if name == "git_commit":
                committed = await self.git_commit(self._arg(arguments, "message"))
                await self._allow(await self.ctx.check_changes())
                return committed
            raise ToolError(f"unknown tool {name!r}; tools: {', '.join(self.granted)}")
        except json.JSONDecodeError as exc:
            return f"error: arguments are not valid JSON ({exc.msg})"
        except ToolError as exc:
            return f"error: {exc}"

    async def _allow(self, violation: Violation | None) -> None:
        """Nothing when there is no violation or the run was allowed to go on; else ToolRefused."""
        if violation is not None and not await self.ctx.safety_block(violation):
            raise ToolRefused(violation.error)

    async def _allowed_path(self, path: str) -> str:
        relative = self.resolve(path).relative_to(self.root).as_posix()
        await self._allow(self.ctx.guard.path(relative))
        return path

    @staticmethod
    def _arg(arguments: dict[str, Any], key: str, allow_empty: bool = False) -> str:
        value = arguments.get(key)
        if not isinstance(value, str) or (not value and not allow_empty):
            raise ToolError(f"argument {key!r} must be a non-empty string")
        return value

    def resolve(self, path: str) -> Path:
        """The absolute path of `path` inside the worktree; ToolError when it points outside it."""
        candidate = (self.root / path).resolve()
        if candidate != self.root and not candidate.is_relative_to(self.root):
            raise ToolError(f"path {path!r} is outside the worktree")
        relative = candidate.relative_to(self.root)
        if relative.parts and relative.parts[0] == ".git":
            raise ToolError(f"path {path!r} is inside git's metadata; use git_commit")
        return candidate

    async def _run(
        self, argv: list[str], stdin: bytes | None = None, keep: int = 2 * MAX_OUTPUT
    ) -> tuple[int | None, bytes]:
        """Runs argv in the run's sandbox (stdout and stderr together, the last `keep` bytes kept);
        returns its exit code (None: it timed out and was killed) and its output."""
        output = bytearray()
        tasks: list[asyncio.Task[Any]] = []
        code: int | None = None
        try:
            async with self.ctx.process(argv, merge_stderr=True, stdin=stdin is not None) as proc:
                tasks.append(asyncio.create_task(_collect(proc.stdout, output, keep)))
                if stdin is not None:
                    tasks.append(asyncio.create_task(_feed(proc.stdin, stdin)))
                waiter = asyncio.create_task(proc.wait())
                tasks.append(waiter)
                timer = asyncio.create_task(self.ctx.pause.sleep_active(self.shell_timeout))
                try:
                    await asyncio.wait({waiter, timer}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    timer.cancel()
                if waiter.done():
                    code = self.ctx.exit_code(waiter.result())
        except OSError as exc:
            raise ToolError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from exc
        finally:
            # Leaving the block killed the process group, so the pipe closes.
            if tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait(tasks, timeout=1.0)
                for task in tasks:
                    task.cancel()
        return code, bytes(output)

    async def shell(self, command: str) -> str:
        code, output = await self._run(["sh", "-c", command])
        text = _truncate(output.decode(errors="replace"))
        if code is None:
            return f"error: timed out after {self.shell_timeout:g}s (killed)\n{text}"
        return f"{describe_exit(code)}\n{text}"

    async def read_file(self, path: str) -> str:
        target = self.resolve(path)
        code, output = await self._run(
            ["sh", "-c", _READ, "read_file", str(target), str(MAX_READ)], keep=MAX_READ + 64
        )
        if code == 3:
            raise ToolError(f"{path} does not exist")
        if code == 4:
            raise ToolError(f"{path} is a directory")
        size, _, data = output.partition(b"\n")
        if code != 0 or not size.isdigit():
            raise ToolError(f"cannot read {path}: {_excerpt(output, code)}")
        text = data.decode(errors="replace")
        hidden = int(size) - MAX_READ
        return text if hidden <= 0 else text + f"\n[... {hidden} bytes not shown ...]"

    async def write_file(self, path: str, content: str) -> str:
        target = self.resolve(path)
        if target == self.root:
            raise ToolError("path names the worktree itself")
        data = content.encode()
        code, output = await self._run(["sh", "-c", _WRITE, "write_file", str(target)], stdin=data)
        if code != 0:
            raise ToolError(f"cannot write {path}: {_excerpt(output, code)}")
        return f"wrote {len(data)} bytes to {target.relative_to(self.root)}"

    async def git_commit(self, message: str) -> str:
        code, output = await self._run(["sh", "-c", _COMMIT, "git_commit", message])
        lines = output.decode(errors="replace").strip().splitlines()
        if code != 0 or not lines:
            raise ToolError(f"git commit failed: {_excerpt(output, code)}")
        if lines[-1] == _CLEAN:
            return "nothing to commit (the worktree is clean)"
        commits = await self.ctx.report_commits()
        return f"committed {lines[-1]}; the branch has {len(commits)} commit(s) since its base"


async def _collect(reader: asyncio.StreamReader | None, output: bytearray, keep: int) -> None:
    if reader is None:
        return
    while chunk := await reader.read(65536):
        output.extend(chunk)
        if len(output) > keep:
            del output[: len(output) - keep]


async def _feed(writer: asyncio.StreamWriter | None, data: bytes) -> None:
    if writer is None:
        return
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        writer.write(data)
        await writer.drain()
        writer.close()


def _excerpt(output: bytes, code: int | None) -> str:
    text = output.decode(errors="replace").strip()[-500:]
    return text or ("timed out" if code is None else describe_exit(code))
