"""API-key storage and verification (the cluster service owns users and keys). A key belongs to a
user (its `user_id`); a key made for a mesh process without one (`godel-server keys create`) is a
service key, whose user id is its name."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from godel_server.cluster.models import ApiKeyRow, UserRow
from godel_server.cluster.users import team_ids_of
from godel_server.runtime.apikeys import ROLES, display_prefix, generate_key, hash_key
from godel_server.runtime.context import Caller
from godel_server.runtime.db import Database
from godel_server.runtime.errors import (
    AuthenticationError,
    LastAdminKeyError,
    NotFoundError,
    ValidationError,
)
from godel_server.runtime.events import utcnow
from godel_server.runtime.ids import new_id
from godel_server.runtime.pagination import Keyset, keyset_page


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def create_key(
    session: AsyncSession,
    *,
    name: str,
    role: str,
    user_id: str = "",
    expires_in_days: int = 0,
    requests_per_second: int = 0,
    secret: str | None = None,
) -> tuple[ApiKeyRow, str]:
    """Stores a new key's hash; returns the row and the secret (never stored). `secret` registers a
    key generated elsewhere (an operator's Secret) instead of a new one."""
    if role not in ROLES:
        raise ValidationError.single("role", f"must be one of {', '.join(ROLES)}")
    secret = secret or generate_key()
    now = utcnow()
    row = ApiKeyRow(
        id=new_id(),
        name=name,
        key_hash=hash_key(secret),
        prefix=display_prefix(secret),
        role=role,
        user_id=user_id or name,
        created_at=now,
        expires_at=now + timedelta(days=expires_in_days) if expires_in_days > 0 else None,
        revoked=False,
        requests_per_second=requests_per_second,
    )
    session.add(row)
    await session.flush()
    return row, secret


KEYS = Keyset((ApiKeyRow.id,))


async def list_keys(
    session: AsyncSession, *, page_size: int, page_token: str
) -> tuple[Sequence[ApiKeyRow], str]:
    """One page of the keys (revoked ones too), by id."""
    return await keyset_page(
        session, select(ApiKeyRow), KEYS, page_size=page_size, page_token=page_token, query=("api_keys",)
    )


async def count_keys(session: AsyncSession, role: str | None = None) -> int:
    stmt = select(func.count()).select_from(ApiKeyRow).where(ApiKeyRow.revoked.is_(False))
    if role:
        stmt = stmt.where(ApiKeyRow.role == role)
    return int(await session.scalar(stmt) or 0)


async def revoke_key(session: AsyncSession, key_id: str) -> ApiKeyRow:
    """Revokes a key, unless it is the last active admin key: without one nobody could manage
    keys any more (FAILED_PRECONDITION, nothing changes)."""
    row = await session.get(ApiKeyRow, key_id)
    if row is None:
        raise NotFoundError("api key", key_id)
    if row.role == "admin" and not row.revoked:
        # FOR UPDATE (PostgreSQL) serializes concurrent revocations of the last admin keys;
        # SQLite's writers are serialized by Database.session() already.
        now = utcnow()
        active_admins = (
            await session.scalars(
                select(ApiKeyRow.id)
                .where(
                    ApiKeyRow.role == "admin",
                    ApiKeyRow.revoked.is_(False),
                    or_(ApiKeyRow.expires_at.is_(None), ApiKeyRow.expires_at > now),
                )
                .with_for_update()
            )
        ).all()
        if set(active_admins) <= {row.id}:
            raise LastAdminKeyError(
                f"api key {key_id!r} is the last active admin key: revoking it would leave nobody "
                "able to manage keys; create another admin key first",
                metadata={"id": key_id},
            )
    row.revoked = True
    return row


async def verify_key(db: Database, credential: str) -> Caller:
    """The caller of an active API key whose user (if it has one) is not disabled."""
    digest = hash_key(credential)
    async with db.reader() as session:
        row = await session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == digest))
        if row is None:
            raise AuthenticationError("invalid API key")
        if row.revoked:
            raise AuthenticationError("API key revoked")
        now = utcnow()
        if row.expires_at is not None and _aware(row.expires_at) < now:
            raise AuthenticationError("API key expired")
        user = await session.get(UserRow, row.user_id)
        if user is not None and user.disabled:
            raise AuthenticationError(f"API key of user {user.username!r}, who is disabled")
        teams = (await team_ids_of(session, [row.user_id]))[row.user_id] if user else []
    if row.last_used_at is None or now - _aware(row.last_used_at) > timedelta(minutes=1):
        async with db.session() as session:
            await session.execute(update(ApiKeyRow).where(ApiKeyRow.id == row.id).values(last_used_at=now))
    return Caller(
        key_id=row.id,
        user_id=row.user_id,
        role=row.role,
        permissions=ROLES[row.role],
        credential=credential,
        username=user.username if user else "",
        teams=tuple(teams),
        expires_at=_aware(row.expires_at) if row.expires_at else None,
        requests_per_second=row.requests_per_second,
    )
