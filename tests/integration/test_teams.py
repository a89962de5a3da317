"""Teams end to end on real Kafka, PostgreSQL, Envoy and command-runtime agents: the spec §10.3
team of 3 over REST, every strategy, scaling, pause/resume and the map-reduce fallback."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import RunningMesh
from tests.fakes.openai_server import FakeOpenAI, tool_call
from tests.integration.team_helpers import echo_command, ok, start_team, wait_team


def _create(http: httpx.Client, **body: Any) -> dict[str, Any]:
    return ok(http.post("/api/v1/teams", json=body))


def _run(http: httpx.Client, **body: Any) -> dict[str, Any]:
    """Creates and starts a team, and returns it once it has ended."""
    team = _create(http, **body)
    start_team(http, str(team["id"]))
    return wait_team(http, str(team["id"]))


def test_team_of_three_completes_over_rest(godel: RunningMesh) -> None:
    with godel.http() as http:
        team = _create(
            http,
            name="Test Team",
            task="Review pull request #123",
            config={"size": 3, "command": echo_command('echo "reviewed: $1"')},
        )
        assert team["status"] == "TEAM_STATUS_CREATING"
        updates = start_team(http, str(team["id"]), follow=True)
        progress = [u["team"].get("progress", 0) for u in updates]
        assert progress == sorted(progress) and progress[-1] == 100, progress
        assert updates[-1]["team"]["status"] == "TEAM_STATUS_COMPLETED"
        assert {u["event"]["type"] for u in updates[1:]} >= {"agent:start", "team:progress", "team:complete"}
        done = wait_team(http, str(team["id"]))
        assert done["status"] == "TEAM_STATUS_COMPLETED", done
        assert len(done["agentIds"]) == 3
        assert done["progress"] == 100
        assert all(r == "reviewed: Review pull request #123" for r in done["results"].values()), done[
            "results"
        ]
        metrics = ok(http.get(f"/api/v1/teams/{team['id']}/metrics"))
        assert metrics["completionRate"] == 1.0
        assert metrics["totalAgents"] == 3 and metrics["completedAgents"] == 3
        agents = ok(http.get(f"/api/v1/teams/{team['id']}/agents"))
        assert sorted(a["id"] for a in agents["agents"]) == sorted(done["agentIds"])


def test_parallel_inputs_one_member_each(godel: RunningMesh) -> None:
    with godel.http() as http:
        done = _run(
            http,
            name="inputs",
            task="lint {{input}}",
            config={"inputs": ["a.py", "b.py"], "command": echo_command('echo "done $1"')},
        )
        assert done["status"] == "TEAM_STATUS_COMPLETED"
        assert sorted(done["results"].values()) == ["done lint a.py", "done lint b.py"]


def test_map_reduce_with_a_splitter_and_a_reducer(godel: RunningMesh) -> None:
    # The splitter prints three inputs; each mapper doubles its number; the reducer sums the
    # mapper results it finds in its task (JSON).
    script = (
        'case "$1" in Split*) printf "1\\n2\\n3\\n";; '
        '*Results*) echo "$1" | grep -o \'"result": "[0-9]*"\' | grep -o \'[0-9][0-9]*\' '
        "| awk '{s+=$1} END {print \"sum \" s}';; "
        '*) echo $(( $(echo "$1" | tail -1) * 2 ));; esac'
    )
    with godel.http() as http:
        done = _run(
            http,
            name="mr",
            task="double",
            executionStrategy="EXECUTION_STRATEGY_MAP_REDUCE",
            config={"maxAgents": 2, "command": echo_command(script)},
        )
        assert done["status"] == "TEAM_STATUS_COMPLETED", done
        results = done["results"]
        assert results["reduce"] == "sum 12", results
        mapped = sorted(v for k, v in results.items() if k != "reduce" and v.isdigit())
        assert mapped == ["2", "4", "6"], results


def test_map_reduce_falls_back_to_parallel_when_the_splitter_fails(godel: RunningMesh) -> None:
    script = 'case "$1" in Split*) exit 3;; *) echo "worked";; esac'
    with godel.http() as http:
        done = _run(
            http,
            name="fallback",
            task="do it",
            executionStrategy="EXECUTION_STRATEGY_MAP_REDUCE",
            config={"size": 2, "retryPolicy": {"maxRetries": 0}, "command": echo_command(script)},
        )
        assert done["status"] == "TEAM_STATUS_COMPLETED", done
        assert done["effectiveStrategy"] == "EXECUTION_STRATEGY_PARALLEL"
        assert sorted(done["results"].values()) == ["worked", "worked"]


def test_pipeline_passes_each_result_to_the_next_stage(godel: RunningMesh) -> None:
    with godel.http() as http:
        done = _run(
            http,
            name="pipe",
            task="build",
            executionStrategy="EXECUTION_STRATEGY_PIPELINE",
            config={
                "stages": ["echo a", "echo {{previous}}b", "echo {{previous}}c"],
                "command": ["sh", "-c", "{task}"],
            },
        )
        assert done["status"] == "TEAM_STATUS_COMPLETED", done
        assert done["results"]["final"] == "abc"


def test_tree_decomposes_and_aggregates(godel: RunningMesh) -> None:
    script = 'case "$1" in root) echo "SUBTASK: left"; echo "SUBTASK: right";; *) echo "leaf $1";; esac'
    with godel.http() as http:
        done = _run(
            http,
            name="tree",
            task="root",
            executionStrategy="EXECUTION_STRATEGY_TREE",
            config={"maxDepth": 2, "command": echo_command(script)},
        )
        assert done["status"] == "TEAM_STATUS_COMPLETED", done
        tree = done["results"]["tree"]
        assert [c["result"] for c in tree["children"]] == ["leaf left", "leaf right"]
        root_session = ok(http.get(f"/api/v1/agents/{tree['agentId']}"))["sessionId"]
        child = ok(http.get(f"/api/v1/agents/{tree['children'][0]['agentId']}/sessions"))["sessions"][0]
        assert child["parentId"] == root_session and child["depth"] == 1


def test_pause_resume_and_scale_keep_finished_results(godel: RunningMesh) -> None:
    with godel.http() as http:
        team = _create(
            http, name="scaled", task="wait", config={"size": 2, "command": ["sh", "-c", "sleep 3; echo ok"]}
        )
        start_team(http, str(team["id"]))
        paused = ok(http.post(f"/api/v1/teams/{team['id']}/pause", json={}))
        assert paused["status"] == "TEAM_STATUS_PAUSED"
        resumed = ok(http.post(f"/api/v1/teams/{team['id']}/resume", json={}))
        assert resumed["status"] == "TEAM_STATUS_ACTIVE"
        scaled = ok(http.post(f"/api/v1/teams/{team['id']}/scale", json={"targetSize": 3}))
        assert scaled["previousSize"] == 2 and scaled["currentSize"] == 3
        done = wait_team(http, str(team["id"]))
        assert done["status"] == "TEAM_STATUS_COMPLETED", done
        assert len(done["results"]) == 3
        bad = http.post(f"/api/v1/teams/{team['id']}/scale", json={"targetSize": 0})
        assert bad.status_code == 400 and "target_size" in bad.text


def test_team_stopped_by_its_budget(godel: RunningMesh) -> None:
    # Each completion costs $0.35 (gpt-4o prices): two members cross the team's $0.50 at once.
    script = [tool_call("shell", {"command": "echo step"}, delay=0.3) for _ in range(20)]
    with FakeOpenAI(script, prompt_tokens=100_000, completion_tokens=10_000) as fake, godel.http() as http:
        team = _create(
            http,
            name="budgeted",
            task="spend",
            budgetAllocated=0.5,
            config={"size": 2, "runtime": "openai", "model": "gpt-4o", "endpoint": fake.base_url},
        )
        start_team(http, str(team["id"]))
        done = wait_team(http, str(team["id"]))
        assert done["status"] == "TEAM_STATUS_FAILED", done
        assert "budget" in done["error"]
        assert done["budgetConsumed"] >= 0.5
        refused = http.post(f"/api/v1/teams/{team['id']}/scale", json={"targetSize": 4})
        assert refused.status_code == 400 and "budget exhausted" in refused.text, refused.text
        # Stored events lag by the Kafka hop (and budget events are keyed by the budget): wait.
        deadline = time.monotonic() + 30
        while True:
            events = ok(http.get("/api/v1/events", params={"teamId": team["id"], "pageSize": 200}))
            types = {e["type"] for e in events.get("events", [])}
            if {"budget:exceeded", "team:error"} <= types:
                break
            assert time.monotonic() < deadline, types
            time.sleep(0.2)
        for agent_id in done["agentIds"]:
            agent = ok(http.get(f"/api/v1/agents/{agent_id}"))
            assert agent["status"] in ("AGENT_STATUS_KILLED", "AGENT_STATUS_FAILED"), agent
        budgets = ok(
            http.get(
                "/api/v1/budgets", params={"entityType": "BUDGET_ENTITY_TYPE_TEAM", "entityId": team["id"]}
            )
        )
        assert budgets["budgets"][0]["usedBudget"] >= 0.5


def test_a_failed_member_is_replaced_per_the_retry_policy(godel: RunningMesh, tmp_path: Path) -> None:
    marker = tmp_path / "failed-once"
    script = f"if [ -e {marker} ]; then echo recovered; else touch {marker}; exit 1; fi"
    with godel.http() as http:
        team = _create(
            http,
            name="retry",
            task="flaky",
            config={"size": 1, "retryPolicy": {"maxRetries": 1}, "command": ["sh", "-c", script]},
        )
        start_team(http, str(team["id"]))
        done = wait_team(http, str(team["id"]))
        assert done["status"] == "TEAM_STATUS_COMPLETED", done
        assert list(done["results"].values()) == ["recovered"]
        assert len(done["agentIds"]) == 1  # the replaced member no longer counts
        metrics = ok(http.get(f"/api/v1/teams/{team['id']}/metrics"))
        assert metrics["completionRate"] == 1.0 and metrics["totalAgents"] == 1
