"""Inserting a mapped row with one Core INSERT instead of a unit-of-work flush.

On the hot write paths (a CreateAgent, a lifecycle transition) the ORM flush of one new row cost
more CPU than the statement it sends (bench/README.md, "Write path in process"): it sorts the
session's pending objects, collects their attribute histories and sets the row up as persistent.
A row that is only written in its transaction needs none of that. `insert_row` sends the same
INSERT with the same column values as the flush would (the columns' Python-side defaults filled in,
on the object too), in the caller's transaction; the object stays outside the session."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Insert, Table, insert, inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase


def column_values(row: DeclarativeBase) -> dict[str, Any]:
    """The values an INSERT of `row` stores, by column key. A column left None that has a
    Python-side default gets it (set on `row` as well, as a flush does); an unset autoincrement
    key, a column with a server default or a SQL-expression default is left to the database."""
    mapper = inspect(type(row))
    values: dict[str, Any] = {}
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        value = getattr(row, prop.key)
        if value is None:
            default = column.default
            if default is not None and (default.is_scalar or default.is_callable):
                value = default.arg if default.is_scalar else default.arg(None)
                setattr(row, prop.key, value)
            elif (
                default is not None  # a SQL expression: the INSERT computes it for a missing key
                or column.server_default is not None
                or (column.primary_key and column.autoincrement)
            ):
                continue
        values[column.key] = value
    return values


async def insert_row(session: AsyncSession, row: DeclarativeBase) -> None:
    """INSERTs `row` in the session's transaction, without adding it to the session. The session's
    pending changes are not flushed first (they go once, at the caller's flush or commit)."""
    with session.no_autoflush:
        await session.execute(_insert(type(row)), column_values(row))


@functools.cache
def _insert(model: type[DeclarativeBase]) -> Insert:
    """One statement object per table: SQLAlchemy memoizes its cache key on it, so its compiled
    form is found again without building and hashing a new statement per row."""
    table = inspect(model).local_table
    assert isinstance(table, Table)
    return insert(table)
