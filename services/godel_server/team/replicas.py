"""Which team-service replica drives which teams and workflows, so that several replicas share the
work and a replica that dies (kill -9) hands its teams and workflows to another.

Decisions need no owner: each is made in one transaction holding the team's or workflow's row lock,
on whichever replica the request or the agent event reached (the consumer group spreads agent
events over the replicas). What a decision leaves in memory does: the agent calls made after the
commit, the timers (workflow retries and deadlines, team timeouts) and the cached step view. They
belong to the replica that *drives* the row, the one named in its `replica` column:

- a replica that commits a decision on a row drives it from then on (it writes its id in the same
  transaction); when the row came from another replica, it adopts it (`adopt` below);
- each replica renews a lease in `team_replicas`; the rows of a replica whose lease lapsed are
  claimed and adopted by a live one within about a lease (`GODEL_TEAM_LEASE_SECONDS`); a replica
  that starts again under the id it had adopts its own rows at start (its memory is gone);
- adopting a row makes again the agent calls its members may still be owed (CreateAgent is
  idempotent by member id, so a step never gets a second agent; kills of members told to stop)
  and arms its timers; the timers the previous replica still holds find the row is no longer its
  own and do nothing.

StartTeam watchers are served by the replica the client reached: its own decisions reach them at
once, the others' through the database (teams/orchestrator.py `follow`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import InstrumentedAttribute

from godel_server.runtime.config import Settings
from godel_server.runtime.db import Database
from godel_server.runtime.periodic import Periodic
from godel_server.runtime.replicas import ReplicaLease
from godel_server.team.members import ACTIVE
from godel_server.team.models import MemberRow, TeamReplicaRow, TeamRow, WorkflowRow

log = logging.getLogger(__name__)

# Whether a row's replica (read under the row's lock) has left it to be claimed.
Orphaned = Callable[[str | None], bool]


@dataclass(frozen=True)
class Driven:
    """A kind of row the replicas drive (teams, workflows): the rows that still need a driver are
    the unfinished ones and those with members still owed an agent call."""

    name: str
    model: type[TeamRow] | type[WorkflowRow]
    unfinished: Collection[str]
    members_of: InstrumentedAttribute[str | None]
    # Takes the row over under its lock when `orphaned(row.replica)` still holds.
    adopt: Callable[[str, Orphaned], Awaitable[bool]]


class Replicas:
    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self.me = settings.instance_id
        self.lease = ReplicaLease(
            db, TeamReplicaRow, self.me, settings.grpc_address, settings.team_lease_seconds
        )
        self._kinds: list[Driven] = []
        self._loop = Periodic("team-replicas", self.lease.renew_interval, self.step)

    def drive(self, kind: Driven) -> None:
        self._kinds.append(kind)

    async def start(self) -> None:
        """Renews the lease, takes back this replica's own rows (it restarted) and the orphans."""
        await self.lease.renew()
        await self.claim(restarted=True)
        self._loop.start()

    async def stop(self) -> None:
        """Ends the lease, so that the other replicas take the rows over at once."""
        await self._loop.stop()
        with contextlib.suppress(Exception):
            await self.lease.release()

    async def step(self) -> None:
        await self.lease.renew()
        await self.claim()

    async def claim(self, *, restarted: bool = False) -> int:
        """Adopts the rows whose replica is gone (and this replica's own, when `restarted`);
        returns how many."""
        async with self._db.reader() as session:
            live = set((await session.scalars(self.lease.live())).all())

        def orphaned(replica: str | None) -> bool:
            return replica is None or replica not in live or (restarted and replica == self.me)

        adopted: dict[str, int] = {}
        for kind in self._kinds:
            for row_id in await self._orphans(kind, live, restarted):
                if await kind.adopt(row_id, orphaned):
                    adopted[kind.name] = adopted.get(kind.name, 0) + 1
        if adopted:
            log.warning(
                "took over teams and workflows",
                extra={"adopted": adopted, "replica": self.me, "restarted": restarted},
            )
        return sum(adopted.values())

    async def _orphans(self, kind: Driven, live: set[str], restarted: bool) -> set[str]:
        model = kind.model
        others = [r for r in live if not (restarted and r == self.me)]
        gone = or_(model.replica.is_(None), model.replica.not_in(others))
        async with self._db.reader() as session:
            unfinished = await session.scalars(
                select(model.id).where(model.status.in_(kind.unfinished), gone)
            )
            owed = await session.scalars(
                select(model.id)
                .join(MemberRow, kind.members_of == model.id)
                .where(MemberRow.status.in_(ACTIVE), gone)
                .distinct()
            )
            return set(unfinished.all()) | set(owed.all())
