"""An in-process stand-in for the OpenClaw Gateway's WebSocket protocol (the frames of openclaw
2026.9.6, protocol 4), for fast unit tests; tests/integration/test_openclaw.py runs the real one.

    async with FakeGateway(token="gw-token") as gw:
        gw.url                      # ws://127.0.0.1:<port>
        gw.reply = "All done."      # what an `agent` run answers
        gw.hold = True              # runs wait until aborted (sessions.abort) instead
        gw.requests                 # every request frame after `connect`, in order
        gw.connects                 # every `connect` params (the device signature is verified)
        gw.aborted                  # the runIds sessions.abort ended
        gw.sent                     # the params of every `send`

It checks what the real Gateway checks of a client: the challenge answered first, protocol 4, the
shared token, a device whose id is the SHA-256 of its public key and whose Ed25519 signature of
the "v3" payload (with the challenge's nonce and time) verifies."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _error(code: str, message: str, detail: str = "") -> dict[str, Any]:
    return {"code": code, "message": message, **({"details": {"code": detail}} if detail else {})}


@dataclass
class FakeGateway:
    token: str = "gw-token"
    reply: str = "All done."
    usage: Mapping[str, int] = field(default_factory=lambda: {"input": 1000, "cacheRead": 200, "output": 300})
    model: str = "godel-test/gpt-4o"
    hold: bool = False
    fail_run: str = ""  # a run ends with status "error" and this message
    requests: list[dict[str, Any]] = field(default_factory=list)
    connects: list[dict[str, Any]] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    _server: Server | None = None
    _runs: dict[str, asyncio.Event] = field(default_factory=dict)
    _connections: set[ServerConnection] = field(default_factory=set)

    async def __aenter__(self) -> FakeGateway:
        self._server = await serve(self._handle, "127.0.0.1", 0)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def drop_connections(self) -> None:
        """Closes every client connection (a Gateway restart, as the client sees it)."""
        for ws in list(self._connections):
            await ws.close(1012, "service restart")

    def methods(self) -> list[str]:
        return [r["method"] for r in self.requests]

    async def _handle(self, ws: ServerConnection) -> None:
        nonce, ts = uuid.uuid4().hex, int(time.time() * 1000)
        await ws.send(
            json.dumps({"type": "event", "event": "connect.challenge", "payload": {"nonce": nonce, "ts": ts}})
        )
        try:
            first = json.loads(await ws.recv())
            problem = self._check_connect(first, nonce, ts)
            if problem is not None:
                await ws.send(
                    json.dumps({"type": "res", "id": first.get("id"), "ok": False, "error": problem})
                )
                await ws.close(1008, "connect failed")
                return
            self.connects.append(first["params"])
            hello = {
                "type": "hello-ok",
                "protocol": 4,
                "server": {"version": "fake", "connId": uuid.uuid4().hex},
                "features": {
                    "methods": ["agent", "agent.wait", "sessions.abort", "send"],
                    "events": ["agent"],
                },
                "snapshot": {},
                "auth": {"role": "operator", "scopes": first["params"]["scopes"]},
                "policy": {"maxPayload": 26214400, "maxBufferedBytes": 52428800, "tickIntervalMs": 15000},
            }
            await ws.send(json.dumps({"type": "res", "id": first["id"], "ok": True, "payload": hello}))
            self._connections.add(ws)
            async with asyncio.TaskGroup() as tasks:
                async for raw in ws:
                    frame = json.loads(raw)
                    self.requests.append(frame)
                    tasks.create_task(self._dispatch(ws, frame))
        except ConnectionClosed:
            pass
        finally:
            self._connections.discard(ws)

    def _check_connect(self, frame: dict[str, Any], nonce: str, ts: int) -> dict[str, Any] | None:
        params = frame.get("params") or {}
        if frame.get("type") != "req" or frame.get("method") != "connect":
            return _error("INVALID_REQUEST", "first frame must be a connect request")
        if not params.get("minProtocol", 99) <= 4 <= params.get("maxProtocol", 0):
            return _error("INVALID_REQUEST", "protocol mismatch")
        if (params.get("auth") or {}).get("token") != self.token:
            return _error("INVALID_REQUEST", "unauthorized: gateway token mismatch", "AUTH_TOKEN_MISMATCH")
        device = params.get("device") or {}
        raw_key = _unb64url(device.get("publicKey", ""))
        if hashlib.sha256(raw_key).hexdigest() != device.get("id"):
            return _error("INVALID_REQUEST", "device identity mismatch", "DEVICE_AUTH_DEVICE_ID_MISMATCH")
        if device.get("nonce") != nonce or device.get("signedAt") != ts:
            return _error("INVALID_REQUEST", "device nonce mismatch", "DEVICE_AUTH_NONCE_MISMATCH")
        client = params["client"]
        signed = "|".join(
            [
                "v3",
                device["id"],
                client["id"],
                client["mode"],
                params["role"],
                ",".join(params["scopes"]),
                str(ts),
                self.token,
                nonce,
                client["platform"].lower(),
                (client.get("deviceFamily") or "").lower(),
            ]
        )
        try:
            Ed25519PublicKey.from_public_bytes(raw_key).verify(
                _unb64url(device["signature"]), signed.encode()
            )
        except (InvalidSignature, ValueError):
            return _error("INVALID_REQUEST", "device signature invalid", "DEVICE_AUTH_SIGNATURE_INVALID")
        return None

    async def _dispatch(self, ws: ServerConnection, frame: dict[str, Any]) -> None:
        method, params, rid = frame.get("method"), frame.get("params") or {}, frame.get("id")

        async def respond(ok: bool, payload: Any = None, error: dict[str, Any] | None = None) -> None:
            out: dict[str, Any] = {"type": "res", "id": rid, "ok": ok}
            out.update({"payload": payload} if ok else {"error": error})
            with contextlib.suppress(ConnectionClosed):
                await ws.send(json.dumps(out))

        if method == "agent":
            await self._agent(ws, params, respond)
        elif method == "sessions.abort":
            run = self._runs.get(params.get("runId", ""))
            if run is not None:
                self.aborted.append(params["runId"])
                run.set()
            await respond(True, {"ok": True, "aborted": run is not None})
        elif method == "send":
            self.sent.append(params)
            await respond(
                True,
                {"runId": uuid.uuid4().hex, "messageId": uuid.uuid4().hex, "channel": params.get("channel")},
            )
        else:
            await respond(False, error=_error("INVALID_REQUEST", f"unknown method: {method}"))

    async def _agent(self, ws: ServerConnection, params: dict[str, Any], respond: Any) -> None:
        run_id = str(params["idempotencyKey"])  # as the real Gateway: the run id is the idempotency key
        aborted = self._runs[run_id] = asyncio.Event()
        seq = 0

        async def event(stream: str, data: dict[str, Any]) -> None:
            nonlocal seq
            seq += 1
            payload = {
                "runId": run_id,
                "seq": seq,
                "stream": stream,
                "ts": int(time.time() * 1000),
                "data": data,
            }
            with contextlib.suppress(ConnectionClosed):
                await ws.send(json.dumps({"type": "event", "event": "agent", "payload": payload}))

        await respond(
            True,
            {
                "runId": run_id,
                "sessionKey": f"agent:main:{params.get('sessionKey')}",
                "status": "accepted",
                "acceptedAt": 0,
            },
        )
        await event("lifecycle", {"phase": "start"})
        await event(
            "tool", {"phase": "start", "name": "read", "toolCallId": "t1", "args": {"path": "README.md"}}
        )
        await event("tool", {"phase": "result", "name": "read", "toolCallId": "t1", "result": "# repo"})
        if self.hold:
            await aborted.wait()
            await event("lifecycle", {"phase": "end", "aborted": True})
            await respond(
                True, {"runId": run_id, "status": "timeout", "summary": "aborted", "stopReason": "rpc"}
            )
            return
        text = ""
        for piece in (self.reply[: len(self.reply) // 2], self.reply[len(self.reply) // 2 :]):
            text += piece
            await event("assistant", {"text": text, "delta": piece})
        if self.fail_run:
            await event("lifecycle", {"phase": "error", "error": self.fail_run})
            await respond(
                False,
                {"runId": run_id, "status": "error", "summary": self.fail_run},
                _error("UNAVAILABLE", self.fail_run),
            )
            return
        await event("lifecycle", {"phase": "end"})
        result = {
            "payloads": [{"text": self.reply}],
            "meta": {"agentMeta": {"provider": "godel-test", "model": self.model, "usage": dict(self.usage)}},
        }
        await respond(True, {"runId": run_id, "status": "ok", "summary": "completed", "result": result})
