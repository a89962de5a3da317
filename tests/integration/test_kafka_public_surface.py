"""Kafka is a public surface (docs/kafka-topics.md): a client that is not Godel's own Python code
(kcat, i.e. librdkafka) reads an agent's events straight from `godel.agent.events` and finds the
documented key, headers and protobuf value.

kcat comes from Debian (`apt-get install -y kcat`; `.ci/run` installs it when it is missing)."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC

import pytest
from google.protobuf.unknown_fields import UnknownFieldSet

from godel.v1 import agent_pb2, event_pb2
from tests.conftest import RunningMesh
from tests.waits import poll

TOPIC = "godel.agent.events"
CONTENT_TYPE = "application/protobuf; messageType=godel.v1.Event"
# One line of metadata per record, then exactly %S value bytes, then a newline. The value is binary
# protobuf, so it is located by its printed size and never by a delimiter.
KCAT_FORMAT = "%p\t%o\t%k\t%S\t%h\n%s\n"


@dataclass(frozen=True)
class KcatRecord:
    partition: int
    offset: int
    key: str
    headers: dict[str, str]
    value: bytes


def kcat_binary() -> str:
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        pytest.fail("kcat is not installed: `apt-get install -y kcat` (.ci/run installs it when missing)")
    return kcat


def parse_headers(text: str) -> dict[str, str]:
    """kcat's %h: `k=v,k=v`. Godel's header values contain no comma; a value may contain `=`
    (content-type), so each pair is split at its first `=`."""
    headers: dict[str, str] = {}
    for pair in text.split(","):
        name, sep, value = pair.partition("=")
        assert sep, f"unexpected kcat header field {pair!r} in {text!r}"
        headers[name] = value
    return headers


def parse_kcat_output(out: bytes) -> list[KcatRecord]:
    records: list[KcatRecord] = []
    pos = 0
    while pos < len(out):
        end = out.index(b"\n", pos)
        fields = out[pos:end].decode().split("\t")
        assert len(fields) == 5, f"unexpected kcat line {out[pos:end]!r}"
        partition, offset, key, size, headers = fields
        start = end + 1
        value = out[start : start + int(size)]
        assert len(value) == int(size), "kcat output ended inside a record value"
        assert out[start + int(size) : start + int(size) + 1] == b"\n", "value not followed by newline"
        pos = start + int(size) + 1
        records.append(KcatRecord(int(partition), int(offset), key, parse_headers(headers), value))
    return records


def read_topic(kcat: str, bootstrap: str, topic: str) -> list[KcatRecord]:
    """Every record of `topic` from the beginning; kcat exits at the end of all partitions (-e)."""
    result = subprocess.run(
        [kcat, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", KCAT_FORMAT],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return parse_kcat_output(result.stdout)


def wait_for_records(
    kcat: str, bootstrap: str, key: str, types: set[str], timeout: float = 30.0
) -> list[KcatRecord]:
    """The records keyed `key` once records of all `types` are on the topic (bounded polling)."""
    return poll(
        lambda: [r for r in read_topic(kcat, bootstrap, TOPIC) if r.key == key],
        lambda mine: types <= {r.headers.get("ce_type") for r in mine},
        timeout,
        f"kcat to find {sorted(types)} keyed {key} on {TOPIC}",
        interval=0.3,
    )


def decode(record: KcatRecord) -> event_pb2.Event:
    event = event_pb2.Event()
    event.ParseFromString(record.value)
    # Every byte belongs to a field of godel.v1.Event (bytes are not compared with a re-encoding: the
    # order of Struct map entries, e.g. in an agent's metadata, may differ); the callers check the
    # decoded fields.
    assert len(UnknownFieldSet(event)) == 0
    return event


def test_agent_events_are_readable_from_kafka_with_kcat(godel: RunningMesh) -> None:
    kcat = kcat_binary()
    task = f"kafka public surface {uuid.uuid4().hex[:8]}"
    with godel.http() as http:
        created = http.post("/api/v1/agents", json={"task": task})
        assert created.status_code == 200, created.text
        agent_id = created.json()["id"]
        assert http.delete(f"/api/v1/agents/{agent_id}").status_code == 200

    records = wait_for_records(kcat, godel.kafka.bootstrap, agent_id, {"agent:spawn", "agent:delete"})
    # The agent has nothing to run, so the service may fail it (agent:error) before the delete.
    types = [r.headers["ce_type"] for r in records]
    assert types[0] == "agent:spawn" and types[-1] == "agent:delete", types
    assert set(types[1:-1]) <= {"agent:error"}, types
    spawn, delete = records[0], records[-1]

    # Headers: CloudEvents attributes plus the content type, exactly as documented.
    for record in (spawn, delete):
        assert record.key == agent_id
        assert record.headers["ce_specversion"] == "1.0"
        assert record.headers["ce_source"] == "godel/agent-service"
        assert record.headers["content-type"] == CONTENT_TYPE
        uuid.UUID(record.headers["ce_id"])
        assert {"ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "content-type"} <= set(
            record.headers
        )
        assert set(record.headers) <= {
            "ce_specversion",
            "ce_id",
            "ce_type",
            "ce_source",
            "ce_time",
            "content-type",
            "trace_id",
            "correlation_id",
        }

    # Value: protobuf binary godel.v1.Event that agrees with the headers and the key.
    event = decode(spawn)
    assert event.id == spawn.headers["ce_id"]
    assert event.type == "agent:spawn"
    assert event.partition_key == agent_id
    assert event.metadata.agent_id == agent_id
    assert event.source.component == "agent-service"
    assert event.sequence == 0  # the global sequence is assigned later, by the event store
    assert event.timestamp.ToJsonString() == spawn.headers["ce_time"]
    assert event.timestamp.ToDatetime(tzinfo=UTC).year >= 2024
    # The typed payload: AgentSpawned in the `data` oneof, the message its type names.
    assert event.WhichOneof("data") == "agent_spawned" and not event.HasField("payload")
    assert event.agent_spawned.agent.id == agent_id
    assert event.agent_spawned.agent.task == task
    assert event.agent_spawned.agent.status == agent_pb2.AGENT_STATUS_PENDING
    if "correlation_id" in spawn.headers:
        assert spawn.headers["correlation_id"] == event.metadata.correlation_id
    if "trace_id" in spawn.headers:
        assert spawn.headers["trace_id"] == event.metadata.trace_id

    deleted = decode(delete)
    assert deleted.id == delete.headers["ce_id"] != event.id
    assert deleted.type == "agent:delete"
    assert deleted.partition_key == agent_id
    assert deleted.WhichOneof("data") == "agent_deleted" and deleted.agent_deleted.agent_id == agent_id
    assert deleted.agent_deleted.status != agent_pb2.AGENT_STATUS_UNSPECIFIED

    # One key, one partition, in order: the spawn comes before the delete.
    assert spawn.partition == delete.partition
    assert spawn.offset < delete.offset

    # The same event is what the event service stored (Kafka and the API agree on the id).
    with godel.http() as http:
        stored = poll(
            lambda: http.get(f"/api/v1/events/{event.id}"),
            lambda reply: reply.status_code != 404,
            20,
            "the event service to store the event",
        )
    assert stored.status_code == 200, stored.text
    assert stored.json()["type"] == "agent:spawn"
    assert stored.json()["partitionKey"] == agent_id


def test_parse_kcat_output_keeps_binary_values_intact() -> None:
    value = b"\n\x05a\tb\nc\x00\xff"
    out = b"2\t7\tkey-1\t%d\tce_type=agent:spawn,content-type=a; b=c\n%s\n" % (len(value), value)
    (record,) = parse_kcat_output(out)
    assert record == KcatRecord(2, 7, "key-1", {"ce_type": "agent:spawn", "content-type": "a; b=c"}, value)
    assert len(parse_kcat_output(out * 3)) == 3
