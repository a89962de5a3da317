"""Free TCP ports on the loopback interface, and starting again when one was taken after all.

A port found free can be taken by another process before our child binds it (the child, not this
process, binds it, so the probe socket cannot be handed over). Most such thefts are the kernel's:
every outgoing connection takes a local port from the ephemeral range
(net.ipv4.ip_local_port_range), and a port the kernel picked for a probe (bind to port 0) is one
of those. So ports are picked at random below that range, where only explicit binds go; the
ports of one call are distinct (all probe sockets stay bound until the last is picked), a port
is not handed out twice by one process, and a start whose process died because its port was
taken is retried on other free ports.
"""

from __future__ import annotations

import random
import re
import socket
import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TypeVar

__all__ = ["free_port", "free_ports", "port_open", "port_taken", "retry_on_port_taken"]

LOOPBACK = "127.0.0.1"
T = TypeVar("T")

# What Python (OSError 98), gRPC, Envoy, Kafka, PostgreSQL and our launchers say when a port is taken.
_PORT_TAKEN = re.compile(r"already in use|failed to bind|cannot bind|could not bind", re.IGNORECASE)

_LOWEST = 10_000  # below: ports well-known services and registered daemons tend to use
_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def _ephemeral_range(proc: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> tuple[int, int]:
    try:
        low, high = map(int, proc.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def _pick_range() -> range:
    """Where to pick: below the ephemeral range, or above it when too little room is left below."""
    low, high = _ephemeral_range()
    below = range(_LOWEST, low)
    above = range(high + 1, 65536)
    return below if len(below) >= len(above) else above


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports on 127.0.0.1 that are free right now and that no outgoing connection
    will take; none of them handed out before by this process while others were left."""
    candidates = _pick_range()
    with ExitStack() as stack, _handed_out_lock:
        ports: list[int] = []
        for _ in range(n):
            ports.append(_bind_one(stack, candidates, ports))
        _handed_out.update(ports)
        return ports


def _bind_one(stack: ExitStack, candidates: range, taken_now: list[int]) -> int:
    if len(_handed_out) > len(candidates) // 2:
        _handed_out.clear()  # a long-lived process: ports handed out long ago may come round again
    for _ in range(200):
        port = random.choice(candidates)
        if port in _handed_out or port in taken_now:
            continue
        sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            continue
        return port
    # A crowded range: whatever the kernel gives (ephemeral, so retry_on_port_taken matters more).
    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    sock.bind((LOOPBACK, 0))
    return int(sock.getsockname()[1])


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
