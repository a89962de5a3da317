"""``client.budgets``: spend limits of agents, teams, users and the organization (BudgetService)."""

from __future__ import annotations

from datetime import datetime

from godel.v1 import budget_pb2, budget_service_pb2
from godel_client.enums import BudgetEntityLike, BudgetPeriodLike, budget_entity_type, budget_period
from godel_client.methods import Mode, SubClient, by_id, paged, unary


def _set(
    entity_type: BudgetEntityLike,
    entity_id: str,
    amount: float,
    *,
    currency: str | None = None,
    period: BudgetPeriodLike | None = None,
    period_start: datetime | None = None,
    period_end: datetime | None = None,
) -> budget_service_pb2.SetBudgetRequest:
    """Creates or replaces the budget of one agent, team, user or organization."""
    request = budget_service_pb2.SetBudgetRequest(
        entity_type=budget_entity_type(entity_type),
        entity_id=entity_id,
        total_budget=amount,
        currency=currency or "",
        period=budget_period(period) if period is not None else budget_pb2.BUDGET_PERIOD_UNSPECIFIED,
    )
    if period_start is not None:
        request.period_start.FromDatetime(period_start)
    if period_end is not None:
        request.period_end.FromDatetime(period_end)
    return request


def _list(
    *,
    entity_type: BudgetEntityLike | None = None,
    entity_id: str | None = None,
    page_size: int = 50,
) -> budget_service_pb2.ListBudgetsRequest:
    """Budgets, fetched page by page as the iterator is consumed."""
    return budget_service_pb2.ListBudgetsRequest(
        page_size=page_size,
        entity_type=budget_entity_type(entity_type)
        if entity_type is not None
        else budget_pb2.BUDGET_ENTITY_TYPE_UNSPECIFIED,
        entity_id=entity_id or "",
    )


class Budgets(SubClient[Mode]):
    """The budgets of the mesh: at most one per entity."""

    SERVICE = budget_service_pb2.DESCRIPTOR.services_by_name["BudgetService"]

    set = unary("SetBudget", _set, budget_pb2.Budget)
    get = unary("GetBudget", by_id(budget_service_pb2.GetBudgetRequest), budget_pb2.Budget)
    list = paged("ListBudgets", _list, budget_service_pb2.ListBudgetsResponse, lambda page: page.budgets)
    delete = unary(
        "DeleteBudget",
        by_id(budget_service_pb2.DeleteBudgetRequest),
        budget_service_pb2.DeleteBudgetResponse,
        lambda _: None,
    )
