"""The one enum mapper (runtime/enums.py): names derived from the proto descriptors, the StrEnums of
runtime/statuses.py checked against them, and the stored spelling kept as it was."""

from __future__ import annotations

from enum import StrEnum

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from sqlalchemy.dialects import sqlite

from godel.v1 import agent_pb2, budget_pb2, event_service_pb2, task_pb2, team_pb2, workflow_pb2
from godel_server.event.hub import BLOCK, DROP, SLIDING
from godel_server.event.options import BACKPRESSURE
from godel_server.runtime import statuses
from godel_server.runtime.enums import ProtoEnum, kebab, one_of, upper
from godel_server.runtime.sqltypes import EnumString
from godel_server.runtime.statuses import (
    AGENT_STATUS,
    BUDGET_PERIOD,
    STEP_STATUS,
    TASK_STATUS,
    AgentStatus,
    TaskStatus,
)
from godel_server.team.teams.mapping import STRATEGY
from godel_server.team.teams.strategies import STRATEGIES


def _enum(name: str, values: list[tuple[str, int]]) -> EnumTypeWrapper:
    """A proto enum built on the fly (in a pool of its own)."""
    proto = descriptor_pb2.FileDescriptorProto(name=f"{name.lower()}.proto", package="test")
    enum = proto.enum_type.add(name=name)
    for value_name, number in values:
        enum.value.add(name=value_name, number=number)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return EnumTypeWrapper(pool.FindEnumTypeByName(f"test.{name}"))


def test_names_are_the_value_names_without_the_prefix_in_proto_order() -> None:
    assert AGENT_STATUS.prefix == "AGENT_STATUS_"
    assert AGENT_STATUS.names == (
        "pending",
        "initializing",
        "running",
        "paused",
        "completed",
        "failed",
        "killed",
    )
    assert TASK_STATUS.name(task_pb2.TASK_STATUS_IN_PROGRESS) == "in_progress"
    assert STEP_STATUS.to_proto("retrying") == workflow_pb2.STEP_STATUS_RETRYING
    assert isinstance(AGENT_STATUS.name(agent_pb2.AGENT_STATUS_RUNNING), AgentStatus)


@pytest.mark.parametrize(
    "mapper",
    [getattr(statuses, n) for n in dir(statuses) if isinstance(getattr(statuses, n), ProtoEnum)],
    ids=lambda m: m.full_name,
)
def test_every_value_maps_both_ways(mapper: ProtoEnum[int, str]) -> None:
    assert mapper.names, "an enum with no values besides UNSPECIFIED"
    for name in mapper.names:
        assert mapper.name(mapper.to_proto(name)) == name
    assert mapper.get(0) is None
    with pytest.raises(KeyError):
        mapper.name(0)
    with pytest.raises(KeyError):
        mapper.to_proto("no-such-value")


def test_the_stored_spellings_stay_as_they_were() -> None:
    # Rows written before the mapper hold these strings; they must read back unchanged.
    strategies = {
        team_pb2.EXECUTION_STRATEGY_PARALLEL: "parallel",
        team_pb2.EXECUTION_STRATEGY_MAP_REDUCE: "map-reduce",
        team_pb2.EXECUTION_STRATEGY_PIPELINE: "pipeline",
        team_pb2.EXECUTION_STRATEGY_TREE: "tree",
    }
    for number, name in strategies.items():
        assert (STRATEGY.name(number), STRATEGY.to_proto(name)) == (name, number)
    assert BUDGET_PERIOD.names == ("none", "daily", "weekly", "monthly")
    assert statuses.LIFECYCLE_STATE.to_proto("cleaning_up") == agent_pb2.LIFECYCLE_STATE_CLEANING_UP
    levels = ProtoEnum(agent_pb2.LogLevel, str, spelling=upper)
    assert levels.names == ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")


def test_parse_takes_the_short_name_the_value_name_or_another_case() -> None:
    assert AGENT_STATUS.parse("AGENT_STATUS_RUNNING") == "running"
    assert AGENT_STATUS.parse("Running ") == "running"
    assert STRATEGY.parse("MAP_REDUCE") == "map-reduce"
    assert STRATEGY.parse("map-reduce") == "map-reduce"
    assert TASK_STATUS.parse("in-progress") == TaskStatus.IN_PROGRESS
    assert AGENT_STATUS.parse("UNSPECIFIED") is None
    assert AGENT_STATUS.parse("runing") is None


def test_known_keeps_only_values_the_proto_has() -> None:
    priority = ProtoEnum(task_pb2.TaskPriority, str)
    assert priority.known(3, task_pb2.TASK_PRIORITY_UNSPECIFIED) == task_pb2.TASK_PRIORITY_HIGH
    assert priority.known(9, task_pb2.TASK_PRIORITY_UNSPECIFIED) == task_pb2.TASK_PRIORITY_UNSPECIFIED
    assert priority.known(0, task_pb2.TASK_PRIORITY_LOW) == task_pb2.TASK_PRIORITY_LOW


def test_a_strenum_that_differs_from_its_proto_enum_is_refused() -> None:
    class Shortened(StrEnum):
        ACTIVE = "active"
        PAUSED = "paused"

    with pytest.raises(ValueError, match=r"only in the proto \['completed', 'failed'"):
        ProtoEnum(agent_pb2.SessionStatus, Shortened)

    class Extra(StrEnum):
        AGENT = "agent"
        TEAM = "team"
        USER = "user"
        ORGANIZATION = "organization"
        PROJECT = "project"

    with pytest.raises(ValueError, match=r"only in the code \['project'\]"):
        ProtoEnum(budget_pb2.BudgetEntityType, Extra)


def test_an_enum_without_an_unspecified_zero_value_is_refused() -> None:
    colors = _enum("Color", [("RED", 0), ("BLUE", 1)])
    with pytest.raises(ValueError, match=r"test\.Color has no \*_UNSPECIFIED zero value"):
        ProtoEnum(colors, str)
    shades = _enum("Shade", [("SHADE_UNSPECIFIED", 0), ("SHADE_LIGHT_GREY", 1)])
    assert ProtoEnum(shades, str, spelling=kebab).names == ("light-grey",)


def test_every_strategy_of_the_proto_has_an_implementation() -> None:
    assert set(STRATEGIES) == set(STRATEGY.names)
    for name, strategy in STRATEGIES.items():
        assert STRATEGY.name(strategy.kind) == name == strategy.name


def test_every_backpressure_strategy_of_the_proto_is_one_the_hub_has() -> None:
    assert set(BACKPRESSURE.names) == {DROP, BLOCK, SLIDING}
    assert BACKPRESSURE.get(event_service_pb2.BACKPRESSURE_STRATEGY_BLOCK) == BLOCK


def test_one_of() -> None:
    assert one_of(["a"]) == "a"
    assert one_of(["a", "b", "c"]) == "a, b or c"
    assert BUDGET_PERIOD.choices() == "none, daily, weekly or monthly"


def test_enum_columns_store_the_value_and_read_back_the_member() -> None:
    column = EnumString(AgentStatus)
    dialect = sqlite.dialect()
    assert column.process_bind_param(AgentStatus.RUNNING, dialect) == "running"
    assert column.process_bind_param("paused", dialect) == "paused"
    loaded = column.process_result_value("killed", dialect)
    assert loaded is AgentStatus.KILLED
    with pytest.raises(ValueError):
        column.process_bind_param("runing", dialect)
