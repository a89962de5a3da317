"""The agent service's cheaper read path shows the same agents: rows of AGENT_COLUMNS map to the same
Agent message as the ORM's AgentRow, pages and their tokens work on them, and `stamp` sets the
same Timestamp as protobuf's FromDatetime."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf import timestamp_pb2

from godel.v1 import agent_pb2, agent_service_pb2
from godel_server.agent.mapping import agent_owner, agent_to_proto, config_from_dict, new_agent_row
from godel_server.agent.models import AgentRow
from godel_server.agent.repository import AgentQuery, AgentRepository
from godel_server.runtime.db import Database
from godel_server.runtime.events import stamp
from godel_server.runtime.ownership import EVERYTHING, Owner, Reach
from godel_server.runtime.statuses import AgentStatus, LifecycleState
from godel_server.runtime.text import loads_json

MOMENTS = [
    datetime(2026, 12, 4, 5, 6, 7, 891011, tzinfo=UTC),
    datetime(2026, 12, 4, 5, 6, 7, 891011),  # naive: UTC
    datetime(2026, 12, 4, 5, 6, 7, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
]


@pytest.mark.parametrize("moment", MOMENTS, ids=str)
def test_stamp_is_from_datetime(moment: datetime) -> None:
    ours, theirs = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    stamp(ours, moment)
    theirs.FromDatetime(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    assert (ours.seconds, ours.nanos) == (theirs.seconds, theirs.nanos)


def test_json_columns_read_as_json_loads_reads_them() -> None:
    for text in ("{}", "[]", '{"a": [1, {}]}', "[]\n", "null", '"{}"', '"null"'):
        assert loads_json(text) == json.loads(text)
    first, second = loads_json("{}"), loads_json("{}")
    first["changed"] = True
    assert second == {} and loads_json("[]") is not loads_json("[]")


def test_an_empty_config_is_the_empty_message() -> None:
    assert config_from_dict({}) == agent_pb2.AgentConfig()
    assert config_from_dict({"env": {"A": "b"}}).env["A"] == "b"


def _agent(i: int, user: str) -> AgentRow:
    request = agent_service_pb2.CreateAgentRequest(
        task=f"task {i}", label="l", max_retries=5, budget_limit=2.5
    )
    request.config.env["TOKEN"] = "secret-value"
    request.context.update({"k": i})
    request.metadata.update({"m": "v"})
    row = new_agent_row(request, model="m", repo=None, caller=None, owner=Owner(user, "t1"))
    row.spawned_at = datetime(2026, 12, 4, tzinfo=UTC) + timedelta(seconds=i)
    row.completed_at = row.spawned_at + timedelta(minutes=1)
    row.commits = ["abc"]
    row.status, row.lifecycle_state = AgentStatus.COMPLETED, LifecycleState.COMPLETED
    row.pending_reason = "no_worker"
    return row


async def test_rows_of_columns_show_what_agent_rows_show(agent_db: Database) -> None:
    async with agent_db.session() as session:
        for i in range(5):
            session.add(_agent(i, "alice" if i % 2 else "bob"))
    async with agent_db.reader() as session:
        repository = AgentRepository(session)
        listed, token = await repository.find(AgentQuery(), EVERYTHING, page_size=2, page_token="")
        rest, end = await repository.find(AgentQuery(), EVERYTHING, page_size=10, page_token=token)
        assert end == ""
        for row in [*listed, *rest]:
            orm = await repository.get(row.id)
            assert orm is not None
            shown = agent_to_proto(row)
            assert shown == agent_to_proto(orm)
            assert shown.config.env["TOKEN"] == "********"
            assert agent_owner(row) == agent_owner(orm)
            viewed = await repository.view(row.id)
            assert viewed is not None and agent_to_proto(viewed) == shown
        assert [r.task for r in [*listed, *rest]] == [f"task {i}" for i in reversed(range(5))]
        alice = Reach("own", "alice")
        mine, _ = await repository.find(AgentQuery(), alice, page_size=10, page_token="")
        assert {r.task for r in mine} == {"task 1", "task 3"}
        assert await repository.view("no-such-agent") is None
