"""Agent execution end to end on real git, Kafka, PostgreSQL and a real worker process: the command
and openai runtimes, worktrees and commits, control (pause/resume/kill/restart), retries, budgets,
logs, and guarded transitions."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import grpc
import pytest

from godel.v1 import agent_pb2, agent_service_pb2, event_service_pb2
from godel.v1.budget_pb2 import BUDGET_ENTITY_TYPE_AGENT
from tests.conftest import RunningMesh
from tests.fakes.openai_server import FakeOpenAI, final, tool_call
from tests.fakes.worker_env import git, proc_state
from tests.integration.agent_helpers import Agents, pids_with, rpc_error
from tests.waits import wait_for

L = agent_pb2
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def agents(godel: RunningMesh) -> Agents:
    return Agents(godel, godel.mesh.address("agent"))


def test_command_agent_commits_in_its_own_worktree_and_completes(agents: Agents, godel: RunningMesh) -> None:
    agent = agents.spawn(
        ["sh", "-c", "echo hi > hello.txt && git add . && git commit -q -m hi && echo committed {task}"],
        task="write-hello",
    )
    assert agent.status == L.AGENT_STATUS_PENDING
    done = agents.wait_final(agent.id)
    assert done.lifecycle_state == L.LIFECYCLE_STATE_COMPLETED, done.last_error
    assert done.status == L.AGENT_STATUS_COMPLETED
    assert len(done.commits) == 1
    repo = godel.mesh.default_repo
    # The commit is on the agent's own branch, not on main; the worktree is gone, the branch stays.
    assert git(repo, "log", "--format=%H", f"godel/{agent.id}", "-1").strip() == done.commits[0]
    assert done.commits[0] not in git(repo, "log", "--format=%H", "main")
    assert done.worktree and not Path(done.worktree).exists()
    assert "committed write-hello" in done.result
    lines = [e.message for e in agents.logs(agent.id)]
    assert "committed write-hello" in lines
    history = agents.stub.ListAgentTransitions(
        agent_service_pb2.ListAgentTransitionsRequest(id=agent.id), metadata=agents.md
    ).transitions
    assert [t.trigger for t in history] == [
        "worktree_created",
        "session_started",
        "task_complete",
        "cleanup_done",
    ]
    assert [t.version for t in history] == sorted(t.version for t in history)
    agents.wait_events(agent.id, ["agent:spawn", "agent:start", "agent:complete"])


def test_failed_command_retries_with_backoff_then_fails(agents: Agents) -> None:
    agent = agents.spawn(["sh", "-c", "echo boom >&2; exit 3"], max_retries=1)
    done = agents.wait_final(agent.id)
    assert done.lifecycle_state == L.LIFECYCLE_STATE_FAILED
    assert done.retry_count == 1
    assert "code 3" in done.last_error
    sessions = agents.stub.ListAgentSessions(
        agent_service_pb2.ListAgentSessionsRequest(id=agent.id), metadata=agents.md
    ).sessions
    assert [s.status for s in sessions] == [L.SESSION_STATUS_FAILED] * 2
    stderr = [e for e in agents.logs(agent.id) if e.stream == "stderr"]
    assert [e.message for e in stderr] == ["boom", "boom"]
    triggers = [
        t.trigger
        for t in agents.stub.ListAgentTransitions(
            agent_service_pb2.ListAgentTransitionsRequest(id=agent.id), metadata=agents.md
        ).transitions
    ]
    assert triggers.count("error") == 2 and "retry" in triggers
    agents.wait_events(agent.id, ["agent:error"])


def test_timeout_fails_the_run(agents: Agents) -> None:
    marker = f"timeout-{uuid.uuid4().hex}"
    agent = agents.spawn(["sh", "-c", f"sleep 30; echo {marker}"], timeout_s=1)
    done = agents.wait_final(agent.id, timeout=20)
    assert done.lifecycle_state == L.LIFECYCLE_STATE_FAILED
    assert "timed out" in done.last_error
    wait_for(lambda: not pids_with(marker), 15, "the timed-out process to be gone")


def test_pause_resume_kill_reach_the_process(agents: Agents) -> None:
    marker = f"endless-{uuid.uuid4().hex}"
    agent = agents.spawn(["sh", "-c", f"sleep 600 & sleep 600; echo {marker}"])
    agents.wait_state(agent.id, L.LIFECYCLE_STATE_EXECUTING)
    wait_for(lambda: bool(pids_with(marker)), 10, "the agent's process")
    shell = pids_with(marker)[0]
    children = [int(p) for p in Path(f"/proc/{shell}/task/{shell}/children").read_text().split()]
    assert children, "sh started its sleeps"

    paused = agents.stub.PauseAgent(agent_service_pb2.PauseAgentRequest(id=agent.id), metadata=agents.md)
    assert paused.status == L.AGENT_STATUS_PAUSED
    wait_for(lambda: all(proc_state(p) == "T" for p in [shell, *children]), 15, "the process tree to stop")

    resumed = agents.stub.ResumeAgent(agent_service_pb2.ResumeAgentRequest(id=agent.id), metadata=agents.md)
    assert resumed.lifecycle_state == L.LIFECYCLE_STATE_EXECUTING
    wait_for(lambda: all(proc_state(p) not in ("T", None) for p in [shell, *children]), 15, "the tree to run")

    killed = agents.stub.KillAgent(agent_service_pb2.KillAgentRequest(id=agent.id), metadata=agents.md)
    assert killed.lifecycle_state == L.LIFECYCLE_STATE_KILLED
    # The sleeps would live 600 s: dying within the deadline is the kill's doing.
    wait_for(lambda: all(proc_state(p) in (None, "Z") for p in [shell, *children]), 15, "the tree to die")
    final = agents.wait(agent.id, lambda a: not a.worker_id, 10, "released by its worker")
    assert final.lifecycle_state == L.LIFECYCLE_STATE_KILLED
    agents.wait_events(agent.id, ["agent:start", "agent:pause", "agent:resume", "agent:kill"])


def test_invalid_transitions_are_rejected_and_change_nothing(agents: Agents) -> None:
    agent = agents.spawn(["sleep", "600"])
    running = agents.wait_state(agent.id, L.LIFECYCLE_STATE_EXECUTING)
    err = rpc_error(
        lambda: agents.stub.ResumeAgent(agent_service_pb2.ResumeAgentRequest(id=agent.id), metadata=agents.md)
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "executing" in (err.details() or "")
    stale = rpc_error(
        lambda: agents.stub.PauseAgent(
            agent_service_pb2.PauseAgentRequest(id=agent.id, expected_version=running.version - 1),
            metadata=agents.md,
        )
    )
    assert stale.code() == grpc.StatusCode.ABORTED
    after = agents.get(agent.id)
    assert (after.version, after.lifecycle_state) == (running.version, running.lifecycle_state)
    agents.stub.KillAgent(agent_service_pb2.KillAgentRequest(id=agent.id), metadata=agents.md)
    err = rpc_error(
        lambda: agents.stub.PauseAgent(agent_service_pb2.PauseAgentRequest(id=agent.id), metadata=agents.md)
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "killed" in (err.details() or "")


def test_restart_runs_a_new_session(agents: Agents) -> None:
    agent = agents.spawn(["sh", "-c", "echo run"])
    first = agents.wait_final(agent.id)
    assert first.lifecycle_state == L.LIFECYCLE_STATE_COMPLETED
    agents.stub.RestartAgent(agent_service_pb2.RestartAgentRequest(id=agent.id), metadata=agents.md)
    second = agents.wait(
        agent.id,
        lambda a: a.lifecycle_state == L.LIFECYCLE_STATE_COMPLETED and a.session_id != first.session_id,
        30,
        "completed again",
    )
    assert second.session_id != first.session_id
    agents.wait_events(agent.id, ["agent:restart"])


def test_bad_repository_is_rejected_at_spawn(agents: Agents, tmp_path: Path) -> None:
    label = f"bad-repo-{uuid.uuid4().hex[:8]}"
    for repo in (str(tmp_path / "missing"), str(tmp_path), "relative/path"):
        err = rpc_error(lambda repo=repo: agents.spawn(["true"], repo=repo, label=label))  # type: ignore[misc]
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "repo" in (err.details() or "")
    listed = agents.stub.ListAgents(agent_service_pb2.ListAgentsRequest(label=label), metadata=agents.md)
    assert not listed.agents
    assert not list(tmp_path.iterdir())


def test_many_agents_share_one_repository(agents: Agents, godel: RunningMesh) -> None:
    spawned = [
        agents.spawn(["sh", "-c", f"echo {i} > f.txt && git add . && git commit -q -m c{i}"])
        for i in range(8)
    ]
    finished = [agents.wait_final(a.id, timeout=60) for a in spawned]
    assert all(a.lifecycle_state == L.LIFECYCLE_STATE_COMPLETED for a in finished), [
        a.last_error for a in finished
    ]
    assert all(len(a.commits) == 1 for a in finished)
    git(godel.mesh.default_repo, "fsck", "--no-progress")
    # Each agent's worktree is removed from disk and from git's list; its branch stays.
    listed = git(godel.mesh.default_repo, "worktree", "list", "--porcelain")
    for agent in finished:
        assert agent.worktree and not Path(agent.worktree).exists(), agent.worktree
        assert f"worktree {agent.worktree}\n" not in listed, listed
        assert git(godel.mesh.default_repo, "rev-parse", f"godel/{agent.id}").strip() == agent.commits[0]


def test_stream_agent_logs_follows_until_the_end(agents: Agents) -> None:
    agent = agents.spawn(["sh", "-c", "for i in 1 2 3 4 5; do echo line$i; sleep 0.2; done"])
    stream = agents.stub.StreamAgentLogs(
        agent_service_pb2.StreamAgentLogsRequest(id=agent.id), metadata=agents.md, timeout=30
    )
    lines, end = [], None
    for item in stream:
        if item.HasField("end"):
            end = item.end
            break
        lines.append(item.entry.message)
    assert [x for x in lines if x.startswith("line")] == [f"line{i}" for i in range(1, 6)]
    assert end is not None and end.code == 0


def test_openai_agent_uses_tools_in_its_worktree_and_pays_for_tokens(
    agents: Agents, godel: RunningMesh
) -> None:
    script = [
        tool_call("write_file", {"path": "notes.md", "content": "# notes\n"}),
        tool_call("read_file", {"path": "../../etc/passwd"}),
        tool_call("git_commit", {"message": "add notes"}),
        final("All done."),
    ]
    with FakeOpenAI(script, prompt_tokens=1000, completion_tokens=500) as fake:
        agent = agents.spawn(
            [],
            runtime="openai",
            model="gpt-4o",
            config=agent_pb2.AgentConfig(endpoint=fake.base_url),
        )
        done = agents.wait_final(agent.id)
    assert done.lifecycle_state == L.LIFECYCLE_STATE_COMPLETED, done.last_error
    assert done.result == "All done."
    assert len(done.commits) == 1
    show = git(godel.mesh.default_repo, "show", "--stat", "--format=%s", done.commits[0])
    assert "add notes" in show and "notes.md" in show
    assert (done.prompt_tokens, done.completion_tokens) == (4000, 2000)
    # gpt-4o: $2.50 / 1M prompt tokens, $10 / 1M completion tokens.
    assert done.budget_consumed == pytest.approx(4000 * 2.5e-6 + 2000 * 10e-6)
    # The escaping read was refused inside the tool, and the refusal went back to the model.
    tool_results = [m for r in fake.requests for m in r["messages"] if m.get("role") == "tool"]
    assert any("outside" in str(m.get("content", "")).lower() for m in tool_results)
    session = agents.stub.GetSession(
        agent_service_pb2.GetSessionRequest(id=done.session_id), metadata=agents.md
    )
    assert any(m.role == "assistant" and m.content == "All done." for m in session.context.messages)
    metrics = godel.http().get(
        f"http://{godel.mesh.address('agent').split(':')[0]}:{godel.mesh.ports.admin['agent']}/metrics"
    )
    assert 'godel_agent_cost_dollars{model="gpt-4o"}' in metrics.text


def test_budget_exceeded_stops_the_agent(agents: Agents) -> None:
    script = [tool_call("shell", {"command": "echo step"}, delay=0.3) for _ in range(20)]
    with FakeOpenAI(script, prompt_tokens=100_000, completion_tokens=10_000) as fake:
        agent = agents.spawn(
            [],
            runtime="openai",
            model="gpt-4o",
            budget_limit=0.5,
            max_retries=2,
            config=agent_pb2.AgentConfig(endpoint=fake.base_url, tools=["shell"]),
        )
        done = agents.wait_final(agent.id)
        served = fake.completions
    # Each completion costs $0.35: the second crosses the $0.50 limit and the agent stops there
    # (the reason is written by the charge that crossed it). The fake may have been asked for a
    # third completion before the kill reached the worker; that one is no longer enforced.
    assert done.lifecycle_state == L.LIFECYCLE_STATE_FAILED
    assert done.last_error == "budget exceeded: $0.7000 of $0.5000"
    assert done.retry_count == 0
    assert done.budget_consumed >= 0.7
    assert served >= 2
    agents.wait_events(agent.id, ["budget:warning", "budget:exceeded", "agent:error"])
    # The agent's own limit in the one shape of budget alerts (the budgets API's has a budget_id).
    (exceeded,) = agents.events.QueryEvents(
        event_service_pb2.QueryEventsRequest(type=["budget:exceeded"], agent_id=agent.id),
        metadata=agents.md,
        timeout=10,
    ).events
    alert = exceeded.budget_exceeded
    assert (alert.budget_id, alert.entity_type, alert.entity_id) == ("", BUDGET_ENTITY_TYPE_AGENT, agent.id)
    assert (alert.total_budget, alert.currency) == (0.5, "USD")
    assert alert.used_budget >= 0.5 and alert.percentage == round(100 * alert.used_budget / 0.5, 2)


def test_worker_process_environment_is_not_leaked_into_logs(agents: Agents, godel: RunningMesh) -> None:
    worker = next(iter(godel.mesh.workers.values()))
    environ = Path(f"/proc/{worker.pid}/environ").read_bytes().decode().split("\0")
    settings = dict(v.split("=", 1) for v in environ if v.startswith("GODEL_"))
    assert settings["GODEL_API_KEY"].startswith("godel_sk_"), "the worker holds a secret to keep"
    agent = agents.spawn(["sh", "-c", "env"])
    agents.wait_final(agent.id)
    lines = [e.message for e in agents.logs(agent.id)]
    assert "GODEL_AGENT_ID=" + agent.id in lines
    # Only the variables the worker sets for its agent; none of its own settings.
    passed = {line.split("=", 1)[0] for line in lines if line.startswith("GODEL_")}
    assert passed == {
        "GODEL_AGENT_ID",
        "GODEL_RUN_ID",
        "GODEL_TASK",
        "GODEL_WORKTREE",
        "GODEL_SESSION_ID",
        "GODEL_MODEL",
    }
    text = "\n".join(lines)
    assert settings["GODEL_API_KEY"] not in text and "godel_sk_" not in text


def test_logs_stream_as_server_sent_events_through_envoy(agents: Agents, godel: RunningMesh) -> None:
    agent = agents.spawn(["sh", "-c", "echo first; sleep 0.5; echo second"])
    events = []
    with (
        godel.http() as http,
        http.stream("GET", f"/api/v1/agents/{agent.id}/logs/stream", timeout=30) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
                if "end" in events[-1]:
                    break
    messages = [e["entry"]["message"] for e in events if "entry" in e]
    assert messages[:2] == ["first", "second"]
    assert events[-1]["end"].get("code", 0) == 0


def test_an_agent_without_a_command_fails_at_once_without_retries(agents: Agents) -> None:
    agent = agents.stub.CreateAgent(
        agent_service_pb2.CreateAgentRequest(task="no command given", max_retries=3), metadata=agents.md
    )
    done = agents.wait_final(agent.id, timeout=20)
    assert done.lifecycle_state == L.LIFECYCLE_STATE_FAILED
    assert "nothing to run" in done.last_error
    assert done.retry_count == 0


def test_sub_agents_form_a_session_tree_and_agent_events_are_listed(
    agents: Agents, godel: RunningMesh
) -> None:
    parent = agents.wait_final(agents.spawn(["true"]).id)
    child = agents.wait_final(agents.spawn(["true"], parent_session_id=parent.session_id).id)
    assert child.lifecycle_state == L.LIFECYCLE_STATE_COMPLETED
    child_session = agents.stub.GetSession(
        agent_service_pb2.GetSessionRequest(id=child.session_id), metadata=agents.md
    )
    assert (child_session.parent_id, child_session.depth) == (parent.session_id, 1)
    parent_session = agents.stub.GetSession(
        agent_service_pb2.GetSessionRequest(id=parent.session_id), metadata=agents.md
    )
    assert list(parent_session.children) == [child.session_id]
    agents.wait_events(parent.id, ["agent:spawn", "agent:start", "agent:complete"])
    listed = agents.stub.ListAgentEvents(
        agent_service_pb2.ListAgentEventsRequest(id=parent.id), metadata=agents.md
    ).events
    assert {"agent:spawn", "agent:start", "agent:complete"} <= {e.type for e in listed}
    assert all(e.metadata.agent_id == parent.id for e in listed)
    with godel.http() as http:
        rest = http.get(f"/api/v1/agents/{parent.id}/events").json()["events"]
    assert [e["id"] for e in rest] == [e.id for e in listed]
