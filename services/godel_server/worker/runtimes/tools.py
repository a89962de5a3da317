"""Tools of the "openai" runtime, confined to the run's worktree: shell, read_file, write_file and
git_commit. A tool never raises for a bad call: it returns an error text for the model instead."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from pathlib import Path
from typing import Any

from godel_server.worker.procs import describe_exit, signal_group, spawn_group
from godel_server.worker.runtimes.base import RunContext
from godel_server.worker.worktrees import WorktreeError, git, git_identity

SHELL_TIMEOUT_SECONDS = 120.0
MAX_OUTPUT = 16 * 1024
MAX_READ = 100 * 1024


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


TOOL_SPECS: list[dict[str, Any]] = [
    _fn(
        "shell",
        "Run a shell command (sh -c) in the worktree; returns its exit code and output.",
        {"command": "the command line"},
    ),
    _fn("read_file", "Read a text file of the worktree.", {"path": "path relative to the worktree"}),
    _fn(
        "write_file",
        "Create or overwrite a file of the worktree.",
        {"path": "path relative to the worktree", "content": "the whole new content"},
    ),
    _fn("git_commit", "Stage every change of the worktree and commit it.", {"message": "the commit message"}),
]


class ToolError(Exception):
    """A tool call the model got wrong; the message goes back to the model."""


def _truncate(text: str, limit: int = MAX_OUTPUT) -> str:
    if len(text) <= limit:
        return text
    return f"[... {len(text) - limit} characters cut ...]\n" + text[-limit:]


class ToolBox:
    def __init__(self, ctx: RunContext, shell_timeout: float = SHELL_TIMEOUT_SECONDS) -> None:
        self.ctx = ctx
        self.root = ctx.worktree_path.resolve()
        self.shell_timeout = shell_timeout

    async def call(self, name: str, raw_arguments: str) -> str:
        """Runs one tool call and returns the text for the model (errors start with "error:")."""
        try:
            arguments = json.loads(raw_arguments or "{}")
            if not isinstance(arguments, dict):
                raise ToolError("arguments must be a JSON object")
            if name == "shell":
                return await self.shell(self._arg(arguments, "command"))
            if name == "read_file":
                return self.read_file(self._arg(arguments, "path"))
            if name == "write_file":
                return self.write_file(
                    self._arg(arguments, "path"), self._arg(arguments, "content", allow_empty=True)
                )
            if name == "git_commit":
                return await self.git_commit(self._arg(arguments, "message"))
            raise ToolError(f"unknown tool {name!r}; tools: shell, read_file, write_file, git_commit")
        except json.JSONDecodeError as exc:
            return f"error: arguments are not valid JSON ({exc.msg})"
        except ToolError as exc:
            return f"error: {exc}"

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

    def read_file(self, path: str) -> str:
        target = self.resolve(path)
        try:
            data = target.read_bytes()
        except FileNotFoundError as exc:
            raise ToolError(f"{path} does not exist") from exc
        except IsADirectoryError as exc:
            raise ToolError(f"{path} is a directory") from exc
        except OSError as exc:
            raise ToolError(f"cannot read {path}: {exc.strerror}") from exc
        text = data[:MAX_READ].decode(errors="replace")
        return text if len(data) <= MAX_READ else text + f"\n[... {len(data) - MAX_READ} bytes not shown ...]"

    def write_file(self, path: str, content: str) -> str:
        target = self.resolve(path)
        if target == self.root:
            raise ToolError("path names the worktree itself")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        except OSError as exc:
            raise ToolError(f"cannot write {path}: {exc.strerror}") from exc
        return f"wrote {len(content.encode())} bytes to {target.relative_to(self.root)}"

    async def shell(self, command: str) -> str:
        try:
            proc = await spawn_group(
                ["sh", "-c", command], self.root, self.ctx.child_env(), merge_stderr=True
            )
        except OSError as exc:
            raise ToolError(f"cannot start the shell: {exc.strerror}") from exc
        pgid = proc.pid
        self.ctx.add_process_group(pgid)
        output = bytearray()

        async def collect() -> None:
            assert proc.stdout is not None
            while chunk := await proc.stdout.read(65536):
                output.extend(chunk)
                if len(output) > 2 * MAX_OUTPUT:
                    del output[: len(output) - MAX_OUTPUT]

        reader = asyncio.create_task(collect())
        waiter = asyncio.create_task(proc.wait())
        timer = asyncio.create_task(self.ctx.pause.sleep_active(self.shell_timeout))
        try:
            await asyncio.wait({waiter, timer}, return_when=asyncio.FIRST_COMPLETED)
            timed_out = not waiter.done()
        finally:
            signal_group(pgid, signal.SIGKILL)
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({reader, waiter}, timeout=1.0)
            reader.cancel()
            waiter.cancel()
            self.ctx.remove_process_group(pgid)
        text = _truncate(output.decode(errors="replace"))
        if timed_out:
            return f"error: timed out after {self.shell_timeout:g}s (killed)\n{text}"
        code = proc.returncode if proc.returncode is not None else -1
        return f"{describe_exit(code)}\n{text}"

    async def git_commit(self, message: str) -> str:
        identity = git_identity(self.ctx.assignment.agent_id)
        try:
            await git("add", "-A", cwd=self.root, env=identity)
            status = await git("status", "--porcelain", cwd=self.root, env=identity)
            if not status:
                return "nothing to commit (the worktree is clean)"
            await git("commit", "-q", "-m", message, cwd=self.root, env=identity)
            head = await git("rev-parse", "HEAD", cwd=self.root, env=identity)
        except WorktreeError as exc:
            raise ToolError(str(exc)) from exc
        commits = await self.ctx.report_commits()
        return f"committed {head}; the branch has {len(commits)} commit(s) since its base"
