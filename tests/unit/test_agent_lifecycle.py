"""The agent state machine of spec §2.3."""

from __future__ import annotations

import grpc
import pytest

from godel_server.agent.lifecycle import EVENTS, STATUS, TRANSITIONS, can, move
from godel_server.runtime.config import ConfigError
from godel_server.runtime.errors import FailedPreconditionError
from godel_server.runtime.pricing import FALLBACK_PRICE, PriceTable
from godel_server.runtime.statuses import LifecycleState as L


def test_the_happy_path_of_spec_2_3() -> None:
    state = L.INITIALIZING
    for trigger, expected in [
        ("worktree_created", "spawning"),
        ("session_started", "executing"),
        ("pause_command", "paused"),
        ("resume_command", "executing"),
        ("task_complete", "completing"),
        ("cleanup_done", "completed"),
    ]:
        m = move(trigger, state)
        assert m.to_state == expected
        state = m.to_state
    assert STATUS[state] == "completed"


def test_failed_agents_retry_into_executing_and_can_be_killed() -> None:
    assert move("retry", L.FAILED).to_state == "executing"
    assert move("kill_command", L.FAILED).to_state == "killed"
    assert move("kill_command", L.EXECUTING).to_state == "killed"


def test_invalid_transitions_name_the_current_state() -> None:
    with pytest.raises(FailedPreconditionError) as info:
        move("pause_command", L.COMPLETED, "a1")
    assert info.value.status == grpc.StatusCode.FAILED_PRECONDITION
    assert "it is completed" in info.value.message
    assert info.value.metadata["currentState"] == "completed"
    assert not can("resume_command", L.EXECUTING)
    assert not can("kill_command", L.KILLED)
    assert not can("retry", L.COMPLETED)


def test_every_state_has_a_status_and_every_spec_event_is_emitted() -> None:
    states = {s for targets in TRANSITIONS.values() for pair in targets.items() for s in pair}
    assert states <= set(STATUS)
    assert {
        "agent:start",
        "agent:pause",
        "agent:resume",
        "agent:complete",
        "agent:error",
        "agent:kill",
    } <= set(EVENTS.values())


def test_prices_turn_tokens_into_dollars() -> None:
    table = PriceTable.from_setting('{"my-model": [1.0, 2.0]}')
    assert table.cost("my-model", 1_000_000, 500_000) == pytest.approx(2.0)
    assert table.cost("gpt-4o", 1_000_000, 0) == pytest.approx(2.5)
    assert table.cost("unknown", 1_000_000, 0) == pytest.approx(FALLBACK_PRICE[0])
    with pytest.raises(ConfigError):
        PriceTable.from_setting("not json")
