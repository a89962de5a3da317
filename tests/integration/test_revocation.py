"""Revocation that bites: revoking a key ends, within 5 s, every stream it opened (Server-Sent
Events and gRPC subscriptions through the gateway, WebSocket sessions, an agent's log stream, a
worker's Connect); a logout ends the streams of the session's access tokens. Workers only report
on their own runs, and a second connection with a worker id in use is refused."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from godel.v1 import agent_service_pb2, agent_service_pb2_grpc, event_service_pb2, event_service_pb2_grpc
from godel.v1 import worker_service_pb2 as wpb
from tests.conftest import RunningMesh
from tests.integration.auth_helpers import (
    RawWorker,
    bearer,
    create_user,
    is_end,
    login,
    revoke,
    user_key,
    user_team,
)

BITES_WITHIN = 5.0


@dataclass
class Stream:
    """A stream read on its own thread; `ended` is when it stopped, `how` why."""

    name: str
    opened: threading.Event = field(default_factory=threading.Event)
    ended: float | None = None
    how: str = ""

    def run(self, body: Callable[[Stream], str]) -> Stream:
        def target() -> None:
            try:
                self.how = body(self)
            except Exception as exc:
                self.how = f"{type(exc).__name__}: {exc}"
            self.ended = time.monotonic()

        threading.Thread(target=target, name=self.name, daemon=True).start()
        return self


def sse(godel: RunningMesh, headers: dict[str, str]) -> Callable[[Stream], str]:
    def body(stream: Stream) -> str:
        with (
            httpx.Client(base_url=godel.rest, headers=headers, timeout=httpx.Timeout(60, read=60)) as http,
            http.stream("GET", "/api/v1/events/stream", params={"pattern": "revocation:*"}) as answer,
        ):
            assert answer.status_code == 200, answer.read()
            for line in answer.iter_lines():
                if line.startswith("data:"):
                    stream.opened.set()
            return "sse ended"

    return body


def grpc_subscription(godel: RunningMesh, metadata: list[tuple[str, str]]) -> Callable[[Stream], str]:
    def body(stream: Stream) -> str:
        with godel.channel() as channel:
            call = event_service_pb2_grpc.EventServiceStub(channel).SubscribeEvents(
                event_service_pb2.SubscribeEventsRequest(pattern=["revocation:*"]), metadata=metadata
            )
            try:
                for _ in call:
                    stream.opened.set()
            except grpc.RpcError as exc:
                return f"{exc.code().name}: {exc.details()}"
        return "grpc ended"

    return body


def log_stream(godel: RunningMesh, metadata: list[tuple[str, str]], agent_id: str) -> Callable[[Stream], str]:
    def body(stream: Stream) -> str:
        with godel.channel() as channel:
            call = agent_service_pb2_grpc.AgentServiceStub(channel).StreamAgentLogs(
                agent_service_pb2.StreamAgentLogsRequest(id=agent_id), metadata=metadata
            )
            try:
                for _ in call:
                    stream.opened.set()  # the agent's first line
            except grpc.RpcError as exc:
                return f"{exc.code().name}: {exc.details()}"
        return "logs ended"

    return body


def websocket(godel: RunningMesh, headers: dict[str, str]) -> Callable[[Stream], str]:
    async def session(stream: Stream) -> str:
        async with connect(godel.mesh.events_ws_url, additional_headers=headers) as ws:
            await ws.send(
                json.dumps({"id": "s1", "type": "subscribe", "payload": {"patterns": ["revocation:*"]}})
            )
            last: dict[str, Any] = {}
            try:
                while True:
                    last = json.loads(await ws.recv())
                    if last.get("type") == "response":
                        stream.opened.set()
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
                return f"closed {code} after {last.get('type')}: {last.get('payload', {}).get('message', '')}"

    return lambda stream: asyncio.run(session(stream))


def spawn_sleeper(godel: RunningMesh, key: str | None = None) -> str:
    """A long-running agent, created with `key` (the admin's by default)."""
    with godel.http(key) as admin:
        made = admin.post(
            "/api/v1/agents",
            json={
                "task": "sleep",
                "config": {"runtime": "command", "command": ["sh", "-c", "echo started; exec sleep 120"]},
            },
        )
    assert made.status_code == 200, made.text
    return str(made.json()["id"])


def kill(godel: RunningMesh, agent_id: str) -> None:
    with godel.http() as admin:
        admin.post(f"/api/v1/agents/{agent_id}/kill", json={"reason": "test over"})


def wait_logged(
    godel: RunningMesh, role: str, text: str, ident: str, *, count: int, timeout: float = 20
) -> str:
    """Waits until the service's log has `count` lines with `text` and `ident`; returns them."""
    path = godel.mesh.logs / f"{role}-service.log"
    deadline = time.monotonic() + timeout
    while True:
        lines = [
            line for line in path.read_text(errors="replace").splitlines() if text in line and ident in line
        ]
        if len(lines) >= count:
            return "\n".join(lines)
        assert time.monotonic() < deadline, f"{role}-service did not log {count} x {text!r} for {ident}"
        time.sleep(0.2)


def assert_all_end(streams: list[Stream], since: float) -> None:
    deadline = since + BITES_WITHIN + 5
    while any(s.ended is None for s in streams) and time.monotonic() < deadline:
        time.sleep(0.05)
    late = {s.name: (None if s.ended is None else round(s.ended - since, 2)) for s in streams}
    assert all(s.ended is not None and s.ended - since <= BITES_WITHIN for s in streams), late


def test_revoking_a_key_closes_its_sse_grpc_websocket_and_log_streams(godel: RunningMesh) -> None:
    # A viewer reads the logs of agents of its user team: a developer of its team spawns one.
    viewer, developer = create_user(godel, "viewer"), create_user(godel, "developer")
    user_team(godel, viewer["id"], developer["id"])
    key = user_key(godel, viewer["id"], "viewer")
    other = godel.create_key("viewer")  # another key's streams live on
    agent_id = spawn_sleeper(godel, user_key(godel, developer["id"], "developer"))
    headers, metadata = {"x-api-key": key}, [("x-api-key", key)]
    streams = [
        Stream("sse").run(sse(godel, headers)),
        Stream("grpc").run(grpc_subscription(godel, metadata)),
        Stream("websocket").run(websocket(godel, headers)),
        Stream("logs").run(log_stream(godel, metadata, agent_id)),
    ]
    bystander = Stream("other-sse").run(sse(godel, {"x-api-key": other}))
    try:
        # Each has received something, so the server holds it open (and watches its key).
        for stream in [*streams, bystander]:
            assert stream.opened.wait(60), f"{stream.name} did not open: {stream.how}"
        assert all(s.ended is None for s in [*streams, bystander])
        revoked_at = time.monotonic()
        revoke(godel, key)
        assert_all_end(streams, revoked_at)
        by_name = {s.name: s.how for s in streams}
        assert by_name["grpc"].startswith("UNAUTHENTICATED: API key revoked"), by_name
        assert by_name["logs"].startswith("UNAUTHENTICATED: API key revoked"), by_name
        assert by_name["websocket"].startswith("closed 4401 after error: API key revoked"), by_name
        assert bystander.ended is None, "another key's stream was closed too"
    finally:
        kill(godel, agent_id)
        revoke(godel, other)
    assert_all_end([bystander], time.monotonic())


def test_logging_out_closes_the_streams_of_the_sessions_tokens(godel: RunningMesh) -> None:
    user = create_user(godel, "viewer")
    tokens = login(godel, user["username"])
    access = bearer(tokens["accessToken"])
    streams = [
        Stream("sse").run(sse(godel, access)),
        Stream("websocket").run(websocket(godel, access)),
        Stream("grpc").run(grpc_subscription(godel, list(access.items()))),
    ]
    for stream in streams:
        assert stream.opened.wait(30), f"{stream.name} did not open: {stream.how}"
    logged_out = time.monotonic()
    with httpx.Client(base_url=godel.rest, timeout=15) as anon:
        assert (
            anon.post("/api/v1/auth/logout", json={"refreshToken": tokens["refreshToken"]}).status_code == 200
        )
    assert_all_end(streams, logged_out)
    assert "session was ended" in {s.name: s.how for s in streams}["grpc"]


def test_revoking_a_workers_key_ends_its_connect_stream(godel: RunningMesh) -> None:
    key = godel.create_key("worker")
    worker = RawWorker(godel.mesh.address("agent"), key)
    try:
        welcome = worker.next()
        assert not is_end(welcome) and welcome.HasField("welcome"), welcome
        revoked_at = time.monotonic()
        revoke(godel, key)
        end = worker.until(is_end, timeout=BITES_WITHIN + 5)
        assert time.monotonic() - revoked_at <= BITES_WITHIN
        assert end[1] == grpc.StatusCode.UNAUTHENTICATED and "API key revoked" in end[2], end
    finally:
        worker.close()


def test_a_worker_id_in_use_cannot_be_taken_and_workers_report_only_their_own_runs(
    godel: RunningMesh,
) -> None:
    agent_id = spawn_sleeper(godel)
    try:
        with godel.http() as admin:
            deadline = time.monotonic() + 60
            while (
                not (agent := admin.get(f"/api/v1/agents/{agent_id}").json()).get("workerId")
                or agent.get("status") != "AGENT_STATUS_RUNNING"
            ):
                assert time.monotonic() < deadline, agent
                time.sleep(0.2)
        run_id, real_worker = agent["sessionId"], agent["workerId"]
        key = godel.create_key("worker")
        # The id of the worker that runs the agent: refused, the runs stay where they are.
        impostor = RawWorker(godel.mesh.address("agent"), key, worker_id=real_worker)
        end = impostor.until(is_end)
        impostor.close()
        assert end[1] == grpc.StatusCode.ALREADY_EXISTS and "connected already" in end[2], end
        # Under its own id, a worker's reports on another worker's run are ignored.
        other = RawWorker(godel.mesh.address("agent"), key)
        try:
            assert other.next().HasField("welcome")
            forged = f"forged-{uuid.uuid4().hex}"
            line = wpb.RunLogLine(stream="stdout", message=forged)
            other.send(wpb.ConnectRequest(logs=wpb.RunLogs(run_id=run_id, agent_id=agent_id, lines=[line])))
            other.send(
                wpb.ConnectRequest(
                    update=wpb.RunUpdate(run_id=run_id, agent_id=agent_id, state=wpb.RUN_STATE_SUCCEEDED)
                )
            )
            other.send(
                wpb.ConnectRequest(
                    usage=wpb.RunUsage(run_id=run_id, agent_id=agent_id, model="gpt-4o", prompt_tokens=10**9)
                )
            )
            ignored = wait_logged(godel, "agent", "ignored a worker's", agent_id, count=3)
            assert "update of a run assigned to another worker" in ignored
        finally:
            other.close()
        with godel.http() as admin:
            after = admin.get(f"/api/v1/agents/{agent_id}").json()
            logs = admin.get(f"/api/v1/agents/{agent_id}/logs").json().get("entries", [])
        assert after["status"] == "AGENT_STATUS_RUNNING" and after["sessionId"] == run_id, after
        assert float(after.get("budgetConsumed", 0)) == 0.0
        assert all(forged not in e.get("message", "") for e in logs)
    finally:
        kill(godel, agent_id)
