"""``godel top`` without a mesh: rates from two frames, the screen, and the keys (select, pause,
kill only after a confirmation, quit). tests/integration/test_top.py runs it against a mesh."""

from __future__ import annotations

from typing import Any

from godel.v1 import agent_pb2, system_service_pb2
from godel_client import cli_top
from godel_client.errors import FailedPreconditionError


def _frame(at: float, *, events: float, requests: float, agents: int, recent: int = 0) -> cli_top.Frame:
    return cli_top.Frame(
        at=at,
        agents=system_service_pb2.GetAgentMetricsResponse(
            total=agents,
            active=1,
            by_status={"running": 1, "completed": agents - 1},
            total_cost_usd=1.25,
            cost_by_model={"m": 1.25},
        ),
        teams=system_service_pb2.GetTeamsMetricsResponse(total=2, by_status={"active": 2}, queue_depth=7),
        figures={
            "eventsStored": events,
            "services": {
                "agent": {"up": True, "apiRequests": requests},
                "team": {"up": False, "apiRequests": 5.0},
            },
            "workersConnected": 1.0,
            "workerFreeSlots": 3.0,
            "alertsFiring": {"warning": 2.0},
        },
        workers=[agent_pb2.Worker(id="w-1", capacity=4, free_slots=3, active_runs=1, runtimes=["command"])],
        recent=[agent_pb2.Agent(id=f"agent-{i}", task=f"task {i}") for i in range(recent)],
        team_list=[],
        workflows=[],
    )


def test_rates_are_per_second_between_two_frames_and_never_negative() -> None:
    first = cli_top.with_rates(None, _frame(100.0, events=10, requests=100, agents=5))
    assert first.rates == {}
    second = cli_top.with_rates(first, _frame(102.0, events=30, requests=110, agents=4))
    assert second.rates == {
        "eventsPerSecond": 10.0,
        "apiRequestsPerSecond": 5.0,
        "agentsCreatedPerSecond": 0.0,
    }


def test_the_screen_shows_counts_rates_workers_agents_and_what_is_down() -> None:
    frame = cli_top.with_rates(
        _frame(0.0, events=0, requests=0, agents=3), _frame(1.0, events=4, requests=2, agents=3, recent=2)
    )
    screen = cli_top.render_frame(frame, "127.0.0.1:7373", selected=1)
    assert "services down: team" in screen
    assert "3 total, 1 running   completed 2  running 1" in screen
    assert "Events   4 stored, 4.0/s" in screen and "alerts firing 2" in screen
    assert "queue 7" in screen and "w-1" in screen and "3/4" in screen
    rows = [line for line in screen.splitlines() if "agent-" in line]
    assert [row.startswith("> ") for row in rows] == [False, True]


class FakeAgents:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, action: str) -> Any:
        def call(agent_id: str) -> None:
            if agent_id == "agent-1" and action == "resume":
                raise FailedPreconditionError("FAILED_PRECONDITION", "agent agent-1 is not paused")
            self.calls.append((action, agent_id))

        return call


class FakeClient:
    def __init__(self) -> None:
        self.agents = FakeAgents()


def test_keys_select_act_and_kill_only_after_yes() -> None:
    client: Any = FakeClient()
    frame = _frame(0.0, events=0, requests=0, agents=2, recent=2)
    view = cli_top._View()
    assert view.on_key(client, frame, "down") and view.selected == 1
    assert view.on_key(client, frame, "p") and view.message == "pause agent-1: done"
    assert view.on_key(client, frame, "r") and view.message == "resume agent-1: agent agent-1 is not paused"
    assert view.on_key(client, frame, "x") and view.message.startswith("kill agent-1 (task 1)? y/n")
    assert view.on_key(client, frame, "n") and view.message == "kill cancelled"
    view.on_key(client, frame, "x")
    view.on_key(client, frame, "y")
    assert client.agents.calls == [("pause", "agent-1"), ("kill", "agent-1")]
    assert view.on_key(client, frame, "down") and view.selected == 0  # wraps around
    assert not view.on_key(client, frame, "q")
