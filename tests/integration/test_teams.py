"""Teams end to end on real Kafka, PostgreSQL, Envoy and command-runtime agents: the spec §10.3
team of 3 over REST, every strategy, scaling, pause/resume, the map-reduce fallback, budgets,
retries, and editing and deleting a team."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import RunningMesh
from tests.fakes.openai_server import FakeOpenAI, tool_call
from tests.integration.agent_helpers import Gate
from tests.integration.team_helpers import echo_command, ok, start_team, wait_team
from tests.waits import poll


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
    # The member given "fast" finishes at once; the others wait until the test lets them finish.
    go = Gate(godel.mesh.default_repo)
    script = f'case "$1" in *fast*) echo fast;; *) {go.wait}; echo slow;; esac'
    with godel.http() as http:
        team = _create(
            http,
            name="scaled",
            task="run {{input}}",
            config={"inputs": ["fast", "slow"], "command": echo_command(script)},
        )
        start_team(http, str(team["id"]))
        members = poll(
            lambda: ok(http.get(f"/api/v1/teams/{team['id']}/agents")).get("agents", []),
            lambda agents: any(a["status"] == "AGENT_STATUS_COMPLETED" for a in agents),
            60,
            "one member to finish",
        )
        (fast,) = [a["id"] for a in members if a["status"] == "AGENT_STATUS_COMPLETED"]
        paused = ok(http.post(f"/api/v1/teams/{team['id']}/pause", json={}))
        assert paused["status"] == "TEAM_STATUS_PAUSED"
        resumed = ok(http.post(f"/api/v1/teams/{team['id']}/resume", json={}))
        assert resumed["status"] == "TEAM_STATUS_ACTIVE"
        scaled = ok(http.post(f"/api/v1/teams/{team['id']}/scale", json={"targetSize": 3}))
        assert scaled["previousSize"] == 2 and scaled["currentSize"] == 3
        go.open()
        done = wait_team(http, str(team["id"]))
        assert done["status"] == "TEAM_STATUS_COMPLETED", done
        # The member that had finished before the pause, resume and scale keeps its result.
        assert done["results"][fast] == "fast", done["results"]
        assert sorted(done["results"].values()) == ["fast", "slow", "slow"]
        bad = http.post(f"/api/v1/teams/{team['id']}/scale", json={"targetSize": 0})
        assert bad.status_code == 400 and "target_size" in bad.text


def test_update_then_delete_a_running_team(godel: RunningMesh) -> None:
    with godel.http() as http:
        team = _create(
            http,
            name="editable",
            description="before",
            task="wait",
            budgetAllocated=5,
            config={"size": 1, "command": ["sleep", "300"]},
        )
        team_id = str(team["id"])
        updated = ok(
            http.patch(
                f"/api/v1/teams/{team_id}",
                params={"updateMask": "name,budgetAllocated"},
                json={"name": "edited", "description": "not in the mask", "budgetAllocated": 7.5},
            )
        )
        assert (updated["name"], updated["description"], updated["budgetAllocated"]) == (
            "edited",
            "before",
            7.5,
        )
        assert ok(http.get(f"/api/v1/teams/{team_id}"))["name"] == "edited"
        # Refused updates name the field and change nothing.
        for mask, body, field in (
            ("status", {"status": "TEAM_STATUS_COMPLETED"}, "update_mask"),
            ("name", {"name": ""}, "team.name"),
            ("budgetAllocated", {"budgetAllocated": -1}, "team.budget_allocated"),
        ):
            refused = http.patch(f"/api/v1/teams/{team_id}", params={"updateMask": mask}, json=body)
            assert refused.status_code == 400 and field in refused.text, (mask, refused.text)
        after = ok(http.get(f"/api/v1/teams/{team_id}"))
        assert (after["name"], after["status"], after["budgetAllocated"]) == (
            "edited",
            "TEAM_STATUS_CREATING",
            7.5,
        )
        missing = http.patch(f"/api/v1/teams/{uuid.uuid4()}", json={"name": "x"})
        assert missing.status_code == 404, missing.text

        start_team(http, team_id)
        member = poll(
            lambda: ok(http.get(f"/api/v1/teams/{team_id}")).get("agentIds", []),
            lambda ids: len(ids) == 1,
            60,
            "the team's member",
        )[0]
        poll(
            lambda: ok(http.get(f"/api/v1/agents/{member}")),
            lambda a: a["status"] == "AGENT_STATUS_RUNNING",
            60,
            "the member to run",
        )
        assert http.delete(f"/api/v1/teams/{team_id}").status_code == 200
        assert http.get(f"/api/v1/teams/{team_id}").status_code == 404
        # Deleting a team stops its members.
        poll(
            lambda: ok(http.get(f"/api/v1/agents/{member}")),
            lambda a: a["status"] == "AGENT_STATUS_KILLED",
            60,
            "the member to be killed",
        )
        assert http.delete(f"/api/v1/teams/{team_id}").status_code == 404


def test_team_stopped_by_its_budget(godel: RunningMesh) -> None:
    # Each completion costs $0.35 (gpt-4o prices): two members cross the team's $0.50 at once.
    # read_file: a tool members get by default (no `shell`: team members cannot be granted it).
    script = [tool_call("read_file", {"path": "README.md"}, delay=0.3) for _ in range(20)]
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
        # A member's own limit (what was left of the team's budget at its start) can be crossed
        # too: its budget:exceeded (of the agent) carries the team id as well.
        def team_alerts(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
            alerts = [e["budgetExceeded"] for e in found if e["type"] == "budget:exceeded"]
            return [a for a in alerts if a.get("entityType") == "BUDGET_ENTITY_TYPE_TEAM"]

        events = poll(
            lambda: ok(http.get("/api/v1/events", params={"teamId": team["id"], "pageSize": 200})).get(
                "events", []
            ),
            lambda found: bool(team_alerts(found)) and "team:error" in {e["type"] for e in found},
            30,
            "the team's budget:exceeded and the team:error event",
        )
        # A budget of the budgets API, in the same shape as an agent's own limit; once per window.
        (alert,) = team_alerts(events)
        assert alert["entityId"] == team["id"]
        assert alert["budgetId"] and alert["usedBudget"] >= alert["totalBudget"] > 0
        for agent_id in done["agentIds"]:
            agent = ok(http.get(f"/api/v1/agents/{agent_id}"))
            assert agent["status"] in ("AGENT_STATUS_KILLED", "AGENT_STATUS_FAILED"), agent
        budgets = ok(
            http.get(
                "/api/v1/budgets", params={"entityType": "BUDGET_ENTITY_TYPE_TEAM", "entityId": team["id"]}
            )
        )
        assert budgets["budgets"][0]["usedBudget"] >= 0.5


def test_a_failed_member_is_replaced_per_the_retry_policy(godel: RunningMesh) -> None:
    # The first member leaves a mark the next one finds. Members are sandboxed and see nothing of
    # the host but their worktree and the repository's git directory, whose objects/ they may
    # write (commits need that): the mark is a git object.
    marker = f"failed-once-{uuid.uuid4().hex}"
    script = (
        f'h=$(echo {marker} | git hash-object --stdin); if git cat-file -e "$h"; then echo recovered; '
        f"else echo {marker} | git hash-object -w --stdin; exit 1; fi"
    )
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


def test_update_changes_the_fields_of_the_mask_and_names_bad_paths(godel: RunningMesh) -> None:
    with godel.http() as http:
        team = _create(http, name="before", description="first", task="t", config={"size": 1})
        path = f"/api/v1/teams/{team['id']}"
        renamed = ok(
            http.patch(
                path,
                params={"updateMask": "name,metadata,config.size"},
                json={"name": "after", "description": "ignored", "metadata": {"o": 1}, "config": {"size": 4}},
            )
        )
        assert (renamed["name"], renamed["description"], renamed["metadata"]) == ("after", "first", {"o": 1})
        assert renamed["config"]["size"] == 4
        # No mask: name, description and metadata.
        cleared = ok(http.patch(path, json={"name": "again", "description": ""}))
        assert (cleared["name"], cleared.get("description", ""), cleared.get("metadata", {})) == (
            "again",
            "",
            {},
        )
        bad = http.patch(path, params={"updateMask": "status,name"}, json={"name": ""})
        assert bad.status_code == 400, bad.text
        fields = {v["field"] for d in bad.json()["details"] for v in d.get("fieldViolations", [])}
        assert fields == {"update_mask", "team.name"}
        assert ok(http.get(path))["name"] == "again"  # a refused update changes nothing

        workflow = ok(
            http.post(
                "/api/v1/workflows",
                json={"definition": {"name": "wf", "steps": [{"id": "a", "task": "a"}]}},
            )
        )
        wf_path = f"/api/v1/workflows/{workflow['id']}"
        updated = ok(
            http.patch(
                wf_path, params={"updateMask": "name,context"}, json={"name": "wf2", "context": {"k": "v"}}
            )
        )
        assert (updated["name"], updated["context"]) == ("wf2", {"k": "v"})
        refused = http.patch(wf_path, params={"updateMask": "context.k"}, json={"context": {}})
        assert refused.status_code == 400 and "update_mask" in refused.text
