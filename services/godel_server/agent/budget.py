"""Spend of agents (spec §2.1 budgetLimit/budgetConsumed): token usage priced per model, the
`budget:warning` (80 %) and `budget:exceeded` (100 %) events, and the stop at the limit."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import agent_events_pb2, budget_pb2, event_pb2
from godel.v1 import worker_service_pb2 as wpb
from godel_server.agent.lifecycle import LIVE, can
from godel_server.agent.models import AgentRow
from godel_server.agent.state import AgentStateStore
from godel_server.runtime.budget_alerts import WARNING_SHARE, budget_alert
from godel_server.runtime.events import utcnow
from godel_server.runtime.pricing import PriceTable

# Spend itself is spec §9.1's godel_agent_cost_dollars, a gauge read from the database (agent/metrics.py).
TOKENS = Counter("godel_agent_tokens_total", "Tokens used by agents", ["model", "kind"])


@dataclass(frozen=True)
class Charge:
    model: str
    cost: float
    prompt_tokens: int
    completion_tokens: int
    # Set when this charge reached the limit: the agent failed and its run must be killed.
    exceeded: str | None

    def record(self) -> None:
        """Updates the metrics (call once the charge is committed)."""
        TOKENS.labels(self.model, "prompt").inc(self.prompt_tokens)
        TOKENS.labels(self.model, "completion").inc(self.completion_tokens)


class Budgets:
    def __init__(self, store: AgentStateStore, prices: PriceTable) -> None:
        self._store = store
        self._prices = prices

    async def charge(self, session: AsyncSession, row: AgentRow, usage: wpb.RunUsage) -> Charge:
        """Adds the usage to the agent (in the caller's transaction) and enforces its limit."""
        model = usage.model or row.model
        cost = self._prices.cost(model, usage.prompt_tokens, usage.completion_tokens)
        row.prompt_tokens = (row.prompt_tokens or 0) + usage.prompt_tokens
        row.completion_tokens = (row.completion_tokens or 0) + usage.completion_tokens
        row.budget_consumed = (row.budget_consumed or 0.0) + cost
        row.updated_at = utcnow()
        usage_event = self._store.event(
            agent_events_pb2.AgentUsage(
                agent_id=row.id,
                team_id=row.team_id or "",
                user_id=row.user_id or "",
                model=model,
                cost=cost,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                budget_consumed=row.budget_consumed,
            ),
            row,
        )
        await self._store.publisher.publish(session, [usage_event])
        exceeded = await self._enforce(session, row)
        return Charge(model, cost, usage.prompt_tokens, usage.completion_tokens, exceeded)

    async def _enforce(self, session: AsyncSession, row: AgentRow) -> str | None:
        limit = row.budget_limit
        if limit is None:
            return None
        publish = self._store.publisher.publish

        def alert(exceeded: bool) -> event_pb2.Event:
            budget = budget_pb2.Budget(
                entity_type=budget_pb2.BUDGET_ENTITY_TYPE_AGENT,
                entity_id=row.id,
                total_budget=limit,
                used_budget=row.budget_consumed,
            )
            return self._store.event(budget_alert(budget, exceeded=exceeded), row)

        if row.budget_consumed >= WARNING_SHARE * limit and not row.budget_warned:
            row.budget_warned = True
            await publish(session, [alert(exceeded=False)])
        if row.budget_consumed < limit or row.lifecycle_state not in LIVE:
            return None
        await publish(session, [alert(exceeded=True)])
        reason = f"budget exceeded: ${row.budget_consumed:.4f} of ${limit:.4f}"
        row.last_error = reason
        row.completed_at = utcnow()
        if can("error", row.lifecycle_state):
            await self._store.apply(session, row, "error", reason=reason)
        return reason
