"""Login sessions: a password login opens a session, which hands out short-lived access tokens
(JWT) and one-use refresh tokens until it expires (GODEL_REFRESH_TOKEN_SECONDS) or ends (logout,
the user disabled or given a new password). A refresh token presented a second time was copied:
the whole session is ended, so the copy and the original both stop working."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from godel_server.cluster import passwords
from godel_server.cluster.models import AuthSessionRow, RefreshTokenRow, UserRow
from godel_server.cluster.tokens import MAX_TOKEN_LENGTH, REFRESH_PREFIX, TokenSigner, new_refresh_token
from godel_server.cluster.users import find_user, team_ids_of
from godel_server.runtime.apikeys import ROLES, hash_key
from godel_server.runtime.context import Caller
from godel_server.runtime.db import Database
from godel_server.runtime.errors import AuthenticationError
from godel_server.runtime.events import utcnow
from godel_server.runtime.ids import new_id
from godel_server.runtime.limits import LoginAttempts

WRONG_LOGIN = "wrong username or password"
ENDED = "its session was ended (logged out, or a new password was set); log in again"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Tokens:
    """What a login or a refresh hands out."""

    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime
    user: UserRow
    team_ids: list[str]


class Sessions:
    def __init__(
        self, db: Database, signer: TokenSigner, refresh_seconds: int, attempts: LoginAttempts
    ) -> None:
        self._db = db
        self._signer = signer
        self._refresh_lifetime = timedelta(seconds=refresh_seconds)
        self._attempts = attempts

    async def login(self, username: str, password: str) -> Tokens:
        self._attempts.check(username)
        async with self._db.reader() as session:
            user = await find_user(session, username)
        ok = await passwords.verify_password(user.password_hash if user else None, password)
        if user is None or not ok:
            raise AuthenticationError(WRONG_LOGIN)
        if user.disabled:
            raise AuthenticationError(f"user {username!r} is disabled")
        rehashed = (
            await passwords.hash_password(password) if passwords.needs_rehash(user.password_hash) else None
        )
        now = utcnow()
        async with self._db.session() as session:
            if rehashed is not None:
                row = await session.get(UserRow, user.id)
                if row is not None:
                    row.password_hash = rehashed
            auth = AuthSessionRow(
                id=new_id(),
                user_id=user.id,
                created_at=now,
                expires_at=now + self._refresh_lifetime,
                revoked_at=None,
            )
            session.add(auth)
            await session.flush()
            return await self._issue(session, auth, user, now)

    async def refresh(self, refresh_token: str) -> Tokens:
        now = utcnow()
        async with self._db.session() as session:
            token, auth = await self._find(session, refresh_token)
            replayed = token.used_at is not None
            if replayed:
                # Used before: a copy is being replayed. End the session for both holders.
                auth.revoked_at = auth.revoked_at or now
            else:
                user = await session.get(UserRow, auth.user_id)
                if user is None or user.disabled:
                    raise AuthenticationError("the user of this session is disabled")
                self._check_open(auth, now)
                token.used_at = now
                return await self._issue(session, auth, user, now)
        raise AuthenticationError("refresh token already used: its session is ended for safety; log in again")

    async def logout(self, refresh_token: str) -> None:
        """Ends the session of a refresh token (used or not); ending it twice changes nothing."""
        async with self._db.session() as session:
            _, auth = await self._find(session, refresh_token)
            auth.revoked_at = auth.revoked_at or utcnow()

    async def verify_access(self, token: str, credential: str) -> Caller:
        """The caller of a valid access token whose session is open and whose user is enabled."""
        claims = self._signer.verify(token)
        async with self._db.reader() as session:
            auth = await session.get(AuthSessionRow, claims.session_id)
            user = await session.get(UserRow, claims.user_id)
            if auth is None or user is None or auth.user_id != user.id:
                raise AuthenticationError("invalid access token")
            if user.disabled:
                raise AuthenticationError(f"user {user.username!r} is disabled")
            if auth.revoked_at is not None:
                raise AuthenticationError(f"access token revoked: {ENDED}")
            if _aware(auth.expires_at) <= utcnow():
                raise AuthenticationError("access token expired: its session ended; log in again")
            teams = (await team_ids_of(session, [user.id]))[user.id]
        return Caller(
            key_id="",
            user_id=user.id,
            role=user.role,
            permissions=ROLES.get(user.role, ()),
            credential=credential,
            username=user.username,
            teams=tuple(teams),
            session_id=auth.id,
            expires_at=claims.expires_at,
        )

    async def _find(
        self, session: AsyncSession, refresh_token: str
    ) -> tuple[RefreshTokenRow, AuthSessionRow]:
        if not refresh_token.startswith(REFRESH_PREFIX) or len(refresh_token) > MAX_TOKEN_LENGTH:
            raise AuthenticationError("invalid refresh token")
        token = await session.scalar(
            select(RefreshTokenRow)
            .where(RefreshTokenRow.token_hash == hash_key(refresh_token))
            .with_for_update()
        )
        auth = await session.get(AuthSessionRow, token.session_id, with_for_update=True) if token else None
        if token is None or auth is None:
            raise AuthenticationError("invalid refresh token")
        return token, auth

    @staticmethod
    def _check_open(auth: AuthSessionRow, now: datetime) -> None:
        if auth.revoked_at is not None:
            raise AuthenticationError(f"refresh token revoked: {ENDED}")
        if _aware(auth.expires_at) <= now:
            raise AuthenticationError("refresh token expired: log in again")

    async def _issue(
        self, session: AsyncSession, auth: AuthSessionRow, user: UserRow, now: datetime
    ) -> Tokens:
        refresh = new_refresh_token()
        session.add(
            RefreshTokenRow(token_hash=hash_key(refresh), session_id=auth.id, created_at=now, used_at=None)
        )
        access, expires = self._signer.issue(user.id, auth.id, now)
        teams = (await team_ids_of(session, [user.id]))[user.id]
        return Tokens(
            access_token=access,
            access_expires_at=min(expires, _aware(auth.expires_at)),
            refresh_token=refresh,
            refresh_expires_at=_aware(auth.expires_at),
            user=user,
            team_ids=teams,
        )
