"""Request bounds from the contract (runtime/bounds.py): what they refuse and cut, and that they
agree with the database columns the fields land in."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from google.protobuf import struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from sqlalchemy import String

from godel.v1 import agent_pb2, agent_service_pb2, event_pb2, event_service_pb2, worker_service_pb2
from godel_deploy.kafka import KafkaBroker
from godel_server.__main__ import service_class
from godel_server.runtime.bounds import (
    DEFAULT_MAX_LEN,
    bounds,
    check,
    clamp,
    max_field_size,
    max_size,
    violations,
)
from godel_server.runtime.errors import ValidationError
from godel_server.runtime.kafka import KAFKA_MAX_MESSAGE_BYTES, KAFKA_MAX_RECORD_BYTES
from godel_server.runtime.rbac import API_SERVICES
from godel_server.runtime.tables import runtime_metadata
from godel_server.runtime.topology import ROLES


def _fields(message: Descriptor, seen: frozenset[str] = frozenset()) -> Iterator[FieldDescriptor]:
    """Every field of a message type and of the message types it holds (once per path), but map
    entries (a map key is no column) and the `id` of a nested message (a step's id is its
    `step_id` column, not a table's primary key)."""
    for field in message.fields:
        nested = field.message_type
        if nested is not None and nested.GetOptions().map_entry:
            continue
        if field.name != "id" or message.name.endswith("Request"):
            yield field
        if nested is not None and nested.full_name not in seen and not nested.full_name.startswith("google."):
            yield from _fields(nested, seen | {message.full_name, nested.full_name})


def _string_columns(role: str) -> dict[str, int]:
    """Column name -> its longest String(n) length in the role's database (a name may stand for
    columns of several lengths, e.g. the cluster service's `name` of clusters and of user teams:
    a field of that name must fit at least the widest)."""
    models = importlib.import_module(f"godel_server.{role}.models")
    tables = [*models.Base.metadata.tables.values(), *runtime_metadata.tables.values()]
    lengths: dict[str, int] = {}
    for table in tables:
        for column in table.columns:
            if isinstance(column.type, String) and column.type.length:
                lengths[column.name] = max(lengths.get(column.name, 0), column.type.length)
    return lengths


def test_every_string_request_field_fits_the_column_of_its_name() -> None:
    """A request field named like a VARCHAR(n) column of its service's database is bounded by at
    most n characters (a 37-character agent id must be refused, not fail the insert)."""
    too_long = []
    for role in ROLES:
        columns = _string_columns(role)
        served = set(service_class(role).grpc_services)
        for service in API_SERVICES:
            if service.full_name not in served:
                continue
            for method in service.methods:
                for field in _fields(method.input_type):
                    string = field.type == FieldDescriptor.TYPE_STRING
                    if string and field.name in columns and bounds(field).max_len > columns[field.name]:
                        too_long.append(
                            f"{field.full_name}: {bounds(field).max_len} > {role} column "
                            f"{field.name} VARCHAR({columns[field.name]})"
                        )
    assert too_long == []


def test_a_37_character_agent_id_and_a_nul_are_refused_naming_the_field_and_the_limit() -> None:
    request = event_service_pb2.PublishEventRequest(
        type="deploy:finished",
        metadata=event_pb2.EventMetadata(agent_id="a" * 37),
    )
    request.payload.update({"note": "before\x00after"})
    with pytest.raises(ValidationError) as info:
        check(request)
    found = {v.field: v.description for v in info.value.violations}
    assert found["metadata.agent_id"] == "must be at most 36 characters (has 37)"
    assert "NUL" in found["payload"]


def test_two_megabytes_of_metadata_are_refused() -> None:
    request = agent_service_pb2.CreateAgentRequest(task="t")
    request.metadata.update({"blob": "x" * 2_000_000})
    [violation] = violations(request)
    assert violation.field == "metadata"
    assert violation.description.startswith("must be at most 65536 bytes as protobuf")


def test_defaults_bound_unannotated_strings_lists_and_maps() -> None:
    config = agent_pb2.AgentConfig(skills=["s"] * 101)
    config.env.update({f"K{i}": "v" for i in range(65)})
    request = agent_service_pb2.CreateAgentRequest(task="t", config=config)
    request.config.skills[0] = "x" * (DEFAULT_MAX_LEN + 1)
    found = {v.field for v in violations(request)}
    assert {"config.skills", "config.skills[0]", "config.env"} <= found
    assert violations(agent_service_pb2.CreateAgentRequest(task="fine")) == []


def test_clamp_makes_a_worker_message_storable_and_bounded() -> None:
    update = worker_service_pb2.RunUpdate(result="a\x00b" + "x" * 200_000, error="e\x00")
    message = worker_service_pb2.RunLogLine(message="line\x00")
    cut = clamp(update) + clamp(message)
    result_limit = bounds(worker_service_pb2.RunUpdate.DESCRIPTOR.fields_by_name["result"]).max_len
    assert update.result.startswith("a\ufffdb") and len(update.result) == result_limit
    assert update.error == "e\ufffd" and message.message == "line\ufffd"
    assert set(cut) == {"result", "error", "message"}


def test_clamp_clears_a_struct_it_cannot_store() -> None:
    message = agent_pb2.SessionMessage(content="c")
    message.metadata.update({"k": "v\x00"})
    assert clamp(message) == ["metadata"]
    assert message.metadata == struct_pb2.Struct()


def test_an_agent_at_every_bound_fits_one_kafka_record() -> None:
    """agent:spawn and agent:complete carry the agent: everything its create request may hold,
    plus what its run reports (result, error, commits); a Kafka record holds 1 MiB."""
    run = worker_service_pb2.RunUpdate.DESCRIPTOR.fields_by_name
    agent = max_size(agent_service_pb2.CreateAgentRequest.DESCRIPTOR) + sum(
        max_field_size(run[name]) for name in ("result", "error", "commits", "worktree", "branch")
    )
    envelope = 16 * 1024  # ids, timestamps, counters, the event's metadata and headers
    assert agent + envelope <= KAFKA_MAX_RECORD_BYTES
    assert max_size(event_service_pb2.PublishEventRequest.DESCRIPTOR) + envelope <= KAFKA_MAX_RECORD_BYTES


def test_every_broker_godel_starts_takes_records_of_the_one_limit() -> None:
    """The local launcher's broker and the compose file's use the limit the producers and topics do."""
    assert (
        int(KafkaBroker(Path("/nonexistent")).server_properties()["message.max.bytes"])
        == KAFKA_MAX_MESSAGE_BYTES
    )
    compose = yaml.safe_load((Path(__file__).parents[2] / "deploy" / "compose" / "compose.yaml").read_text())
    assert compose["services"]["kafka"]["environment"]["KAFKA_MESSAGE_MAX_BYTES"] == KAFKA_MAX_MESSAGE_BYTES


def test_clamp_names_the_entry_it_cut_in_a_heartbeat_of_thousands_of_runs() -> None:
    message = worker_service_pb2.ConnectRequest()
    runs = message.heartbeat.runs
    for i in range(3000):
        run = runs.add(run_id=f"run-{i}", agent_id=f"agent-{i}", state=worker_service_pb2.RUN_STATE_RUNNING)
        run.last_progress.seconds = 1_700_000_000 + i
    clean = message.SerializeToString()
    assert clamp(message, "request") == [] and message.SerializeToString() == clean
    runs[7].agent_id = "a\x00" + "x" * 40
    runs[2999].run_id = "é" * 50
    assert clamp(message, "request") == [
        "request.heartbeat.runs[7].agent_id",
        "request.heartbeat.runs[2999].run_id",
    ]
    assert runs[7].agent_id == "a\ufffd" + "x" * 34 and runs[2999].run_id == "é" * 36
    assert runs[1000].run_id == "run-1000" and runs[2999].last_progress.seconds == 1_700_002_999
