"""Budgets of the team service: upsert, windows and rollover, alerts once, refusals."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from godel.v1 import budget_events_pb2, budget_pb2, budget_service_pb2, event_pb2
from godel_server.runtime.db import Database
from godel_server.runtime.errors import FailedPreconditionError, NotFoundError, ValidationError
from godel_server.runtime.events import event_data
from godel_server.runtime.ownership import Owner
from godel_server.runtime.publisher import EventPublisher
from godel_server.runtime.statuses import BudgetPeriod
from godel_server.team.budgets import ledger as budgets_module
from godel_server.team.budgets.ledger import BudgetLedger, Usage, calendar_window
from godel_server.team.budgets.servicer import BudgetServicer
from godel_server.team.models import BudgetRow
from tests.unit.conftest import add_team, outbox_events

TEAM = "11111111-1111-4111-8111-111111111111"
OTHER_TEAM = "22222222-2222-4222-8222-222222222222"
AGENT = "33333333-3333-4333-8333-333333333333"


@pytest.fixture
def ledger() -> BudgetLedger:
    return BudgetLedger(EventPublisher(None), "test-1")


class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, now: datetime) -> None:
        self.now = now
        monkeypatch.setattr(budgets_module, "utcnow", lambda: self.now)


async def events(db: Database) -> list[event_pb2.Event]:
    return await outbox_events(db)


def payload(event: event_pb2.Event) -> Any:
    return event_data(event)


def usage(cost: float, *, team: str = TEAM, user: str = "", at: datetime | None = None) -> Usage:
    return Usage(agent_id=AGENT, team_id=team, user_id=user, cost=cost, at=at or datetime.now(UTC))


async def test_set_budget_upserts_one_budget_per_entity_and_keeps_what_was_used(
    db: Database, ledger: BudgetLedger
) -> None:
    async with db.session() as session:
        first = await ledger.set_budget(session, "team", TEAM, 10.0)
        await ledger.apply_usage(session, usage(3.0))
    async with db.session() as session:
        second = await ledger.set_budget(session, "team", TEAM, 20.0, currency="EUR")
    assert second.id == first.id
    assert (second.total_budget, second.used_budget, second.currency) == (20.0, 3.0, "EUR")
    async with db.reader() as session:
        assert len((await session.scalars(select(BudgetRow))).all()) == 1
    with pytest.raises(ValidationError):
        async with db.session() as session:
            await ledger.set_budget(session, "galaxy", "x", 1.0)


async def test_warning_and_exceeded_are_published_once_and_rearmed_by_a_raise(
    db: Database, ledger: BudgetLedger
) -> None:
    async with db.session() as session:
        budget = await ledger.set_budget(session, "team", TEAM, 10.0)
    async with db.session() as session:
        assert await ledger.apply_usage(session, usage(5.0)) == []
    async with db.session() as session:
        assert await ledger.apply_usage(session, usage(3.5)) == []  # 85 %: warning
    async with db.session() as session:
        assert await ledger.apply_usage(session, usage(0.5)) == []  # 90 %: nothing new
    async with db.session() as session:
        exceeded = await ledger.apply_usage(session, usage(1.5))  # 105 %
    assert [b.id for b in exceeded] == [budget.id]
    async with db.session() as session:
        assert await ledger.apply_usage(session, usage(1.0)) == []  # still exceeded: no repeat
    sent = await events(db)
    assert [e.type for e in sent] == ["budget:warning", "budget:exceeded"]
    warning = sent[0]
    assert warning.partition_key == budget.id
    assert warning.metadata.team_id == TEAM
    assert warning.source.component == "team-service"
    assert payload(warning) == budget_events_pb2.BudgetWarning(
        budget_id=budget.id,
        entity_type=budget_pb2.BUDGET_ENTITY_TYPE_TEAM,
        entity_id=TEAM,
        total_budget=10.0,
        used_budget=8.5,
        percentage=85.0,
        currency="USD",
    )
    assert payload(sent[1]).used_budget == 10.5

    # Raising the limit above what was used re-arms both alerts.
    async with db.session() as session:
        raised = await ledger.set_budget(session, "team", TEAM, 100.0)
        assert not raised.warned and not raised.exceeded
        await ledger.apply_usage(session, usage(70.0))  # 81.5 %
    assert [e.type for e in await events(db)][-1] == "budget:warning"


async def test_a_jump_past_the_limit_sends_both_alerts_and_lowering_the_limit_alerts_at_once(
    db: Database, ledger: BudgetLedger
) -> None:
    async with db.session() as session:
        await ledger.set_budget(session, "agent", AGENT, 1.0)
        exceeded = await ledger.apply_usage(session, usage(2.0))
    assert len(exceeded) == 1
    sent = await events(db)
    assert [e.type for e in sent] == ["budget:warning", "budget:exceeded"]
    assert sent[0].metadata.agent_id == AGENT
    async with db.session() as session:
        await ledger.set_budget(session, "team", TEAM, 100.0)
        await ledger.apply_usage(session, usage(50.0))
        await ledger.set_budget(session, "team", TEAM, 40.0)
    assert [e.type for e in await events(db)][2:] == ["budget:warning", "budget:exceeded"]


async def test_usage_counts_against_agent_team_user_and_every_organization_budget(
    db: Database, ledger: BudgetLedger
) -> None:
    async with db.session() as session:
        agent = await ledger.set_budget(session, "agent", AGENT, 100.0)
        team = await ledger.set_budget(session, "team", TEAM, 100.0)
        other = await ledger.set_budget(session, "team", OTHER_TEAM, 100.0)
        user = await ledger.set_budget(session, "user", "alice", 100.0)
        org = await ledger.set_budget(session, "organization", "acme", 100.0)
        await ledger.apply_usage(session, usage(2.0, user="alice"))
        await ledger.apply_usage(session, usage(1.0, team="", user="bob"))
    async with db.reader() as session:
        used = {row.id: row.used_budget for row in (await session.scalars(select(BudgetRow))).all()}
    assert used == {agent.id: 3.0, team.id: 2.0, other.id: 0.0, user.id: 2.0, org.id: 3.0}


async def test_budget_alerts_are_owned_by_who_the_budget_is_about(db: Database, ledger: BudgetLedger) -> None:
    """A user budget's events are the user's, a team budget's the team owner's, an agent budget's
    the owner of the agent whose spend crossed it; the organization's have no owner (every event
    reader sees them)."""
    now = datetime.now(UTC)
    await add_team(db, TEAM, Owner("carol", OTHER_TEAM))
    async with db.session() as session:
        for kind, entity in (("agent", AGENT), ("team", TEAM), ("user", "alice"), ("organization", "acme")):
            await ledger.set_budget(session, kind, entity, 1.0)
        spent = Usage(
            agent_id=AGENT, team_id=TEAM, user_id="alice", cost=5.0, at=now, owner=Owner("carol", OTHER_TEAM)
        )
        await ledger.apply_usage(session, spent)
    owners = {
        (payload(e).entity_type, e.metadata.owner_user_id, e.metadata.owner_team_id)
        for e in await events(db)
        if e.type == "budget:exceeded"
    }
    assert owners == {
        (budget_pb2.BUDGET_ENTITY_TYPE_AGENT, "carol", OTHER_TEAM),
        (budget_pb2.BUDGET_ENTITY_TYPE_TEAM, "carol", OTHER_TEAM),
        (budget_pb2.BUDGET_ENTITY_TYPE_USER, "alice", ""),
        (budget_pb2.BUDGET_ENTITY_TYPE_ORGANIZATION, "", ""),
    }


async def test_a_fixed_window_counts_only_usage_inside_it(db: Database, ledger: BudgetLedger) -> None:
    now = datetime.now(UTC)
    async with db.session() as session:
        row = await ledger.set_budget(
            session,
            "team",
            TEAM,
            10.0,
            period_start=now - timedelta(hours=1),
            period_end=now + timedelta(hours=1),
        )
        await ledger.apply_usage(session, usage(1.0, at=now - timedelta(hours=2)))
        await ledger.apply_usage(session, usage(2.0, at=now))
        await ledger.apply_usage(session, usage(4.0, at=now + timedelta(hours=2)))
        assert row.used_budget == 2.0
        assert await ledger.remaining(session, team_id=TEAM) == 8.0
        # An expired one-off budget no longer applies: nothing refused, unlimited.
        await ledger.set_budget(session, "team", TEAM, 1.0, period_end=now - timedelta(minutes=1))
        await ledger.check_can_spend(session, team_id=TEAM, user_id=None)
        assert await ledger.remaining(session, team_id=TEAM) is None


async def test_calendar_windows_roll_forward_on_usage_and_on_reads(
    db: Database, ledger: BudgetLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(monkeypatch, datetime(2026, 3, 10, 23, 0, tzinfo=UTC))
    async with db.session() as session:
        daily = await ledger.set_budget(session, "team", TEAM, 10.0, period="daily")
        assert (daily.period_start, daily.period_end) == (
            datetime(2026, 3, 10, tzinfo=UTC),
            datetime(2026, 3, 11, tzinfo=UTC),
        )
        await ledger.apply_usage(session, usage(10.0, at=clock.now))
    with pytest.raises(FailedPreconditionError):
        async with db.session() as session:
            await ledger.check_can_spend(session, team_id=TEAM, user_id=None)

    clock.now = datetime(2026, 3, 11, 0, 30, tzinfo=UTC)
    # A read after midnight finds the window past and starts the new day from zero.
    async with db.session() as session:
        row = await ledger.get(session, daily.id)
        assert row.used_budget == 0.0 and not row.exceeded
        assert row.period_start == datetime(2026, 3, 11, tzinfo=UTC)
        await ledger.check_can_spend(session, team_id=TEAM, user_id=None)
        # Usage stamped in the previous window is late: it no longer counts.
        await ledger.apply_usage(session, usage(3.0, at=datetime(2026, 3, 10, 23, 59, tzinfo=UTC)))
        await ledger.apply_usage(session, usage(4.0, at=clock.now))
        assert row.used_budget == 4.0

    # Usage itself rolls the window too, and the alerts of the new window fire again.
    clock.now = datetime(2026, 3, 12, 8, 0, tzinfo=UTC)
    async with db.session() as session:
        exceeded = await ledger.apply_usage(session, usage(12.0, at=clock.now))
    assert [b.id for b in exceeded] == [daily.id]
    async with db.reader() as session:
        stored = await session.get(BudgetRow, daily.id)
        assert stored is not None
        assert (stored.used_budget, stored.period_start) == (12.0, datetime(2026, 3, 12, tzinfo=UTC))
    assert [e.type for e in await events(db)] == ["budget:warning", "budget:exceeded"] * 2


def test_calendar_windows() -> None:
    at = datetime(2026, 12, 17, 15, 0, tzinfo=UTC)  # a Thursday
    assert calendar_window(BudgetPeriod.WEEKLY, at) == (
        datetime(2026, 12, 14, tzinfo=UTC),
        datetime(2026, 12, 21, tzinfo=UTC),
    )
    assert calendar_window(BudgetPeriod.MONTHLY, at) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert calendar_window(BudgetPeriod.DAILY, at)[1] - calendar_window(BudgetPeriod.DAILY, at)[
        0
    ] == timedelta(days=1)


async def test_check_can_spend_refuses_when_a_team_user_or_org_budget_is_used_up(
    db: Database, ledger: BudgetLedger
) -> None:
    async with db.session() as session:
        team = await ledger.set_budget(session, "team", TEAM, 5.0)
        await ledger.set_budget(session, "organization", "acme", 50.0)
        await ledger.apply_usage(session, usage(5.0))
        assert await ledger.remaining(session, team_id=TEAM) == 0.0
        assert await ledger.remaining(session, team_id=OTHER_TEAM) == 45.0
        with pytest.raises(FailedPreconditionError) as info:
            await ledger.check_can_spend(session, team_id=TEAM, user_id=None)
        assert info.value.message == "team budget exhausted: $5.00 of $5.00"
        assert info.value.metadata["budgetId"] == team.id
        assert info.value.metadata["entityType"] == "team"
        assert info.value.metadata["entityId"] == TEAM
        await ledger.check_can_spend(session, team_id=OTHER_TEAM, user_id="alice")

        await ledger.set_budget(session, "user", "alice", 1.0)
        await ledger.apply_usage(session, usage(1.0, team=OTHER_TEAM, user="alice"))
        with pytest.raises(FailedPreconditionError, match="user budget exhausted"):
            await ledger.check_can_spend(session, team_id=None, user_id="alice")

        await ledger.apply_usage(session, usage(44.0, team=OTHER_TEAM))
        with pytest.raises(FailedPreconditionError, match="organization budget exhausted"):
            await ledger.check_can_spend(session, team_id=None, user_id=None)


async def test_budget_servicer_validates_and_maps(db: Database, ledger: BudgetLedger) -> None:
    servicer = BudgetServicer(db, ledger)
    bad = budget_service_pb2.SetBudgetRequest(
        entity_type=budget_pb2.BUDGET_ENTITY_TYPE_TEAM,
        entity_id="not-a-uuid",
        total_budget=math.inf,
        currency="usd",
        period=budget_pb2.BudgetPeriod.ValueType(9),
    )
    bad.period_start.FromDatetime(datetime(2026, 2, 1))
    bad.period_end.FromDatetime(datetime(2026, 1, 1))
    with pytest.raises(ValidationError) as info:
        await servicer.SetBudget(bad, None)
    assert {v.field for v in info.value.violations} == {
        "entity_id",
        "total_budget",
        "currency",
        "period",
        "period_end",
    }
    with pytest.raises(ValidationError) as info:
        await servicer.SetBudget(budget_service_pb2.SetBudgetRequest(total_budget=-1), None)
    assert {v.field for v in info.value.violations} == {"entity_type", "entity_id", "total_budget"}

    created = await servicer.SetBudget(
        budget_service_pb2.SetBudgetRequest(
            entity_type=budget_pb2.BUDGET_ENTITY_TYPE_TEAM, entity_id=TEAM, total_budget=8.0
        ),
        None,
    )
    assert created.currency == "USD" and created.period == budget_pb2.BUDGET_PERIOD_NONE
    async with db.session() as session:
        await ledger.apply_usage(session, usage(2.0))
    got = await servicer.GetBudget(budget_service_pb2.GetBudgetRequest(id=created.id), None)
    assert (got.used_budget, got.percentage) == (2.0, 25.0)
    assert got.HasField("created_at") and not got.HasField("period_end")

    monthly = await servicer.SetBudget(
        budget_service_pb2.SetBudgetRequest(
            entity_type=budget_pb2.BUDGET_ENTITY_TYPE_USER,
            entity_id="alice",
            total_budget=1.0,
            period=budget_pb2.BUDGET_PERIOD_MONTHLY,
        ),
        None,
    )
    assert monthly.period_start.ToDatetime().day == 1

    listed = await servicer.ListBudgets(budget_service_pb2.ListBudgetsRequest(page_size=1), None)
    assert [b.id for b in listed.budgets] == [monthly.id] and listed.next_page_token
    rest = await servicer.ListBudgets(
        budget_service_pb2.ListBudgetsRequest(page_size=1, page_token=listed.next_page_token), None
    )
    assert [b.id for b in rest.budgets] == [created.id] and not rest.next_page_token
    teams = await servicer.ListBudgets(
        budget_service_pb2.ListBudgetsRequest(entity_type=budget_pb2.BUDGET_ENTITY_TYPE_TEAM, entity_id=TEAM),
        None,
    )
    assert [b.id for b in teams.budgets] == [created.id]

    unknown = "99999999-9999-4999-8999-999999999999"
    with pytest.raises(NotFoundError):
        await servicer.GetBudget(budget_service_pb2.GetBudgetRequest(id=unknown), None)
    with pytest.raises(ValidationError):
        await servicer.GetBudget(budget_service_pb2.GetBudgetRequest(id="nope"), None)
    await servicer.DeleteBudget(budget_service_pb2.DeleteBudgetRequest(id=created.id), None)
    with pytest.raises(NotFoundError):
        await servicer.DeleteBudget(budget_service_pb2.DeleteBudgetRequest(id=created.id), None)
