"""``godel top`` against the running mesh: NDJSON frames with the fleet's figures and rates, and the
live view on a pseudo-terminal, where it shows a spawned agent and kills it with `x` then `y`."""

from __future__ import annotations

import json
import sys
import time

import pytest

from godel.v1 import agent_pb2
from tests.conftest import RunningMesh, godel_cli
from tests.integration.agent_helpers import Agents
from tests.terminal import Terminal
from tests.waits import wait_for

SLEEPER = ["sh", "-c", "sleep 120"]
WAIT = 60.0


def test_top_frames_as_json_show_the_fleet_and_its_rates(godel: RunningMesh) -> None:
    agents = Agents(godel)
    agent = agents.spawn(SLEEPER, task="watched by top")
    try:
        agents.wait_state(agent.id, agent_pb2.LIFECYCLE_STATE_EXECUTING, timeout=WAIT)
        done = godel_cli(godel, "--json", "top", "--iterations", "2", "--interval", "0.5")
        frames = [json.loads(line) for line in done.stdout.splitlines()]
        assert len(frames) == 2
        for frame in frames:
            assert agent.id in [a["id"] for a in frame["recentAgents"]]
            assert int(frame["agents"]["byStatus"]["running"]) >= 1
            assert frame["system"]["workersConnected"] >= 1
            assert frame["workers"]
        assert frames[0]["rates"] == {}
        assert set(frames[1]["rates"]) == {
            "eventsPerSecond",
            "apiRequestsPerSecond",
            "agentsCreatedPerSecond",
        }
        assert frames[1]["rates"]["apiRequestsPerSecond"] > 0  # the first frame's own calls count
    finally:
        godel_cli(godel, "agent", "kill", agent.id, check=False)


@pytest.mark.timeout(180)
def test_top_on_a_terminal_shows_a_spawned_agent_and_kills_it(godel: RunningMesh) -> None:
    agents = Agents(godel)
    agent = agents.spawn(SLEEPER, task="to be killed from top")
    agents.wait_state(agent.id, agent_pb2.LIFECYCLE_STATE_EXECUTING, timeout=WAIT)
    terminal = Terminal(
        [sys.executable, "-m", "godel_client", "top", "--interval", "0.5"], godel.client_env()
    )
    try:
        wait_for(
            lambda: agent.id in terminal.read(), WAIT, f"godel top to show {agent.id}", describe=terminal.read
        )
        assert "Agents " in terminal.screen and "Workers " in terminal.screen
        # The newest agent is listed first and selected: x asks, y confirms.
        mark = len(terminal.read())
        terminal.type("x")
        wait_for(
            lambda: "? y/n" in terminal.read()[mark:], WAIT, "the kill confirmation", describe=terminal.read
        )
        terminal.type("y")
        agents.wait_state(agent.id, agent_pb2.LIFECYCLE_STATE_KILLED, timeout=WAIT)
        wait_for(lambda: f"kill {agent.id}: done" in terminal.read(), WAIT, "the kill reported")
        terminal.type("q")
        deadline = time.monotonic() + 15
        while terminal.process.poll() is None and time.monotonic() < deadline:
            terminal.read()
        assert terminal.process.poll() == 0, terminal.read()[-2000:]
    finally:
        terminal.close()
        godel_cli(godel, "agent", "kill", agent.id, check=False)
