"""Fast unit tests of the shared runtime (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2

from godel.v1 import agent_events_pb2, agent_service_pb2, event_pb2
from godel_server.runtime.apikeys import generate_key, hash_key, looks_like_key
from godel_server.runtime.config import ConfigError, load_kafka, load_settings
from godel_server.runtime.errors import AgentNotFoundError, FieldViolation, ValidationError
from godel_server.runtime.events import new_event, pattern_matches, rfc3339, to_kafka_record
from godel_server.runtime.interceptors import credential_from, status_for
from godel_server.runtime.kafka import KAFKA_MAX_MESSAGE_BYTES, client_options, new_topics
from godel_server.runtime.pagination import PageRequest, page_size
from godel_server.runtime.topics import topic_for


def test_settings_defaults_and_database_urls(tmp_path: Path) -> None:
    s = load_settings("agent", {"GODEL_HOME": str(tmp_path)})
    assert s.grpc_port == 50051 and s.admin_port == 9101
    assert s.database_url == f"sqlite+aiosqlite:///{tmp_path / 'agent.db'}"
    assert s.service_addrs["cluster"] == "127.0.0.1:50054"
    pg = load_settings("event", {"GODEL_DATABASE_URL": "postgresql://u:p@db:5432/ignored?sslmode=disable"})
    assert pg.database_url == "postgresql+asyncpg://u:p@db:5432/godel_event?sslmode=disable"
    prefixed = load_settings(
        "team", {"GODEL_DATABASE_URL": "postgresql://db/x", "GODEL_DATABASE_NAME_PREFIX": "t1"}
    )
    assert prefixed.database_url.endswith("/t1_team")
    secret = tmp_path / "db-password"
    secret.write_text("p@ss/word\n")
    with_file = load_settings(
        "agent",
        {"GODEL_DATABASE_URL": "postgresql://godel@db:5432", "GODEL_DATABASE_PASSWORD_FILE": str(secret)},
    )
    assert with_file.database_url == "postgresql+asyncpg://godel:p%40ss%2Fword@db:5432/godel_agent"
    with pytest.raises(ConfigError, match="GODEL_DATABASE_PASSWORD_FILE"):
        load_settings(
            "agent",
            {"GODEL_DATABASE_URL": "postgresql://u:p@db", "GODEL_DATABASE_PASSWORD_FILE": str(secret)},
        )
    with pytest.raises(ConfigError, match="GODEL_AGENT_PORT"):
        load_settings("agent", {"GODEL_AGENT_PORT": "abc"})
    with pytest.raises(ConfigError):
        load_settings("agent", {"GODEL_DATABASE_URL": "mysql://x"})


def test_kafka_settings_security_and_topic_replication(tmp_path: Path) -> None:
    default = load_kafka({})
    assert (default.bootstrap, default.security_protocol, default.replication_factor) == (
        "127.0.0.1:9092",
        "PLAINTEXT",
        1,
    )
    assert client_options(default) == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
    }
    record_limit = {"max.message.bytes": str(KAFKA_MAX_MESSAGE_BYTES)}  # Godel's one record limit
    assert new_topics(default, ["t"])[0].topic_configs == record_limit
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    secure = load_kafka(
        {
            "GODEL_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "GODEL_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "GODEL_KAFKA_SASL_USERNAME": "godel",
            "GODEL_KAFKA_SASL_PASSWORD_FILE": str(password),
            "GODEL_KAFKA_REPLICATION_FACTOR": "3",
            "GODEL_KAFKA_MIN_INSYNC_REPLICAS": "2",
        }
    )
    assert "s3cret" not in repr(secure)
    options = client_options(secure)
    assert options["sasl_plain_password"] == "s3cret" and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["ssl_context"] is not None
    (topic,) = new_topics(secure, ["godel.agent.events"])
    assert (topic.replication_factor, topic.topic_configs) == (
        3,
        {**record_limit, "min.insync.replicas": "2"},
    )
    for env, message in [
        ({"GODEL_KAFKA_SECURITY_PROTOCOL": "TLS"}, "GODEL_KAFKA_SECURITY_PROTOCOL must be one of"),
        ({"GODEL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs GODEL_KAFKA_SASL_USERNAME"),
        ({"GODEL_KAFKA_MIN_INSYNC_REPLICAS": "2"}, "must not exceed GODEL_KAFKA_REPLICATION_FACTOR"),
        ({"GODEL_KAFKA_SSL_CA_FILE": str(tmp_path / "missing.pem")}, "not a readable file"),
        ({"GODEL_KAFKA_SSL_CERT_FILE": str(password)}, "must be set together"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_kafka(env)


def test_tls_settings_are_all_three_files_or_none(tmp_path: Path) -> None:
    files = {}
    for name in ("CA", "CERT", "KEY"):
        path = tmp_path / f"{name.lower()}.pem"
        path.write_text("pem")
        files[f"GODEL_TLS_{name}_FILE"] = str(path)
    assert load_settings("agent", files).tls.enabled
    assert not load_settings("agent", {}).tls.enabled
    with pytest.raises(ConfigError, match="missing GODEL_TLS_KEY_FILE"):
        load_settings("agent", {k: v for k, v in files.items() if k != "GODEL_TLS_KEY_FILE"})


@pytest.mark.parametrize(
    ("pattern", "event_type", "expected"),
    [
        ("agent:*", "agent:start", True),
        ("agent:*", "agent:step:x", True),
        ("agent:*", "team:start", False),
        ("agent:*", "agentx:start", False),
        ("workflow:step:*", "workflow:step:complete", True),
        ("workflow:step:*", "workflow:start", False),
        ("agent:start", "agent:start", True),
        ("agent:start", "agent:started", False),
        ("*", "anything:at_all", True),
        ("*:start", "team:start", True),
        ("*:start", "team:stop", False),
    ],
)
def test_pattern_matching(pattern: str, event_type: str, expected: bool) -> None:
    assert pattern_matches(pattern, event_type) is expected


def test_topics_and_kafka_record() -> None:
    assert topic_for("agent:start") == "godel.agent.events"
    assert topic_for("workflow:step:start") == "godel.workflow.events"
    assert topic_for("budget:exceeded") == "godel.budget.events"
    assert topic_for("deploy:done") == "godel.custom.events"
    started = agent_events_pb2.AgentStarted(session_id="s-1")
    event = new_event(started, partition_key="agent-1", component="agent-service")
    record = to_kafka_record(event)
    assert record.key == "agent-1" and record.topic == "godel.agent.events"
    headers = dict(record.headers)
    assert headers["ce_type"] == b"agent:start" and headers["ce_id"] == event.id.encode()
    decoded = event_pb2.Event()
    decoded.ParseFromString(record.value)
    assert decoded == event
    assert headers["ce_time"] == event.timestamp.ToJsonString().encode()
    assert abs(event.timestamp.ToDatetime(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=1)


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (0, 0),
        (1_764_990_000, 0),
        (1_764_990_000, 5_000_000),
        (1_764_990_000, 123_000),
        (1_764_990_000, 123_456_789),
        (1_764_990_001, 1),
        (253_402_300_799, 999_999_999),  # 9999-12-31T23:59:59.999999999Z
        (-62_135_596_800, 0),  # 0001-01-01T00:00:00Z
    ],
)
def test_ce_time_is_written_as_protobufs_json_form(seconds: int, nanos: int) -> None:
    ts = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    assert rfc3339(ts) == ts.ToJsonString()


def test_page_tokens_are_bound_to_their_query() -> None:
    first = PageRequest.of(2, "", ("q1",), (int,))
    assert (first.size, first.after, first.limit) == (2, None, 3)
    rows, token = first.split([10, 11, 12], lambda n: (n,))
    assert list(rows) == [10, 11] and token
    assert PageRequest.of(2, token, ("q1",), (int,)).after == (11,)
    assert first.split([10, 11], lambda n: (n,)) == ([10, 11], "")
    with pytest.raises(ValidationError) as changed:
        PageRequest.of(2, token, ("q2",), (int,))
    assert changed.value.violations[0].field == "page_token"
    assert "different query" in changed.value.violations[0].description
    for bad in ("!!garbage!!", "eyJrIjogMX0"):
        with pytest.raises(ValidationError):
            PageRequest.of(2, bad, ("q1",), (int,))
    with pytest.raises(ValidationError):  # a key of the wrong kind
        PageRequest.of(2, token, ("q1",), (str,))
    assert page_size(0) == 50 and page_size(5000) == 1000
    with pytest.raises(ValidationError):
        page_size(-1)


def test_errors_map_to_status_with_details() -> None:
    status = status_for(ValidationError([FieldViolation("task", "is required"), FieldViolation("x", "bad")]))
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    assert status.details[0].Unpack(info) and info.reason == "VALIDATION_ERROR" and info.domain == "godel.dev"
    assert status.details[1].Unpack(bad) and [v.field for v in bad.field_violations] == ["task", "x"]
    missing = status_for(AgentNotFoundError("a1"))
    assert missing.code == grpc.StatusCode.NOT_FOUND.value[0] and "a1" in missing.message


def test_api_keys_and_credentials() -> None:
    key = generate_key()
    assert looks_like_key(key) and key.startswith("godel_sk_")
    assert hash_key(key) != key and len(hash_key(key)) == 64 and hash_key(key) == hash_key(key)
    assert credential_from({"x-api-key": "k1"}) == "k1"
    assert credential_from({"authorization": "Bearer k2"}) == "k2"
    assert credential_from({"authorization": "Basic zzz"}) == ""


def test_agent_validation_reports_every_violation() -> None:
    from godel_server.agent.validation import check_create

    request = agent_service_pb2.CreateAgentRequest(task="", team_id="x", max_retries=500, budget_limit=0)
    request.config.runtime = "nope"
    with pytest.raises(ValidationError) as info:
        check_create(request)
    assert {v.field for v in info.value.violations} == {
        "task",
        "team_id",
        "max_retries",
        "budget_limit",
        "config.runtime",
    }
    check_create(agent_service_pb2.CreateAgentRequest(task="fine"))
