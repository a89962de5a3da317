"""Credentials of the WebSocket at /events without putting them in URLs: a header, the
`bearer.<credential>` subprotocol (never echoed back), the login's HttpOnly cookie from an allowed
Origin only; `?token=` still works for spec §3.2's clients, and the gateway's access log drops
it. No credential used here shows up in any log of the mesh."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from tests.conftest import RunningMesh, credentials_in_logs
from tests.integration.auth_helpers import create_user, login


async def subscribed(ws: ClientConnection) -> dict[str, Any]:
    """Subscribes and returns the server's answer (the WebSocket is authenticated once it comes)."""
    await ws.send(json.dumps({"id": "s", "type": "subscribe", "payload": {"patterns": ["wscred:*"]}}))
    while True:
        doc: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 15))
        if doc["type"] in ("response", "error"):
            return doc


async def refused(godel: RunningMesh, **options: Any) -> tuple[int | None, str]:
    """The close code and the in-band error of a handshake the server refuses."""
    async with connect(godel.mesh.events_ws_url, **options) as ws:
        error = json.loads(await asyncio.wait_for(ws.recv(), 15))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 15)
    return (closed.value.rcvd.code if closed.value.rcvd else None), error["payload"]["message"]


async def test_a_subprotocol_carries_the_credential_and_is_not_echoed(godel: RunningMesh) -> None:
    key = godel.create_key("viewer")
    protocols = [Subprotocol("godel-events-v1"), Subprotocol(f"bearer.{key}")]
    async with connect(godel.mesh.events_ws_url, subprotocols=protocols) as ws:
        assert ws.subprotocol == "godel-events-v1"
        assert (await subscribed(ws))["payload"]["success"] is True
    user = create_user(godel, "viewer")
    access = login(godel, user["username"])["accessToken"]
    protocols = [Subprotocol("godel-events-v1"), Subprotocol(f"bearer.{access}")]
    async with connect(godel.mesh.events_ws_url, subprotocols=protocols) as ws:
        assert (await subscribed(ws))["payload"]["success"] is True
    code, message = await refused(
        godel, subprotocols=[Subprotocol("godel-events-v1"), Subprotocol("bearer.nope")]
    )
    assert code == 4401 and "invalid credential" in message


async def test_the_login_cookie_works_only_from_an_allowed_origin(godel: RunningMesh) -> None:
    user = create_user(godel, "viewer")
    access = login(godel, user["username"])["accessToken"]
    cookie = {"Cookie": f"godel_token={access}"}
    own = {**cookie, "Origin": godel.mesh.gateway_url}
    async with connect(godel.mesh.events_ws_url, additional_headers=own) as ws:
        assert (await subscribed(ws))["payload"]["success"] is True
    for origin in ({"Origin": "http://evil.example"}, {}):
        code, message = await refused(godel, additional_headers={**cookie, **origin})
        assert code == 4403 and "accepted only from an allowed origin" in message


async def test_query_tokens_still_work_but_never_reach_a_log(godel: RunningMesh) -> None:
    key = godel.create_key("viewer")
    user = create_user(godel, "viewer")
    tokens = login(godel, user["username"])
    marker = uuid.uuid4().hex
    async with connect(f"{godel.mesh.events_ws_url}?token={key}&probe={marker}") as ws:
        assert (await subscribed(ws))["payload"]["success"] is True
    async with connect(f"{godel.mesh.events_ws_url}?token={tokens['accessToken']}") as ws:
        assert (await subscribed(ws))["payload"]["success"] is True
    with pytest.raises(InvalidStatus):  # another path on the same port: 404, and logged too
        async with connect(f"{godel.mesh.gateway_url.replace('http', 'ws')}/eventsx?token={key}"):
            pass
    # Every log the mesh writes (services, workers, Envoy's and its access log): the requests
    # are there, the credentials are not.
    access_log = godel.mesh.logs / "gateway-access.log"
    deadline = time.monotonic() + 15
    while access_log.read_text().count('"/events"') < 2:  # flushed every second
        assert time.monotonic() < deadline, "the gateway did not log the WebSocket requests"
        await asyncio.sleep(0.2)
    assert marker not in access_log.read_text(), "the access log keeps query strings"
    secrets = (key, tokens["accessToken"], tokens["refreshToken"], godel.admin_key)
    logs = sorted(godel.mesh.logs.rglob("*.log"))
    assert len(logs) >= 6
    for path in logs:
        text = path.read_text(errors="replace")
        assert not [s for s in secrets if s in text], f"a credential is written to {path}"
    assert credentials_in_logs(godel.mesh.logs) == []
