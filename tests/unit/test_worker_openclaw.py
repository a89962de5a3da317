"""The worker's "openclaw" runtime against an in-process Gateway speaking the real protocol frames
(tests/fakes/openclaw_gateway.py); tests/integration/test_openclaw.py runs the real Gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from godel.v1 import worker_service_pb2 as ws
from godel_server.runtime.openclaw import IDENTITY_FILE, DeviceIdentity
from godel_server.worker.runtimes.openclaw import CONTINUE, find_usage, tokens
from tests.fakes.openclaw_gateway import FakeGateway
from tests.fakes.worker_controller import FakeController
from tests.fakes.worker_env import assignment, running_worker
from tests.waits import wait_for_async

pytestmark = pytest.mark.timeout(60)

TOKEN = "gw-token-secret-123"


@dataclass
class Env:
    ctl: FakeController
    gw: FakeGateway
    repo: Path
    home: Path


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with (
        FakeGateway(token=TOKEN) as gw,
        running_worker(tmp_path, GODEL_OPENCLAW_URL=gw.url, GODEL_OPENCLAW_TOKEN=TOKEN) as w,
    ):
        yield Env(w.ctl, gw, w.repo, w.settings.home)


def _run(env: Env, run_id: str = "r1", agent_id: str = "a1", **kw: object) -> ws.RunAssignment:
    return assignment(env.repo, run_id, agent_id, runtime="openclaw", task="summarise the repo", **kw)  # type: ignore[arg-type]


async def _start_held_run(env: Env) -> None:
    """Run r1 on a Gateway that holds runs until they are aborted; returns once it is under way."""
    env.gw.hold = True
    env.ctl.assign(_run(env))
    await env.ctl.wait_for(
        lambda r: r.WhichOneof("message") == "logs" and any(x.stream == "tool" for x in r.logs.lines)
    )


def _everything_sent(env: Env) -> str:
    return "\n".join(str(r) for r in env.ctl.received)


async def test_a_run_streams_its_events_into_the_logs_and_pays_for_its_tokens(env: Env) -> None:
    env.gw.reply = "Line one.\nAll done."
    env.ctl.assign(_run(env))
    result = await env.ctl.wait_final("r1")
    assert result.state == ws.RUN_STATE_SUCCEEDED, result.error
    assert result.result == "Line one.\nAll done."
    lines = env.ctl.log_lines("r1")
    assert [x.message for x in lines if x.stream == "assistant"] == ["Line one.", "All done."]
    tool = [x.message for x in lines if x.stream == "tool"]
    assert tool == ['read {"path": "README.md"}', "read -> # repo"]
    assert any("openclaw run start" in x.message for x in lines)
    # Usage from the result: cache reads count as prompt tokens; the model without its provider.
    (usage,) = env.ctl.usage("r1")
    assert (usage.model, usage.prompt_tokens, usage.completion_tokens) == ("gpt-4o", 1200, 300)
    # The handshake: operator role, read+write scopes, the token, a signed device (the fake
    # verified the signature) kept in GODEL_HOME.
    (hello,) = env.gw.connects
    assert hello["role"] == "operator" and hello["scopes"] == ["operator.read", "operator.write"]
    assert hello["client"]["id"] == "gateway-client" and hello["auth"] == {"token": TOKEN}
    assert hello["device"]["id"] == DeviceIdentity.load_or_create(env.home).device_id
    assert (env.home / IDENTITY_FILE).stat().st_mode & 0o077 == 0
    (run,) = [r["params"] for r in env.gw.requests if r["method"] == "agent"]
    assert run["message"] == "summarise the repo" and run["sessionKey"] == "godel-a1"
    assert run["idempotencyKey"] == "r1-1"
    roles = [m.message.role for m in env.ctl.session_messages("r1")]
    assert roles == ["user", "assistant"]
    assert TOKEN not in _everything_sent(env)


async def test_a_failed_openclaw_run_fails_the_run(env: Env) -> None:
    env.gw.fail_run = "provider exploded"
    env.ctl.assign(_run(env, model="godel-test/gpt-4o"))
    result = await env.ctl.wait_final("r1")
    assert result.state == ws.RUN_STATE_FAILED
    assert "refused agent: provider exploded" in result.error
    (run,) = [r["params"] for r in env.gw.requests if r["method"] == "agent"]
    assert "model" not in run  # the Gateway's agent runs its own model


async def test_kill_aborts_the_openclaw_run(env: Env) -> None:
    await _start_held_run(env)
    env.ctl.control("r1", ws.CONTROL_ACTION_KILL)
    assert (await env.ctl.wait_final("r1", timeout=15)).state == ws.RUN_STATE_KILLED
    (run_id,) = env.gw.aborted
    abort = next(r["params"] for r in env.gw.requests if r["method"] == "sessions.abort")
    assert abort == {"key": "agent:main:godel-a1", "runId": run_id} and run_id == "r1-1"


async def test_pause_aborts_the_run_and_resume_continues_the_session(env: Env) -> None:
    await _start_held_run(env)
    env.ctl.control("r1", ws.CONTROL_ACTION_PAUSE)
    await wait_for_async(lambda: len(env.gw.aborted) == 1, 10, "the pause to abort the OpenClaw run")
    await env.ctl.wait_update("r1", ws.RUN_STATE_PAUSED)
    env.gw.hold = False
    env.ctl.control("r1", ws.CONTROL_ACTION_RESUME)
    result = await env.ctl.wait_final("r1")
    assert result.state == ws.RUN_STATE_SUCCEEDED, result.error
    first, second = [r["params"] for r in env.gw.requests if r["method"] == "agent"]
    assert (first["message"], second["message"]) == ("summarise the repo", CONTINUE)
    assert (first["sessionKey"], second["sessionKey"]) == ("godel-a1", "agent:main:godel-a1")
    assert second["idempotencyKey"] == "r1-2"


async def test_a_dropped_connection_fails_the_run_clearly(env: Env) -> None:
    await _start_held_run(env)
    await env.gw.drop_connections()
    result = await env.ctl.wait_final("r1")
    assert result.state == ws.RUN_STATE_FAILED
    assert (
        result.error == f"lost the connection to the OpenClaw Gateway at {env.gw.url} (1012 service restart)"
    )


async def test_gateway_refusals_and_bad_endpoints_are_clear_errors(env: Env, tmp_path: Path) -> None:
    # A token of the agent's own (config.env) wins, and is masked in what the run reports.
    wrong = "not-the-gateway-token"
    a = _run(env, "r1")
    a.config.env["OPENCLAW_GATEWAY_TOKEN"] = wrong
    env.ctl.assign(a)
    refused = await env.ctl.wait_final("r1")
    assert refused.state == ws.RUN_STATE_FAILED
    assert refused.error == (
        "the OpenClaw Gateway refused connect: unauthorized: gateway token mismatch (AUTH_TOKEN_MISMATCH)"
    )
    assert wrong not in _everything_sent(env) and TOKEN not in _everything_sent(env)
    # Another Gateway than the worker's: the worker's token is not sent there.
    async with FakeGateway(token=TOKEN) as other:
        b = _run(env, "r2", "a2")
        b.config.endpoint = other.url
        env.ctl.assign(b)
        withheld = await env.ctl.wait_final("r2")
        assert withheld.state == ws.RUN_STATE_FAILED
        assert "not on GODEL_OPENCLAW_TOKEN_ORIGINS" in withheld.error
        assert other.connects == []
    c = _run(env, "r3", "a3")
    c.config.endpoint = "http://127.0.0.1:1/"
    env.ctl.assign(c)
    assert "ws:// or wss:// URL" in (await env.ctl.wait_final("r3")).error
    d = _run(env, "r4", "a4")
    d.config.endpoint = "ws://127.0.0.1:1"
    d.config.env["OPENCLAW_GATEWAY_TOKEN"] = TOKEN
    env.ctl.assign(d)
    assert (await env.ctl.wait_final("r4")).error.startswith(
        "cannot reach the OpenClaw Gateway at ws://127.0.0.1:1"
    )


def test_usage_shapes() -> None:
    result = {"meta": {"agentMeta": {"usage": {"input": 5, "output": 7, "cacheWrite": 1, "total": 13}}}}
    usage = find_usage(result)
    assert usage is not None and tokens(usage) == (6, 7)
    assert tokens({"prompt_tokens": 3, "completion_tokens": 4}) == (3, 4)
    assert find_usage({"payloads": [{"text": "x"}]}) is None
