"""The client library itself, sync and asyncio: retries of idempotent calls on UNAVAILABLE (and only
of those), request ids on creates, credentials as metadata, login sessions refreshed when due or
refused, page iterators, subscriptions that resume after the stream drops, and the mapping of
failures onto typed errors.

Scripted fakes that fail on purpose live here; the fake mesh of tests/fakes serves the rest.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2, timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from godel.v1 import (
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
    event_pb2,
    event_service_pb2,
    event_service_pb2_grpc,
)
from godel_client import (
    AbortedError,
    AsyncGodelClient,
    AuthError,
    GodelClient,
    GodelError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnavailableError,
    UnimplementedError,
)
from godel_client.errors import make_error
from godel_client.retries import idempotent_methods, is_idempotent
from godel_client.sessions import SessionStore, StoredSession
from tests.fakes.cli import run
from tests.fakes.mesh import API_KEY, FakeMesh, serve

DROP = "drop"  # a scripted stream item: the stream is cut (UNAVAILABLE, as a vanished gateway gives)
DENY = "deny"  # a scripted stream item: the server refuses (PERMISSION_DENIED)
EXPIRE = "expire"  # a scripted stream item: the server closes it, the token expired (UNAUTHENTICATED)


# -- scripted fakes --------------------------------------------------------------------------------


def _event(sequence: int, agent_id: str = "a") -> event_service_pb2.SubscribeEventsResponse:
    event = event_pb2.Event(
        id=str(uuid.uuid4()),
        type="agent:log",
        sequence=sequence,
        metadata=event_pb2.EventMetadata(agent_id=agent_id),
    )
    return event_service_pb2.SubscribeEventsResponse(event=event)


def _beat(last_sequence: int) -> event_service_pb2.SubscribeEventsResponse:
    return event_service_pb2.SubscribeEventsResponse(
        heartbeat=event_service_pb2.Heartbeat(last_sequence=last_sequence)
    )


def _end(code: int = 0, message: str = "") -> event_service_pb2.SubscribeEventsResponse:
    return event_service_pb2.SubscribeEventsResponse(
        end=agent_service_pb2.StreamEnd(code=code, message=message)
    )


@dataclass
class Script:
    """What the scripted services answer, and what they were asked (with the metadata)."""

    # GetAgent and CreateAgent fail with UNAVAILABLE this many times before they answer;
    # PauseAgent always fails so.
    unavailable_times: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    requests: list[Any] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    # One list of items per SubscribeEvents / StreamAgentLogs call, in call order.
    streams: list[list[Any]] = field(default_factory=list)
    # When set, GetAgent refuses a bearer token not in it (UNAUTHENTICATED), as an expired one is.
    valid_tokens: set[str] | None = None
    # RefreshToken refuses every refresh token (a revoked session) when set.
    refuse_refresh: bool = False

    def called(self, name: str, request: Any, context: grpc.ServicerContext) -> int:
        self.calls[name] = self.calls.get(name, 0) + 1
        self.requests.append(request)
        self.metadata.append({k: str(v) for k, v in context.invocation_metadata()})
        return self.calls[name]

    def play(self, context: grpc.ServicerContext) -> Iterator[Any]:
        for item in self.streams.pop(0) if self.streams else []:
            if item == DROP:
                context.abort(grpc.StatusCode.UNAVAILABLE, "upstream connect error")
            if item == DENY:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, "no events for you")
            if item == EXPIRE:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "access token expired")
            yield item


class FlakyAgents(agent_service_pb2_grpc.AgentServiceServicer):
    def __init__(self, script: Script) -> None:
        self.script = script

    def _flaky(self, name: str, request: Any, context: grpc.ServicerContext) -> None:
        if self.script.called(name, request, context) <= self.script.unavailable_times:
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")

    def GetAgent(
        self, request: agent_service_pb2.GetAgentRequest, context: grpc.ServicerContext
    ) -> agent_pb2.Agent:
        self._flaky("GetAgent", request, context)
        valid = self.script.valid_tokens
        if valid is not None and self.script.metadata[-1].get("authorization") not in valid:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "access token expired")
        return agent_pb2.Agent(id=request.id)

    def CreateAgent(
        self, request: agent_service_pb2.CreateAgentRequest, context: grpc.ServicerContext
    ) -> agent_pb2.Agent:
        self._flaky("CreateAgent", request, context)
        return agent_pb2.Agent(id="new", task=request.task)

    def PauseAgent(
        self, request: agent_service_pb2.PauseAgentRequest, context: grpc.ServicerContext
    ) -> agent_pb2.Agent:
        self.script.called("PauseAgent", request, context)
        context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        raise AssertionError("abort raises")

    def StreamAgentLogs(
        self, request: agent_service_pb2.StreamAgentLogsRequest, context: grpc.ServicerContext
    ) -> Iterator[agent_service_pb2.StreamAgentLogsResponse]:
        self.script.called("StreamAgentLogs", request, context)
        yield from self.script.play(context)


class DroppingEvents(event_service_pb2_grpc.EventServiceServicer):
    def __init__(self, script: Script) -> None:
        self.script = script

    def SubscribeEvents(
        self, request: event_service_pb2.SubscribeEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[event_service_pb2.SubscribeEventsResponse]:
        self.script.called("SubscribeEvents", request, context)
        yield from self.script.play(context)


class RotatingAuth(auth_service_pb2_grpc.AuthServiceServicer):
    """RefreshToken hands out ``access-N`` / ``refresh-N`` on its N-th call."""

    def __init__(self, script: Script) -> None:
        self.script = script

    def RefreshToken(
        self, request: auth_service_pb2.RefreshTokenRequest, context: grpc.ServicerContext
    ) -> auth_service_pb2.LoginResponse:
        n = self.script.called("RefreshToken", request, context)
        if self.script.refuse_refresh:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "refresh token revoked")
        now = datetime.now(UTC)
        return auth_service_pb2.LoginResponse(
            access_token=f"access-{n}",
            refresh_token=f"refresh-{n}",
            expires_at=timestamp_pb2.Timestamp(seconds=int((now + timedelta(minutes=15)).timestamp())),
            refresh_expires_at=timestamp_pb2.Timestamp(seconds=int((now + timedelta(days=7)).timestamp())),
            user=auth_service_pb2.User(username="alice"),
        )


@contextmanager
def scripted(script: Script) -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    auth_service_pb2_grpc.add_AuthServiceServicer_to_server(RotatingAuth(script), server)  # type: ignore[abstract]
    agent_service_pb2_grpc.add_AgentServiceServicer_to_server(FlakyAgents(script), server)  # type: ignore[abstract]
    event_service_pb2_grpc.add_EventServiceServicer_to_server(DroppingEvents(script), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def address(script: Script) -> Iterator[str]:
    with scripted(script) as running:
        yield running


# -- retries ---------------------------------------------------------------------------------------


def test_the_idempotent_methods_are_read_from_the_contract() -> None:
    names = {f"{m.containing_service.name}.{m.name}" for m in idempotent_methods()}
    # Reads, public GETs and creates that carry a request_id: repeated, they do nothing twice.
    assert {"AgentService.GetAgent", "AgentService.ListAgents", "EventService.SubscribeEvents"} <= names
    assert {"SystemService.GetHealth", "AgentService.CreateAgent", "WorkflowService.CreateWorkflow"} <= names
    # Control calls, deletes, updates and creates without a request_id are never repeated.
    for never in ("AgentService.PauseAgent", "AgentService.DeleteAgent", "TeamService.StartTeam"):
        assert never not in names
    for never in ("EventService.PublishEvent", "AuthService.CreateApiKey", "AuthService.Login"):
        assert never not in names
    assert all(is_idempotent(m) for m in idempotent_methods())


def test_a_read_is_retried_on_unavailable(script: Script, address: str) -> None:
    script.unavailable_times = 2
    with GodelClient(address, API_KEY) as client:
        assert client.agents.get("a-1").id == "a-1"
    assert script.calls["GetAgent"] == 3


def test_retries_stop_at_max_attempts(script: Script, address: str) -> None:
    script.unavailable_times = 10
    with GodelClient(address, API_KEY, max_attempts=3) as client, pytest.raises(UnavailableError):
        client.agents.get("a-1")
    assert script.calls["GetAgent"] == 3
    with GodelClient(address, API_KEY, max_attempts=1) as client, pytest.raises(UnavailableError):
        client.agents.get("a-1")
    assert script.calls["GetAgent"] == 4


def test_a_create_is_retried_with_the_same_fresh_request_id(script: Script, address: str) -> None:
    script.unavailable_times = 2
    with GodelClient(address, API_KEY) as client:
        assert client.agents.create("say hi").task == "say hi"
    ids = [r.request_id for r in script.requests if isinstance(r, agent_service_pb2.CreateAgentRequest)]
    assert len(ids) == 3 and len(set(ids)) == 1
    assert uuid.UUID(ids[0]).version == 4
    with GodelClient(address, API_KEY) as client:
        client.agents.create("again", request_id="mine-1")
    assert script.requests[-1].request_id == "mine-1"


def test_a_control_call_is_never_retried(script: Script, address: str) -> None:
    with GodelClient(address, API_KEY) as client, pytest.raises(UnavailableError):
        client.agents.pause("a-1")
    assert script.calls["PauseAgent"] == 1


async def test_the_async_client_retries_alike(script: Script, address: str) -> None:
    script.unavailable_times = 2
    async with AsyncGodelClient(address, API_KEY) as client:
        assert (await client.agents.get("a-1")).id == "a-1"
        with pytest.raises(UnavailableError):
            await client.agents.pause("a-1")
    assert (script.calls["GetAgent"], script.calls["PauseAgent"]) == (3, 1)


# -- credentials -----------------------------------------------------------------------------------


def test_a_token_is_sent_as_bearer_and_a_key_as_x_api_key(script: Script, address: str) -> None:
    with GodelClient(address, token="jwt.token.here") as client:
        client.agents.get("a-1")
    assert script.metadata[-1]["authorization"] == "Bearer jwt.token.here"
    assert "x-api-key" not in script.metadata[-1]
    with GodelClient(address, "godel_sk_key") as client:
        client.agents.get("a-1")
    assert script.metadata[-1]["x-api-key"] == "godel_sk_key"
    assert "authorization" not in script.metadata[-1]


# -- login sessions --------------------------------------------------------------------------------


def _logged_in(address: str, *, expires_in: timedelta) -> SessionStore:
    """A session as `godel login` keeps it for the default profile and ``address``."""
    store = SessionStore.default()
    now = datetime.now(UTC)
    session = StoredSession(
        username="alice",
        access_token="access-0",
        expires_at=(now + expires_in).isoformat(),
        refresh_token="refresh-0",
        refresh_expires_at=(now + timedelta(days=7)).isoformat(),
    )
    store.put("default", address, session)
    return store


def _bearers(script: Script) -> list[str]:
    return [
        m.get("authorization", "")
        for m, r in zip(script.metadata, script.requests, strict=True)
        if isinstance(r, agent_service_pb2.GetAgentRequest | event_service_pb2.SubscribeEventsRequest)
    ]


def test_a_refused_access_token_is_refreshed_and_the_call_made_again(script: Script, address: str) -> None:
    store = _logged_in(address, expires_in=timedelta(minutes=10))  # not due: the server refuses it
    script.valid_tokens = {"Bearer access-1"}
    with GodelClient(address) as client:
        assert client.connection.target.session is not None
        assert client.agents.get("a-1").id == "a-1"
        assert client.token == "access-1"
    assert _bearers(script) == ["Bearer access-0", "Bearer access-1"]
    refresh = [r for r in script.requests if isinstance(r, auth_service_pb2.RefreshTokenRequest)]
    assert [r.refresh_token for r in refresh] == ["refresh-0"]
    kept = store.get("default", address)
    assert kept is not None and (kept.access_token, kept.refresh_token) == ("access-1", "refresh-1")


async def test_a_due_access_token_is_refreshed_before_the_call(script: Script, address: str) -> None:
    store = _logged_in(address, expires_in=timedelta(seconds=5))  # inside the refresh margin
    script.valid_tokens = {"Bearer access-1"}
    async with AsyncGodelClient(address) as client:
        assert (await client.agents.get("a-1")).id == "a-1"
    assert _bearers(script) == ["Bearer access-1"]  # never sent the old one
    kept = store.get("default", address)
    assert kept is not None and kept.refresh_token == "refresh-1"


def test_a_subscription_closed_for_its_token_reopens_where_it_was(script: Script, address: str) -> None:
    _logged_in(address, expires_in=timedelta(minutes=10))
    script.streams = [[_event(1), EXPIRE], [_event(2), _end()]]
    with GodelClient(address) as client:
        assert [e.sequence for e in client.events.subscribe()] == [1, 2]
    assert _bearers(script) == ["Bearer access-0", "Bearer access-1"]
    assert _subscriptions(script)[1].from_sequence == 1


def test_a_refused_refresh_ends_the_session_and_forgets_it(script: Script, address: str) -> None:
    store = _logged_in(address, expires_in=timedelta(minutes=10))
    script.valid_tokens, script.refuse_refresh = set(), True
    with GodelClient(address) as client, pytest.raises(AuthError) as ended:
        client.agents.get("a-1")
    assert str(ended.value).startswith(f"your login session on {address} has ended (refresh token revoked)")
    assert "run `godel login` again" in str(ended.value)
    assert store.get("default", address) is None
    with GodelClient(address) as client:
        assert client.connection.target.session is None  # the next client does not find it


def test_another_profile_does_not_use_the_session(
    script: Script, address: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _logged_in(address, expires_in=timedelta(minutes=10))
    assert run(capsys, "--profile", "staging", "config", "set", "endpoint", address).code == 0
    with GodelClient(profile="staging") as client:
        assert client.address == address
        assert client.connection.target.session is None and client.token is None
    with GodelClient(address.replace("127.0.0.1", "localhost")) as client:  # another address
        assert client.connection.target.session is None


def test_a_rate_limited_call_says_when_to_retry() -> None:
    wait = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1, nanos=500_000_000))
    error = make_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "rate limit", [wait], address="mesh:7373")
    assert isinstance(error, ResourceExhaustedError) and error.retry_after == 1.5
    quota = make_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota", address="mesh:7373")
    assert isinstance(quota, ResourceExhaustedError) and quota.retry_after is None


# -- paging ----------------------------------------------------------------------------------------


def test_listings_follow_every_page_lazily() -> None:
    with serve() as (mesh, address):
        agents = [mesh.add_agent(f"task {n}") for n in range(5)]
        with GodelClient(address, API_KEY) as client:
            listing = client.agents.list(page_size=2)
            assert mesh.requests_of(agent_service_pb2.ListAgentsRequest) == []  # nothing fetched yet
            first = next(listing)
            assert len(mesh.requests_of(agent_service_pb2.ListAgentsRequest)) == 1
            rest = list(listing)
    assert [first.id, *(a.id for a in rest)] == [a.id for a in agents]
    tokens = [r.page_token for r in mesh.requests_of(agent_service_pb2.ListAgentsRequest)]
    assert tokens == ["", "2", "4"]


async def test_async_listings_follow_every_page() -> None:
    with serve() as (mesh, address):
        agents = [mesh.add_agent(f"task {n}") for n in range(5)]
        async with AsyncGodelClient(address, API_KEY) as client:
            found = [agent.id async for agent in client.agents.list(page_size=2)]
    assert found == [a.id for a in agents]
    assert len(mesh.requests_of(agent_service_pb2.ListAgentsRequest)) == 3


# -- streams that drop -----------------------------------------------------------------------------


def _subscriptions(script: Script) -> list[event_service_pb2.SubscribeEventsRequest]:
    return [r for r in script.requests if isinstance(r, event_service_pb2.SubscribeEventsRequest)]


def test_a_dropped_subscription_resumes_after_the_last_event_seen(script: Script, address: str) -> None:
    script.streams = [[_beat(10), _event(11), _event(12), DROP], [_event(13), _event(14), _end()]]
    with GodelClient(address, API_KEY) as client:
        events = client.events.subscribe(["agent:*"], agent_id="a", team_id="t", heartbeat_seconds=5)
        assert [e.sequence for e in events] == [11, 12, 13, 14]  # none lost, none twice
    first, again = _subscriptions(script)
    assert not first.HasField("from_sequence")
    assert again.from_sequence == 12  # the server sends the events after it
    assert (list(again.pattern), again.agent_id, again.team_id, again.heartbeat_seconds) == (
        ["agent:*"],
        "a",
        "t",
        5,
    )


def test_a_live_subscription_dropped_before_any_event_resumes_from_where_it_started(
    script: Script, address: str
) -> None:
    script.streams = [[_beat(40), DROP], [_event(41), _end()]]
    with GodelClient(address, API_KEY) as client:
        assert [e.sequence for e in client.events.subscribe()] == [41]
    assert _subscriptions(script)[1].from_sequence == 40  # the first heartbeat: registered there


def test_a_durable_subscription_resumes_by_name(script: Script, address: str) -> None:
    script.streams = [[_beat(99), DROP], [_event(7), DROP], [_event(8), _end()]]
    with GodelClient(address, API_KEY) as client:
        assert [e.sequence for e in client.events.subscribe(subscription="deploys")] == [7, 8]
    first, by_name, after_seven = _subscriptions(script)
    assert {r.subscription_name for r in (first, by_name, after_seven)} == {"deploys"}
    assert not by_name.HasField("from_sequence")  # no event seen yet: the server's cursor knows
    assert after_seven.from_sequence == 7


async def test_an_async_subscription_resumes_alike(script: Script, address: str) -> None:
    script.streams = [[_beat(1), _event(2), DROP], [_event(3), _end()]]
    async with AsyncGodelClient(address, API_KEY) as client:
        assert [e.sequence async for e in client.events.subscribe(from_sequence=1)] == [2, 3]
    assert [r.from_sequence for r in _subscriptions(script)] == [1, 2]


def test_a_refused_subscription_is_not_resumed(script: Script, address: str) -> None:
    script.streams = [[_beat(1), DENY]]
    with GodelClient(address, API_KEY) as client, pytest.raises(PermissionDeniedError):
        list(client.events.subscribe())
    assert len(_subscriptions(script)) == 1


def test_an_error_end_is_raised_not_resumed(script: Script, address: str) -> None:
    script.streams = [[_event(1), _end(code_pb2.RESOURCE_EXHAUSTED, "too slow")]]
    with GodelClient(address, API_KEY) as client, pytest.raises(ResourceExhaustedError, match="too slow"):
        list(client.events.subscribe())
    assert len(_subscriptions(script)) == 1


def test_resuming_gives_up_when_the_mesh_stays_away(script: Script, address: str) -> None:
    script.streams = [[_event(1), DROP]]  # then every call fails at once: no stream is scripted
    script.streams += [[DROP]] * 200
    with GodelClient(address, API_KEY, max_attempts=1, reconnect_for=0.5) as client:
        seen: list[int] = []
        with pytest.raises(UnavailableError):
            seen.extend(e.sequence for e in client.events.subscribe())
    assert seen == [1]
    assert 2 <= len(_subscriptions(script)) < 200


def test_followed_logs_resume_after_the_last_line(script: Script, address: str) -> None:
    def line(sequence: int) -> agent_service_pb2.StreamAgentLogsResponse:
        return agent_service_pb2.StreamAgentLogsResponse(
            entry=agent_pb2.LogEntry(sequence=sequence, message="x")
        )

    done = agent_service_pb2.StreamAgentLogsResponse(end=agent_service_pb2.StreamEnd())
    script.streams = [[line(4), line(5), DROP], [line(6), done]]
    with GodelClient(address, API_KEY) as client:
        assert [e.sequence for e in client.agents.follow_logs("a-1", after_sequence=3)] == [4, 5, 6]
    asked = [
        r.after_sequence for r in script.requests if isinstance(r, agent_service_pb2.StreamAgentLogsRequest)
    ]
    assert asked == [3, 5]


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError),
        (grpc.StatusCode.UNAUTHENTICATED, AuthError),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDeniedError),
        (grpc.StatusCode.NOT_FOUND, NotFoundError),
        (grpc.StatusCode.ABORTED, AbortedError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ResourceExhaustedError),
        (grpc.StatusCode.UNIMPLEMENTED, UnimplementedError),
        (grpc.StatusCode.UNAVAILABLE, UnavailableError),
        (grpc.StatusCode.DATA_LOSS, GodelError),
    ],
)
def test_each_status_has_its_error_class(status: grpc.StatusCode, kind: type[GodelError]) -> None:
    error = make_error(status, "why", address="mesh:7373")
    assert type(error) is kind
    assert (error.status, error.code, error.reason) == (status, status.name, "")


def _rich(code: int, message: str, *details: Any) -> status_pb2.Status:
    packed = []
    for detail in details:
        wrapper = any_pb2.Any()
        wrapper.Pack(detail)
        packed.append(wrapper)
    return status_pb2.Status(code=code, message=message, details=packed)


def test_errors_carry_the_reason_and_the_field_violations(script: Script) -> None:
    class Refusing(agent_service_pb2_grpc.AgentServiceServicer):
        def CreateAgent(self, request: Any, context: grpc.ServicerContext) -> agent_pb2.Agent:
            info = error_details_pb2.ErrorInfo(
                reason="VALIDATION_ERROR", domain="godel.dev", metadata={"n": "2"}
            )
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field="task", description="must not be empty"
                    ),
                    error_details_pb2.BadRequest.FieldViolation(field="model", description="unknown"),
                ]
            )
            context.abort_with_status(
                rpc_status.to_status(_rich(code_pb2.INVALID_ARGUMENT, "bad request", info, bad))
            )
            raise AssertionError

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    agent_service_pb2_grpc.add_AgentServiceServicer_to_server(Refusing(), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with GodelClient(f"127.0.0.1:{port}", API_KEY) as client, pytest.raises(InvalidArgumentError) as bad:
            client.agents.create("")
    finally:
        server.stop(grace=None)
    error = bad.value
    assert (error.reason, error.code, error.message, error.metadata) == (
        "VALIDATION_ERROR",
        "VALIDATION_ERROR",
        "bad request",
        {"n": "2"},
    )
    assert [(v.field, v.description) for v in error.field_violations] == [
        ("task", "must not be empty"),
        ("model", "unknown"),
    ]


async def test_the_async_client_maps_a_400_and_a_401() -> None:
    with serve(FakeMesh()) as (_, address):
        async with AsyncGodelClient(address, API_KEY) as client:
            with pytest.raises(InvalidArgumentError) as bad:
                await client.agents.create("  ")
        assert [v.field for v in bad.value.field_violations] == ["task"]
        async with AsyncGodelClient(address, "godel_sk_wrong") as client:
            with pytest.raises(AuthError) as denied:
                await client.agents.get("a-1")
        assert denied.value.status is grpc.StatusCode.UNAUTHENTICATED
