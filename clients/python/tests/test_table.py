"""The plain-text table and value formatters."""

from __future__ import annotations

import pytest
from google.protobuf import timestamp_pb2

from godel.v1 import agent_pb2, system_service_pb2
from godel_client import formatting as fmt
from godel_client.table import render_pairs, render_table, truncate


def test_table_aligns_columns_without_trailing_spaces() -> None:
    text = render_table(["ID", "NAME", "NOTE"], [["1", "alpha", ""], ["22", "b", "x y"]])
    assert text.splitlines() == ["ID  NAME   NOTE", "1   alpha", "22  b      x y"]


def test_table_truncates_and_flattens_cells() -> None:
    text = render_table(["A", "B"], [["x", "one\ntwo three four"]], max_widths={1: 8})
    assert text.splitlines()[1] == "x  one two…"


def test_table_rejects_ragged_rows() -> None:
    with pytest.raises(ValueError):
        render_table(["A", "B"], [["only one"]])


def test_truncate() -> None:
    assert truncate("short", 10) == "short"
    assert truncate("exactly10!", 10) == "exactly10!"
    assert truncate("a bit too long", 6) == "a bit…"


def test_pairs_align_values_and_indent_continuations() -> None:
    assert render_pairs([("id", "1"), ("status", "ok\nmore")]).splitlines() == [
        "id      1",
        "status  ok",
        "        more",
    ]


def test_enum_short() -> None:
    assert fmt.enum_short(agent_pb2.AgentStatus.DESCRIPTOR, agent_pb2.AGENT_STATUS_RUNNING) == "running"
    assert (
        fmt.enum_short(agent_pb2.LifecycleState.DESCRIPTOR, agent_pb2.LIFECYCLE_STATE_CLEANING_UP)
        == "cleaning_up"
    )
    assert fmt.enum_short(system_service_pb2.HealthStatus.DESCRIPTOR, 0) == "unspecified"
    assert fmt.enum_short(agent_pb2.AgentStatus.DESCRIPTOR, 99) == "99"


def test_timestamp_is_utc_with_z() -> None:
    assert fmt.timestamp(timestamp_pb2.Timestamp(seconds=1795635002, nanos=900)) == "2026-11-25 19:30:02Z"
    assert fmt.timestamp(timestamp_pb2.Timestamp()) == "-"
    assert fmt.timestamp(None) == "-"


def test_duration() -> None:
    assert [fmt.duration(s) for s in (0, 5, 65, 3725)] == ["-", "5s", "1m05s", "1h02m05s"]
