"""OpenClaw notification channels: the cluster service's Notifier sends the alert's line through a
Gateway speaking the real protocol frames (tests/fakes/openclaw_gateway.py), and a channel's
request is checked field by field. tests/integration/test_openclaw.py does it with the real
Gateway and its IRC channel."""

from __future__ import annotations

from pathlib import Path

import pytest

from godel.v1 import alert_service_pb2
from godel_server.cluster.alerts.kinds import ChannelType
from godel_server.cluster.alerts.notify import Channel, Notifier
from godel_server.cluster.alerts.validation import check_openclaw_channel
from godel_server.runtime.openclaw import IDENTITY_FILE
from godel_server.runtime.validation import Violations
from tests.fakes.openclaw_gateway import FakeGateway
from tests.waits import wait_for_async

pytestmark = pytest.mark.timeout(30)


async def test_an_alert_goes_out_through_the_gateway(tmp_path: Path) -> None:
    async with FakeGateway(token="gw-token-1234") as gw:
        notifier = Notifier("cluster-1", tmp_path)
        channel = Channel("c1", "ops", ChannelType.OPENCLAW, gw.url, "gw-token-1234", "irc", "#alerts")
        notifier.deliver(channel, "[CRITICAL] Backlog firing: 3 > 0", {"ignored": "for OpenClaw"})
        await wait_for_async(lambda: len(gw.sent) == 1, 10, "the Gateway to get the send")
        await notifier.close()
    (sent,) = gw.sent
    assert sent["to"] == "#alerts" and sent["channel"] == "irc"
    assert sent["message"] == "[CRITICAL] Backlog firing: 3 > 0" and sent["idempotencyKey"]
    assert gw.connects[0]["auth"] == {"token": "gw-token-1234"}
    assert (tmp_path / IDENTITY_FILE).is_file()  # the service stays one paired device


def _problems(**fields: str) -> dict[str, list[str]]:
    v = Violations()
    check_openclaw_channel(v, alert_service_pb2.CreateNotificationChannelRequest(**fields))  # type: ignore[arg-type]
    found: dict[str, list[str]] = {}
    for item in v.items:
        found.setdefault(item.field, []).append(item.description)
    return found


def test_an_openclaw_channel_needs_a_gateway_url_a_chat_channel_and_a_target() -> None:
    assert _problems(url="ws://127.0.0.1:18789", openclaw_channel="irc", target="#alerts") == {}
    assert _problems() == {
        "url": ["is required for an OpenClaw channel (the Gateway's ws:// or wss:// URL)"],
        "openclaw_channel": ["is required"],
        "target": ["is required"],
    }
    assert _problems(url="https://gw.example", openclaw_channel="irc", target="#a") == {
        "url": ["must be the OpenClaw Gateway's ws:// or wss:// URL"]
    }
    assert _problems(url="wss://u:p@gw.example", openclaw_channel="x" * 65, target="#a") == {
        "url": ["must not carry credentials (give the Gateway's token as the secret)"],
        "openclaw_channel": ["must be at most 64 characters"],
    }
