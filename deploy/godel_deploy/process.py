"""A child process in its own process group, logging to a file."""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

__all__ = ["ManagedProcess", "ProcessExitedError", "error_lines", "tail"]

LOG_TAIL_LINES = 40
_START_MARKER = "\n=== "
# log-level words, or a line that starts with an exception ("x.y.FooException: ...")
_ERROR_LINE = re.compile(r"\b(ERROR|FATAL|PANIC)\b|^(Caused by: )?[\w.$]*(Exception|Error)\b")

_RUNNING: set[ManagedProcess] = set()


@atexit.register
def _kill_leftovers() -> None:
    """Don't leave brokers/databases behind when the Python process exits."""
    for proc in list(_RUNNING):
        proc.kill9()


class ProcessExitedError(RuntimeError):
    """The managed process exited while we were waiting for it."""


def error_lines(path: Path, limit: int = 10) -> list[str]:
    """The first ``limit`` error-looking lines of the latest run in a log."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    latest_run = text[text.rfind(_START_MARKER) + 1 :]
    return [line for line in latest_run.splitlines() if _ERROR_LINE.search(line)][:limit]


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last ``lines`` lines of a text file ('' if it is missing)."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines))
    except FileNotFoundError:
        return ""


class ManagedProcess:
    """Run ``argv`` in a new session (own process group), output to ``log_path``.

    ``user``/``group`` switch identity in the child (requires root); the
    recorded :attr:`pid` is then the real server process, not a wrapper.
    ``netns`` runs it in that network namespace (``ip netns exec``, which execs
    the command: the pid is still the process itself); with ``user`` too, the
    identity is switched after entering it (``setpriv``).
    The object can be started again after it stopped (the log is appended to).
    """

    def __init__(
        self,
        argv: Sequence[str | os.PathLike[str]],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        name: str | None = None,
        user: str | None = None,
        group: str | None = None,
        pass_fds: Sequence[int] = (),
        netns: str | None = None,
    ) -> None:
        self.argv: list[str] = [os.fspath(a) for a in argv]
        self.netns = netns
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.name = name or Path(self.argv[0]).name
        self.user = user
        self.group = group
        self.pass_fds = tuple(pass_fds)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> ManagedProcess:
        if self.alive():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        if self._proc is not None:  # previous run exited: reap it and stragglers
            self.signal_group(signal.SIGKILL)
            self._proc.wait()
        self._close_log()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._log.write(f"\n=== {time.strftime('%H:%M:%S')} start: {self.command()}\n".encode())
        self._log.flush()
        # Inside a network namespace the identity changes after `ip netns exec` (which needs root).
        switch = self.user is not None and self.netns is None
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
            user=self.user if switch else None,
            group=self.group if switch else None,
            extra_groups=[] if switch else None,
            pass_fds=self.pass_fds,
        )
        _RUNNING.add(self)
        return self

    def command(self) -> list[str]:
        """What is executed: `argv`, inside `netns` and as `user` when they are given."""
        if self.netns is None:
            return self.argv
        identity: list[str] = []
        if self.user is not None:
            group = [f"--regid={self.group}"] if self.group else []
            identity = ["setpriv", f"--reuid={self.user}", *group, "--clear-groups", "--"]
        return ["ip", "netns", "exec", self.netns, *identity, *self.argv]

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        """Exit code once the process has exited (reaps it), else None."""
        if self._proc is None or not self._exited():
            return None
        return self._proc.wait()

    def alive(self) -> bool:
        return self._proc is not None and not self._exited()

    def _exited(self) -> bool:
        """True once the leader has exited, *without* reaping it.

        Keeping the zombie un-reaped keeps its PID (= our process group id)
        reserved, so a later ``killpg`` can never hit an unrelated group.
        """
        assert self._proc is not None
        if self._proc.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # already reaped elsewhere
            return True
        return info is not None

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (no-op if already gone)."""
        if self._proc is None or self._proc.returncode is not None:
            return  # reaped: the group id may already belong to someone else
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """Send ``sig`` (default SIGTERM) to the group; SIGKILL after ``timeout``.

        Returns the exit code (None if never started).
        """
        if self._proc is None:
            return None
        if not self._exited():
            self.signal_group(sig)
            deadline = time.monotonic() + timeout
            while not self._exited() and time.monotonic() < deadline:
                time.sleep(0.05)
        # Leader gone (still a zombie) or timed out: kill whatever is left in
        # the group, then reap.
        self.signal_group(signal.SIGKILL)
        code = self._proc.wait()
        self._finish()
        return code

    def detach(self) -> None:
        """Let the process outlive this Python process (`make up`): no kill at exit."""
        _RUNNING.discard(self)
        self._close_log()

    def kill9(self) -> None:
        """SIGKILL the whole group immediately (simulates a crash)."""
        if self._proc is None:
            return
        self.signal_group(signal.SIGKILL)
        self._proc.wait()
        self._finish()

    # -- diagnostics ---------------------------------------------------------

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self._log is not None:
            self._log.flush()
        return tail(self.log_path, lines)

    def describe_failure(self, message: str) -> str:
        """``message`` plus the first error lines and the last lines of the log."""
        tail_text = self.log_tail()
        errors = [line for line in error_lines(self.log_path) if line not in tail_text]
        first_errors = "".join(f"{line}\n" for line in errors)
        if first_errors:
            first_errors = f"--- first errors in {self.log_path} ---\n{first_errors}"
        return (
            f"{message}\n{first_errors}--- last {LOG_TAIL_LINES} lines of {self.log_path} ---\n"
            f"{tail_text}--- end of log ---"
        )

    def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float,
        what: str,
        interval: float = 0.1,
    ) -> float:
        """Poll ``predicate`` until it returns True; return the seconds waited.

        Raises :class:`ProcessExitedError` as soon as the process dies and
        :class:`TimeoutError` after ``timeout`` seconds, both with the log tail.
        Exceptions raised by ``predicate`` count as "not yet".
        """
        start = time.monotonic()
        deadline = start + timeout
        last_error: BaseException | None = None
        while True:
            try:
                if predicate():
                    return time.monotonic() - start
            except Exception as exc:  # retried until the deadline
                last_error = exc
            if not self.alive():
                self.signal_group(signal.SIGKILL)
                raise ProcessExitedError(
                    self.describe_failure(
                        f"{self.name} exited with code {self.returncode} while waiting for {what}"
                    )
                )
            if time.monotonic() >= deadline:
                detail = f" (last error: {last_error!r})" if last_error else ""
                raise TimeoutError(
                    self.describe_failure(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
                )
            time.sleep(interval)

    def _finish(self) -> None:
        _RUNNING.discard(self)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ManagedProcess:
        return self.start() if not self.alive() else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        pid = self._proc.pid if self._proc else None
        state = "running" if self.alive() else "stopped"
        return f"<ManagedProcess {self.name} pid={pid} {state}>"
