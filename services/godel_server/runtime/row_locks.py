"""A row locked once per transaction: `locked` selects it FOR UPDATE the first time and hands back
the session's copy afterwards. While the transaction holds the lock no other writer can change the
row, so the copy loaded (fresh) under the lock is what a second SELECT would read, and that second
statement is saved. The team service's consumer locks a member's workflow or team before the
member (members.py `lock`), and the engine then needs the same row locked again for the change.
`lock_all` locks the rows a batch of events is about in one statement, and remembers which keys
have no row."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, TypeVar

from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Session, SessionTransaction
from sqlalchemy.orm.interfaces import ORMOption

Row = TypeVar("Row", bound=DeclarativeBase)

_HELD = "godel.row_locks"
# Held for a key that `lock_all` found no row for: `locked` answers None without a statement.
_ABSENT: Any = object()


def _held(session: AsyncSession) -> dict[tuple[type[Any], str], Any]:
    """The rows this session's current transaction has locked (none again in a new transaction),
    held here too: the session's identity map keeps an unchanged row only as long as something
    else refers to it."""
    sync: Session = session.sync_session
    transaction: SessionTransaction | None = sync.get_transaction()
    held = sync.info.get(_HELD)
    if held is None or held[0] is not transaction:
        held = sync.info[_HELD] = (transaction, {})
    rows: dict[tuple[type[Any], str], Any] = held[1]
    return rows


def held(session: AsyncSession, model: type[Row], key: str) -> bool:
    """True when this transaction has locked the row of `model` with primary key `key`."""
    row = _held(session).get((model, key))
    return row is not None and row is not _ABSENT and row in session.sync_session


async def locked(session: AsyncSession, model: type[Row], key: str, *options: ORMOption) -> Row | None:
    """The row of `model` with primary key `key`, locked (FOR UPDATE) and fresh; None when there is
    none. A second call in the same transaction reads no row from the database."""
    held = _held(session)
    row: Row | None = held.get((model, key))
    if row is _ABSENT:
        return None
    if row is not None and row in session.sync_session:
        return row
    row = await session.get(model, key, with_for_update=True, populate_existing=True, options=list(options))
    if row is not None:
        held[(model, key)] = row
    return row


async def lock_all(session: AsyncSession, model: type[Row], keys: Collection[str]) -> None:
    """Locks the rows of `model` with these primary keys in one SELECT ... FOR UPDATE, fresh, for
    `locked` to hand out (a batch of events about many rows). A key with no row is remembered as
    having none for the rest of the transaction: a row added for it later must be `hold`-ed."""
    held = _held(session)
    wanted = sorted({k for k in keys if (model, k) not in held})
    if not wanted:
        return
    mapper = inspect(model)
    (column,) = mapper.primary_key
    found = await session.scalars(
        select(model).where(column.in_(wanted)).with_for_update().execution_options(populate_existing=True)
    )
    for key in wanted:
        held[(model, key)] = _ABSENT
    for row in found:
        held[(model, mapper.primary_key_from_instance(row)[0])] = row


def hold(session: AsyncSession, row: DeclarativeBase) -> None:
    """Counts a row this transaction added as locked by it (no other writer can see it yet)."""
    model = type(row)
    _held(session)[(model, inspect(model).primary_key_from_instance(row)[0])] = row
