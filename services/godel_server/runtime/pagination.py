"""Keyset pages for every List RPC (AIP-158): page_size checks, and opaque page tokens that carry the
sort key of the last row of the page and are bound to the query they came from.

A listing is ordered by a `Keyset` (columns, the last one unique; ascending or descending); the next
page reads the rows after the token's key with one indexed range condition, so a page costs the
same however deep it is. `keyset_page` runs such a query; `PageRequest` is the same bookkeeping for
listings that read their rows some other way (the event store, the agent log buffer)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import KeyedColumnElement

from godel_server.runtime.errors import ValidationError

T = TypeVar("T")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# The kinds of values a key may hold (what a token can carry and give back exactly).
Kind = type[datetime] | type[int] | type[str]


def page_size(requested: int, *, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE) -> int:
    """AIP-158: 0 means the default, more than the maximum means the maximum."""
    if requested < 0:
        raise ValidationError.single("page_size", "must not be negative")
    if requested == 0:
        return default
    return min(requested, maximum)


def _fingerprint(query: Sequence[Any]) -> str:
    return hashlib.sha256(json.dumps(list(query), sort_keys=True, default=str).encode()).hexdigest()[:16]


def _not_ours() -> ValidationError:
    return ValidationError.single("page_token", "is not a token returned by this API")


def _encode(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _decode(value: Any, kind: Kind) -> Any:
    if kind is datetime:
        if not isinstance(value, str):
            raise _not_ours()
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise _not_ours() from None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _not_ours()
    return value


@dataclass(frozen=True)
class PageRequest:
    """One page of a listing: how many rows, and the key of the last row of the page before (None
    on the first page)."""

    size: int
    after: tuple[Any, ...] | None
    fingerprint: str

    @classmethod
    def of(
        cls,
        requested_size: int,
        token: str,
        query: Sequence[Any],
        kinds: Sequence[Kind],
        *,
        default_size: int = DEFAULT_PAGE_SIZE,
    ) -> PageRequest:
        """Checks page_size and page_token. `query` names the listing and its filters, so a token
        cannot be replayed against another; `kinds` are the types of the key's values."""
        size = page_size(requested_size, default=default_size)
        fingerprint = _fingerprint(query)
        if not token:
            return cls(size, None, fingerprint)
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            key, same_query = data["k"], data["q"] == fingerprint
        except (ValueError, KeyError, TypeError):
            raise _not_ours() from None
        if not same_query:
            raise ValidationError.single("page_token", "was issued for a different query (filters changed)")
        if not isinstance(key, list) or len(key) != len(kinds):
            raise _not_ours()
        return cls(size, tuple(_decode(v, k) for v, k in zip(key, kinds, strict=True)), fingerprint)

    @property
    def limit(self) -> int:
        """Rows to read: one more than the page, to know whether another page follows."""
        return self.size + 1

    def split(self, rows: Sequence[T], key: Callable[[T], tuple[Any, ...]]) -> tuple[Sequence[T], str]:
        """Rows read with `limit`: this page, and the next page's token ("" on the last page)."""
        if len(rows) <= self.size:
            return rows, ""
        last = [_encode(v) for v in key(rows[self.size - 1])]
        raw = json.dumps({"k": last, "q": self.fingerprint}, separators=(",", ":")).encode()
        return rows[: self.size], base64.urlsafe_b64encode(raw).decode().rstrip("=")


# A key column: an ORM attribute, or a table's column for a select of plain rows.
KeyColumn = InstrumentedAttribute[Any] | KeyedColumnElement[Any]


def _kind(column: KeyColumn) -> Kind:
    column_type = column.type
    python_type = getattr(column_type, "impl_instance", column_type).python_type
    if python_type not in (datetime, int, str):
        raise TypeError(f"{column} cannot be part of a page key ({python_type.__name__})")
    kind: Kind = python_type
    return kind


@dataclass(frozen=True)
class Keyset:
    """The order of a listing: `columns` (the last one unique, e.g. (created_at, id)), all
    ascending or all descending. A matching index makes every page one index range scan."""

    columns: tuple[KeyColumn, ...]
    descending: bool = False

    @property
    def kinds(self) -> tuple[Kind, ...]:
        return tuple(_kind(c) for c in self.columns)

    def key(self, row: Any) -> tuple[Any, ...]:
        return tuple(getattr(row, c.key) for c in self.columns)

    def after(self, key: tuple[Any, ...]) -> ColumnElement[bool]:
        """Rows that come after `key` in this order: (a, b) > (x, y) spelled out, which every
        database can answer from an index on (a, b)."""
        column, value = self.columns[0], key[0]
        beyond: ColumnElement[bool] = column < value if self.descending else column > value
        if len(self.columns) == 1:
            return beyond
        rest = Keyset(self.columns[1:], self.descending).after(key[1:])
        return or_(beyond, and_(column == value, rest))

    def order(self, stmt: Select[Any]) -> Select[Any]:
        return stmt.order_by(*(c.desc() if self.descending else c.asc() for c in self.columns))


async def keyset_page(
    session: AsyncSession,
    stmt: Select[Any],
    keyset: Keyset,
    *,
    page_size: int,
    page_token: str,
    query: Sequence[Any],
    default_size: int = DEFAULT_PAGE_SIZE,
    columns: bool = False,
) -> tuple[Sequence[Any], str]:
    """One page of `stmt` (a select of rows) in `keyset` order and the next page's token ("" at
    the end). `query` names the listing and its filters (see PageRequest.of). The page holds what
    `stmt` selects first (an ORM row), or with `columns` each result row whole (a select of
    columns, which skips the ORM's loading; the key's columns must be among them)."""
    page = PageRequest.of(page_size, page_token, query, keyset.kinds, default_size=default_size)
    if page.after is not None:
        stmt = stmt.where(keyset.after(page.after))
    result = await session.execute(keyset.order(stmt).limit(page.limit))
    rows = result.all() if columns else result.scalars().all()
    return page.split(rows, keyset.key)
