"""The "openclaw" runtime: the agent's task runs as an OpenClaw agent run through an OpenClaw
Gateway (runtime/openclaw.py speaks its WebSocket protocol).

The Gateway is config.endpoint (ws:// or wss://), else the worker's GODEL_OPENCLAW_URL. Its token
is the agent's own OPENCLAW_GATEWAY_TOKEN in config.env (write-only, masked in everything the run
reports) if it brings one, else the worker's GODEL_OPENCLAW_TOKEN, sent only to an origin on
GODEL_OPENCLAW_TOKEN_ORIGINS. The worker proves its device with the key in $GODEL_HOME.

One run = one OpenClaw session (`godel-<agent id>`, so a retry or restart continues its
transcript) and one `agent` request (idempotency key: the Godel run id). The run's `agent` events
become the agent's logs: assistant text line by line (stream "assistant"), tool calls (stream
"tool"), lifecycle and errors (stream "runtime"). The final answer's text is the run's result,
its token usage (result.meta) is charged like the openai runtime's, and the model it reports
prices it. The Gateway's agent runs its own configured model: an operator connection may not
override it (OpenClaw refuses "provider/model overrides" to callers without operator.admin). A kill aborts the OpenClaw run (`sessions.abort`); a pause aborts it too and a resume
starts a new turn in the same session that asks the agent to go on. A Gateway that cannot be
reached, refuses the connection or drops it fails the run with a message that says so (and the
agent's max_retries apply, as for any failed run)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from godel.v1 import agent_pb2
from godel_server.runtime.openclaw import DeviceIdentity, Gateway, GatewayError, open_gateway
from godel_server.worker.runtimes.base import Outcome, RunContext, WorkerKey, pick_key

OWN_TOKEN = "OPENCLAW_GATEWAY_TOKEN"
CONTINUE = "You were paused. Continue the task from where you stopped."
ABORT_TIMEOUT_SECONDS = 5.0
FINAL_AFTER_ABORT_SECONDS = 10.0
SUMMARY = 300


def gateway_url(endpoint: str, default: str) -> tuple[str, str]:
    """(url, problem): the Gateway's WebSocket URL, or why the configured one cannot be used."""
    url = (endpoint or default).strip()
    if not url.startswith(("ws://", "wss://")):
        return "", f"config.endpoint must be the OpenClaw Gateway's ws:// or wss:// URL, got {url[:200]!r}"
    return url, ""


def _summary(value: Any, limit: int = SUMMARY) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def find_usage(value: Any) -> dict[str, Any] | None:
    """The first token-usage object in an agent result (OpenClaw reports it under result.meta)."""
    if isinstance(value, dict):
        usage = value.get("usage")
        if isinstance(usage, dict) and any(k in usage for k in ("input", "output", "prompt_tokens")):
            return usage
        for child in value.values():
            found = find_usage(child)
            if found is not None:
                return found
    elif isinstance(value, list):
        for child in value:
            found = find_usage(child)
            if found is not None:
                return found
    return None


def tokens(usage: dict[str, Any]) -> tuple[int, int]:
    """(prompt, completion) tokens of an OpenClaw usage object (cache reads and writes count as
    prompt tokens), or of an OpenAI-shaped one."""
    if "prompt_tokens" in usage or "completion_tokens" in usage:
        return _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
    prompt = _int(usage.get("input")) + _int(usage.get("cacheRead")) + _int(usage.get("cacheWrite"))
    return prompt, _int(usage.get("output"))


def find_model(value: Any) -> str:
    """The model an agent result names (without its provider), or ""."""
    if isinstance(value, dict):
        model = value.get("model")
        if isinstance(model, str) and model:
            return model.rsplit("/", 1)[-1]
        for child in value.values():
            found = find_model(child)
            if found:
                return found
    return ""


def result_text(result: Any) -> str:
    """The text of an agent result's reply payloads."""
    if not isinstance(result, dict):
        return ""
    texts = [p.get("text") for p in result.get("payloads") or [] if isinstance(p, dict)]
    return "\n".join(t for t in texts if isinstance(t, str) and t).strip()


@dataclass
class _Transcript:
    """Assistant text of one OpenClaw run, logged a line at a time as it streams."""

    ctx: RunContext
    text: str = ""
    logged: int = 0
    tools: set[str] = field(default_factory=set)

    def assistant(self, data: dict[str, Any]) -> None:
        delta = data.get("delta")
        full = data.get("text")
        if isinstance(delta, str):
            self.text += delta
        elif isinstance(full, str) and full.startswith(self.text):
            self.text = full
        elif isinstance(full, str):
            self.text += full
        self._log_lines(final=False)

    def _log_lines(self, final: bool) -> None:
        pending = self.text[self.logged :]
        cut = len(pending) if final else pending.rfind("\n") + 1
        if cut <= 0:
            return
        for line in pending[:cut].splitlines():
            if line.strip():
                self.ctx.log(line, stream="assistant")
        self.logged += cut

    def flush(self) -> None:
        self._log_lines(final=True)

    def tool(self, data: dict[str, Any]) -> None:
        name = str(data.get("name") or data.get("toolName") or "tool")
        phase = str(data.get("phase") or "")
        call = str(data.get("toolCallId") or data.get("id") or "")
        if phase in ("start", "") and call not in self.tools:
            self.tools.add(call)
            self.ctx.log(f"{name} {_summary(data.get('args', data.get('input', '')))}", stream="tool")
        elif phase in ("result", "end", "error"):
            outcome = data.get("result", data.get("error", data.get("output", "")))
            level = (
                agent_pb2.LOG_LEVEL_ERROR
                if phase == "error" or data.get("isError")
                else agent_pb2.LOG_LEVEL_INFO
            )
            self.ctx.log(f"{name} -> {_summary(outcome)}", stream="tool", level=level)


class OpenClawRuntime:
    cancel_on_stop = True

    async def run(self, ctx: RunContext) -> Outcome:
        a = ctx.assignment
        settings = ctx.settings
        url, problem = gateway_url(a.config.endpoint, settings.openclaw_url)
        if problem:
            return Outcome(False, error=problem)
        worker_token = WorkerKey(
            settings.openclaw_token,
            settings.openclaw_token_origins,
            "GODEL_OPENCLAW_TOKEN_ORIGINS",
            OWN_TOKEN,
        )
        token, withheld = pick_key(url, a.config.env.get(OWN_TOKEN), worker_token)
        secrets = [s for s in (token, settings.openclaw_token) if s]
        identity = await asyncio.to_thread(DeviceIdentity.load_or_create, settings.home)
        ctx.started(0)
        session_key = f"godel-{a.agent_id}"
        ctx.log(f"openclaw runtime: gateway {url}, session {session_key}, device {identity.device_id[:12]}")
        if withheld:
            ctx.log(withheld, level=agent_pb2.LOG_LEVEL_WARN)
        try:
            async with open_gateway(url, token or "", identity) as gateway:
                server = gateway.hello.get("server") if isinstance(gateway.hello, dict) else None
                version = server.get("version", "?") if isinstance(server, dict) else "?"
                ctx.log(
                    f"openclaw runtime: connected (OpenClaw {version}, protocol {gateway.hello.get('protocol')})"
                )
                return await _Session(ctx, gateway, session_key).execute()
        except GatewayError as exc:
            error = _scrub(str(exc), secrets)
            return Outcome(False, error=f"{error} ({withheld})" if withheld else error)


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


class _Session:
    """The OpenClaw turns of one Godel run: the task, then one more after each pause."""

    def __init__(self, ctx: RunContext, gateway: Gateway, session_key: str) -> None:
        self._ctx = ctx
        self._gateway = gateway
        self._session_key = session_key
        self._turns = 0
        self._run_id = ""  # the OpenClaw run in progress

    async def execute(self) -> Outcome:
        message = self._ctx.assignment.task
        while True:
            await self._ctx.pause.wait_running()
            try:
                outcome = await self._turn(message)
            except asyncio.CancelledError:
                await self._abort("killed")
                raise
            if outcome is not None:
                return outcome
            message = CONTINUE

    def _params(self, message: str) -> dict[str, Any]:
        a = self._ctx.assignment
        self._turns += 1
        params: dict[str, Any] = {
            "message": message,
            "sessionKey": self._session_key,
            "idempotencyKey": f"{a.run_id}-{self._turns}",
            "label": f"godel {a.agent_id}"[:64],
        }
        return params

    async def _turn(self, message: str) -> Outcome | None:
        """One OpenClaw run; None when a pause aborted it."""
        ctx = self._ctx
        transcript = _Transcript(ctx)
        async with self._gateway.responses("agent", self._params(message)) as answers:
            accepted = await answers.next()
            self._run_id = str(accepted.get("runId") or "")
            self._session_key = str(accepted.get("sessionKey") or self._session_key)  # as the Gateway keys it
            ctx.log(f"openclaw run {self._run_id} {accepted.get('status', 'accepted')}")
            ctx.session_message("user", message, metadata={"openclawRunId": self._run_id})
            final = asyncio.create_task(answers.next(timeout=None))
            events = asyncio.create_task(self._follow(transcript))
            paused = asyncio.create_task(ctx.pause.wait_paused())
            try:
                await asyncio.wait({final, paused, events}, return_when=asyncio.FIRST_COMPLETED)
                if paused.done() and not final.done():
                    await self._abort("paused")
                    with contextlib.suppress(GatewayError, TimeoutError):
                        await asyncio.wait_for(asyncio.shield(final), FINAL_AFTER_ABORT_SECONDS)
                    transcript.flush()
                    return None
                if events.done() and not final.done():
                    events.result()  # the connection ended: raises GatewayClosed
                payload = await final
            finally:
                for task in (final, events, paused):
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError, GatewayError):
                    await asyncio.gather(final, events, paused, return_exceptions=True)
        await asyncio.sleep(0)  # events already received are handled first
        transcript.flush()
        return self._outcome(payload, transcript)

    async def _follow(self, transcript: _Transcript) -> None:
        while True:
            frame = await self._gateway.next_event()
            if frame is None:
                assert self._gateway.closed is not None
                raise self._gateway.closed
            payload = frame.get("payload")
            if frame.get("event") != "agent" or not isinstance(payload, dict):
                continue
            if payload.get("runId") != self._run_id:
                continue
            self._event(transcript, payload)

    def _event(self, transcript: _Transcript, payload: dict[str, Any]) -> None:
        stream = payload.get("stream")
        data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
        assert isinstance(data, dict)
        if stream == "assistant":
            transcript.assistant(data)
        elif stream == "tool":
            transcript.tool(data)
        elif stream == "lifecycle":
            phase = data.get("phase", "")
            level = agent_pb2.LOG_LEVEL_ERROR if phase == "error" else agent_pb2.LOG_LEVEL_INFO
            detail = f": {_summary(data.get('error'))}" if data.get("error") else ""
            self._ctx.log(f"openclaw run {phase}{detail}", level=level)
        elif stream == "error":
            self._ctx.log(f"openclaw error: {_summary(data)}", level=agent_pb2.LOG_LEVEL_ERROR)

    def _outcome(self, payload: dict[str, Any], transcript: _Transcript) -> Outcome:
        ctx = self._ctx
        result = payload.get("result")
        usage = find_usage(result)
        if usage is not None:
            prompt, completion = tokens(usage)
            ctx.usage(find_model(result) or ctx.assignment.model or "openclaw", prompt, completion)
        text = result_text(result) or transcript.text.strip()
        status = payload.get("status")
        ctx.session_message("assistant", text, metadata={"openclawRunId": self._run_id, "status": status})
        if status == "ok":
            return Outcome(True, result=text)
        why = payload.get("stopReason") or payload.get("summary") or status
        return Outcome(False, result=text, error=f"the OpenClaw run {self._run_id} ended {status}: {why}")

    async def _abort(self, why: str) -> None:
        """Aborts the OpenClaw run in progress (best effort: the connection may be gone)."""
        if not self._run_id:
            return
        self._ctx.log(f"openclaw runtime: {why}; aborting OpenClaw run {self._run_id}")
        with contextlib.suppress(GatewayError, TimeoutError):
            params = {"key": self._session_key, "runId": self._run_id}
            await asyncio.shield(
                self._gateway.request("sessions.abort", params, timeout=ABORT_TIMEOUT_SECONDS)
            )
