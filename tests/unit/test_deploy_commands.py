"""What deployments run besides the services: `godel-server keys register` (the keys of a Secret),
the admin port's probes, and the gateway config of a deployment (DNS hosts, TLS), which Envoy
itself validates."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import yaml

from godel_deploy.envoy import validate
from godel_deploy.gateway_launcher import render
from godel_deploy.gateway_overlay import load_gateway_settings
from godel_server.__main__ import _probe_targets
from godel_server.__main__ import main as godel_server
from godel_server.runtime.admin import AdminServer, probe
from godel_server.runtime.apikeys import generate_key
from tests.certs import TestCA


@pytest.fixture
def cluster_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [k for k in os.environ if k.startswith("GODEL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GODEL_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "cluster.db"


def _keys(directory: Path, **keys: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, secret in keys.items():
        (directory / f"{name.replace('_', '-')}.key").write_text(secret + "\n")
    return directory


async def _registered(db: Path) -> list[tuple[str, str]]:
    from sqlalchemy import select

    from godel_server.cluster.models import ApiKeyRow
    from godel_server.runtime.db import Database

    database = Database(f"sqlite+aiosqlite:///{db}")
    try:
        async with database.reader() as session:
            rows = (await session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.name))).all()
            return [(row.name, row.role) for row in rows]
    finally:
        await database.close()


def test_keys_register_is_idempotent_and_refuses_what_is_not_a_deployment_key(
    cluster_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = _keys(
        tmp_path / "keys",
        admin=generate_key(),
        team_service=generate_key(),
        cluster_service=generate_key(),
        agent_service=generate_key(),
        worker=generate_key(),
    )
    assert godel_server(["keys", "register", str(keys)]) == 0
    assert godel_server(["keys", "register", str(keys)]) == 0  # every upgrade runs it again
    out = capsys.readouterr().out
    assert out.count("registered already") == 5
    registered = [
        ("admin", "admin"),
        ("agent-service", "operator"),
        ("cluster-service", "autonomic"),
        ("team-service", "service"),
        ("worker", "worker"),
    ]
    assert asyncio.run(_registered(cluster_db)) == registered
    assert godel_server(["keys", "register", str(_keys(tmp_path / "odd", intern=generate_key()))]) == 2
    assert "intern.key: unknown key name" in capsys.readouterr().err
    assert godel_server(["keys", "register", str(_keys(tmp_path / "weak", admin="godel_sk_short"))]) == 2
    assert "does not hold a key" in capsys.readouterr().err
    assert asyncio.run(_registered(cluster_db)) == registered


async def _register_as(db: Path, name: str, role: str, secret: str) -> None:
    from godel_server.cluster.keys import create_key
    from godel_server.runtime.db import Database

    database = Database(f"sqlite+aiosqlite:///{db}")
    try:
        async with database.session() as session:
            await create_key(session, name=name, role=role, secret=secret)
    finally:
        await database.close()


def test_keys_register_moves_the_team_services_key_from_operator_to_service(
    cluster_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An older release registered the team service's key as an operator's.
    team_service, admin = generate_key(), generate_key()
    assert godel_server(["keys", "register", str(_keys(tmp_path / "w", worker=generate_key()))]) == 0
    asyncio.run(_register_as(cluster_db, "team-service", "operator", team_service))
    asyncio.run(_register_as(cluster_db, "admin", "operator", admin))
    assert godel_server(["keys", "register", str(_keys(tmp_path / "k", team_service=team_service))]) == 0
    assert "its role changes from operator to service" in capsys.readouterr().out
    assert ("team-service", "service") in asyncio.run(_registered(cluster_db))
    # Only that change: an admin key registered with another role is still refused.
    assert godel_server(["keys", "register", str(_keys(tmp_path / "a", admin=admin))]) == 2
    assert "registered already, but as operator" in capsys.readouterr().err


def test_admin_port_probes_follow_readiness() -> None:
    ready = False
    server = AdminServer("127.0.0.1", 0, lambda: ready).start()
    try:
        address = f"127.0.0.1:{server.port}"
        assert probe(address, "/healthz") == (True, "ok")
        assert probe(address, "/readyz") == (False, "HTTP 503")
        ready = True
        assert probe(address, "/readyz") == (True, "ready")
        ok, metrics = probe(address, "/metrics")
        assert ok and "python_info" in metrics
        assert probe(address, "/nothing") == (False, "HTTP 404")
    finally:
        server.stop()
    assert probe(address, "/healthz")[0] is False


def test_a_deployments_gateway_config_is_valid_envoy(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    mesh, public = ca.issue("mesh", hosts=("agent", "team")), ca.issue("gateway")
    env = {
        "GODEL_BIND_HOST": "0.0.0.0",
        "GODEL_AGENT_ADDR": "agent:50051",
        "GODEL_TEAM_ADDR": "team.godel.svc:50052",
        # The gateway reaches every replica: here two by name (a headless Service would be one).
        "GODEL_GATEWAY_CLUSTER_ENDPOINTS": "cluster-0.cluster-pods:50054, cluster-1.cluster-pods:50054",
        "GODEL_EVENT_ADDR": "10.0.0.7:50053",
        "GODEL_CLUSTER_ADDR": "cluster:50054",
        "GODEL_EVENT_WS_PORT": "9200",
        "GODEL_TLS_CA_FILE": str(ca.ca_file),
        "GODEL_TLS_CERT_FILE": str(mesh.cert),
        "GODEL_TLS_KEY_FILE": str(mesh.key),
        "GODEL_GATEWAY_TLS_CERT_FILE": str(public.cert),
        "GODEL_GATEWAY_TLS_KEY_FILE": str(public.key),
    }
    path = render(load_gateway_settings(env), tmp_path / "envoy.yaml")
    validate(path)  # Envoy itself: unknown fields, bad TLS contexts, missing files
    config = yaml.safe_load(path.read_text())
    (listener,) = config["static_resources"]["listeners"]
    assert listener["address"]["socket_address"]["address"] == "0.0.0.0"
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"  # never exposed
    tls = listener["filter_chains"][0]["transport_socket"]["typed_config"]
    assert tls["common_tls_context"]["alpn_protocols"] == ["h2", "http/1.1"]
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    endpoint = clusters["godel_team"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "team.godel.svc", "port_value": 50052}
    assert clusters["godel_team"]["type"] == "STRICT_DNS"
    assert clusters["godel_event"]["type"] == "STATIC"  # an IP address stays static
    replicas = clusters["godel_cluster"]["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"]["address"] for e in replicas] == [
        "cluster-0.cluster-pods",
        "cluster-1.cluster-pods",
    ]
    cluster_tls = clusters["godel_cluster"]["transport_socket"]["typed_config"]
    assert "sni" not in cluster_tls  # two names: each replica's certificate names its own
    assert [
        m["matcher"]["exact"]
        for m in cluster_tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
    ] == ["cluster-0.cluster-pods", "cluster-1.cluster-pods"]
    for cluster in clusters.values():
        (check,) = cluster["health_checks"]
        assert ("tcp_health_check" if cluster["name"] == "godel_event_ws" else "grpc_health_check") in check
        assert cluster["outlier_detection"]["max_ejection_percent"] == 50
    ws = clusters["godel_event_ws"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert ws["address"]["socket_address"] == {"address": "10.0.0.7", "port_value": 9200}
    upstream = clusters["godel_agent"]["transport_socket"]["typed_config"]
    assert upstream["sni"] == "agent"
    san = upstream["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
    assert san == [{"san_type": "DNS", "matcher": {"exact": "agent"}}]
    assert "sni" not in clusters["godel_event"]["transport_socket"]["typed_config"]


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:4317", "https://otel.example.com"])
def test_with_an_otlp_endpoint_envoy_traces_and_exports_to_it(tmp_path: Path, endpoint: str) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
    path = render(load_gateway_settings(env), tmp_path / "envoy.yaml")
    validate(path)
    config = yaml.safe_load(path.read_text())
    (listener,) = config["static_resources"]["listeners"]
    (manager,) = listener["filter_chains"][0]["filters"]
    tracer = manager["typed_config"]["tracing"]["provider"]
    assert tracer["name"] == "envoy.tracers.opentelemetry"
    assert tracer["typed_config"]["service_name"] == "godel-gateway"
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    collector = clusters[tracer["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"]]
    address = collector["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    secure = endpoint.startswith("https")
    expected = (
        {"address": "otel.example.com", "port_value": 443}
        if secure
        else {"address": "127.0.0.1", "port_value": 4317}
    )
    assert address["socket_address"] == expected
    assert ("transport_socket" in collector) is secure
    plain = yaml.safe_load(render(load_gateway_settings({}), tmp_path / "plain.yaml").read_text())
    assert "tracing" not in str(plain)  # off by default


def test_the_gateway_and_probes_read_only_their_own_settings(tmp_path: Path) -> None:
    """In a gateway pod the shared ConfigMap names the services' secret files, which are not
    mounted there; the gateway and `godel-server probe` must not need them."""
    shared = {
        "GODEL_DATABASE_URL": "postgresql://godel@db:5432",
        "GODEL_DATABASE_PASSWORD_FILE": str(tmp_path / "not-mounted"),
        "GODEL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "GODEL_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "not-mounted"),
        "GODEL_AGENT_ADDR": "godel-agent:50051",
        "GODEL_BIND_HOST": "0.0.0.0",
    }
    settings = load_gateway_settings(shared)
    assert [u.host for u in settings.upstreams["godel_agent"]] == ["godel-agent"]
    assert settings.listen_host == "0.0.0.0"
    assert _probe_targets("agent", {**shared, "GODEL_AGENT_ADMIN_PORT": "9201"}) == {
        "agent": "127.0.0.1:9201"
    }
    assert _probe_targets(None, {**shared, "GODEL_WORKER_ADMIN_PORT": "9205"})["worker"] == "127.0.0.1:9205"
