"""What the Kafka, PostgreSQL and Envoy launchers share: one managed process, started, waited for,
stopped, restarted, and usable as a context manager."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

from .process import ManagedProcess


class ServerProcess(ABC):
    """A server run as one ManagedProcess; subclasses set `_process` in `start()`."""

    kind = "server"
    _process: ManagedProcess | None = None

    @abstractmethod
    def start(self) -> Self: ...

    @abstractmethod
    def wait_ready(self, timeout: float = 60.0) -> float: ...

    @abstractmethod
    def stop(self, timeout: float = 30.0) -> None: ...

    @property
    def pid(self) -> int:
        return self._require_process().pid

    @property
    def process(self) -> ManagedProcess:
        return self._require_process()

    def alive(self) -> bool:
        return self._process is not None and self._process.alive()

    def kill9(self) -> None:
        """SIGKILL the whole process group (crash simulation)."""
        if self._process is not None:
            self._process.kill9()

    def restart(self, timeout: float = 90.0) -> float:
        """Stop, start again on the same ports and data; returns the seconds until ready."""
        self.stop()
        started = time.monotonic()
        self.start()
        self.wait_ready(timeout)
        return time.monotonic() - started

    def _require_process(self) -> ManagedProcess:
        if self._process is None:
            raise RuntimeError(f"{self.kind} was not started")
        return self._process

    def __enter__(self) -> Self:
        self.start()
        self.wait_ready()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
