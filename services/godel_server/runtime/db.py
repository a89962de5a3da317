"""The one DB session factory: async SQLAlchemy on asyncpg (PostgreSQL) or aiosqlite (embedded)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, InvalidatePoolError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import ORMExecuteState, Session

from godel_server.runtime import tracing
from godel_server.runtime.sqlite import connector as sqlite_connector
from godel_server.runtime.text import dumps_storable, loads_json

T = TypeVar("T")

# The database cannot be reached (down, restarting, network): a later try will work, so a record
# that failed with one of these is retried, never quarantined or dropped.
DB_UNAVAILABLE = (OperationalError, InterfaceError, OSError, TimeoutError)


def unreachable(exc: BaseException) -> bool:
    """Whether an error says the database could not be reached (a later try will work): it could not
    connect, or the connection broke under the statement (a server restart; asyncpg may then raise
    an InternalError, which SQLAlchemy marks `connection_invalidated`)."""
    return isinstance(exc, DB_UNAVAILABLE) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


def driver_message(exc: BaseException, limit: int = 200) -> str:
    """What the driver said of a database error, without the statement and its parameters (for logs)."""
    return str(getattr(exc, "orig", None) or exc)[:limit]


# A pooled PostgreSQL connection idle for longer than this is pinged before it is handed out, so one
# the server closed meanwhile (a restart, an idle timeout) is replaced instead of failing a request.
# SQLAlchemy's pool_pre_ping pings on every checkout, and asyncpg's ping is three round trips (BEGIN,
# a query, ROLLBACK): under load that tripled the trips of a one-query read. A connection used a
# moment ago needs no ping; if the server went away within that moment, the statement fails as it
# would have with a ping, and the pool drops every connection older than that failure.
PING_IDLE_AFTER = 1.0
_IDLE_SINCE = "godel_idle_since"


def _ping_when_idle(dialect: Dialect, idle_after: float) -> dict[str, Callable[..., None]]:
    """Pool listeners (by event name) that ping a connection idle for longer than `idle_after` s."""

    def mark_idle(_dbapi_connection: Any, record: Any, *_: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is not None and time.monotonic() - idle_since < idle_after:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool replaces this connection and every one older (two attempts, then it raises).
            raise InvalidatePoolError(f"a pooled connection failed its ping: {exc!r}") from exc

    return {"connect": mark_idle, "checkin": mark_idle, "checkout": checkout}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class ReadOnlySessionError(RuntimeError):
    """A write in a session from `Database.reader()`."""


class ReadOnlySession(Session):
    """The sessions of `Database.reader()`: they refuse to write (on PostgreSQL they run outside a
    transaction block, where a write would commit at once)."""


@event.listens_for(ReadOnlySession, "do_orm_execute")
def _no_write_statement(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        raise ReadOnlySessionError("a reader session does not write: use Database.session()")


@event.listens_for(ReadOnlySession, "before_flush")
def _no_flush(session: Session, *_: Any) -> None:
    raise ReadOnlySessionError("a reader session does not write: use Database.session()")


class Database:
    """Owns one service's engine; `session()` is a unit of work that commits on success."""

    def __init__(self, url: str, *, echo: bool = False, ping_idle_after: float = PING_IDLE_AFTER) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # JSON columns never get a NUL escape (PostgreSQL's JSONB refuses it; see runtime/text.py).
        kwargs: dict[str, Any] = {
            "echo": echo,
            "json_serializer": dumps_storable,
            "json_deserializer": loads_json,
        }
        if self.is_sqlite:
            database = make_url(url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            # One trip to aiosqlite's thread per statement instead of three or four (runtime/sqlite.py).
            kwargs["async_creator"] = sqlite_connector(url)
        else:
            kwargs.update(pool_size=10, max_overflow=20)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            for name, listener in _ping_when_idle(self.engine.dialect, ping_idle_after).items():
                event.listen(self.engine.sync_engine, name, listener)
        tracing.trace_engine(self.engine)  # statements as spans of the request's trace (tracing on)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # A read needs no transaction on PostgreSQL: at READ COMMITTED each statement sees what was
        # committed when it began, in a transaction block or not. Without one, a one-query read is
        # one round trip instead of three (BEGIN, the query, ROLLBACK). Such a session must never
        # write (it would commit at once), so readers refuse to, on SQLite as well.
        self._readers = async_sessionmaker(
            self.engine if self.is_sqlite else self.engine.execution_options(isolation_level="AUTOCOMMIT"),
            expire_on_commit=False,
            autoflush=False,
            sync_session_class=ReadOnlySession,
        )
        # SQLite has one writer at a time; queueing writers here is much faster than letting them
        # collide and back off in SQLite's busy handler (which gave p99s of ~0.5 s under load).
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.is_sqlite else None

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """One transaction: commits when the block ends normally, rolls back on error."""
        if self._write_lock is None:
            async with self.sessions() as session, session.begin():
                yield session
            return
        async with self._write_lock, self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[AsyncSession]:
        """A read-only session: it never commits, and on PostgreSQL each statement runs on its own
        (no transaction block; a write raises ReadOnlySessionError)."""
        async with self._readers() as session:
            yield session

    async def create_once(
        self,
        request_id: str,
        find: Callable[[AsyncSession], Awaitable[T | None]],
        create: Callable[[AsyncSession], Awaitable[T]],
    ) -> T:
        """Runs `create` in a transaction, unless a request with the same (non-empty) request_id
        already created what it creates (`find` looks it up): a repeated request gets that back.
        When two such requests race, the loser's unique-key violation turns into the winner's."""
        if request_id:
            async with self.reader() as session:
                found = await find(session)
            if found is not None:
                return found
        try:
            async with self.session() as session:
                return await create(session)
        except IntegrityError:
            if not request_id:
                raise
            async with self.reader() as session:
                found = await find(session)
            if found is None:
                raise
            return found

    async def ping(self) -> float:
        """Round-trip time of `SELECT 1` in milliseconds; raises when the database is down."""
        started = time.perf_counter()
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return (time.perf_counter() - started) * 1000

    async def close(self) -> None:
        await self.engine.dispose()


async def ensure_postgres_database(url: str) -> None:
    """Creates the database named in a PostgreSQL URL when it does not exist (database-per-service)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql") or not parsed.database:
        return
    admin = create_async_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    exists = text("SELECT 1 FROM pg_database WHERE datname = :name")
    try:
        async with admin.connect() as conn:
            if await conn.scalar(exists, {"name": parsed.database}):
                return
            try:
                await conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
            except DBAPIError:
                # Replicas starting at once race to create it: losing that race is fine.
                if not await conn.scalar(exists, {"name": parsed.database}):
                    raise
    finally:
        await admin.dispose()
