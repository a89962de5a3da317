"""Free TCP ports on the loopback interface, and starting again when one was taken after all.

A port found free can be taken by another process before our child binds it (the child, not this
process, binds it, so the probe socket cannot be handed over). So: the ports of one start are
picked together (all probe sockets stay bound until the last is picked, hence distinct), and a
start whose process died because its port was taken is retried on other free ports.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from contextlib import ExitStack
from typing import TypeVar

__all__ = ["free_port", "free_ports", "port_open", "port_taken", "retry_on_port_taken"]

LOOPBACK = "127.0.0.1"
T = TypeVar("T")

# What Python (OSError 98), gRPC, Envoy, Kafka, PostgreSQL and our launchers say when a port is taken.
_PORT_TAKEN = re.compile(r"already in use|failed to bind|cannot bind|could not bind", re.IGNORECASE)


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports on 127.0.0.1 that are free right now."""
    with ExitStack() as stack:
        ports = []
        for _ in range(n):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port() -> int:
    """One TCP port on 127.0.0.1 that is free right now (see `retry_on_port_taken`)."""
    return free_ports(1)[0]


def port_taken(error: BaseException) -> bool:
    """True when `error` (a ProcessExitedError carries the process's log) says a port was taken."""
    return bool(_PORT_TAKEN.search(str(error)))


def retry_on_port_taken(start: Callable[[int], T], attempts: int = 3) -> T:
    """Calls `start(attempt)` (attempt = 1, 2, ...), which picks free ports, starts processes on them
    and stops them again if it fails; calls it again when it failed because a port was taken."""
    for attempt in range(1, attempts):
        try:
            return start(attempt)
        except Exception as exc:
            if not port_taken(exc):
                raise
    return start(attempts)


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """Return True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
