"""Spend of agents (spec §2.1 budgetLimit/budgetConsumed): token usage priced per model, the
`budget:warning` (80 %) and `budget:exceeded` (100 %) events, and the stop at the limit."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import worker_service_pb2 as wpb
from godel_server.agent.lifecycle import LIVE, can
from godel_server.agent.models import AgentRow
from godel_server.agent.pricing import PriceTable
from godel_server.agent.state import AgentStateStore
from godel_server.runtime.events import utcnow

COST = Counter("godel_agent_cost_dollars", "Spend of agents in USD, from token usage", ["model"])
TOKENS = Counter("godel_agent_tokens_total", "Tokens used by agents", ["model", "kind"])

WARNING_SHARE = 0.8


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
        COST.labels(self.model).inc(self.cost)
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
            "agent:usage",
            row,
            {
                "agentId": row.id,
                "teamId": row.team_id or "",
                "userId": row.user_id or "",
                "model": model,
                "cost": cost,
                "promptTokens": usage.prompt_tokens,
                "completionTokens": usage.completion_tokens,
                "budgetConsumed": row.budget_consumed,
            },
        )
        await self._store.publisher.publish(session, [usage_event])
        exceeded = await self._enforce(session, row)
        return Charge(model, cost, usage.prompt_tokens, usage.completion_tokens, exceeded)

    async def _enforce(self, session: AsyncSession, row: AgentRow) -> str | None:
        limit = row.budget_limit
        if limit is None:
            return None
        payload = {
            "agentId": row.id,
            "budgetLimit": limit,
            "budgetConsumed": row.budget_consumed,
            "percentage": round(100 * row.budget_consumed / limit, 2),
        }
        publish = self._store.publisher.publish
        if row.budget_consumed >= WARNING_SHARE * limit and not row.budget_warned:
            row.budget_warned = True
            await publish(session, [self._store.event("budget:warning", row, payload)])
        if row.budget_consumed < limit or row.lifecycle_state not in LIVE:
            return None
        await publish(session, [self._store.event("budget:exceeded", row, payload)])
        reason = f"budget exceeded: ${row.budget_consumed:.4f} of ${limit:.4f}"
        row.last_error = reason
        row.completed_at = utcnow()
        if can("error", row.lifecycle_state):
            await self._store.apply(session, row, "error", reason=reason)
        return reason
