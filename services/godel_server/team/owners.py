"""Ownership of the team service's objects (teams, workflows, tasks): each records the user who
created it and the user team it is shared with, and every RPC on one of them goes through
`require` first (runtime/ownership.py decides; the RPC's access option names the permission).
A request that points at a team (a task queued in it, a workflow run for it) goes through
`require_team`: the caller must be able to read that team.
Request ids are unique per user, so `same_request` looks one up among the caller's objects only."""

from __future__ import annotations

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from godel_server.runtime.db import Database
from godel_server.runtime.errors import NotFoundError, ReferenceNotFoundError
from godel_server.runtime.ownership import Owner, check, require_reach
from godel_server.team.models import MemberRow, TaskRow, TeamRow, WorkflowRow

OwnedTable = type[TeamRow] | type[WorkflowRow] | type[TaskRow]


async def _owner(db: Database, table: OwnedTable, ident: str) -> Owner | None:
    """The owner of the object `ident` of `table`; None when there is no such object."""
    async with db.reader() as session:
        found = (
            await session.execute(select(table.user_id, table.user_team_id).where(table.id == ident))
        ).first()
    return None if found is None else Owner(found.user_id, found.user_team_id)


async def require(db: Database, table: OwnedTable, ident: str, missing: NotFoundError) -> None:
    """Lets the current RPC go on with the object `ident` of `table`, or raises `missing`
    (NOT_FOUND: no such object, or the caller may not read it) or PERMISSION_DENIED."""
    owner = await _owner(db, table, ident)
    if owner is None:
        raise missing
    check(owner, missing)


async def require_team(db: Database, field: str, team_id: str) -> None:
    """NOT_FOUND naming `field` unless the team `team_id` exists and the caller may read it."""
    owner = await _owner(db, TeamRow, team_id)
    missing = ReferenceNotFoundError(field, "team", team_id)
    if owner is None:
        raise missing
    require_reach("team", owner, missing)


async def owner_of_member(session: AsyncSession, member: MemberRow) -> Owner:
    """Whom a member's agent belongs to: the owner of its workflow or team (members run with the
    rights of the user who started them)."""
    parent: TeamRow | WorkflowRow | None = None
    if member.workflow_id:
        parent = await session.get(WorkflowRow, member.workflow_id)
    elif member.team_id:
        parent = await session.get(TeamRow, member.team_id)
    return Owner(parent.user_id, parent.user_team_id) if parent else Owner(None)


def same_request(table: OwnedTable, request_id: str, owner: Owner) -> ColumnElement[bool]:
    """The condition that finds what a request with `request_id` by `owner` created."""
    user = table.user_id.is_(None) if owner.user_id is None else table.user_id == owner.user_id
    return (table.request_id == request_id) & user
