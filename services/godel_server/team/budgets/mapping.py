"""Budgets between protobuf (API edge) and storage rows."""

from __future__ import annotations

from godel.v1 import budget_pb2
from godel_server.runtime.events import set_times
from godel_server.runtime.statuses import BUDGET_ENTITY, BUDGET_PERIOD
from godel_server.team.models import BudgetRow


def percentage(row: BudgetRow) -> float:
    return 100 * row.used_budget / row.total_budget if row.total_budget > 0 else 0.0


def budget_to_proto(row: BudgetRow) -> budget_pb2.Budget:
    budget = budget_pb2.Budget(
        id=row.id,
        entity_type=BUDGET_ENTITY.to_proto(row.entity_type),
        entity_id=row.entity_id,
        total_budget=row.total_budget,
        used_budget=row.used_budget,
        currency=row.currency,
        period=BUDGET_PERIOD.to_proto(row.period),
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
