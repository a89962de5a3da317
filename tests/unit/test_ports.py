"""Free ports for the processes the tests and `make up` start: picked distinct, and a start whose
port was taken in the meantime is tried again on other ports (and only then)."""

from __future__ import annotations

import socket

import pytest

from godel_deploy.ports import free_ports, port_taken, retry_on_port_taken
from godel_deploy.process import ProcessExitedError


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(40)
    assert len(set(ports)) == 40
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[0]))


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
