"""Users and user teams (spec §3.4, §6.2): who may log in, with which role, and which users share
objects through permissions of scope `team`. Storage and rules; the servicer only maps."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from godel.v1 import auth_service_pb2
from godel_server.cluster.models import AuthSessionRow, UserRow, UserTeamMemberRow, UserTeamRow
from godel_server.runtime.apikeys import ROLES
from godel_server.runtime.errors import AlreadyExistsError, NotFoundError
from godel_server.runtime.events import set_times, utcnow
from godel_server.runtime.ids import new_id
from godel_server.runtime.pagination import Keyset, keyset_page
from godel_server.runtime.validation import Violations

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# Roles a person can have, least to most; `worker` is for worker processes' keys only.
USER_ROLES = ("viewer", "developer", "operator", "admin")
MAX_TEAM_NAME = 100
MAX_DISPLAY_NAME = 255
MAX_TEAM_MEMBERS_AT_ONCE = 1000


def check_username(v: Violations, field: str, username: str) -> None:
    if not USERNAME_RE.match(username):
        v.add(
            field, "must be 1-64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
        )


def check_user_role(v: Violations, field: str, role: str) -> None:
    if role not in USER_ROLES:
        v.add(field, f"must be one of {', '.join(USER_ROLES)}")


def key_role_allowed(user_role: str, key_role: str) -> bool:
    """A key acts with its own role, which may not exceed its user's: an admin's keys may have any
    role (worker keys included), another user's keys that role or a lesser one."""
    if user_role == "admin":
        return key_role in ROLES
    if user_role not in USER_ROLES or key_role not in USER_ROLES:
        return False
    return USER_ROLES.index(key_role) <= USER_ROLES.index(user_role)


def user_to_proto(row: UserRow, team_ids: Sequence[str] = ()) -> auth_service_pb2.User:
    user = auth_service_pb2.User(
        id=row.id,
        username=row.username,
        display_name=row.display_name or "",
        role=row.role,
        disabled=row.disabled,
        team_ids=list(team_ids),
    )
    set_times(user, created_at=row.created_at, updated_at=row.updated_at)
    return user


def team_to_proto(row: UserTeamRow, member_ids: Sequence[str]) -> auth_service_pb2.UserTeam:
    team = auth_service_pb2.UserTeam(id=row.id, name=row.name, member_ids=list(member_ids))
    set_times(team, created_at=row.created_at)
    return team


# -- users ---------------------------------------------------------------------------------------


async def create_user(
    session: AsyncSession, *, username: str, password_hash: str, role: str, display_name: str = ""
) -> UserRow:
    if await find_user(session, username) is not None:
        raise AlreadyExistsError(f"user {username!r} already exists", metadata={"username": username})
    now = utcnow()
    row = UserRow(
        id=new_id(),
        username=username,
        display_name=display_name or None,
        password_hash=password_hash,
        role=role,
        disabled=False,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        raise AlreadyExistsError(
            f"user {username!r} already exists", metadata={"username": username}
        ) from None
    return row


async def find_user(session: AsyncSession, username: str) -> UserRow | None:
    return await session.scalar(select(UserRow).where(UserRow.username == username))


async def get_user(session: AsyncSession, user_id: str, *, for_update: bool = False) -> UserRow:
    row = await session.get(UserRow, user_id, with_for_update=for_update)
    if row is None:
        raise NotFoundError("user", user_id)
    return row


USERS = Keyset((UserRow.id,))
TEAMS = Keyset((UserTeamRow.id,))


async def list_users(
    session: AsyncSession, *, page_size: int, page_token: str, username: str = ""
) -> tuple[Sequence[UserRow], str]:
    """One page of the users (by id), and the next page's token."""
    stmt = select(UserRow)
    if username:
        stmt = stmt.where(UserRow.username == username)
    return await keyset_page(
        session, stmt, USERS, page_size=page_size, page_token=page_token, query=("users", username)
    )


async def end_sessions(session: AsyncSession, user_id: str, now: datetime) -> None:
    """Revokes every open login session of a user (their refresh and access tokens stop working)."""
    await session.execute(
        update(AuthSessionRow)
        .where(AuthSessionRow.user_id == user_id, AuthSessionRow.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def apply_update(
    session: AsyncSession, row: UserRow, paths: Sequence[str], user: auth_service_pb2.User, password_hash: str
) -> None:
    """Sets the fields named in `paths` (validated); disabling a user or setting a new password
    ends their sessions."""
    now = utcnow()
    if "display_name" in paths:
        row.display_name = user.display_name or None
    if "role" in paths:
        row.role = user.role
    if "disabled" in paths:
        row.disabled = user.disabled
    if "password" in paths:
        row.password_hash = password_hash
    if ("disabled" in paths and user.disabled) or "password" in paths:
        await end_sessions(session, row.id, now)
    row.updated_at = now


# -- user teams ----------------------------------------------------------------------------------


async def team_ids_of(session: AsyncSession, user_ids: Sequence[str]) -> dict[str, list[str]]:
    """The user teams of each user (ordered by team id)."""
    return await _membership(session, UserTeamMemberRow.user_id, UserTeamMemberRow.team_id, user_ids)


async def members_of(session: AsyncSession, team_ids: Sequence[str]) -> dict[str, list[str]]:
    """The members of each team (ordered by user id)."""
    return await _membership(session, UserTeamMemberRow.team_id, UserTeamMemberRow.user_id, team_ids)


async def _membership(
    session: AsyncSession,
    by: InstrumentedAttribute[str],
    other: InstrumentedAttribute[str],
    ids: Sequence[str],
) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    if ids:
        rows = await session.execute(select(by, other).where(by.in_(list(ids))).order_by(other))
        for key, value in rows:
            found[key].append(value)
    return found


async def get_team(session: AsyncSession, team_id: str) -> UserTeamRow:
    row = await session.get(UserTeamRow, team_id)
    if row is None:
        raise NotFoundError("user team", team_id)
    return row


async def create_team(session: AsyncSession, name: str, member_ids: Sequence[str]) -> UserTeamRow:
    if await session.scalar(select(UserTeamRow.id).where(UserTeamRow.name == name)) is not None:
        raise AlreadyExistsError(f"user team {name!r} already exists", metadata={"name": name})
    for user_id in member_ids:
        await get_user(session, user_id)
    now = utcnow()
    row = UserTeamRow(id=new_id(), name=name, created_at=now)
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        raise AlreadyExistsError(f"user team {name!r} already exists", metadata={"name": name}) from None
    for user_id in dict.fromkeys(member_ids):
        session.add(UserTeamMemberRow(team_id=row.id, user_id=user_id, created_at=now))
    await session.flush()
    return row


async def list_teams(
    session: AsyncSession, *, page_size: int, page_token: str
) -> tuple[Sequence[UserTeamRow], str]:
    """One page of the user teams (by id), and the next page's token."""
    return await keyset_page(
        session, select(UserTeamRow), TEAMS, page_size=page_size, page_token=page_token, query=("user_teams",)
    )


async def add_member(session: AsyncSession, team_id: str, user_id: str) -> UserTeamRow:
    """Adds a user to a team (nothing changes when they are a member already)."""
    team = await get_team(session, team_id)
    await get_user(session, user_id)
    if await session.get(UserTeamMemberRow, (team_id, user_id)) is None:
        session.add(UserTeamMemberRow(team_id=team_id, user_id=user_id, created_at=utcnow()))
        await session.flush()
    return team


async def remove_member(session: AsyncSession, team_id: str, user_id: str) -> UserTeamRow:
    team = await get_team(session, team_id)
    removed = await session.execute(
        delete(UserTeamMemberRow).where(
            UserTeamMemberRow.team_id == team_id, UserTeamMemberRow.user_id == user_id
        )
    )
    if not getattr(removed, "rowcount", 0):
        raise NotFoundError("member of user team", user_id)
    return team
