"""Newest-first keyset pages over (created_at, id) for the team service's List RPCs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from godel_server.runtime.errors import ValidationError
from godel_server.runtime.pagination import decode_token, page_size, query_fingerprint, split_page


class _Listed(Protocol):
    id: Any
    created_at: Any


R = TypeVar("R", bound=_Listed)


async def newest_first(
    session: AsyncSession,
    stmt: Select[Any],
    created_at: InstrumentedAttribute[datetime],
    id_: InstrumentedAttribute[str],
    *,
    requested_size: int,
    token: str,
    query: Sequence[Any],
) -> tuple[Sequence[R], str]:
    """One page of `stmt` ordered newest first, and the token of the next page ("" at the end).
    `query` names the filters so a token cannot be replayed against a different query."""
    size = page_size(requested_size)
    fingerprint = query_fingerprint(*query)
    cursor = decode_token(token, fingerprint)
    if cursor is not None:
        try:
            after_t, after_id = datetime.fromisoformat(cursor["t"]), str(cursor["id"])
        except (KeyError, ValueError, TypeError):
            raise ValidationError.single("page_token", "is not a token returned by this API") from None
        stmt = stmt.where(or_(created_at < after_t, and_(created_at == after_t, id_ < after_id)))
    rows: Sequence[R] = (
        await session.scalars(stmt.order_by(created_at.desc(), id_.desc()).limit(size + 1))
    ).all()
    return split_page(rows, size, lambda r: {"t": r.created_at.isoformat(), "id": r.id}, fingerprint)
