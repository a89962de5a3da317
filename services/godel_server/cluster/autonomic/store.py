"""Autonomic policies and their cooldowns in the cluster database, and the default policies an
installation gets at its first start (spec §4.3 "Self-Healing Actions")."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from godel_server.cluster.alerts.store import by_id_or_name, create_once
from godel_server.cluster.autonomic.mapping import default_policy_row
from godel_server.cluster.autonomic.policies import DEFAULT_POLICIES
from godel_server.cluster.models import CooldownRow, PolicyRow
from godel_server.cluster.seeds import first_time
from godel_server.runtime.db import Database
from godel_server.runtime.events import utcnow
from godel_server.runtime.pagination import Keyset, keyset_page

POLICIES = Keyset((PolicyRow.name, PolicyRow.id))
KIND = "autonomic policy"


class PolicyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, row: PolicyRow) -> PolicyRow:
        return await create_once(self.db, row, KIND, PolicyRow.name)

    async def get(self, ident: str) -> PolicyRow:
        async with self.db.reader() as session:
            return await by_id_or_name(session, PolicyRow, ident, KIND)

    async def enabled(self) -> Sequence[PolicyRow]:
        async with self.db.reader() as session:
            return (await session.scalars(select(PolicyRow).where(PolicyRow.enabled.is_(True)))).all()

    async def page(self, page_size: int, page_token: str) -> tuple[Sequence[PolicyRow], str]:
        async with self.db.reader() as session:
            return await keyset_page(
                session,
                select(PolicyRow),
                POLICIES,
                page_size=page_size,
                page_token=page_token,
                query=("policies",),
            )

    async def update(self, ident: str, change: Callable[[PolicyRow], None]) -> PolicyRow:
        async with self.db.session() as session:
            row = await by_id_or_name(session, PolicyRow, ident, KIND, lock=True)
            change(row)
            row.updated_at = utcnow()
            return row

    async def delete(self, ident: str) -> None:
        async with self.db.session() as session:
            row = await by_id_or_name(session, PolicyRow, ident, KIND, lock=True)
            await session.execute(delete(CooldownRow).where(CooldownRow.policy_id == row.id))
            await session.delete(row)

    async def cooldowns(self) -> dict[tuple[str, str], datetime]:
        async with self.db.reader() as session:
            rows = (await session.scalars(select(CooldownRow))).all()
        return {(r.policy_id, r.target): r.acted_at for r in rows}

    @staticmethod
    async def acted(session: AsyncSession, policy_id: str, target: str, at: datetime) -> None:
        """Starts the policy's cooldown on the target (in the caller's transaction)."""
        row = await session.get(CooldownRow, (policy_id, target), with_for_update=True)
        if row is None:
            session.add(CooldownRow(policy_id=policy_id, target=target, acted_at=at))
        else:
            row.acted_at = at

    async def ensure_defaults(self) -> None:
        """Creates the default policies, once per database."""
        now = utcnow()
        async with self.db.session() as session:
            if not await first_time(session, "autonomic-defaults"):
                return
            taken = set((await session.scalars(select(PolicyRow.name))).all())
            session.add_all(default_policy_row(d, now) for d in DEFAULT_POLICIES if d.name not in taken)
