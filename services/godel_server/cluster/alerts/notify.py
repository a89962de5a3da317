"""Notification channels (spec §4.3 NotificationChannel): a webhook gets an HTTP POST of a JSON
body (signed with HMAC-SHA256 when the channel has a secret) and an OpenClaw channel a one-line
message sent through its OpenClaw Gateway (`send` to the channel's target on its chat channel,
runtime/openclaw.py; the service's device key is kept in GODEL_HOME), both in the background and
retried a few times; an event channel gets a `system:notify` event, published by the caller in its
transaction."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from godel.v1 import alert_events_pb2, alert_pb2, autonomic_pb2, event_pb2
from godel_server.cluster.alerts.kinds import ChannelType
from godel_server.runtime.events import new_event
from godel_server.runtime.ids import new_id
from godel_server.runtime.openclaw import DeviceIdentity, GatewayError, open_gateway

log = logging.getLogger(__name__)

COMPONENT = "cluster-service"
SIGNATURE_HEADER = "X-Godel-Signature"
WEBHOOK_TIMEOUT_SECONDS = 5.0
WEBHOOK_ATTEMPTS = 3
# The channel every installation has from its first start.
EVENTS_CHANNEL = "events"


@dataclass(frozen=True)
class Channel:
    id: str
    name: str
    type: ChannelType
    url: str = ""
    secret: str = ""
    openclaw_channel: str = ""
    target: str = ""


def route(channels: Sequence[Channel], names: Sequence[str]) -> list[Channel]:
    """The channels a rule (or policy) names; every channel when it names none."""
    return [c for c in channels if not names or c.name in names]


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Notifier:
    def __init__(self, instance: str, home: Path | None = None) -> None:
        self._instance = instance
        self._home = home
        self._identity: DeviceIdentity | None = None
        # No proxy from the environment: webhooks go where their URL says.
        self._http = httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_SECONDS, trust_env=False)
        self._tasks: set[asyncio.Task[None]] = set()

    def event(
        self,
        channel: Channel,
        message: str,
        *,
        alert: alert_pb2.Alert | None = None,
        decision: autonomic_pb2.AutonomicDecision | None = None,
    ) -> event_pb2.Event:
        """The `system:notify` event of a notification to an event channel."""
        data = alert_events_pb2.NotificationSent(
            channel=channel.name, message=message, alert=alert, decision=decision
        )
        return new_event(data, partition_key=channel.id, component=COMPONENT, instance=self._instance)

    def deliver(self, channel: Channel, text: str, payload: Mapping[str, Any]) -> None:
        """Sends a notification in the background: `payload` as JSON to a webhook channel, `text`
        to an OpenClaw channel (an event channel gets its event from the caller)."""
        if channel.type == ChannelType.WEBHOOK:
            work = self._post(channel, json.dumps(payload).encode())
        elif channel.type == ChannelType.OPENCLAW:
            work = self._openclaw(channel, text)
        else:
            return
        task = asyncio.create_task(work, name=f"notify-{channel.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _device(self) -> DeviceIdentity:
        if self._identity is None:
            self._identity = (
                await asyncio.to_thread(DeviceIdentity.load_or_create, self._home)
                if self._home is not None
                else DeviceIdentity.generate()
            )
        return self._identity

    async def _openclaw(self, channel: Channel, text: str) -> None:
        params = {
            "to": channel.target,
            "message": text,
            "channel": channel.openclaw_channel,
            "idempotencyKey": new_id(),  # the same for every attempt
        }
        identity = await self._device()
        for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
            try:
                async with open_gateway(channel.url, channel.secret, identity) as gateway:
                    await gateway.request("send", params)
                return
            except GatewayError as exc:
                problem = str(exc).replace(channel.secret, "***") if channel.secret else str(exc)
            log.warning(
                "openclaw notification failed",
                extra={"channel": channel.name, "attempt": attempt, "error": problem},
            )
            await asyncio.sleep(attempt)

    async def _post(self, channel: Channel, body: bytes) -> None:
        headers = {"content-type": "application/json"}
        if channel.secret:
            headers[SIGNATURE_HEADER] = signature(channel.secret, body)
        for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
            try:
                response = await self._http.post(channel.url, content=body, headers=headers)
                if response.status_code < 500:
                    if response.status_code >= 400:
                        log.warning(
                            "webhook refused", extra={"channel": channel.name, "status": response.status_code}
                        )
                    return
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                problem = repr(exc)
            log.warning(
                "webhook failed", extra={"channel": channel.name, "attempt": attempt, "error": problem}
            )
            await asyncio.sleep(attempt)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._http.aclose()
