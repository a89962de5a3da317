"""The autonomic loop of spec §4.3, every GODEL_AUTONOMIC_INTERVAL_SECONDS: collect the mesh's metrics
(MetricsCollector), evaluate the alert rules on them (AlertManager), and let the policies act on
both (AutonomicOrchestrator). One cluster-service replica runs it at a time: the one holding the
loop's lease in the database; another takes over when it stops renewing it."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError

from godel_server.cluster.alerts.manager import AlertManager
from godel_server.cluster.autonomic.orchestrator import AutonomicOrchestrator
from godel_server.cluster.collector import MetricsCollector
from godel_server.cluster.models import LeaseRow
from godel_server.runtime.db import Database
from godel_server.runtime.events import utcnow
from godel_server.runtime.periodic import Periodic

log = logging.getLogger(__name__)

LEASE_NAME = "autonomic-loop"


class Lease:
    """A named lease in the database: held by one holder until it lapses unrenewed."""

    def __init__(self, db: Database, name: str, holder: str, ttl: float) -> None:
        self._db = db
        self._name = name
        self._holder = holder
        self._ttl = timedelta(seconds=ttl)

    async def hold(self, now: datetime | None = None) -> bool:
        """Takes or renews the lease; False while another holder's lease runs."""
        now = now or utcnow()
        try:
            async with self._db.session() as session:
                renewed = await session.execute(
                    update(LeaseRow)
                    .where(
                        LeaseRow.name == self._name,
                        or_(LeaseRow.holder == self._holder, LeaseRow.expires_at < now),
                    )
                    .values(holder=self._holder, expires_at=now + self._ttl)
                )
                if renewed.rowcount:  # type: ignore[attr-defined]
                    return True
                if await session.get(LeaseRow, self._name) is not None:
                    return False
                session.add(LeaseRow(name=self._name, holder=self._holder, expires_at=now + self._ttl))
            return True
        except IntegrityError:
            return False  # another replica created it first

    async def release(self) -> None:
        async with self._db.session() as session:
            await session.execute(
                update(LeaseRow)
                .where(LeaseRow.name == self._name, LeaseRow.holder == self._holder)
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )


class AutonomicLoop:
    def __init__(
        self,
        db: Database,
        collector: MetricsCollector,
        alerts: AlertManager,
        orchestrator: AutonomicOrchestrator,
        *,
        instance: str,
        interval: float,
    ) -> None:
        self._collector = collector
        self._alerts = alerts
        self._orchestrator = orchestrator
        self._lease = Lease(db, LEASE_NAME, instance, max(3 * interval, 10.0))
        self._periodic = Periodic(LEASE_NAME, interval, self.tick)
        self._leading = False

    async def tick(self) -> None:
        if not await self._lease.hold():
            if self._leading:
                log.info("autonomic loop handed over to another replica")
            self._leading = False
            return
        if not self._leading:
            await self._alerts.restore()
            self._leading = True
            log.info("autonomic loop runs here")
        snapshot = await self._collector.collect()
        firing = await self._alerts.evaluate(snapshot)
        await self._orchestrator.run(snapshot, firing)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
        if self._leading:
            await self._lease.release()
