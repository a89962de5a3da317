"""The test hosts of tests/integration/netns.py keep the ports they listen on out of their ephemeral
range: an outgoing connection never takes a port a service of that host binds later (the multi-host
test's cluster service once failed to bind 50054: a connection to Kafka from its host held it)."""

from __future__ import annotations

import socket
from contextlib import ExitStack

import pytest

from tests.integration.netns import Network, ip, iproute2_problem

pytestmark = pytest.mark.integration

LISTEN_PORT, OTHER_PORT = 50051, 50052
SERVER_PORTS = (7000, 7001, 7002)


def _client_ports(net: Network, port_range: str) -> set[int]:
    """The client host's local ports of one open connection to each of the server's ports."""
    ip(
        "netns",
        "exec",
        net.namespace("client"),
        "sysctl",
        "-qw",
        f"net.ipv4.ip_local_port_range={port_range}",
    )
    with ExitStack() as open_sockets:
        with net.inside("server"):
            for port in SERVER_PORTS:
                open_sockets.enter_context(socket.create_server((net.address("server"), port)))
        with net.inside("client"):
            clients = [
                open_sockets.enter_context(
                    socket.create_connection((net.address("server"), port), timeout=10)
                )
                for port in SERVER_PORTS
            ]
        return {int(c.getsockname()[1]) for c in clients}


@pytest.fixture
def problem() -> None:
    found = iproute2_problem()
    if found:
        pytest.fail(found)


@pytest.mark.usefixtures("problem")
def test_without_the_reservation_a_connection_takes_the_listen_port() -> None:
    with Network.create(["client", "server"]) as net:
        assert _client_ports(net, f"{LISTEN_PORT} {LISTEN_PORT}") == {LISTEN_PORT}


@pytest.mark.usefixtures("problem")
def test_a_connection_never_takes_a_reserved_listen_port() -> None:
    with Network.create(["client", "server"], listen_ports=[LISTEN_PORT]) as net:
        assert _client_ports(net, f"{LISTEN_PORT} {OTHER_PORT}") == {OTHER_PORT}
