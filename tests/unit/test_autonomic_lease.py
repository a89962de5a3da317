"""The autonomic loop runs on one cluster-service replica at a time: the holder of its lease in the
database renews it; another replica takes it only once it has lapsed, or at once when released."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from godel_server.cluster.autonomic.loop import Lease
from godel_server.cluster.service import ClusterService
from tests.unit.conftest import migrated

NOW = datetime(2100, 1, 1, tzinfo=UTC)  # after the wall clock: only the release ends b's lease early


async def test_one_holder_at_a_time_and_a_takeover_after_the_lease_lapses(tmp_path: Path) -> None:
    async with migrated(tmp_path / "cluster.db", ClusterService.migrations) as db:
        a, b = Lease(db, "loop", "replica-a", ttl=10), Lease(db, "loop", "replica-b", ttl=10)
        assert await a.hold(NOW)
        assert not await b.hold(NOW + timedelta(seconds=5))
        assert await a.hold(NOW + timedelta(seconds=9))  # renewed until +19 s
        assert not await b.hold(NOW + timedelta(seconds=15))
        assert await b.hold(NOW + timedelta(seconds=20))  # a stopped renewing: b takes over
        assert not await a.hold(NOW + timedelta(seconds=21))
        assert not await a.hold(datetime.now(UTC))
        await b.release()  # lapsed at once (on the wall clock), not at +30 s
        assert await a.hold(datetime.now(UTC))
