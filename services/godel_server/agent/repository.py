"""Agent storage queries (spec §4.1 AgentRegistry: register, find, get, unregister), with the
agents' transitions and sessions: every SQL read of the AgentService lives here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, bindparam, delete, func, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from godel_server.agent.lifecycle import LIVE
from godel_server.agent.models import (
    AgentRecord,
    AgentRow,
    AgentTransitionRow,
    SessionMessageRow,
    SessionRow,
)
from godel_server.runtime.errors import AgentNotFoundError, NotFoundError
from godel_server.runtime.ownership import Reach
from godel_server.runtime.pagination import Keyset, keyset_page
from godel_server.runtime.rows import insert_row
from godel_server.runtime.statuses import AgentStatus, LifecycleState

TRANSITIONS = Keyset((AgentTransitionRow.id,))
SESSIONS = Keyset((SessionRow.created_at, SessionRow.id))
# Every column of an agent, labelled with AgentRow's attribute names: the read-only paths (GetAgent,
# ListAgents) select these as plain SQLAlchemy Core rows, without the ORM's loading of instances.
# Built once: putting 46 columns into a select and keying it for the statement cache cost more than
# the whole rest of a GetAgent (bench/README.md, "What a read call costs").
AGENT_COLUMNS = tuple(prop.columns[0].label(prop.key) for prop in inspect(AgentRow).column_attrs)
_AGENT_KEYS = tuple(column.key for column in AGENT_COLUMNS)  # (a Row's _fields builds this anew)
# Their conditions name the table's columns too: an ORM attribute anywhere in a select makes it
# an ORM statement again.
_AGENTS = AgentRow.__table__.c
_AGENT_BY_ID = select(*AGENT_COLUMNS).where(_AGENTS.id == bindparam("agent_id"))
_ALL_AGENTS = select(*AGENT_COLUMNS)
# Newest first; each list filter has an index in this order (agent/models.py).
AGENTS = Keyset((_AGENTS.spawned_at, _AGENTS.id), descending=True)


@dataclass(frozen=True)
class AgentQuery:
    statuses: tuple[AgentStatus, ...] = ()
    lifecycle_states: tuple[LifecycleState, ...] = ()
    team_id: str = ""
    model: str = ""
    label: str = ""
    spawned_after: datetime | None = None
    spawned_before: datetime | None = None


@dataclass(frozen=True)
class SessionView:
    """A session with the ids of its child sessions and (when asked for) its messages."""

    row: SessionRow
    children: list[str]
    messages: list[SessionMessageRow]


class AgentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, row: AgentRow) -> None:
        """Stores a new agent (one INSERT, no flush: runtime/rows.py); `row` stays outside the session."""
        await insert_row(self._session, row)

    async def get(self, agent_id: str) -> AgentRow | None:
        return await self._session.get(AgentRow, agent_id)

    async def view(self, agent_id: str) -> AgentRecord | None:
        """The agent's columns, to read (not to change: that takes `get`)."""
        row = (await self._session.execute(_AGENT_BY_ID, {"agent_id": agent_id})).first()
        return None if row is None else _record(row)

    async def require(self, agent_id: str) -> AgentRow:
        """The agent; NOT_FOUND naming it when there is none."""
        row = await self.get(agent_id)
        if row is None:
            raise AgentNotFoundError(agent_id)
        return row

    async def by_request_id(self, request_id: str, user_id: str | None) -> AgentRow | None:
        """The agent a user's request created (request ids are unique per user)."""
        user = AgentRow.user_id.is_(None) if user_id is None else AgentRow.user_id == user_id
        return await self._session.scalar(select(AgentRow).where(AgentRow.request_id == request_id, user))

    async def count_live(self, user_id: str) -> int:
        """Agents of a user that have not ended (for the per-user cap)."""
        return int(await self._session.scalar(self.live_count_query(user_id)) or 0)

    @staticmethod
    def live_count_query(user_id: str) -> Select[int]:
        """The count of `count_live`: one range of idx_agents_user_lifecycle per live state."""
        return (
            select(func.count())
            .select_from(AgentRow)
            .where(AgentRow.user_id == user_id, AgentRow.lifecycle_state.in_(sorted(LIVE)))
        )

    async def delete(self, agent_id: str) -> None:
        await self._session.execute(delete(AgentRow).where(AgentRow.id == agent_id))

    async def find(
        self, query: AgentQuery, reach: Reach, *, page_size: int, page_token: str
    ) -> tuple[list[AgentRecord], str]:
        """One page of the agents that match and `reach` covers, newest first, and the next
        page's token."""
        agents = _AGENTS
        stmt = _ALL_AGENTS.where(reach.where(agents.user_id, agents.user_team_id))
        if query.statuses:
            stmt = stmt.where(agents.status.in_(query.statuses))
        if query.lifecycle_states:
            stmt = stmt.where(agents.lifecycle_state.in_(query.lifecycle_states))
        if query.team_id:
            stmt = stmt.where(agents.team_id == query.team_id)
        if query.model:
            stmt = stmt.where(agents.model == query.model)
        if query.label:
            stmt = stmt.where(agents.label == query.label)
        if query.spawned_after:
            stmt = stmt.where(agents.spawned_at >= query.spawned_after)
        if query.spawned_before:
            stmt = stmt.where(agents.spawned_at < query.spawned_before)
        rows, token = await keyset_page(
            self._session,
            stmt,
            AGENTS,
            page_size=page_size,
            page_token=page_token,
            query=("agents", query),
            columns=True,
        )
        return [_record(row) for row in rows], token

    async def transitions(
        self, agent_id: str, *, page_size: int, page_token: str
    ) -> tuple[Sequence[AgentTransitionRow], str]:
        """An agent's lifecycle history, oldest first (NOT_FOUND for an unknown agent)."""
        await self.require(agent_id)
        return await keyset_page(
            self._session,
            select(AgentTransitionRow).where(AgentTransitionRow.agent_id == agent_id),
            TRANSITIONS,
            page_size=page_size,
            page_token=page_token,
            query=("transitions", agent_id),
            default_size=100,
        )

    async def sessions(
        self, agent_id: str, *, page_size: int, page_token: str
    ) -> tuple[list[SessionView], str]:
        """An agent's sessions (one per run), oldest first, without their messages."""
        await self.require(agent_id)
        rows, token = await keyset_page(
            self._session,
            select(SessionRow).where(SessionRow.agent_id == agent_id),
            SESSIONS,
            page_size=page_size,
            page_token=page_token,
            query=("sessions", agent_id),
        )
        return [await self._view(row, with_messages=False) for row in rows], token

    async def session(self, session_id: str) -> SessionView:
        """One session with its messages (NOT_FOUND naming it when there is none)."""
        row = await self._session.get(SessionRow, session_id)
        if row is None:
            raise NotFoundError("session", session_id)
        return await self._view(row, with_messages=True)

    async def _view(self, row: SessionRow, *, with_messages: bool) -> SessionView:
        children = (
            await self._session.scalars(select(SessionRow.id).where(SessionRow.parent_id == row.id))
        ).all()
        messages: Sequence[SessionMessageRow] = ()
        if with_messages:
            messages = (
                await self._session.scalars(
                    select(SessionMessageRow)
                    .where(SessionMessageRow.session_id == row.id)
                    .order_by(SessionMessageRow.id)
                )
            ).all()
        return SessionView(row, list(children), list(messages))


def _record(row: Row[Any]) -> AgentRecord:
    return AgentRecord(dict(zip(_AGENT_KEYS, row, strict=True)))
