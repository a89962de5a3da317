"""The AlertManager of spec §4.3: evaluates the enabled rules on each snapshot of the mesh's metrics,
stores every alert that fires (the alert history) and resolves it, publishes `system:alert:firing`
and `system:alert:resolved` with the change, and routes it to the rule's notification channels
unless a silence matches it. An alert that notified nobody when it fired notifies nobody when it
resolves."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from google.protobuf import json_format
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import alert_events_pb2, event_pb2
from godel_server.cluster.alerts.kinds import AlertState, ChannelType
from godel_server.cluster.alerts.mapping import alert_to_proto, channel_of, rule_of, silence_of
from godel_server.cluster.alerts.notify import COMPONENT, Channel, Notifier, route
from godel_server.cluster.alerts.rules import (
    ALERTNAME,
    SEVERITY_LABEL,
    AlertEvaluator,
    Change,
    Rule,
    Tracked,
    silenced_by,
)
from godel_server.cluster.alerts.store import AlertStore
from godel_server.cluster.models import AlertRow
from godel_server.cluster.snapshot import Condition, Operator, Snapshot, fingerprint
from godel_server.runtime.events import new_event, utcnow
from godel_server.runtime.publisher import EventPublisher

# A webhook POST: what is sent for each alert that fires or resolves.
WEBHOOK_VERSION = "1"
# The condition of a rule that no longer exists (its stored alerts are resolved).
ORPHANED = Condition("", Operator.GT, 0.0)


class AlertManager:
    def __init__(
        self,
        store: AlertStore,
        publisher: EventPublisher,
        notifier: Notifier,
        *,
        instance: str,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._notifier = notifier
        self._instance = instance
        self._interval = interval
        self._clock = clock
        self._evaluator = AlertEvaluator()

    async def stored_firing(self) -> tuple[list[Tracked], list[Tracked]]:
        """The alerts stored as firing: those whose rule is enabled, and the others."""
        rules = {r.id: rule_of(r, self._interval) for r in await self._store.enabled_rules()}
        firing: list[Tracked] = []
        orphans: list[Tracked] = []
        for row in await self._store.firing():
            series = {k: v for k, v in (row.labels or {}).items() if k not in (ALERTNAME, SEVERITY_LABEL)}
            rule = rules.get(row.rule_id) or Rule(row.rule_id, row.rule_name, ORPHANED, row.severity)
            alert = Tracked(rule, series, row.value, self._clock(), row.active_at, row.id)
            (firing if row.rule_id in rules else orphans).append(alert)
        return firing, orphans

    async def restore(self) -> None:
        """Starts from the stored firing alerts (after a restart, or on taking over the loop); those
        whose rule was disabled or deleted meanwhile resolve now."""
        self._evaluator = AlertEvaluator()
        firing, orphans = await self.stored_firing()
        for alert in firing:
            self._evaluator.restore(alert)
        if orphans:
            await self._record(
                [
                    Change(AlertState.RESOLVED, a, f"rule {a.rule.name} was disabled or deleted")
                    for a in orphans
                ]
            )

    def firing(self) -> list[Tracked]:
        return self._evaluator.firing()

    async def evaluate(self, snapshot: Snapshot) -> list[Tracked]:
        """One evaluation; returns the alerts firing after it."""
        rules = [rule_of(r, self._interval) for r in await self._store.enabled_rules()]
        changes = self._evaluator.evaluate(rules, snapshot, self._clock(), utcnow())
        if changes:
            await self._record(changes)
        return self._evaluator.firing()

    async def _record(self, changes: Sequence[Change]) -> None:
        now = utcnow()
        silences = [silence_of(r) for r in await self._store.current_silences(now)]
        channels = [channel_of(r) for r in await self._store.channels()]
        posts: list[tuple[Channel, str, dict[str, Any]]] = []
        async with self._store.db.session() as session:
            events: list[event_pb2.Event] = []
            for change in changes:
                if change.state == AlertState.FIRING:
                    row = self._fire(
                        session, change, silenced_by(silences, change.alert.labels, now), channels, now
                    )
                else:
                    found = await self._resolve(session, change, now)
                    if found is None:
                        continue
                    row = found
                targets = [c for c in channels if c.name in row.notified_channels]
                events.extend(self._events(row, targets))
                posts.extend(
                    (c, _text(row), self._webhook(row, c)) for c in targets if c.type != ChannelType.EVENT
                )
            await session.flush()
            await self._publisher.publish(session, events)
        for channel, text, payload in posts:
            self._notifier.deliver(channel, text, payload)

    def _fire(
        self,
        session: AsyncSession,
        change: Change,
        silenced: list[str],
        channels: list[Channel],
        now: datetime,
    ) -> AlertRow:
        t = change.alert
        assert t.alert_id is not None
        targets = [] if silenced else route(channels, t.rule.channels)
        row = AlertRow(
            id=t.alert_id,
            rule_id=t.rule.id,
            rule_name=t.rule.name,
            severity=t.rule.severity,
            state=AlertState.FIRING,
            fingerprint=fingerprint(t.series),
            labels=t.labels,
            value=t.value,
            summary=change.summary,
            active_at=t.active_at,
            fired_at=now,
            silenced=bool(silenced),
            notified_channels=[c.name for c in targets],
        )
        session.add(row)
        return row

    async def _resolve(self, session: AsyncSession, change: Change, now: datetime) -> AlertRow | None:
        row = await session.get(AlertRow, change.alert.alert_id, with_for_update=True)
        if row is None or row.state != AlertState.FIRING:
            return None
        row.state = AlertState.RESOLVED
        row.resolved_at = now
        row.value = change.alert.value
        row.summary = change.summary
        return row

    def _events(self, row: AlertRow, targets: list[Channel]) -> list[event_pb2.Event]:
        alert = alert_to_proto(row)
        data = (
            alert_events_pb2.AlertFiring(alert=alert)
            if row.state == AlertState.FIRING
            else alert_events_pb2.AlertResolved(alert=alert)
        )
        events = [new_event(data, partition_key=row.rule_id, component=COMPONENT, instance=self._instance)]
        events.extend(
            self._notifier.event(c, _text(row), alert=alert) for c in targets if c.type == ChannelType.EVENT
        )
        return events

    @staticmethod
    def _webhook(row: AlertRow, channel: Channel) -> dict[str, Any]:
        return {
            "version": WEBHOOK_VERSION,
            "channel": channel.name,
            "status": row.state.value,
            "alert": json_format.MessageToDict(alert_to_proto(row)),
        }


def _text(row: AlertRow) -> str:
    """The one-line notification of an alert (event and OpenClaw channels)."""
    return f"[{row.severity.upper()}] {row.rule_name} {row.state}: {row.summary}"
