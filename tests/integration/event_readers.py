"""Live subscribers to a mesh's event stream that run in a thread, over gRPC and Server-Sent Events
(through Envoy), shared by the tests that check what reaches subscribers. Each hands every event
to `take`, sets `ready` at the first heartbeat (the subscription is open) and ends once `stop` is
set (checked after each item; heartbeats come every second)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import grpc
import httpx

from godel.v1 import event_pb2, event_service_pb2, event_service_pb2_grpc
from tests.conftest import RunningMesh


def grpc_subscriber(
    godel: RunningMesh,
    pattern: str,
    take: Callable[[event_pb2.Event], None],
    ready: threading.Event,
    stop: threading.Event,
    correlation_id: str = "",
    target: str | None = None,
) -> None:
    """`target`: an event-service address (default: the gateway)."""
    with godel.channel(target) as channel:
        call = event_service_pb2_grpc.EventServiceStub(channel).SubscribeEvents(
            event_service_pb2.SubscribeEventsRequest(
                pattern=[pattern], correlation_id=correlation_id, heartbeat_seconds=1
            ),
            metadata=godel.metadata(),
        )
        try:
            for item in call:
                if item.HasField("heartbeat"):
                    ready.set()
                elif item.HasField("event"):
                    take(item.event)
                if stop.is_set():
                    break
        except grpc.RpcError:
            if (
                not stop.is_set()
            ):  # the stream failed while the test still reads it (not: the mesh stopped after)
                raise
        finally:
            call.cancel()


def sse_subscriber(
    godel: RunningMesh,
    pattern: str,
    take: Callable[[dict[str, Any]], None],
    ready: threading.Event,
    stop: threading.Event,
    correlation_id: str = "",
    opened: Callable[[httpx.Response], None] = lambda response: None,
) -> None:
    """`opened` sees the response before its first line (its headers)."""
    params: dict[str, str | int] = {"pattern": pattern, "heartbeatSeconds": 1}
    if correlation_id:
        params["correlationId"] = correlation_id
    try:
        with (
            httpx.Client(
                base_url=godel.rest, headers=godel.headers(), timeout=httpx.Timeout(10, read=60)
            ) as http,
            http.stream("GET", "/api/v1/events/stream", params=params) as response,
        ):
            opened(response)
            for line in response.iter_lines():
                if line.startswith("data: "):
                    item = json.loads(line[6:])
                    if "heartbeat" in item:
                        ready.set()
                    elif "event" in item:
                        take(item["event"])
                if stop.is_set():
                    return
    except httpx.HTTPError:
        if not stop.is_set():  # the stream failed while the test still reads it (not: the mesh stopped after)
            raise
