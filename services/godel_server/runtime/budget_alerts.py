"""The one shape of `budget:warning` and `budget:exceeded`, published by the agent service (an agent's
own budget_limit) and by the team service (budgets of the budgets API) alike."""

from __future__ import annotations

from godel.v1 import budget_events_pb2, budget_pb2

# Share of a budget spent at which `budget:warning` goes out.
WARNING_SHARE = 0.8


def budget_alert(
    budget: budget_pb2.Budget, *, exceeded: bool
) -> budget_events_pb2.BudgetWarning | budget_events_pb2.BudgetExceeded:
    """The payload of `budget:exceeded` (when `exceeded`) or else `budget:warning` about `budget` (a
    budget of the budgets API, or an agent's own limit as a Budget without id)."""
    kind = budget_events_pb2.BudgetExceeded if exceeded else budget_events_pb2.BudgetWarning
    total, used = budget.total_budget, budget.used_budget
    return kind(
        budget_id=budget.id,
        entity_type=budget.entity_type,
        entity_id=budget.entity_id,
        total_budget=total,
        used_budget=used,
        percentage=round(100 * used / total, 2) if total > 0 else 0.0,
        currency=budget.currency or "USD",
    )
