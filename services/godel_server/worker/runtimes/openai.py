"""The "openai" runtime: a tool loop against any OpenAI-compatible chat-completions endpoint.

Each step POSTs the conversation to <endpoint>/v1/chat/completions with `stream: true`, parses the
server-sent events (content and tool-call deltas, usage from the chunk that carries it), runs the
requested tools in the run's sandbox and sends their results back, until an assistant message has
no tool calls (SUCCEEDED, result = its content) or GODEL_WORKER_MAX_STEPS completions were used.

The bearer key: the agent's own (OPENAI_API_KEY in config.env) if it brings one, else the worker's
GODEL_OPENAI_API_KEY, but that only to an origin on GODEL_OPENAI_KEY_ORIGINS (by default the origin
of GODEL_OPENAI_BASE_URL), so config.endpoint cannot collect the deployment's key."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from godel.v1 import agent_pb2
from godel_server.runtime.agent_rules import granted_tools
from godel_server.runtime.config import WorkerSettings
from godel_server.worker.runtimes.base import Outcome, RunContext, WorkerKey, pick_key
from godel_server.worker.runtimes.tools import TOOL_SPECS, ToolBox, ToolRefused

SYSTEM_PROMPT = (
    "You are an autonomous software engineering agent working in a git worktree at {worktree} "
    "(branch {branch}). Use the tools ({tools}) to inspect and change files (paths are relative to "
    "the worktree) and commit your work with git_commit. When the task is done, reply with a short "
    "summary of what you did and no tool calls."
)
BODY_EXCERPT = 500
OWN_KEY = "OPENAI_API_KEY"


class CompletionError(Exception):
    """The endpoint could not produce a completion; the message is safe to show (no key)."""


@dataclass
class ToolCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class Completion:
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def chat_url(endpoint: str) -> str:
    """<base>/v1/chat/completions, for a base URL given with or without a trailing /v1."""
    base = endpoint.strip().rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    if not base.endswith("/v1"):
        base += "/v1"
    return base + "/chat/completions"


class _Accumulator:
    def __init__(self) -> None:
        self.content: list[str] = []
        self.calls: dict[int, ToolCall] = {}
        self.usage: dict[str, Any] | None = None

    def add_chunk(self, chunk: dict[str, Any]) -> None:
        if isinstance(chunk.get("error"), dict | str):
            raise CompletionError(f"the endpoint sent an error: {json.dumps(chunk['error'])[:BODY_EXCERPT]}")
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or choice.get("message") or {}
            if isinstance(delta.get("content"), str):
                self.content.append(delta["content"])
            for i, part in enumerate(delta.get("tool_calls") or []):
                index = part.get("index", i)
                call = self.calls.setdefault(index, ToolCall())
                if part.get("id") and not call.id:
                    call.id = part["id"]
                function = part.get("function") or {}
                if function.get("name") and not call.name:
                    call.name = function["name"]
                if isinstance(function.get("arguments"), str):
                    call.arguments += function["arguments"]
                elif isinstance(function.get("arguments"), dict):
                    call.arguments += json.dumps(function["arguments"])

    def completion(self) -> Completion:
        calls = [self.calls[i] for i in sorted(self.calls)]
        for n, call in enumerate(calls):
            call.id = call.id or f"call_{n}"
        usage = self.usage or {}
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        return Completion(
            content="".join(self.content),
            tool_calls=calls,
            prompt_tokens=int(prompt) if isinstance(prompt, int | float) else None,
            completion_tokens=int(completion) if isinstance(completion, int | float) else None,
        )


async def complete(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], body: dict[str, Any]
) -> Completion:
    """One streamed chat completion (a plain JSON answer is accepted too)."""
    acc = _Accumulator()
    try:
        async with client.stream("POST", url, json=body, headers=headers) as response:
            if response.status_code >= 400:
                text = (await response.aread()).decode(errors="replace").strip()
                raise CompletionError(f"{url} answered HTTP {response.status_code}: {text[:BODY_EXCERPT]}")
            if "text/event-stream" not in response.headers.get("content-type", ""):
                acc.add_chunk(json.loads(await response.aread()))
                return acc.completion()
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                if data:
                    acc.add_chunk(json.loads(data))
    except httpx.HTTPError as exc:
        raise CompletionError(f"request to {url} failed: {type(exc).__name__}: {exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CompletionError(f"{url} sent a response that is not valid JSON: {exc}") from exc
    return acc.completion()


def bearer_key(url: str, env: dict[str, str], settings: WorkerSettings) -> tuple[str | None, str]:
    """The key to send to `url` and, when the worker's key is withheld, why (else "")."""
    return pick_key(
        url,
        env.get(OWN_KEY),
        WorkerKey(settings.openai_api_key, settings.openai_key_origins, "GODEL_OPENAI_KEY_ORIGINS", OWN_KEY),
    )


def _summary(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class OpenAIRuntime:
    cancel_on_stop = True

    async def run(self, ctx: RunContext) -> Outcome:
        a = ctx.assignment
        settings = ctx.settings
        granted = granted_tools(a.config.tools)
        url = chat_url(a.config.endpoint or settings.openai_base_url)
        headers = {"content-type": "application/json", "accept": "text/event-stream"}
        key, withheld = bearer_key(url, dict(a.config.env), settings)
        if key:
            headers["authorization"] = f"Bearer {key}"
        secrets = [s for s in (key, settings.openai_api_key) if s]
        system = SYSTEM_PROMPT.format(
            worktree=ctx.worktree_path, branch=a.branch or f"godel/{a.agent_id}", tools=", ".join(granted)
        )
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": system},
            {"role": "user", "content": a.task},
        ]
        ctx.session_message("system", system)
        ctx.session_message("user", a.task)
        body: dict[str, Any] = {
            "model": a.model,
            "messages": messages,
            "tools": [TOOL_SPECS[name] for name in granted],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if a.config.HasField("temperature"):
            body["temperature"] = a.config.temperature
        if a.config.HasField("max_tokens"):
            body["max_tokens"] = a.config.max_tokens
        tools = ToolBox(ctx, granted)
        ctx.started(0)
        ctx.log(f"openai runtime: model {a.model!r} at {url}; tools: {', '.join(granted)}")
        if withheld:
            ctx.log(withheld, level=agent_pb2.LOG_LEVEL_WARN)
        timeout = httpx.Timeout(300.0, connect=15.0)
        async with httpx.AsyncClient(timeout=timeout) as client:
            for _ in range(settings.max_steps):
                await ctx.pause.wait_running()
                try:
                    reply = await complete(client, url, headers, body)
                except CompletionError as exc:
                    error = self._scrub(str(exc), secrets)
                    return Outcome(False, error=f"{error} ({withheld})" if withheld else error)
                if reply.prompt_tokens is not None or reply.completion_tokens is not None:
                    ctx.usage(a.model, reply.prompt_tokens or 0, reply.completion_tokens or 0)
                assistant: dict[str, Any] = {"role": "assistant", "content": reply.content or None}
                if reply.tool_calls:
                    assistant["tool_calls"] = [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        }
                        for c in reply.tool_calls
                    ]
                messages.append(assistant)
                summary = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in reply.tool_calls]
                ctx.session_message(
                    "assistant", reply.content, metadata={"tool_calls": summary} if summary else None
                )
                if not reply.tool_calls:
                    return Outcome(True, result=reply.content)
                for call in reply.tool_calls:
                    await ctx.pause.wait_running()
                    ctx.log(f"{call.name} {_summary(call.arguments)}", stream="tool")
                    try:
                        result = await tools.call(call.name, call.arguments)
                    except ToolRefused as exc:
                        return self._refuse(ctx, str(exc))
                    ctx.log(f"{call.name} -> {_summary(result)}", stream="tool")
                    messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
                    ctx.session_message("tool", result, name=call.name, metadata={"tool_call_id": call.id})
        return Outcome(
            False,
            error=f"no final answer after {settings.max_steps} completions (GODEL_WORKER_MAX_STEPS)",
        )

    @staticmethod
    def _refuse(ctx: RunContext, error: str) -> Outcome:
        """A guardrail refused a tool call (ToolBox reported the safety:block): the run fails."""
        return Outcome(False, error=error)

    @staticmethod
    def _scrub(text: str, secrets: list[str]) -> str:
        for secret in secrets:
            text = text.replace(secret, "***")
        return text
