"""Identity in the cluster service, without a server: argon2id passwords, JWT access tokens,
login sessions with one-use refresh tokens, API keys of users, and the verifier that tells them
apart (on a migrated SQLite database)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from godel.v1 import auth_service_pb2
from godel_server.cluster import passwords
from godel_server.cluster.identity import LocalVerifier
from godel_server.cluster.keys import create_key
from godel_server.cluster.models import UserRow
from godel_server.cluster.service import ClusterService
from godel_server.cluster.sessions import Sessions
from godel_server.cluster.tokens import TokenSigner
from godel_server.cluster.users import add_member, apply_update, create_team, create_user, key_role_allowed
from godel_server.runtime.db import Database
from godel_server.runtime.errors import AuthenticationError, RateLimitedError
from godel_server.runtime.limits import LoginAttempts
from tests.unit.conftest import migrated

SECRET = "s" * 48
PASSWORD = "correct horse battery staple"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with migrated(tmp_path / "cluster.db", ClusterService.migrations) as database:
        yield database


@pytest.fixture
async def alice(db: Database) -> UserRow:
    async with db.session() as session:
        return await create_user(
            session, username="alice", password_hash=await passwords.hash_password(PASSWORD), role="developer"
        )


def sessions(db: Database, *, logins_per_minute: int = 100, access_seconds: int = 900) -> Sessions:
    return Sessions(db, TokenSigner(SECRET, access_seconds), 3600, LoginAttempts(logins_per_minute))


async def test_passwords_are_argon2id_and_checked_in_constant_work() -> None:
    hashed = await passwords.hash_password(PASSWORD)
    assert hashed.startswith("$argon2id$") and PASSWORD not in hashed
    assert await passwords.verify_password(hashed, PASSWORD)
    assert not await passwords.verify_password(hashed, PASSWORD + "!")
    assert not await passwords.verify_password(None, PASSWORD)  # unknown user: a dummy hash is checked
    assert not await passwords.verify_password("not a hash", PASSWORD)


def test_access_tokens_expire_and_need_our_secret() -> None:
    signer = TokenSigner(SECRET, 60)
    now = datetime.now(UTC)
    token, expires = signer.issue("u1", "s1", now)
    claims = signer.verify(token)
    assert (claims.user_id, claims.session_id) == ("u1", "s1")
    assert expires == claims.expires_at and timedelta(seconds=59) <= expires - now <= timedelta(seconds=60)
    old, _ = signer.issue("u1", "s1", now - timedelta(minutes=5))
    with pytest.raises(AuthenticationError, match="access token expired: get a new one"):
        signer.verify(old)
    with pytest.raises(AuthenticationError, match="invalid access token"):
        TokenSigner("t" * 48, 60).verify(token)
    forged = jwt.encode({"sub": "u1", "exp": int(expires.timestamp())}, SECRET, algorithm="HS256")
    with pytest.raises(AuthenticationError, match="invalid access token"):  # no sid, iss, aud
        signer.verify(forged)
    unsigned = jwt.encode(jwt.decode(token, options={"verify_signature": False}), "", algorithm="none")
    with pytest.raises(AuthenticationError, match="invalid access token"):
        signer.verify(unsigned)


async def test_login_refresh_replay_and_logout(db: Database, alice: UserRow) -> None:
    manager = sessions(db)
    verifier = LocalVerifier(db, manager)
    with pytest.raises(AuthenticationError, match="wrong username or password"):
        await manager.login("alice", "wrong password!!")
    with pytest.raises(AuthenticationError, match="wrong username or password"):
        await manager.login("bob", PASSWORD)
    first = await manager.login("alice", PASSWORD)
    caller = await verifier.verify(first.access_token)
    assert (caller.user_id, caller.username, caller.role) == (alice.id, "alice", "developer")
    assert caller.session_id and not caller.key_id and caller.credential_id.startswith("session:")

    second = await manager.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    await verifier.verify(second.access_token)
    with pytest.raises(AuthenticationError, match="already used"):
        await manager.refresh(first.refresh_token)  # a replay ends the session ...
    for token in (second.access_token, first.access_token):  # ... for every token of it
        with pytest.raises(AuthenticationError, match="session was ended"):
            await verifier.verify(token)
    with pytest.raises(AuthenticationError, match="refresh token revoked"):
        await manager.refresh(second.refresh_token)

    third = await manager.login("alice", PASSWORD)
    await manager.logout(third.refresh_token)
    await manager.logout(third.refresh_token)  # twice: nothing more happens
    with pytest.raises(AuthenticationError, match="session was ended"):
        await verifier.verify(third.access_token)
    with pytest.raises(AuthenticationError, match="invalid refresh token"):
        await manager.logout("godel_rt_unknown")
    with pytest.raises(AuthenticationError, match="not a credential"):
        await verifier.verify(third.refresh_token)


async def test_disabling_a_user_ends_sessions_and_keys(db: Database, alice: UserRow) -> None:
    manager = sessions(db)
    verifier = LocalVerifier(db, manager)
    tokens = await manager.login("alice", PASSWORD)
    async with db.session() as session:
        _, secret = await create_key(session, name="k", role="viewer", user_id=alice.id)
        team = await create_team(session, "platform", [alice.id])
        await add_member(session, team.id, alice.id)  # a member already: nothing changes
    key_caller = await verifier.verify(secret)
    assert key_caller.teams == (team.id,) and key_caller.username == "alice"
    async with db.session() as session:
        row = await session.get(UserRow, alice.id)
        assert row is not None
        await apply_update(session, row, ["disabled"], auth_service_pb2.User(disabled=True), "")
    with pytest.raises(AuthenticationError, match="disabled"):
        await verifier.verify(secret)
    with pytest.raises(AuthenticationError, match="user 'alice' is disabled"):
        await verifier.verify(tokens.access_token)
    with pytest.raises(AuthenticationError, match="the user of this session is disabled"):
        await manager.refresh(tokens.refresh_token)
    with pytest.raises(AuthenticationError, match="is disabled"):
        await manager.login("alice", PASSWORD)


async def test_logins_per_username_are_limited(db: Database, alice: UserRow) -> None:
    manager = sessions(db, logins_per_minute=2)
    await manager.login("alice", PASSWORD)
    await manager.login("alice", PASSWORD)
    with pytest.raises(RateLimitedError) as limited:
        await manager.login("alice", PASSWORD)
    assert 0 < limited.value.retry_after <= 60


def test_a_keys_role_may_not_exceed_its_users() -> None:
    assert key_role_allowed("admin", "worker") and key_role_allowed("admin", "admin")
    assert key_role_allowed("developer", "viewer") and key_role_allowed("developer", "developer")
    assert not key_role_allowed("developer", "operator") and not key_role_allowed("operator", "worker")
    assert not key_role_allowed("viewer", "nobody")
