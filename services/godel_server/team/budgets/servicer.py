"""BudgetService: spend limits of agents, teams, users and the organization (spec §2.4 budgets)."""

from __future__ import annotations

import math
import re
from datetime import UTC

import grpc
from sqlalchemy.exc import IntegrityError

from godel.v1 import budget_pb2, budget_service_pb2, budget_service_pb2_grpc
from godel_server.runtime.db import Database
from godel_server.runtime.statuses import BUDGET_ENTITY, BUDGET_PERIOD, BudgetEntity, BudgetPeriod
from godel_server.runtime.validation import Violations
from godel_server.team.budgets.ledger import BudgetLedger
from godel_server.team.budgets.mapping import budget_to_proto

CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
# Agents and teams are ours and have UUIDs; users and the organization are named by the caller.
UUID_ENTITIES = frozenset({BudgetEntity.AGENT, BudgetEntity.TEAM})


def _entity_choices() -> str:
    return ", ".join(BUDGET_ENTITY.prefix + name.upper() for name in BUDGET_ENTITY.names)


def _period(value: budget_pb2.BudgetPeriod.ValueType) -> BudgetPeriod | None:
    """An unset period is a one-off budget."""
    return BudgetPeriod.NONE if value == budget_pb2.BUDGET_PERIOD_UNSPECIFIED else BUDGET_PERIOD.get(value)


def check_set(request: budget_service_pb2.SetBudgetRequest) -> None:
    v = Violations()
    entity_type = BUDGET_ENTITY.get(request.entity_type)
    if request.entity_type == budget_pb2.BUDGET_ENTITY_TYPE_UNSPECIFIED:
        v.add("entity_type", "is required")
    elif entity_type is None:
        v.add("entity_type", f"must be one of {_entity_choices()}")
    v.require("entity_id", request.entity_id, max_len=255)
    if entity_type in UUID_ENTITIES:
        v.uuid("entity_id", request.entity_id)
    if not (math.isfinite(request.total_budget) and request.total_budget > 0):
        v.add("total_budget", "must be a finite number greater than 0")
    if request.currency and not CURRENCY_RE.match(request.currency):
        v.add("currency", "must be an ISO 4217 code of 3 uppercase letters, e.g. USD")
    if _period(request.period) is None:
        v.add("period", "must be one of NONE, DAILY, WEEKLY, MONTHLY")
    if (
        request.HasField("period_start")
        and request.HasField("period_end")
        and request.period_end.ToDatetime() <= request.period_start.ToDatetime()
    ):
        v.add("period_end", "must be after period_start")
    v.raise_if_any()


def check_list(request: budget_service_pb2.ListBudgetsRequest) -> None:
    v = Violations()
    if request.entity_type and BUDGET_ENTITY.get(request.entity_type) is None:
        v.add("entity_type", f"must be one of {_entity_choices()}")
    v.max_len("entity_id", request.entity_id, 255)
    v.raise_if_any()


def check_id(value: str) -> None:
    v = Violations()
    v.require("id", value)
    v.uuid("id", value)
    v.raise_if_any()


class BudgetServicer(budget_service_pb2_grpc.BudgetServiceServicer):
    def __init__(self, db: Database, ledger: BudgetLedger) -> None:
        self._db = db
        self._ledger = ledger

    async def ListBudgets(
        self, request: budget_service_pb2.ListBudgetsRequest, context: grpc.aio.ServicerContext
    ) -> budget_service_pb2.ListBudgetsResponse:
        check_list(request)
        # A write session: reading a budget whose calendar window is past rolls it forward.
        async with self._db.session() as session:
            rows, token = await self._ledger.list_page(
                session,
                entity_type=BUDGET_ENTITY.get(request.entity_type) or "",
                entity_id=request.entity_id,
                page_size=request.page_size,
                page_token=request.page_token,
            )
            budgets = [budget_to_proto(row) for row in rows]
        return budget_service_pb2.ListBudgetsResponse(budgets=budgets, next_page_token=token)

    async def SetBudget(
        self, request: budget_service_pb2.SetBudgetRequest, context: grpc.aio.ServicerContext
    ) -> budget_pb2.Budget:
        check_set(request)

        start = request.period_start.ToDatetime(tzinfo=UTC) if request.HasField("period_start") else None
        end = request.period_end.ToDatetime(tzinfo=UTC) if request.HasField("period_end") else None
        # Two first-time sets of the same entity race on the unique key; the loser retries as an update.
        for attempt in range(2):
            try:
                async with self._db.session() as session:
                    row = await self._ledger.set_budget(
                        session,
                        BUDGET_ENTITY.name(request.entity_type),
                        request.entity_id,
                        request.total_budget,
                        currency=request.currency or "USD",
                        period=_period(request.period) or BudgetPeriod.NONE,
                        period_start=start,
                        period_end=end,
                    )
                    return budget_to_proto(row)
            except IntegrityError:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def GetBudget(
        self, request: budget_service_pb2.GetBudgetRequest, context: grpc.aio.ServicerContext
    ) -> budget_pb2.Budget:
        check_id(request.id)
        async with self._db.session() as session:
            return budget_to_proto(await self._ledger.get(session, request.id))

    async def DeleteBudget(
        self, request: budget_service_pb2.DeleteBudgetRequest, context: grpc.aio.ServicerContext
    ) -> budget_service_pb2.DeleteBudgetResponse:
        check_id(request.id)
        async with self._db.session() as session:
            await self._ledger.delete(session, request.id)
        return budget_service_pb2.DeleteBudgetResponse()
