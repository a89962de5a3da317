"""SQLite connections whose statements take one trip to the connection's thread each.

aiosqlite runs every call on a sqlite3 connection in a thread of its own, and SQLAlchemy's adapter
makes three or four such calls per statement (open a cursor, execute, fetch the rows, close the
cursor). Each trip is a queue hand-off to that thread, a GIL switch and a wake-up of the event
loop, and on this project's hot paths (a CreateAgent, a batch of the event ingest) those trips,
not SQLite, were most of the CPU time (bench/README.md, "Profiles"). The cursor here does the
whole statement in one trip: execute, fetch every row, read the row count, close. Nothing else
changes: the same sqlite3 connection, thread, transactions and errors (they reach SQLAlchemy
from `execute` as before)."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import make_url

Outcome = tuple[Any, int, int | None, list[Any]]  # description, rowcount, lastrowid, rows


def _statement(connection: sqlite3.Connection, sql: str, parameters: Any, many: bool) -> Outcome:
    """Runs in the connection's thread: the whole statement, its rows fetched."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        elif parameters is None:
            cursor.execute(sql)
        else:
            cursor.execute(sql, parameters)
        rows = cursor.fetchall() if cursor.description else []
        # Read after the rows: an INSERT ... RETURNING counts its rows as they are fetched.
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class OneTripCursor:
    """The part of aiosqlite's Cursor that SQLAlchemy's adapter uses, with the statement's rows
    held here once `execute` returns."""

    arraysize = 1

    def __init__(self, connection: OneTripConnection) -> None:
        self._connection = connection
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: list[Any] = []

    async def __aenter__(self) -> OneTripCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self, sql: str, parameters: Any, many: bool) -> OneTripCursor:
        connection = self._connection
        outcome: Outcome = await connection._execute(  # type: ignore[no-untyped-call]
            _statement, connection._conn, sql, parameters, many
        )
        self.description, self.rowcount, self.lastrowid, self._rows = outcome
        return self

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> OneTripCursor:
        return await self._run(sql, parameters, False)

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> OneTripCursor:
        return await self._run(sql, parameters, True)

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        size = self.arraysize if size is None else size
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    async def fetchall(self) -> Sequence[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def close(self) -> None:
        self._rows = []


class OneTripConnection(aiosqlite.Connection):
    """aiosqlite's connection, with cursors that run a statement in one trip, and no trip at all for
    a rollback or commit with no transaction open: sqlite3 does nothing then either. The pool
    rolls back every connection it gets back, also after a commit, and a read-only session ends
    with a rollback: one trip in four of a CreateAgent was that no-op (bench/README.md)."""

    def cursor(self) -> OneTripCursor:  # type: ignore[override]
        return OneTripCursor(self)

    async def commit(self) -> None:
        if self._conn.in_transaction:
            await super().commit()

    async def rollback(self) -> None:
        # Read on this thread: SQLAlchemy awaits each call on a connection before the next, so the
        # connection's thread is not running a statement of it now.
        if self._conn.in_transaction:
            await super().rollback()


def connector(url: str) -> Callable[[], Awaitable[OneTripConnection]]:
    """The `async_creator` of an engine for this SQLite URL: the sqlite3 arguments SQLAlchemy's
    aiosqlite dialect would use for it, in a OneTripConnection."""
    args, options = SQLiteDialect_aiosqlite().create_connect_args(make_url(url))

    async def connect() -> OneTripConnection:
        connection = OneTripConnection(partial(sqlite3.connect, *args, **options), iter_chunk_size=64)
        connection._thread.daemon = True  # as SQLAlchemy does: never hold the process up at exit
        await connection
        return connection

    return connect
