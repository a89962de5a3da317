"""One WebSocket connection of the events protocol (spec §3.2): subscriptions (several per
connection, each with its own id, patterns, filters and backpressure), commands forwarded to their
owning service, ping/pong, and in-band errors. A slow connection only ever slows itself: each
subscription buffers by its own strategy and sending waits for this socket alone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from godel.v1 import event_pb2
from godel_server.event import ws_protocol as wire
from godel_server.event.commands import CommandFailed, CommandForwarder
from godel_server.event.durable import DurableSubscriptions
from godel_server.event.hub import SubscriptionHub
from godel_server.event.options import SubscribeOptions, from_payload
from godel_server.event.streaming import Beat, subscribe
from godel_server.event.visibility import Audience
from godel_server.runtime.context import Caller
from godel_server.runtime.db import Database
from godel_server.runtime.errors import AuthenticationError, FieldViolation, GodelError, ValidationError

log = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS = 100


class Session:
    def __init__(
        self,
        ws: ServerConnection,
        caller: Caller,
        *,
        db: Database,
        hub: SubscriptionHub,
        durable: DurableSubscriptions,
        commands: CommandForwarder,
    ) -> None:
        self._ws = ws
        self._caller = caller
        self._db = db
        self._hub = hub
        self._durable = durable
        self._commands = commands
        self._subs: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._send_lock = asyncio.Lock()
        # The events this connection's subscriptions may carry, computed once (visibility.py): the
        # reach of the permission SubscribeEvents needs, which the connection was authorized with.
        self._audience = Audience.of(caller)

    @property
    def owner(self) -> str:
        return self._caller.user_id or f"key:{self._caller.key_id}"

    async def send(self, text: str) -> None:
        async with self._send_lock:
            await self._ws.send(text)

    async def run(self) -> None:
        try:
            async for raw in self._ws:
                await self._dispatch(raw)
        except ConnectionClosed:
            pass
        finally:
            await self.close()

    def revoke(self, error: AuthenticationError) -> None:
        """The credential that opened the connection no longer verifies: say so and close (4401)."""
        self._spawn(self._close_revoked(error))

    async def _close_revoked(self, error: AuthenticationError) -> None:
        with contextlib.suppress(ConnectionClosed):
            await asyncio.wait_for(
                self.send(wire.error("UNAUTHENTICATED", f"{error.message}: this connection is closed")), 2
            )
        await self._ws.close(wire.CLOSE_UNAUTHENTICATED, "unauthenticated")

    async def close(self) -> None:
        tasks = [*self._subs.values(), *self._tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._subs.clear()

    async def _dispatch(self, raw: str | bytes) -> None:
        try:
            msg = wire.parse(raw)
            if msg.type == "ping":
                await self.send(
                    wire.message(
                        "pong",
                        {"lastSequence": self._hub.last_published},
                        msg_id=msg.id,
                        metadata={"correlationId": msg.id},
                    )
                )
            elif msg.type == "subscribe":
                await self._subscribe(msg)
            elif msg.type == "unsubscribe":
                await self._unsubscribe(msg)
            elif msg.type == "command":
                self._spawn(self._command(msg))
            # "pong" answers our heartbeat pings: nothing to do.
        except wire.ProtocolError as exc:
            await self.send(
                wire.error(
                    exc.code, exc.message, correlation_id=exc.correlation_id, violations=exc.violations
                )
            )

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _subscribe(self, msg: wire.ClientMessage) -> None:
        raw_id = msg.payload.get("subscriptionId", msg.id)
        if not isinstance(raw_id, str) or not raw_id or len(raw_id) > 200:
            raise wire.ProtocolError(
                "INVALID_ARGUMENT",
                "invalid subscribe",
                correlation_id=msg.id,
                violations=[FieldViolation("payload.subscriptionId", "must be a non-empty string")],
            )
        if raw_id in self._subs:
            raise wire.ProtocolError(
                "ALREADY_EXISTS",
                f"subscription {raw_id!r} already exists on this connection",
                correlation_id=msg.id,
            )
        if len(self._subs) >= MAX_SUBSCRIPTIONS:
            raise wire.ProtocolError(
                "RESOURCE_EXHAUSTED",
                f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection",
                correlation_id=msg.id,
            )
        try:
            options = from_payload(msg.payload)
        except ValidationError as exc:
            raise wire.ProtocolError(
                "INVALID_ARGUMENT", exc.message, correlation_id=msg.id, violations=exc.violations
            ) from None
        started = asyncio.Event()
        task = asyncio.create_task(self._stream(msg.id, raw_id, options, started))
        self._subs[raw_id] = task
        task.add_done_callback(lambda _t: self._forget(raw_id, task))

    def _forget(self, sub_id: str, task: asyncio.Task[None]) -> None:
        if self._subs.get(sub_id) is task:
            del self._subs[sub_id]

    async def _stream(
        self, request_id: str, sub_id: str, options: SubscribeOptions, started: asyncio.Event
    ) -> None:
        stream = subscribe(
            self._db,
            self._hub,
            self._durable,
            options,
            owner=self.owner,
            audience=self._audience,
            name_field="payload.subscriptionName",
        )
        try:
            async for item in stream:
                if isinstance(item, Beat):
                    if not started.is_set():
                        started.set()
                        data: dict[str, Any] = {"subscriptionId": sub_id, "lastSequence": item.last_sequence}
                        if options.name:
                            data["subscriptionName"] = options.name
                        await self.send(wire.response(request_id, data))
                    else:
                        await self.send(wire.heartbeat(item.last_sequence, sub_id))
                elif isinstance(item, event_pb2.Event):
                    await self.send(wire.event_message(item, sub_id))
        except GodelError as exc:
            violations = exc.violations if isinstance(exc, ValidationError) else []
            with contextlib.suppress(ConnectionClosed):
                await self.send(wire.failed_response(request_id, exc.status.name, exc.message, violations))
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            ref = uuid.uuid4().hex[:12]
            log.exception("websocket subscription failed", extra={"subscription": sub_id, "ref": ref})
            with contextlib.suppress(ConnectionClosed):
                await self.send(
                    wire.error(
                        "INTERNAL",
                        f"subscription ended by an internal error (ref {ref})",
                        correlation_id=request_id,
                    )
                )
        finally:
            await stream.aclose()

    async def _unsubscribe(self, msg: wire.ClientMessage) -> None:
        sub_id = msg.payload.get("subscriptionId")
        if not isinstance(sub_id, str) or not sub_id:
            raise wire.ProtocolError(
                "INVALID_ARGUMENT",
                "invalid unsubscribe",
                correlation_id=msg.id,
                violations=[FieldViolation("payload.subscriptionId", "is required")],
            )
        task = self._subs.pop(sub_id, None)
        if task is None:
            await self.send(
                wire.failed_response(msg.id, "NOT_FOUND", f"no subscription {sub_id!r} on this connection")
            )
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await self.send(wire.response(msg.id, {"subscriptionId": sub_id}))

    async def _command(self, msg: wire.ClientMessage) -> None:
        try:
            data = await self._commands.run(msg.payload, self._caller.credential, request_id=msg.id)
        except CommandFailed as exc:
            reply = wire.failed_response(msg.id, exc.code, exc.message, exc.violations)
        else:
            reply = wire.response(msg.id, data)
        with contextlib.suppress(ConnectionClosed):
            await self.send(reply)
