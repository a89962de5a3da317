"""Budgets between protobuf (API edge) and storage rows."""

from __future__ import annotations

from godel.v1 import budget_pb2
from godel_server.runtime.events import set_times
from godel_server.team.budgets import percentage
from godel_server.team.models import BudgetRow

ENTITY_TO_PROTO: dict[str, budget_pb2.BudgetEntityType.ValueType] = {
    "agent": budget_pb2.BUDGET_ENTITY_TYPE_AGENT,
    "team": budget_pb2.BUDGET_ENTITY_TYPE_TEAM,
    "user": budget_pb2.BUDGET_ENTITY_TYPE_USER,
    "organization": budget_pb2.BUDGET_ENTITY_TYPE_ORGANIZATION,
}
ENTITY_FROM_PROTO = {v: k for k, v in ENTITY_TO_PROTO.items()}

PERIOD_TO_PROTO: dict[str, budget_pb2.BudgetPeriod.ValueType] = {
    "none": budget_pb2.BUDGET_PERIOD_NONE,
    "daily": budget_pb2.BUDGET_PERIOD_DAILY,
    "weekly": budget_pb2.BUDGET_PERIOD_WEEKLY,
    "monthly": budget_pb2.BUDGET_PERIOD_MONTHLY,
}
# An unset period is a one-off budget.
PERIOD_FROM_PROTO = {
    budget_pb2.BUDGET_PERIOD_UNSPECIFIED: "none",
    **{v: k for k, v in PERIOD_TO_PROTO.items()},
}


def budget_to_proto(row: BudgetRow) -> budget_pb2.Budget:
    budget = budget_pb2.Budget(
        id=row.id,
        entity_type=ENTITY_TO_PROTO[row.entity_type],
        entity_id=row.entity_id,
        total_budget=row.total_budget,
        used_budget=row.used_budget,
        currency=row.currency,
        period=PERIOD_TO_PROTO[row.period],
        percentage=percentage(row),
    )
    set_times(
        budget,
        period_start=row.period_start,
        period_end=row.period_end,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
    return budget
