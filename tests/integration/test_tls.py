"""TLS everywhere on one mesh: the gateway serves HTTPS and gRPC over TLS only, and the services,
the worker and the gateway talk to each other over mutual TLS (certificates from a CA the test
makes). Clients that do not trust the CA, or that speak plaintext, are refused, and so is a
caller of a service port without a client certificate."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from websockets.sync.client import connect as ws_connect

from godel.v1 import agent_service_pb2, agent_service_pb2_grpc
from godel_deploy.mesh import grpc_serving
from godel_server.runtime.config import TlsSettings
from godel_server.runtime.tls import open_sync_channel
from tests.certs import TestCA
from tests.conftest import RunningMesh, godel_cli, running_mesh
from tests.integration.team_helpers import echo_command, ok, start_team, wait_team
from tests.waits import poll


@dataclass
class TlsMesh:
    running: RunningMesh
    ca: TestCA
    tls: TlsSettings  # the mesh's own mutual-TLS identity

    @property
    def url(self) -> str:
        return self.running.mesh.gateway_url

    def https(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers=self.running.headers(),
            timeout=15.0,
            verify=ssl.create_default_context(cafile=str(self.ca.ca_file)),
            **kwargs,  # type: ignore[arg-type]
        )


def wait_agent(http: httpx.Client, agent_id: str, timeout: float = 90.0) -> dict[str, Any]:
    return poll(
        lambda: ok(http.get(f"/api/v1/agents/{agent_id}")),
        lambda agent: (
            agent["status"] in ("AGENT_STATUS_COMPLETED", "AGENT_STATUS_FAILED", "AGENT_STATUS_KILLED")
        ),
        timeout,
        f"agent {agent_id} to end",
        interval=0.2,
    )


@pytest.fixture(scope="module")
def tls_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsMesh]:
    home = tmp_path_factory.mktemp("tls")
    ca = TestCA(home / "ca")
    mesh_cert = ca.issue("godel-mesh")  # every service, the worker and the gateway's upstream side
    gateway_cert = ca.issue("gateway")
    env = {
        "GODEL_TLS_CA_FILE": str(ca.ca_file),
        "GODEL_TLS_CERT_FILE": str(mesh_cert.cert),
        "GODEL_TLS_KEY_FILE": str(mesh_cert.key),
        "GODEL_GATEWAY_TLS_CERT_FILE": str(gateway_cert.cert),
        "GODEL_GATEWAY_TLS_KEY_FILE": str(gateway_cert.key),
    }
    with running_mesh(home, None, "tls", extra_env=env) as running:
        yield TlsMesh(running, ca, running.mesh.tls)


def test_an_agent_runs_end_to_end_over_https(tls_mesh: TlsMesh) -> None:
    """Gateway (TLS) -> agent service (mTLS, key checked by the cluster service over mTLS) ->
    worker (mTLS) -> agent events -> event service -> agent service's event query (mTLS)."""
    assert tls_mesh.url.startswith("https://")
    with tls_mesh.https() as http:
        created = ok(
            http.post(
                "/api/v1/agents",
                json={"task": "say hi", "config": {"runtime": "command", "command": ["sh", "-c", "echo hi"]}},
            )
        )
        agent_id = created["id"]
        agent = wait_agent(http, agent_id)
        assert agent["status"] == "AGENT_STATUS_COMPLETED", agent
        # The event store learns of the completion after the agent's row (outbox, Kafka, event service).
        poll(
            lambda: {e["type"] for e in ok(http.get(f"/api/v1/agents/{agent_id}/events"))["events"]},
            lambda types: "agent:complete" in types,
            60,
            f"agent {agent_id}'s agent:complete in the event store",
            interval=0.2,
        )


def test_a_team_drives_its_agents_over_mutual_tls(tls_mesh: TlsMesh) -> None:
    with tls_mesh.https() as http:
        team = ok(
            http.post(
                "/api/v1/teams",
                json={
                    "name": "tls",
                    "task": "check",
                    "config": {"size": 2, "command": echo_command("echo ok")},
                },
            )
        )
        start_team(http, str(team["id"]))
        done = wait_team(http, str(team["id"]))
        assert done["status"] == "TEAM_STATUS_COMPLETED", done


def test_grpc_over_tls_through_the_gateway(tls_mesh: TlsMesh) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=tls_mesh.ca.ca_file.read_bytes())
    with grpc.secure_channel(tls_mesh.running.mesh.gateway_address, credentials) as channel:
        stub = agent_service_pb2_grpc.AgentServiceStub(channel)
        reply = stub.ListAgents(
            agent_service_pb2.ListAgentsRequest(page_size=1), metadata=tls_mesh.running.metadata(), timeout=15
        )
        assert isinstance(reply, agent_service_pb2.ListAgentsResponse)
    with grpc.insecure_channel(tls_mesh.running.mesh.gateway_address) as plain:
        with pytest.raises(grpc.RpcError) as refused:
            agent_service_pb2_grpc.AgentServiceStub(plain).ListAgents(
                agent_service_pb2.ListAgentsRequest(), metadata=tls_mesh.running.metadata(), timeout=5
            )
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_the_gateway_refuses_clients_that_do_not_trust_its_ca_or_speak_plaintext(tls_mesh: TlsMesh) -> None:
    with httpx.Client(base_url=tls_mesh.url, timeout=5) as untrusting, pytest.raises(httpx.ConnectError):
        untrusting.get("/health")
    plain = tls_mesh.url.replace("https://", "http://")
    with httpx.Client(base_url=plain, timeout=5) as plaintext, pytest.raises(httpx.HTTPError):
        plaintext.get("/health")


def test_events_websocket_over_tls(tls_mesh: TlsMesh) -> None:
    """wss:// at the gateway, and mutual TLS from Envoy to the event service's WebSocket port."""
    context = ssl.create_default_context(cafile=str(tls_mesh.ca.ca_file))
    url = tls_mesh.url.replace("https://", "wss://") + "/events"
    with ws_connect(url, ssl=context, additional_headers=tls_mesh.running.headers()) as ws:
        ws.send('{"type": "ping", "id": "p1"}')
        reply = ws.recv(timeout=15)
    assert '"pong"' in str(reply)


def test_service_ports_require_a_client_certificate_from_the_mesh_ca(
    tls_mesh: TlsMesh, tmp_path: Path
) -> None:
    address = tls_mesh.running.mesh.address("agent")
    assert grpc_serving(address, tls=tls_mesh.tls)
    assert not grpc_serving(address)  # plaintext
    server_only = grpc.ssl_channel_credentials(root_certificates=tls_mesh.ca.ca_file.read_bytes())
    with grpc.secure_channel(address, server_only) as channel, pytest.raises(grpc.RpcError):
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    stranger_ca = TestCA(tmp_path / "stranger")
    stranger = stranger_ca.issue("stranger")
    foreign = TlsSettings(ca_file=tls_mesh.ca.ca_file, cert_file=stranger.cert, key_file=stranger.key)
    with open_sync_channel(address, foreign) as channel, pytest.raises(grpc.RpcError):
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)


def test_the_cli_reaches_a_tls_only_gateway_with_tls_ca_and_is_refused_without(tls_mesh: TlsMesh) -> None:
    running = tls_mesh.running
    https = running.mesh.gateway_url
    listed = godel_cli(
        running, "--addr", https, "--tls-ca", str(tls_mesh.ca.ca_file), "agent", "list", "--json"
    )
    assert isinstance(json.loads(listed.stdout), dict)
    untrusted = godel_cli(running, "--addr", https, "agent", "list", check=False)
    assert untrusted.returncode == 1
    assert "TLS with" in untrusted.stderr and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr, (
        untrusted.stderr
    )
    plaintext = godel_cli(running, "--addr", running.mesh.gateway_address, "agent", "list", check=False)
    assert plaintext.returncode == 1
    mixed = godel_cli(
        running,
        "--addr",
        "http://" + running.mesh.gateway_address,
        "--tls-ca",
        "x",
        "agent",
        "list",
        check=False,
    )
    assert mixed.returncode != 0 and "TLS options need https://" in mixed.stderr


def test_the_cli_presents_a_client_certificate_to_a_mutual_tls_port(tls_mesh: TlsMesh) -> None:
    """A service port (mutual TLS) takes the CLI with --tls-cert/--tls-key, and refuses it without."""
    running, tls = tls_mesh.running, tls_mesh.tls
    agent = "https://" + running.mesh.address("agent")
    ca = ("--tls-ca", str(tls.ca_file))
    mutual = godel_cli(
        running,
        "--addr",
        agent,
        *ca,
        "--tls-cert",
        str(tls.cert_file),
        "--tls-key",
        str(tls.key_file),
        "agent",
        "list",
        "--json",
    )
    assert isinstance(json.loads(mutual.stdout), dict)
    assert godel_cli(running, "--addr", agent, *ca, "agent", "list", check=False).returncode == 1
