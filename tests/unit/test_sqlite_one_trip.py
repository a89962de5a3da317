"""runtime/sqlite.py: through SQLAlchemy, a SQLite statement takes one trip to aiosqlite's thread,
a rollback or commit with no transaction open takes none, and what SQLAlchemy reads back (rows,
row counts, last row ids, errors) is what plain aiosqlite gives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from godel_server.runtime.db import Database
from godel_server.runtime.sqlite import OneTripConnection

metadata = MetaData()
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(20), unique=True, nullable=False),
)


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/one-trip.db")
    async with db.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield db
    await db.close()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every function run in a connection's thread."""
    seen: list[str] = []
    original = OneTripConnection._execute

    async def counted(self: OneTripConnection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(OneTripConnection, "_execute", counted)
    return seen


async def test_each_statement_is_one_trip(database: Database, trips: list[str]) -> None:
    async with database.session() as session:
        trips.clear()
        added = await session.execute(insert(items).returning(items.c.id), [{"name": "a"}])
        assert added.scalar_one() == 1
        await session.execute(insert(items), [{"name": "b"}, {"name": "c"}])
        names = (await session.scalars(select(items.c.name).order_by(items.c.id))).all()
        assert trips == ["_statement"] * 3
    assert names == ["a", "b", "c"]
    # The pool's rollback of the connection it gets back has nothing to undo after the commit.
    assert trips[3:] == ["commit"], "a transaction adds one trip: its commit"


async def test_a_rollback_or_commit_with_nothing_open_takes_no_trip(
    database: Database, trips: list[str]
) -> None:
    async with database.reader() as session:
        assert (await session.scalars(select(items.c.name))).all() == []
    assert trips == ["_statement"], "a read ends without a trip for its rollback"
    trips.clear()
    with pytest.raises(RuntimeError):
        async with database.session() as session:
            await session.execute(insert(items).values(name="undone"))
            raise RuntimeError("the caller fails")
    assert trips == ["_statement", "rollback"], "an open transaction is rolled back"
    async with database.reader() as session:
        assert (await session.scalars(select(items.c.name))).all() == []


async def test_counts_ids_and_errors_reach_sqlalchemy(database: Database) -> None:
    async with database.session() as session:
        result = await session.execute(insert(items).values(name="x"))
        assert result.inserted_primary_key == (1,)  # type: ignore[attr-defined]
        await session.execute(insert(items), [{"name": n} for n in "pqr"])
        changed = await session.execute(
            update(items).where(items.c.name.in_(["p", "q"])).values(name=items.c.name + "!")
        )
        assert changed.rowcount == 2  # type: ignore[attr-defined]
        gone = await session.execute(delete(items).where(items.c.name.in_(["r", "x", "none"])))
        assert gone.rowcount == 2  # type: ignore[attr-defined]
    with pytest.raises(IntegrityError):
        async with database.session() as session:
            await session.execute(insert(items).values(name="s"))
            await session.execute(insert(items).values(name="p!"))
    async with database.reader() as session:
        names = (await session.scalars(select(items.c.name).order_by(items.c.id))).all()
    assert names == ["p!", "q!"], "the failed transaction was rolled back whole"
