"""GodelClient and AsyncGodelClient: one connection to a Godel mesh with a sub-client per service.

``client.agents``, ``client.teams``, ``client.workflows``, ``client.tasks``, ``client.budgets``,
``client.intent``, ``client.events``, ``client.auth`` (logins, whoami), ``client.users`` (users and
user teams), ``client.keys``, ``client.clusters``, ``client.alerts``, ``client.autonomic``,
``client.system`` and ``client.dead_letters`` hold the friendly methods (one module each, declared
once for both clients);
``client.connection.stubs`` the raw generated stubs. Every method raises
:class:`godel_client.errors.GodelError` (a subclass of it) on failure, never a bare
``grpc.RpcError``. Listing methods return lazy iterators that follow ``next_page_token``.
"""

from __future__ import annotations

from types import TracebackType
from typing import Generic, Unpack

from godel_client.agents import Agents
from godel_client.alerts import Alerts
from godel_client.auth import Auth
from godel_client.autonomic import Autonomic
from godel_client.budgets import Budgets
from godel_client.clusters import Clusters
from godel_client.dead_letters import DeadLetters
from godel_client.events import Events
from godel_client.intent import Intent
from godel_client.keys import Keys
from godel_client.methods import Async, Mode, Sync
from godel_client.service import AsyncConnection, Connection, Settings
from godel_client.system import System
from godel_client.tasks import Tasks
from godel_client.teams import Teams
from godel_client.users import Users
from godel_client.workflows import Workflows


class _Client(Generic[Mode]):
    """The sub-clients on one connection."""

    def __init__(self, connection: Connection | AsyncConnection) -> None:
        self.agents: Agents[Mode] = Agents(connection)
        self.teams: Teams[Mode] = Teams(connection)
        self.workflows: Workflows[Mode] = Workflows(connection)
        self.tasks: Tasks[Mode] = Tasks(connection)
        self.budgets: Budgets[Mode] = Budgets(connection)
        self.intent: Intent[Mode] = Intent(connection)
        self.events: Events[Mode] = Events(connection)
        self.auth: Auth[Mode] = Auth(connection)
        self.users: Users[Mode] = Users(connection)
        self.keys: Keys[Mode] = Keys(connection)
        self.clusters: Clusters[Mode] = Clusters(connection)
        self.alerts: Alerts[Mode] = Alerts(connection)
        self.autonomic: Autonomic[Mode] = Autonomic(connection)
        self.system: System[Mode] = System(connection)
        self.dead_letters: DeadLetters[Mode] = DeadLetters(connection)
        self._target = connection

    @property
    def address(self) -> str:
        return self._target.address

    @property
    def api_key(self) -> str | None:
        return self._target.api_key

    @property
    def token(self) -> str | None:
        """The token sent: the one given, or the current access token of a login session."""
        return self._target.token


class GodelClient(_Client[Sync]):
    """A blocking connection to a Godel mesh (its Envoy gateway speaks plain gRPC, or gRPC over TLS).

    Where and as whom (see :mod:`godel_client.credentials`): ``address``, else ``$GODEL_ADDR``,
    else the profile's endpoint, else the local ``make up`` gateway; ``token`` (a JWT, sent as
    ``authorization: Bearer``) or ``api_key`` (sent as ``x-api-key``), else ``$GODEL_API_KEY``,
    else the login session ``godel login`` keeps for the profile and address (its access token
    refreshed as it expires), else the profile's credential (``profile``, else
    ``$GODEL_PROFILE``, else the default one of the config file), else the local admin key.

    ``https://host:port`` connects over TLS, verified with ``tls_ca`` (a PEM file; else
    ``$GODEL_TLS_CA``, else the profile's, else the system's CAs), presenting the client
    certificate ``tls_cert``/``tls_key`` when given (or in ``$GODEL_TLS_CERT``/``$GODEL_TLS_KEY``
    or the profile).

    ``timeout`` is the deadline of each unary call in seconds (streams have none). Idempotent calls
    (reads, and creates, which always carry a ``request_id``) are retried on UNAVAILABLE with
    jittered backoff, up to ``max_attempts`` attempts (1: never). A followed stream cut by the
    network resumes where it got to for up to ``reconnect_for`` seconds. ``credentials``
    (``grpc.ssl_channel_credentials(...)``) are the channel's as given, instead of the TLS files.

    >>> with GodelClient() as godel:
    ...     agent = godel.agents.create("say hi", command=["echo", "{task}"])
    ...     for event in godel.events.subscribe(["agent:*"], agent_id=agent.id, from_sequence=0):
    ...         print(event.type)
    """

    def __init__(
        self, address: str | None = None, api_key: str | None = None, **settings: Unpack[Settings]
    ) -> None:
        self.connection = Connection(address, api_key, **settings)
        super().__init__(self.connection)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> GodelClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncGodelClient(_Client[Async]):
    """An asyncio connection to a Godel mesh: the same sub-clients and arguments as
    :class:`GodelClient`, whose methods are awaited and whose listings and streams are iterated
    with ``async for``.

    >>> async with AsyncGodelClient() as godel:
    ...     agent = await godel.agents.create("say hi", command=["echo", "{task}"])
    ...     async for event in godel.events.subscribe(["agent:*"], agent_id=agent.id, from_sequence=0):
    ...         print(event.type)
    """

    def __init__(
        self, address: str | None = None, api_key: str | None = None, **settings: Unpack[Settings]
    ) -> None:
        self.connection = AsyncConnection(address, api_key, **settings)
        super().__init__(self.connection)

    async def close(self) -> None:
        await self.connection.close()

    async def __aenter__(self) -> AsyncGodelClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
