"""Issue 12's sandbox on the whole mesh (a real worker process, Kafka, PostgreSQL, Envoy): an agent
spawned with a developer key cannot read keys, databases, other agents' worktrees or the worker's
environment, cannot write outside its worktree and, without network, cannot open a connection;
its commits still work; over its memory or process limit it is stopped and says why; an openai
agent without `shell` cannot run a command and a safety:block event is stored; safetyBoundaries
fail or pause an agent; bad sandbox settings are refused at the API."""

from __future__ import annotations

import time
import uuid

import grpc
import pytest
from google.protobuf import struct_pb2

from godel.v1 import agent_pb2, agent_service_pb2, common_pb2, event_pb2, event_service_pb2
from tests.conftest import RunningMesh
from tests.fakes.openai_server import FakeOpenAI, final, tool_call
from tests.fakes.tcp_listener import tcp_listener
from tests.fakes.worker_env import git
from tests.integration.agent_helpers import Agents, rpc_error

L = agent_pb2
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def developer(godel: RunningMesh) -> Agents:
    """Agents spawned with a developer-role key, as in the issue."""
    agents = Agents(godel, godel.mesh.address("agent"))
    agents.md = godel.metadata(godel.create_key("developer"))
    return agents


def log_text(agents: Agents, agent_id: str) -> str:
    return "\n".join(e.message for e in agents.logs(agent_id))


def test_the_exfiltration_of_the_issue_returns_nothing(developer: Agents, godel: RunningMesh) -> None:
    mesh = godel.mesh
    home, root = mesh.home, mesh.worktree_root
    services = ("worker", "team-service", "cluster-service")
    secrets = [godel.admin_key, *(mesh.key_path(n).read_text().strip() for n in services)]
    script = f"""
        cat ../../admin.key ../../mesh/worker.key {home}/worker.key {home}/team-service.key {home}/cluster-service.key
        ls ../.. {home} {root}
        tr '\\0' '\\n' < /proc/$PPID/environ
        cat /proc/[0-9]*/environ | tr '\\0' '\\n'
        env
    """
    agent = developer.spawn(["sh", "-c", script])
    developer.wait_final(agent.id)
    text = log_text(developer, agent.id)
    assert f"GODEL_AGENT_ID={agent.id}" in text  # the environment was printed: what is in it is all
    for secret in secrets:
        assert secret not in text
    assert "godel_sk_" not in text and "GODEL_API_KEY" not in text and "GODEL_KAFKA" not in text
    assert f"cat: {home}/worker.key: No such file or directory" in text


def test_an_agent_cannot_see_another_agents_worktree(developer: Agents, godel: RunningMesh) -> None:
    marker = f"other-secret-{uuid.uuid4().hex}"
    other = developer.spawn(["sh", "-c", f"echo {marker} > secret.txt; sleep 600"])
    running = developer.wait_state(other.id, L.LIFECYCLE_STATE_EXECUTING)
    try:
        assert running.worktree.startswith(str(godel.mesh.worktree_root))
        script = f"cat {running.worktree}/secret.txt; echo listing:; ls {godel.mesh.worktree_root}"
        agent = developer.spawn(["sh", "-c", script])
        developer.wait_final(agent.id)
        text = log_text(developer, agent.id)
        assert marker not in text
        assert f"cat: {running.worktree}/secret.txt: No such file or directory" in text
        # The worktree root shows the agent its own worktree only.
        assert text.split("listing:\n", 1)[1].split() == [agent.id]
    finally:
        developer.stub.KillAgent(agent_service_pb2.KillAgentRequest(id=other.id), metadata=developer.md)


def test_an_agent_cannot_write_outside_its_worktree_and_still_commits(
    developer: Agents, godel: RunningMesh
) -> None:
    repo = godel.mesh.default_repo
    config = (repo / ".git" / "config").read_text()
    planted = [godel.mesh.home / "planted", repo / "planted", godel.mesh.worktree_root / "planted"]
    script = f"""
        touch {" ".join(str(p) for p in planted)} /usr/planted
        echo '[core]' >> {repo}/.git/config
        git branch planted-branch
        echo hi > hello.txt && git add hello.txt && git commit -q -m hi && echo committed
    """
    agent = developer.spawn(["sh", "-c", script])
    done = developer.wait_final(agent.id)
    assert done.lifecycle_state == L.LIFECYCLE_STATE_COMPLETED, done.last_error
    assert len(done.commits) == 1
    assert git(repo, "log", "--format=%H", "-1", f"godel/{agent.id}").strip() == done.commits[0]
    assert "Read-only file system" in log_text(developer, agent.id)
    assert not any(p.exists() for p in planted)
    assert (repo / ".git" / "config").read_text() == config
    assert "planted-branch" not in git(repo, "branch", "--list")


def test_without_network_an_agent_cannot_open_a_connection(developer: Agents) -> None:
    with tcp_listener() as (port, accepted):
        probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), 5); print('connected')"
        agent = developer.spawn(["python3", "-c", probe])
        done = developer.wait_final(agent.id)
        assert done.lifecycle_state == L.LIFECYCLE_STATE_FAILED
        assert "Connection refused" in log_text(developer, agent.id)
        # Granted egress, the same agent gets through: the listener can tell.
        egress = common_pb2.SandboxConfig(network=True)
        agent = developer.spawn(["python3", "-c", probe], config=agent_pb2.AgentConfig(sandbox=egress))
        done = developer.wait_final(agent.id)
        assert done.lifecycle_state == L.LIFECYCLE_STATE_COMPLETED, done.last_error
        assert len(accepted) == 1


def limited(**limits: int) -> agent_pb2.AgentConfig:
    return agent_pb2.AgentConfig(sandbox=common_pb2.SandboxConfig(limits=common_pb2.ResourceLimits(**limits)))  # type: ignore[arg-type]


def test_agents_over_their_memory_or_process_limit_are_stopped_with_the_reason(developer: Agents) -> None:
    grow = "import time\nblocks = []\nwhile True:\n    blocks.append(bytearray(8 << 20)); time.sleep(0.02)"
    memory = developer.spawn(["python3", "-c", grow], config=limited(max_memory_mb=64))
    fork = developer.spawn(
        ["sh", "-c", "for i in $(seq 50); do sleep 60 & done; wait"], config=limited(max_processes=10)
    )
    done = developer.wait_final(memory.id, timeout=60)
    assert done.lifecycle_state == L.LIFECYCLE_STATE_FAILED
    assert done.last_error.startswith("sandbox: memory limit exceeded") and "limit 64 MiB" in done.last_error
    done = developer.wait_final(fork.id, timeout=60)
    assert done.lifecycle_state == L.LIFECYCLE_STATE_FAILED
    assert done.last_error.startswith("sandbox: process limit reached") and "limit 10" in done.last_error
    assert "sandbox: process limit reached" in log_text(developer, fork.id)


def test_an_openai_agent_without_shell_cannot_run_a_command(developer: Agents, godel: RunningMesh) -> None:
    commit = "echo x > pwned.txt && git add pwned.txt && git commit -q -m pwned"
    with FakeOpenAI([tool_call("shell", {"command": commit}), final("done")]) as fake:
        agent = developer.spawn(
            [], runtime="openai", model="gpt-4o", config=agent_pb2.AgentConfig(endpoint=fake.base_url)
        )
        done = developer.wait_final(agent.id)
        offered = {t["function"]["name"] for t in fake.requests[0]["tools"]}
    assert offered == {"read_file", "write_file", "git_commit"}
    assert done.lifecycle_state == L.LIFECYCLE_STATE_FAILED
    assert done.last_error.startswith("safety: config.tools: the model called 'shell', which is not granted")
    assert done.last_error in log_text(developer, agent.id)
    assert not done.commits
    assert git(godel.mesh.default_repo, "log", "--format=%s", f"godel/{agent.id}").splitlines()[0] != "pwned"
    # The refusal is stored as a safety:block event naming the rule and the agent.
    [block] = wait_blocks(developer, agent.id, 1)
    assert block.type == "safety:block" and block.metadata.agent_id == agent.id
    blocked = block.safety_blocked
    assert (blocked.rule, blocked.action, blocked.agent_id) == (
        "config.tools",
        L.SAFETY_ACTION_FAIL,
        agent.id,
    )
    assert done.last_error == f"safety: config.tools: {blocked.detail}"


def wait_blocks(agents: Agents, agent_id: str, count: int) -> list[event_pb2.Event]:
    """The agent's safety:block events, once `count` of them are stored."""
    query = event_service_pb2.QueryEventsRequest(type=["safety:block"], agent_id=agent_id, page_size=100)
    deadline = time.monotonic() + 30
    while True:
        blocks = list(agents.events.QueryEvents(query, metadata=agents.md, timeout=10).events)
        if len(blocks) >= count or time.monotonic() > deadline:
            return blocks
        time.sleep(0.2)


def test_safety_boundaries_pause_an_agent_until_an_operator_allows_it(developer: Agents) -> None:
    boundaries = struct_pb2.Struct()
    boundaries.update({"forbiddenCommands": ["curl"], "maxFilesChanged": 1, "onViolation": "pause"})
    agent = developer.spawn(["sh", "-c", "touch a b && echo changed"], safety_boundaries=boundaries)
    paused = developer.wait_state(agent.id, L.LIFECYCLE_STATE_PAUSED)
    assert paused.paused_by == "safety"
    [block] = wait_blocks(developer, agent.id, 1)
    blocked = block.safety_blocked
    assert (blocked.rule, blocked.action) == ("safetyBoundaries.maxFilesChanged", L.SAFETY_ACTION_PAUSE)
    assert blocked.detail == "2 files changed, at most 1 may be"
    developer.stub.ResumeAgent(agent_service_pb2.ResumeAgentRequest(id=agent.id), metadata=developer.md)
    done = developer.wait_final(agent.id)
    assert done.lifecycle_state == L.LIFECYCLE_STATE_COMPLETED, done.last_error
    # A forbidden command fails the agent at once, with no retry.
    agent = developer.spawn(
        ["sh", "-c", "curl -s http://127.0.0.1:9"], safety_boundaries=boundaries, max_retries=3
    )
    boundaries["onViolation"] = "fail"
    failing = developer.spawn(
        ["sh", "-c", "curl -s http://127.0.0.1:9"], safety_boundaries=boundaries, max_retries=3
    )
    done = developer.wait_final(failing.id)
    assert done.lifecycle_state == L.LIFECYCLE_STATE_FAILED and done.retry_count == 0
    assert done.last_error.startswith(
        "safety: safetyBoundaries.forbiddenCommands: 'curl -s http://127.0.0.1:9'"
    )
    developer.wait_state(agent.id, L.LIFECYCLE_STATE_PAUSED)  # the pausing one holds before running it
    developer.stub.KillAgent(agent_service_pb2.KillAgentRequest(id=agent.id), metadata=developer.md)
    assert developer.wait_final(agent.id).lifecycle_state == L.LIFECYCLE_STATE_KILLED


def test_safety_boundaries_of_a_wrong_shape_are_refused(developer: Agents) -> None:
    boundaries = struct_pb2.Struct()
    boundaries.update({"maxFilesChanged": 1.5, "forbidden": ["x"]})
    error = rpc_error(lambda: developer.spawn(["true"], safety_boundaries=boundaries))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "safety_boundaries: must have the shape of godel.v1.SafetyRules" in str(error.details())


def test_bad_sandbox_and_tool_settings_are_refused_and_store_nothing(developer: Agents) -> None:
    label = f"bad-sandbox-{uuid.uuid4().hex[:8]}"
    config = agent_pb2.AgentConfig(
        runtime="command",
        command=["true"],
        tools=["browser"],
        sandbox=common_pb2.SandboxConfig(
            kind="none", read_paths=["relative/path"], limits=common_pb2.ResourceLimits(max_memory_mb=-1)
        ),
    )
    err = rpc_error(
        lambda: developer.stub.CreateAgent(
            agent_service_pb2.CreateAgentRequest(task="t", label=label, config=config), metadata=developer.md
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = err.details() or ""
    for field in (
        "config.tools",
        "config.sandbox.kind",
        "config.sandbox.read_paths",
        "config.sandbox.limits.max_memory_mb",
    ):
        assert field in details
    listed = developer.stub.ListAgents(
        agent_service_pb2.ListAgentsRequest(label=label), metadata=developer.md
    )
    assert not listed.agents
