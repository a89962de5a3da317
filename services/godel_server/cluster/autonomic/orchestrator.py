"""The AutonomicOrchestrator of spec §4.3: on each snapshot of the metrics (and the alerts firing),
the enabled policies propose actions; each is assessed (its plan, its cooldown on the target), and
the ready ones are taken, unless the loop runs dry (GODEL_AUTONOMIC_DRY_RUN): the action, then its
cooldown and its decision event (`scaling:*`, `system:autonomic:*`) with the reason, committed
together. `recommendations` is the same assessment without acting."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete

from godel.v1 import autonomic_pb2
from godel_server.cluster.alerts.rules import Tracked
from godel_server.cluster.autonomic.actuator import Actuator
from godel_server.cluster.autonomic.mapping import policy_of
from godel_server.cluster.autonomic.policies import (
    ACTION_TYPE,
    Assessment,
    Policy,
    Proposal,
    Readiness,
    assess,
    propose,
)
from godel_server.cluster.autonomic.store import PolicyStore
from godel_server.cluster.models import CooldownRow
from godel_server.cluster.snapshot import Snapshot
from godel_server.runtime.events import utcnow
from godel_server.runtime.publisher import EventPublisher

log = logging.getLogger(__name__)

# Cooldowns older than this are forgotten (no policy's cooldown is longer).
MAX_COOLDOWN = timedelta(days=1)


def decision_of(p: Proposal, error: str = "") -> autonomic_pb2.AutonomicDecision:
    return autonomic_pb2.AutonomicDecision(
        policy_id=p.policy.id,
        policy_name=p.policy.name,
        action=ACTION_TYPE.to_proto(p.action.type),
        target=p.action.target,
        reason=p.hit.reason,
        labels=dict(p.hit.labels),
        value=p.hit.value,
        error=error,
    )


class AutonomicOrchestrator:
    def __init__(
        self,
        store: PolicyStore,
        actuator: Actuator,
        publisher: EventPublisher,
        *,
        interval: float,
        dry_run: bool,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._actuator = actuator
        self._publisher = publisher
        self._interval = interval
        self.dry_run = dry_run
        self._now = now
        self._last_run: datetime | None = None

    async def _policies(self) -> list[Policy]:
        policies = []
        for row in await self._store.enabled():
            try:
                policies.append(policy_of(row))
            except ValueError as exc:  # stored before a check it now fails; skipped, not fatal
                log.warning("policy skipped", extra={"policy": row.name, "error": str(exc)})
        return policies

    async def assess(
        self, snapshot: Snapshot, firing: Sequence[Tracked], since: datetime, now: datetime
    ) -> list[Assessment]:
        proposals = propose(await self._policies(), snapshot, firing, since, now)
        cooldowns = await self._store.cooldowns() if proposals else {}
        return [assess(p, await self._actuator.plan(p), cooldowns.get(p.key), now) for p in proposals]

    async def recommendations(self, snapshot: Snapshot, firing: Sequence[Tracked]) -> list[Assessment]:
        now = self._now()
        return await self.assess(snapshot, firing, now - timedelta(seconds=self._interval), now)

    async def run(self, snapshot: Snapshot, firing: Sequence[Tracked]) -> list[Assessment]:
        """One pass of the loop; returns the actions taken."""
        now = self._now()
        since = self._last_run or now - timedelta(seconds=self._interval)
        self._last_run = now
        ready = [a for a in await self.assess(snapshot, firing, since, now) if a.readiness == Readiness.READY]
        if self.dry_run:
            return []
        for assessment in ready:
            await self._act(assessment)
        await self._prune(now)
        return ready

    async def _act(self, a: Assessment) -> None:
        p = a.proposal
        error = await self._actuator.perform(p, a.plan)
        decision = decision_of(p, error)
        log.info(
            "autonomic action",
            extra={
                "policy": p.policy.name,
                "action": p.action.type,
                "target": p.action.target,
                "error": error,
            },
        )
        async with self._store.db.session() as session:
            await PolicyStore.acted(session, p.policy.id, p.action.target, self._now())
            # A failed action is a decision too: its event carries the error.
            await self._publisher.publish(session, await self._actuator.record(session, p, a.plan, decision))

    async def _prune(self, now: datetime) -> None:
        async with self._store.db.session() as session:
            await session.execute(delete(CooldownRow).where(CooldownRow.acted_at < now - MAX_COOLDOWN))
