"""A scripted OpenAI-compatible chat-completions server for tests (no network beyond loopback).

    from tests.fakes.openai_server import FakeOpenAI, final, tool_call

    with FakeOpenAI([
        tool_call("write_file", {"path": "hello.txt", "content": "hi\\n"}),
        tool_call("git_commit", {"message": "add hello"}),
        final("done"),
    ], prompt_tokens=100, completion_tokens=20) as fake:
        ...  # point the runtime at fake.base_url (http://127.0.0.1:<port>; "/v1" may be appended)
        fake.requests        # every request body (parsed JSON), in order
        fake.headers         # the headers of every request (lower-case names)
        fake.completions     # how many completions were served

API:
- `FakeOpenAI(script=None, *, prompt_tokens=10, completion_tokens=5, default=final("done"))` starts
  a ThreadingHTTPServer on 127.0.0.1:<free port> in a daemon thread at once.
- POST /v1/chat/completions (also /chat/completions) answers with the next step of the script;
  once the script is used up, with `default`. `stream: true` -> server-sent events
  (`data: {chunk}` lines, content and tool-call deltas split in pieces, a usage chunk when
  `stream_options.include_usage` is true, then `data: [DONE]`); otherwise one JSON completion
  with `usage`.
- Steps: `final(text)`, `tool_call(name, arguments_dict)`, `tool_calls([(name, args), ...])`
  (several calls in one message), `http_error(status, body)` (answers that status with that body).
  A step can carry `delay` seconds before the answer (`final("x", delay=1.0)`).
- `.add(*steps)` appends steps; `.close()` stops the server (also on leaving `with`).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Step:
    """One scripted answer: text, tool calls, or an HTTP error."""

    content: str = ""
    calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    status: int = 200
    body: str = ""
    delay: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def final(text: str, delay: float = 0.0) -> Step:
    return Step(content=text, delay=delay)


def tool_call(name: str, arguments: dict[str, Any], content: str = "", delay: float = 0.0) -> Step:
    return Step(content=content, calls=((name, arguments),), delay=delay)


def tool_calls(calls: list[tuple[str, dict[str, Any]]], content: str = "", delay: float = 0.0) -> Step:
    return Step(content=content, calls=tuple(calls), delay=delay)


def http_error(status: int, body: str = '{"error": {"message": "scripted failure"}}') -> Step:
    return Step(status=status, body=body)


def _pieces(text: str, n: int = 3) -> list[str]:
    if not text:
        return []
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)]


class FakeOpenAI:
    def __init__(
        self,
        script: list[Step] | None = None,
        *,
        prompt_tokens: int = 10,
        completion_tokens: int = 5,
        default: Step | None = None,
    ) -> None:
        self.script: list[Step] = list(script or [])
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.default = default or final("done")
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.completions = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()

    def add(self, *steps: Step) -> None:
        with self._lock:
            self.script.extend(steps)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next(self, body: dict[str, Any], headers: dict[str, str]) -> Step:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            step = self.script.pop(0) if self.script else self.default
            if step.status < 400:
                self.completions += 1
            return step

    def _usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    def _message(self, step: Step) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": step.content or None}
        if step.calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{uuid.uuid4().hex[:12]}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
                for name, args in step.calls
            ]
        return message

    def _chunks(self, step: Step, model: str, include_usage: bool) -> Iterator[dict[str, Any]]:
        cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        yield chunk({"role": "assistant", "content": ""})
        for piece in _pieces(step.content):
            yield chunk({"content": piece})
        for index, call in enumerate(self._message(step).get("tool_calls", [])):
            head = {"index": index, "id": call["id"], "type": "function"}
            yield chunk(
                {"tool_calls": [{**head, "function": {"name": call["function"]["name"], "arguments": ""}}]}
            )
            for piece in _pieces(call["function"]["arguments"]):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        yield chunk({}, "tool_calls" if step.calls else "stop")
        if include_usage:
            yield {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [],
                "usage": self._usage(),
            }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send_json(self, status: int, payload: str) -> None:
                data = payload.encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                    self._send_json(404, json.dumps({"error": {"message": f"no route {self.path}"}}))
                    return
                length = int(self.headers.get("content-length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self._send_json(400, json.dumps({"error": {"message": "body is not JSON"}}))
                    return
                step = fake._next(body, {k.lower(): v for k, v in self.headers.items()})
                if step.delay:
                    time.sleep(step.delay)
                if step.status >= 400:
                    self._send_json(step.status, step.body)
                    return
                model = str(body.get("model", "fake-model"))
                if not body.get("stream"):
                    completion = {
                        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "message": fake._message(step),
                                "finish_reason": "tool_calls" if step.calls else "stop",
                            }
                        ],
                        "usage": fake._usage(),
                    }
                    self._send_json(200, json.dumps(completion))
                    return
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.end_headers()
                for chunk in fake._chunks(step, model, include_usage):
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        return Handler
