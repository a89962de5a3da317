"""How a sub-client declares its methods once for both clients.

A method is one line in its sub-client class: the RPC, the function that builds the request from
the method's arguments (its signature and docstring are the method's), and what the RPC returns::

    class Agents(SubClient[Mode]):
        SERVICE = agent_service_pb2.DESCRIPTOR.services_by_name["AgentService"]
        get = unary("GetAgent", by_id(agent_service_pb2.GetAgentRequest), agent_pb2.Agent)

On a :class:`GodelClient` (``Agents[Sync]``) ``client.agents.get(id)`` returns the agent; on an
:class:`AsyncGodelClient` (``Agents[Async]``) it returns an awaitable of it. ``paged`` methods
return an iterator (an async iterator) that fetches pages as it is consumed, ``stream`` methods
one that follows a server stream. Each declaration is checked against the contract when the
class is made (the RPC exists, returns that message, streams or not), and a create whose request
has a ``request_id`` gets a fresh one (uuid4) unless the caller gave one, so that retrying it
(see :mod:`godel_client.retries`) cannot create twice. A call that carries its own credential in
the request (logging in, refreshing, logging out) is declared ``anonymous=True``: it is sent
without the connection's.
"""

from __future__ import annotations

import functools
import inspect
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from typing import Any, ClassVar, Generic, ParamSpec, Protocol, Self, TypeVar, overload

from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from godel_client.service import AsyncConnection, Connection, Cursor

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R", bound=Message)
Resp = TypeVar("Resp", bound=Message)
Req = TypeVar("Req", bound=Message)
Req_co = TypeVar("Req_co", bound=Message, covariant=True)


class Sync:
    """Marks a sub-client of :class:`~godel_client.GodelClient`: methods return their results."""


class Async:
    """Marks a sub-client of :class:`~godel_client.AsyncGodelClient`: methods return awaitables
    (listings and streams: async iterators)."""


Mode = TypeVar("Mode", Sync, Async)


class SubClient(Generic[Mode]):
    """The methods of one service (``SERVICE``) on a connection."""

    SERVICE: ClassVar[ServiceDescriptor]

    def __init__(self, connection: Connection | AsyncConnection) -> None:
        self._connection = connection
        self._stub = connection.stubs.of(self.SERVICE)


class _ById(Protocol[Req_co]):
    def __call__(self, id: str) -> Req_co: ...


def by_id(request: type[Req]) -> _ById[Req]:
    """The builder of a request that holds only the resource's ``id``."""

    def build(id: str) -> Req:
        return request(id=id)

    return build


def _same(response: T) -> T:
    return response


class _Method(Generic[P, T]):
    """One declared method: checked against the contract when its class is made."""

    streaming = False

    def __init__(self, rpc: str, build: Callable[P, Message], returns: type[Message]) -> None:
        self.rpc = rpc
        self.build = build
        self.returns = returns
        self.name = rpc
        self.method: MethodDescriptor | None = None
        self.fills_request_id = False

    def __set_name__(self, owner: type[SubClient[Any]], name: str) -> None:
        self.name = name
        service = owner.SERVICE
        method = service.methods_by_name.get(self.rpc)
        if method is None:
            raise TypeError(f"{owner.__name__}.{name}: {service.full_name} has no RPC {self.rpc}")
        if method.output_type.full_name != self.returns.DESCRIPTOR.full_name:
            raise TypeError(f"{owner.__name__}.{name}: {self.rpc} returns {method.output_type.full_name}")
        if method.server_streaming != self.streaming:
            raise TypeError(
                f"{owner.__name__}.{name}: {self.rpc} is {'' if method.server_streaming else 'not '}a stream"
            )
        self.method = method
        self.fills_request_id = "request_id" in method.input_type.fields_by_name

    def request(self, *args: P.args, **kwargs: P.kwargs) -> Message:
        request = self.build(*args, **kwargs)
        if self.fills_request_id and not request.request_id:  # type: ignore[attr-defined]
            request.request_id = str(uuid.uuid4())  # type: ignore[attr-defined]
        return request

    def bound(self, call: Callable[..., Any]) -> Callable[..., Any]:
        """``call`` dressed as the method: its name, the builder's docstring and parameters."""
        functools.update_wrapper(call, self.build, assigned=("__module__", "__doc__"), updated=())
        call.__name__ = call.__qualname__ = self.name
        signature = inspect.signature(self.build)
        call.__signature__ = signature.replace(return_annotation=inspect.Signature.empty)  # type: ignore[attr-defined]
        return call


class Unary(_Method[P, T]):
    def __init__(
        self,
        rpc: str,
        build: Callable[P, Message],
        returns: type[Message],
        reply: Callable[[Any], T],
        anonymous: bool,
    ) -> None:
        super().__init__(rpc, build, returns)
        self.reply = reply
        self.anonymous = anonymous

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: SubClient[Sync], owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(self, obj: SubClient[Async], owner: type[Any]) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, obj: SubClient[Any] | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        connection, rpc = obj._connection, getattr(obj._stub, self.rpc)
        if isinstance(connection, AsyncConnection):
            aio = connection

            async def call_async(*args: P.args, **kwargs: P.kwargs) -> T:
                request = self.request(*args, **kwargs)
                return self.reply(await aio.unary(rpc, request, anonymous=self.anonymous))

            return self.bound(call_async)

        def call(*args: P.args, **kwargs: P.kwargs) -> T:
            request = self.request(*args, **kwargs)
            return self.reply(connection.unary(rpc, request, anonymous=self.anonymous))

        return self.bound(call)


class _Iterating(_Method[P, T]):
    """A method whose result is iterated: an iterator on a sync sub-client, an async one on an
    async sub-client."""

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: SubClient[Sync], owner: type[Any]) -> Callable[P, Iterator[T]]: ...
    @overload
    def __get__(self, obj: SubClient[Async], owner: type[Any]) -> Callable[P, AsyncIterator[T]]: ...
    def __get__(self, obj: SubClient[Any] | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        connection, rpc = obj._connection, getattr(obj._stub, self.rpc)

        def call(*args: P.args, **kwargs: P.kwargs) -> Any:
            return self.open(connection, rpc, self.request(*args, **kwargs))

        return self.bound(call)

    def open(self, connection: Connection | AsyncConnection, rpc: Any, request: Message) -> Any:
        raise NotImplementedError


class Paged(_Iterating[P, T]):
    def __init__(
        self,
        rpc: str,
        build: Callable[P, Message],
        returns: type[Message],
        items: Callable[[Any], Iterable[T]],
    ) -> None:
        super().__init__(rpc, build, returns)
        self.items = items

    def open(self, connection: Connection | AsyncConnection, rpc: Any, request: Message) -> Any:
        return connection.pages(rpc, request, self.items)


class Stream(_Iterating[P, T]):
    streaming = True

    def __init__(
        self,
        rpc: str,
        build: Callable[P, Message],
        returns: type[Message],
        pick: Callable[[Any], T | None],
        cursor: Callable[[Any], Cursor] | None,
    ) -> None:
        super().__init__(rpc, build, returns)
        self.pick = pick
        self.cursor = cursor

    def open(self, connection: Connection | AsyncConnection, rpc: Any, request: Message) -> Any:
        cursor = self.cursor(request) if self.cursor is not None else None
        return connection.follow(rpc, request, self.pick, cursor)


@overload
def unary(
    rpc: str, build: Callable[P, Message], returns: type[R], *, anonymous: bool = False
) -> Unary[P, R]: ...
@overload
def unary(
    rpc: str,
    build: Callable[P, Message],
    returns: type[R],
    reply: Callable[[R], T],
    *,
    anonymous: bool = False,
) -> Unary[P, T]: ...
def unary(
    rpc: str,
    build: Callable[P, Message],
    returns: type[R],
    reply: Callable[[R], Any] = _same,
    *,
    anonymous: bool = False,
) -> Unary[P, Any]:
    """A unary RPC; ``reply`` turns the response into the method's result (default: as it is);
    ``anonymous``: sent without the connection's credential."""
    return Unary(rpc, build, returns, reply, anonymous)


def paged(
    rpc: str, build: Callable[P, Message], returns: type[R], items: Callable[[R], Iterable[T]]
) -> Paged[P, T]:
    """A listing RPC: the ``items`` of every page, following ``next_page_token``."""
    return Paged(rpc, build, returns, items)


@overload
def stream(rpc: str, build: Callable[P, Message], returns: type[R]) -> Stream[P, R]: ...
@overload
def stream(
    rpc: str,
    build: Callable[P, Message],
    returns: type[R],
    pick: Callable[[R], T | None],
    cursor: Callable[[Any], Cursor] | None = None,
) -> Stream[P, T]: ...
def stream(
    rpc: str,
    build: Callable[P, Message],
    returns: type[R],
    pick: Callable[[R], Any] = _same,
    cursor: Callable[[Any], Cursor] | None = None,
) -> Stream[P, Any]:
    """A server-streaming RPC: what ``pick`` takes of each message (None: skip it) until the
    stream's in-band end; with ``cursor`` a stream cut by the transport resumes where it got to."""
    return Stream(rpc, build, returns, pick, cursor)
