"""Spend limits of agents, teams, users and the organization (spec §2.4 budgets): the budget of each
entity, usage added to every budget it counts against, calendar periods that renew, and the
`budget:warning` (80 %) and `budget:exceeded` (100 %) events, each published once per window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import event_pb2
from godel_server.runtime.budget_alerts import WARNING_SHARE, budget_alert
from godel_server.runtime.errors import FailedPreconditionError, NotFoundError, ValidationError
from godel_server.runtime.events import utcnow
from godel_server.runtime.ids import new_id
from godel_server.runtime.ownership import NO_OWNER, Owner
from godel_server.runtime.pagination import Keyset, keyset_page
from godel_server.runtime.publisher import EventPublisher
from godel_server.runtime.statuses import BUDGET_ENTITY, BUDGET_PERIOD, BudgetEntity, BudgetPeriod
from godel_server.team.budgets.mapping import budget_to_proto
from godel_server.team.events import service_event
from godel_server.team.models import BudgetRow, TeamRow

NEWEST = Keyset((BudgetRow.created_at, BudgetRow.id), descending=True)
CALENDAR_PERIODS = frozenset({BudgetPeriod.DAILY, BudgetPeriod.WEEKLY, BudgetPeriod.MONTHLY})


@dataclass(frozen=True)
class Usage:
    """Spend of one agent; `team_id` and `user_id` are "" when the agent has none; `owner` is the
    agent's owner (from its `agent:usage` event)."""

    agent_id: str
    team_id: str
    user_id: str
    cost: float
    at: datetime
    owner: Owner = NO_OWNER


def calendar_window(period: BudgetPeriod, at: datetime) -> tuple[datetime, datetime]:
    """The UTC day, ISO week (from Monday) or month that contains `at`."""
    day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == BudgetPeriod.DAILY:
        return day, day + timedelta(days=1)
    if period == BudgetPeriod.WEEKLY:
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if period == BudgetPeriod.MONTHLY:
        start = day.replace(day=1)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
        return start, end
    raise ValueError(f"{period!r} is not a calendar period")


def in_window(row: BudgetRow, at: datetime) -> bool:
    return (row.period_start is None or row.period_start <= at) and (
        row.period_end is None or at < row.period_end
    )


def remaining_of(row: BudgetRow) -> float:
    return max(row.total_budget - row.used_budget, 0.0)


def _window_is_past(row: BudgetRow, now: datetime) -> bool:
    return row.period in CALENDAR_PERIODS and (row.period_end is None or now >= row.period_end)


def _money(amount: float, currency: str) -> str:
    return f"${amount:.2f}" if currency == "USD" else f"{amount:.2f} {currency}"


class BudgetLedger:
    """Every method works in the caller's transaction (`Database.session()`); events go to the
    outbox with the change that caused them."""

    def __init__(self, publisher: EventPublisher, instance: str) -> None:
        self._publisher = publisher
        self._instance = instance

    # ---- budgets ------------------------------------------------------------------------------
    async def set_budget(
        self,
        session: AsyncSession,
        entity_type: str,
        entity_id: str,
        total: float,
        *,
        currency: str = "USD",
        period: str = BudgetPeriod.NONE,
        period_start: datetime | None = None,
        period_end: datetime | None = None,
    ) -> BudgetRow:
        """Creates or replaces the one budget of an entity. The amount used so far is kept unless the
        period kind changes. Daily, weekly and monthly budgets always cover the current calendar
        window (period_start/period_end are ignored for them)."""
        if entity_type not in BUDGET_ENTITY.names:
            raise ValidationError.single("entity_type", f"must be one of {', '.join(BUDGET_ENTITY.names)}")
        if period not in BUDGET_PERIOD.names:
            raise ValidationError.single("period", f"must be one of {', '.join(BUDGET_PERIOD.names)}")
        if not total > 0:
            raise ValidationError.single("total_budget", "must be greater than 0")
        now = utcnow()
        kind = BudgetPeriod(period)
        if kind in CALENDAR_PERIODS:
            period_start, period_end = calendar_window(kind, now)
        row = await session.scalar(
            select(BudgetRow)
            .where(BudgetRow.entity_type == entity_type, BudgetRow.entity_id == entity_id)
            .with_for_update()
        )
        if row is None:
            row = BudgetRow(
                id=new_id(),
                entity_type=BudgetEntity(entity_type),
                entity_id=entity_id,
                used_budget=0.0,
                warned=False,
                exceeded=False,
                created_at=now,
            )
            session.add(row)
        elif row.period != kind:
            row.used_budget = 0.0
            row.warned = row.exceeded = False
        else:
            self._roll(row, now)
        row.total_budget = total
        row.currency = currency
        row.period = kind
        row.period_start = period_start
        row.period_end = period_end
        row.updated_at = now
        # A raised limit re-arms the alerts; a lowered one may cross them right away.
        row.warned = row.warned and row.used_budget >= WARNING_SHARE * total
        row.exceeded = row.exceeded and row.used_budget >= total
        await self._alert(session, row)
        await session.flush()
        return row

    async def get(self, session: AsyncSession, budget_id: str) -> BudgetRow:
        row = await session.get(BudgetRow, budget_id)
        if row is None:
            raise NotFoundError("budget", budget_id)
        return await self._current(session, row, utcnow())

    async def list_page(
        self,
        session: AsyncSession,
        *,
        entity_type: str = "",
        entity_id: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[Sequence[BudgetRow], str]:
        stmt = select(BudgetRow)
        if entity_type:
            stmt = stmt.where(BudgetRow.entity_type == entity_type)
        if entity_id:
            stmt = stmt.where(BudgetRow.entity_id == entity_id)
        rows: Sequence[BudgetRow]
        rows, token = await keyset_page(
            session,
            stmt,
            NEWEST,
            page_size=page_size,
            page_token=page_token,
            query=("budgets", entity_type, entity_id),
        )
        now = utcnow()
        return [await self._current(session, row, now) for row in rows], token

    async def delete(self, session: AsyncSession, budget_id: str) -> None:
        row = await session.get(BudgetRow, budget_id)
        if row is None:
            raise NotFoundError("budget", budget_id)
        await session.delete(row)

    # ---- spend --------------------------------------------------------------------------------
    async def apply_usage(self, session: AsyncSession, usage: Usage) -> list[BudgetRow]:
        """Adds the cost to every budget it counts against whose current window contains `usage.at`;
        returns the budgets this usage exhausted (the caller stops what must stop)."""
        if not usage.cost > 0:
            return []
        # Locked in id order so concurrent usages never deadlock and never lose an addition.
        rows = (
            await session.scalars(
                select(BudgetRow)
                .where(
                    self._applicable(agent_id=usage.agent_id, team_id=usage.team_id, user_id=usage.user_id)
                )
                .order_by(BudgetRow.id)
                .with_for_update()
            )
        ).all()
        at = usage.at if usage.at.tzinfo else usage.at.replace(tzinfo=UTC)
        # Usage stamped a little ahead of this clock still rolls the window it belongs to.
        now = max(utcnow(), at)
        exceeded: list[BudgetRow] = []
        for row in rows:
            self._roll(row, now)
            if not in_window(row, at):
                continue
            row.used_budget += usage.cost
            row.updated_at = utcnow()
            if await self._alert(session, row, usage.owner):
                exceeded.append(row)
        return exceeded

    async def check_can_spend(
        self, session: AsyncSession, *, team_id: str | None, user_id: str | None
    ) -> None:
        """FAILED_PRECONDITION when a team, user or organization budget that applies now is used up."""
        now = utcnow()
        for row in await self._active(session, team_id=team_id, user_id=user_id, now=now):
            if row.used_budget >= row.total_budget:
                raise FailedPreconditionError(
                    f"{row.entity_type} budget exhausted: {_money(row.used_budget, row.currency)} "
                    f"of {_money(row.total_budget, row.currency)}",
                    metadata={
                        "budgetId": row.id,
                        "entityType": row.entity_type,
                        "entityId": row.entity_id,
                        "usedBudget": f"{row.used_budget:.4f}",
                        "totalBudget": f"{row.total_budget:.4f}",
                    },
                )

    async def remaining(
        self, session: AsyncSession, *, team_id: str | None, user_id: str | None = None
    ) -> float | None:
        """The least amount left among the team, user and organization budgets that apply now;
        None when none applies (unlimited)."""
        rows = await self._active(session, team_id=team_id, user_id=user_id, now=utcnow())
        return min((remaining_of(row) for row in rows), default=None)

    # ---- internals ----------------------------------------------------------------------------
    @staticmethod
    def _applicable(*, agent_id: str = "", team_id: str | None, user_id: str | None) -> ColumnElement[bool]:
        # One organization per deployment: every organization budget counts all spend.
        clauses = [BudgetRow.entity_type == BudgetEntity.ORGANIZATION]
        for entity_type, entity_id in (
            (BudgetEntity.AGENT, agent_id),
            (BudgetEntity.TEAM, team_id),
            (BudgetEntity.USER, user_id),
        ):
            if entity_id:
                clauses.append(and_(BudgetRow.entity_type == entity_type, BudgetRow.entity_id == entity_id))
        return or_(*clauses)

    async def _active(
        self, session: AsyncSession, *, team_id: str | None, user_id: str | None, now: datetime
    ) -> list[BudgetRow]:
        rows = (
            await session.scalars(
                select(BudgetRow)
                .where(self._applicable(team_id=team_id, user_id=user_id))
                .order_by(BudgetRow.id)
            )
        ).all()
        current = [await self._current(session, row, now) for row in rows]
        return [row for row in current if in_window(row, now)]

    async def _current(self, session: AsyncSession, row: BudgetRow, now: datetime) -> BudgetRow:
        """The row with its calendar window rolled forward to `now` when it is past. The row is
        re-read under a lock first, so a concurrent usage is never wiped by the reset."""
        if _window_is_past(row, now):
            await session.refresh(row, with_for_update=True)
            self._roll(row, now)
        return row

    @staticmethod
    def _roll(row: BudgetRow, now: datetime) -> None:
        if not _window_is_past(row, now):
            return
        row.period_start, row.period_end = calendar_window(row.period, now)
        row.used_budget = 0.0
        row.warned = row.exceeded = False
        row.updated_at = utcnow()

    async def _alert(self, session: AsyncSession, row: BudgetRow, agent_owner: Owner = NO_OWNER) -> bool:
        """Publishes the warning and exceeded events the row has newly crossed; True if it became
        exceeded."""
        events = []
        if not row.warned and row.used_budget >= WARNING_SHARE * row.total_budget:
            row.warned = True
            events.append(self._event(row, await self._owner(session, row, agent_owner), exceeded=False))
        became_exceeded = not row.exceeded and row.used_budget >= row.total_budget
        if became_exceeded:
            row.exceeded = True
            events.append(self._event(row, await self._owner(session, row, agent_owner), exceeded=True))
        if events:
            await self._publisher.publish(session, events)
        return became_exceeded

    @staticmethod
    async def _owner(session: AsyncSession, row: BudgetRow, agent_owner: Owner) -> Owner:
        """Who owns the events of a budget (who may read them): the user of a user budget, the
        owner of a team's, the owner of the agent whose spend crossed an agent budget; nobody for
        the organization's (a system event every event reader sees)."""
        if row.entity_type == BudgetEntity.USER:
            return Owner(row.entity_id)
        if row.entity_type == BudgetEntity.TEAM:
            team = await session.get(TeamRow, row.entity_id)
            return Owner(team.user_id, team.user_team_id) if team else NO_OWNER
        if row.entity_type == BudgetEntity.AGENT:
            return agent_owner
        return NO_OWNER

    def _event(self, row: BudgetRow, owner: Owner, *, exceeded: bool) -> event_pb2.Event:
        return service_event(
            self._instance,
            budget_alert(budget_to_proto(row), exceeded=exceeded),
            key=row.id,
            owner=owner,
            agent_id=row.entity_id if row.entity_type == BudgetEntity.AGENT else "",
            team_id=row.entity_id if row.entity_type == BudgetEntity.TEAM else "",
            user_id=row.entity_id if row.entity_type == BudgetEntity.USER else None,
        )
