"""API keys (hashed, role-checked, revocable), clusters, health, capabilities and metrics."""

from __future__ import annotations

import uuid

import httpx

from tests.conftest import RunningMesh
from tests.waits import poll


def test_admin_creates_keys_that_work_and_can_be_revoked(godel: RunningMesh) -> None:
    with godel.http() as admin:
        created = admin.post("/api/v1/auth/keys", json={"name": "ci-bot", "role": "developer"})
        assert created.status_code == 200, created.text
        body = created.json()
        secret = body["secret"]
        assert secret.startswith("godel_sk_") and body["apiKey"]["prefix"] == secret[:13]
        listed = admin.get("/api/v1/auth/keys").json()["apiKeys"]
        assert any(k["id"] == body["apiKey"]["id"] for k in listed)
        assert all(secret not in str(k) for k in listed), "the secret is never returned again"

    with godel.http(secret) as dev:
        assert dev.get("/api/v1/agents").status_code == 200
        forbidden = dev.post("/api/v1/auth/keys", json={"name": "escalate", "role": "admin"})
        assert forbidden.status_code == 403
        # whoami: the caller as the key resolves it.
        me = dev.get("/api/v1/auth/whoami")
        assert me.status_code == 200, me.text
        assert (me.json()["keyId"], me.json()["role"]) == (body["apiKey"]["id"], "developer")
        permissions = me.json()["permissions"]
        assert any(p.startswith(("agent:create:", "agent:*:")) for p in permissions), permissions
        assert not any(p.startswith(("key:create:", "key:*:", "*:")) for p in permissions), permissions
    with httpx.Client(base_url=godel.rest) as anon:
        assert anon.get("/api/v1/auth/whoami").status_code == 401
    with godel.http("godel_sk_" + "0" * 40) as wrong:
        assert wrong.get("/api/v1/auth/whoami").status_code == 401

    with godel.http() as admin:
        assert admin.post(f"/api/v1/auth/keys/{body['apiKey']['id']}/revoke", json={}).status_code == 200
    with godel.http(secret) as dev:
        poll(
            lambda: dev.get("/api/v1/agents").status_code,
            lambda code: code == 401,
            10,
            "the key to be refused",
        )


def test_roles_are_enforced_per_rpc(godel: RunningMesh) -> None:
    viewer = godel.create_key("viewer")
    with godel.http(viewer) as http:
        assert http.get("/api/v1/agents").status_code == 200
        denied = http.post("/api/v1/agents", json={"task": "not allowed"})
        assert denied.status_code == 403
        assert "may not create agent" in denied.json()["message"]
        assert http.get("/api/v1/health/detailed").status_code == 200
    developer = godel.create_key("developer")
    with godel.http(developer) as http:
        assert http.post("/api/v1/agents", json={"task": "allowed"}).status_code == 200
        assert http.post("/api/v1/clusters", json={"name": "x", "endpoint": "h:1"}).status_code == 403


def test_keys_are_stored_only_as_hashes(godel: RunningMesh, postgres: object) -> None:
    from godel_deploy.postgres import PostgresServer

    assert isinstance(postgres, PostgresServer)
    dump = postgres.psql("SELECT key_hash, prefix FROM api_keys", dbname="shared_cluster")
    assert godel.admin_key not in dump
    assert godel.admin_key[:13] in dump  # the display prefix only


def test_cluster_register_list_heartbeat(godel: RunningMesh) -> None:
    name = f"eu-{uuid.uuid4().hex[:6]}"
    with godel.http() as http:
        bad = http.post("/api/v1/clusters", json={"name": name, "endpoint": "no-port"})
        assert bad.status_code == 400 and "endpoint" in bad.text
        cluster = http.post(
            "/api/v1/clusters",
            json={"name": name, "region": "eu-west-1", "endpoint": "10.0.0.1:7373", "maxAgents": 100},
        ).json()
        assert cluster["status"] == "CLUSTER_STATUS_ONLINE"
        beat = http.post(
            f"/api/v1/clusters/{cluster['id']}/heartbeat", json={"currentAgents": 25, "healthScore": 30}
        )
        assert beat.status_code == 200
        assert beat.json()["cluster"]["loadFactor"] == 0.25
        # The score is the registry's own (from its probes of 10.0.0.1:7373), never the one sent.
        score = beat.json()["cluster"]["healthScore"]
        assert score != 30 and beat.json()["cluster"]["health"]["capacity"] == 0.75
        listed = http.get("/api/v1/clusters", params={"region": "eu-west-1"}).json()["clusters"]
        assert [c["name"] for c in listed if c["name"] == name] == [name]
        assert http.post(f"/api/v1/clusters/{uuid.uuid4()}/heartbeat", json={}).status_code == 404
        # GetCluster returns what the heartbeat recorded (the score is the registry's: it may move).
        got = http.get(f"/api/v1/clusters/{cluster['id']}")
        assert got.status_code == 200, got.text
        one = got.json()
        assert (one["id"], one["name"], one["region"], one["endpoint"]) == (
            cluster["id"],
            name,
            "eu-west-1",
            "10.0.0.1:7373",
        )
        assert (one["currentAgents"], one["maxAgents"], one["loadFactor"]) == (25, 100, 0.25)
        assert http.get(f"/api/v1/clusters/{uuid.uuid4()}").status_code == 404
        assert http.delete(f"/api/v1/clusters/{name}").status_code == 200
        assert http.get(f"/api/v1/clusters/{cluster['id']}").status_code == 404


def test_detailed_health_covers_services_kafka_and_database(godel: RunningMesh) -> None:
    with godel.http() as http:
        health = http.get("/api/v1/health/detailed").json()
    names = {c["name"]: c for c in health["components"]}
    assert set(names) >= {
        "agent-service",
        "team-service",
        "event-service",
        "cluster-service",
        "kafka",
        "cluster-service/database",
    }
    assert health["status"] == "HEALTH_STATUS_HEALTHY", health
    assert "postgresql" in names["cluster-service/database"]["message"]
    with httpx.Client(base_url=godel.rest) as anon:
        assert anon.get("/health/ready").json() == {"ready": True}
        assert anon.get("/health/live").json() == {"alive": True}


def test_capabilities_and_metrics(godel: RunningMesh) -> None:
    with httpx.Client(base_url=godel.rest) as anon:
        caps = anon.get("/api/v1/capabilities").json()
    assert "godel.v1.AgentService" in caps["services"]
    assert "godel.agent.events" in caps["topics"]
    with godel.http() as http:
        http.post("/api/v1/agents", json={"task": "count me"})
        metrics = http.get("/api/v1/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'service="agent"' in text and 'service="event"' in text
    assert "godel_api_requests_total" in text
    assert "godel_outbox_published_total" in text
    direct = httpx.get(f"http://127.0.0.1:{godel.mesh.ports.admin['agent']}/metrics")
    assert "godel_api_request_duration_seconds_bucket" in direct.text
