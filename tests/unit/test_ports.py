"""Free ports for the processes the tests and `make up` start: picked distinct, and a start whose
port was taken in the meantime is tried again on other ports (and only then)."""

from __future__ import annotations

import socket

import pytest

from godel_deploy import ports
from godel_deploy.ports import free_port, free_ports, port_taken, retry_on_port_taken
from godel_deploy.process import ProcessExitedError


def test_free_ports_are_distinct_and_bindable() -> None:
    picked = free_ports(40)
    assert len(set(picked)) == 40
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", picked[0]))


def test_free_ports_are_outside_the_range_outgoing_connections_take_theirs_from() -> None:
    # A port from the ephemeral range can be taken by any process's outgoing connection between
    # the pick and the child's bind (CI once lost Envoy's listener so).
    low, high = ports._ephemeral_range()
    picked = free_ports(200)
    assert not [p for p in picked if low <= p <= high]
    assert all(1024 < p < 65536 for p in picked)


def test_a_port_is_not_handed_out_twice_by_one_process() -> None:
    # The ports of one test's services are often picked by separate calls, before any is bound.
    picked = [free_port() for _ in range(300)]
    assert len(set(picked)) == len(picked)


def test_the_range_above_is_used_when_the_ephemeral_range_leaves_little_room_below(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ports, "_ephemeral_range", lambda: (11000, 40000))
    assert all(40000 < p < 65536 for p in free_ports(20))


def test_a_port_in_use_is_not_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        used = server.getsockname()[1]
        # Only the used port and one other are left to pick from.
        monkeypatch.setattr(ports, "_pick_range", lambda: range(used, used + 2))
        monkeypatch.setattr(ports, "_handed_out", set())
        assert free_ports(1) == [used + 1] or not _bindable(used + 1)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.parametrize(
    "log",
    [
        "OSError: [Errno 98] Address already in use",
        "RuntimeError: Failed to bind to address 127.0.0.1:50835",
        "[critical] cannot bind '127.0.0.1:7373': Address already in use",
        'LOG:  could not bind IPv4 address "127.0.0.1": Address already in use',
        "KafkaException: Socket server failed to bind to 127.0.0.1:9092",
    ],
)
def test_port_taken_recognises_what_the_servers_print(log: str) -> None:
    assert port_taken(ProcessExitedError(f"kafka exited with code 1\n--- last lines ---\n{log}\n"))


def test_a_start_is_retried_only_when_its_port_was_taken() -> None:
    attempts: list[int] = []

    def start(attempt: int) -> str:
        attempts.append(attempt)
        if attempt < 3:
            raise ProcessExitedError("envoy exited\ncannot bind '127.0.0.1:1': Address already in use")
        return "up"

    assert retry_on_port_taken(start) == "up" and attempts == [1, 2, 3]

    def broken(attempt: int) -> str:
        attempts.append(attempt)
        raise ProcessExitedError("agent-service exited\nConfigError: GODEL_DATABASE_URL is wrong")

    attempts.clear()
    with pytest.raises(ProcessExitedError, match="ConfigError"):
        retry_on_port_taken(broken)
    assert attempts == [1]

    def always_taken(attempt: int) -> str:
        attempts.append(attempt)
        raise ProcessExitedError("Address already in use")

    attempts.clear()
    with pytest.raises(ProcessExitedError):
        retry_on_port_taken(always_taken, attempts=2)
    assert attempts == [1, 2]
