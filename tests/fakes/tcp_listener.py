"""A TCP listener on the host's 127.0.0.1 that records the connections it accepts: the witness of
sandbox network tests (an agent without network must not reach it, one with egress must).

    with tcp_listener() as (port, accepted):
        ...  # something connects to 127.0.0.1:<port> (or fails to)
        assert accepted == []
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def tcp_listener() -> Iterator[tuple[int, list[str]]]:
    """Yields the port and the list of accepted peers (appended as they connect); closed on exit."""
    accepted: list[str] = []
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                conn, peer = server.accept()
                accepted.append(str(peer))
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join(timeout=2)
        server.close()
