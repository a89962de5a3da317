"""Ownership of the team service's objects (teams, workflows, tasks): each records the user who
created it and the user team it is shared with, and every RPC on one of them goes through
`require` first (runtime/ownership.py decides; the RPC's access option names the permission).
Request ids are unique per user, so `same_request` looks one up among the caller's objects only."""

from __future__ import annotations

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from godel_server.runtime.db import Database
from godel_server.runtime.errors import NotFoundError
from godel_server.runtime.ownership import Owner, check
from godel_server.team.models import MemberRow, TaskRow, TeamRow, WorkflowRow

OwnedTable = type[TeamRow] | type[WorkflowRow] | type[TaskRow]


async def require(db: Database, table: OwnedTable, ident: str, missing: NotFoundError) -> None:
    """Lets the current RPC go on with the object `ident` of `table`, or raises `missing`
    (NOT_FOUND: no such object, or the caller may not read it) or PERMISSION_DENIED."""
    async with db.reader() as session:
        found = (
            await session.execute(select(table.user_id, table.user_team_id).where(table.id == ident))
        ).first()
    if found is None:
        raise missing
    check(Owner(found.user_id, found.user_team_id), missing)


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
