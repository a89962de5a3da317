"""API-key storage and verification (the cluster service owns users and keys)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from godel_server.cluster.models import ApiKeyRow
from godel_server.runtime.apikeys import ROLES, display_prefix, generate_key, hash_key
from godel_server.runtime.context import Caller
from godel_server.runtime.db import Database
from godel_server.runtime.errors import AuthenticationError, ValidationError
from godel_server.runtime.events import utcnow


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def create_key(
    session: AsyncSession, *, name: str, role: str, user_id: str = "", expires_in_days: int = 0
) -> tuple[ApiKeyRow, str]:
    """Stores a new key's hash; returns the row and the secret (never stored)."""
    if role not in ROLES:
        raise ValidationError.single("role", f"must be one of {', '.join(ROLES)}")
    secret = generate_key()
    now = utcnow()
    row = ApiKeyRow(
        id=str(uuid.uuid4()),
        name=name,
        key_hash=hash_key(secret),
        prefix=display_prefix(secret),
        role=role,
        user_id=user_id or name,
        created_at=now,
        expires_at=now + timedelta(days=expires_in_days) if expires_in_days > 0 else None,
        revoked=False,
    )
    session.add(row)
    await session.flush()
    return row, secret


async def count_keys(session: AsyncSession, role: str | None = None) -> int:
    stmt = select(func.count()).select_from(ApiKeyRow).where(ApiKeyRow.revoked.is_(False))
    if role:
        stmt = stmt.where(ApiKeyRow.role == role)
    return int(await session.scalar(stmt) or 0)


class LocalKeyVerifier:
    """Looks keys up by hash in the cluster service's own database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def verify(self, credential: str) -> Caller:
        digest = hash_key(credential)
        async with self._db.reader() as session:
            row = await session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == digest))
        if row is None or row.revoked:
            raise AuthenticationError("invalid API key")
        now = utcnow()
        if row.expires_at is not None and _aware(row.expires_at) < now:
            raise AuthenticationError("API key expired")
        if row.last_used_at is None or now - _aware(row.last_used_at) > timedelta(minutes=1):
            async with self._db.session() as session:
                await session.execute(
                    update(ApiKeyRow).where(ApiKeyRow.id == row.id).values(last_used_at=now)
                )
        return Caller(
            key_id=row.id,
            user_id=row.user_id,
            role=row.role,
            permissions=ROLES[row.role],
            credential=credential,
        )
