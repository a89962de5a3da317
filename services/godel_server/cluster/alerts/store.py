"""The alert rules, alerts, silences and notification channels in the cluster database, and the
defaults an installation gets at its first start (spec §4.3 "Default Alert Rules", and the
`events` channel)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from godel_server.cluster.alerts.kinds import AlertState, ChannelType
from godel_server.cluster.alerts.notify import EVENTS_CHANNEL
from godel_server.cluster.alerts.rules import DEFAULT_RULES, DefaultRule
from godel_server.cluster.models import AlertRow, AlertRuleRow, ChannelRow, PolicyRow, SilenceRow
from godel_server.cluster.seeds import first_time
from godel_server.runtime.db import Database
from godel_server.runtime.errors import AlreadyExistsError, NotFoundError
from godel_server.runtime.events import utcnow
from godel_server.runtime.ids import new_id
from godel_server.runtime.pagination import Keyset, keyset_page

# Rows with a unique name, found by id or by name.
Named = TypeVar("Named", AlertRuleRow, ChannelRow, PolicyRow)
R = TypeVar("R", AlertRuleRow, ChannelRow, SilenceRow, PolicyRow)

RULES = Keyset((AlertRuleRow.name, AlertRuleRow.id))
CHANNELS = Keyset((ChannelRow.name, ChannelRow.id))
NEWEST_ALERTS = Keyset((AlertRow.fired_at, AlertRow.id), descending=True)
NEWEST_SILENCES = Keyset((SilenceRow.created_at, SilenceRow.id), descending=True)


async def by_id_or_name(
    session: AsyncSession, model: type[Named], ident: str, kind: str, *, lock: bool = False
) -> Named:
    row = await session.get(model, ident, with_for_update=lock) if len(ident) <= 36 else None
    if row is None:
        stmt = select(model).where(model.name == ident)
        row = await session.scalar(stmt.with_for_update() if lock else stmt)
    if row is None:
        raise NotFoundError(kind, ident)
    return row


async def create_once(db: Database, row: R, kind: str, unique: InstrumentedAttribute[str] | None = None) -> R:
    """Stores a new row; a repeated request_id gives back the row it made; a value of the `unique`
    column (its name) that another row has is ALREADY_EXISTS."""
    model = type(row)

    async def find(session: AsyncSession) -> R | None:
        found: R | None = await session.scalar(select(model).where(model.request_id == row.request_id))
        return found

    async def create(session: AsyncSession) -> R:
        if unique is not None:
            value = getattr(row, unique.key)
            if await session.scalar(select(unique).where(unique == value)) is not None:
                raise AlreadyExistsError(f"{kind} {value!r} already exists", metadata={unique.key: value})
        session.add(row)
        return row

    created: R = await db.create_once(row.request_id or "", find, create)
    return created


class AlertStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- rules ------------------------------------------------------------------------------
    async def create_rule(self, row: AlertRuleRow) -> AlertRuleRow:
        return await create_once(self.db, row, "alert rule", AlertRuleRow.name)

    async def rule(self, ident: str) -> AlertRuleRow:
        async with self.db.reader() as session:
            return await by_id_or_name(session, AlertRuleRow, ident, "alert rule")

    async def enabled_rules(self) -> Sequence[AlertRuleRow]:
        async with self.db.reader() as session:
            return (await session.scalars(select(AlertRuleRow).where(AlertRuleRow.enabled.is_(True)))).all()

    async def rules_page(self, page_size: int, page_token: str) -> tuple[Sequence[AlertRuleRow], str]:
        async with self.db.reader() as session:
            return await keyset_page(
                session,
                select(AlertRuleRow),
                RULES,
                page_size=page_size,
                page_token=page_token,
                query=("rules",),
            )

    async def update_rule(self, ident: str, change: Callable[[AlertRuleRow], None]) -> AlertRuleRow:
        async with self.db.session() as session:
            row = await by_id_or_name(session, AlertRuleRow, ident, "alert rule", lock=True)
            change(row)
            row.updated_at = utcnow()
            return row

    async def delete_rule(self, ident: str) -> None:
        async with self.db.session() as session:
            await session.delete(await by_id_or_name(session, AlertRuleRow, ident, "alert rule", lock=True))

    # ---- alerts -----------------------------------------------------------------------------
    async def alerts_page(
        self, states: Sequence[AlertState], rule_id: str, page_size: int, page_token: str
    ) -> tuple[Sequence[AlertRow], str]:
        stmt = select(AlertRow)
        if states:
            stmt = stmt.where(AlertRow.state.in_(states))
        if rule_id:
            stmt = stmt.where(AlertRow.rule_id == rule_id)
        async with self.db.reader() as session:
            return await keyset_page(
                session,
                stmt,
                NEWEST_ALERTS,
                page_size=page_size,
                page_token=page_token,
                query=("alerts", sorted(states), rule_id),
            )

    async def firing(self) -> Sequence[AlertRow]:
        async with self.db.reader() as session:
            return (await session.scalars(select(AlertRow).where(AlertRow.state == AlertState.FIRING))).all()

    # ---- silences ---------------------------------------------------------------------------
    async def create_silence(self, row: SilenceRow) -> SilenceRow:
        return await create_once(self.db, row, "silence")

    async def silences_page(
        self, include_expired: bool, now: datetime, page_size: int, page_token: str
    ) -> tuple[Sequence[SilenceRow], str]:
        stmt = select(SilenceRow)
        if not include_expired:
            stmt = stmt.where(SilenceRow.ends_at > now)
        async with self.db.reader() as session:
            return await keyset_page(
                session,
                stmt,
                NEWEST_SILENCES,
                page_size=page_size,
                page_token=page_token,
                query=("silences", include_expired),
            )

    async def current_silences(self, now: datetime) -> Sequence[SilenceRow]:
        async with self.db.reader() as session:
            stmt = select(SilenceRow).where(SilenceRow.ends_at > now, SilenceRow.starts_at <= now)
            return (await session.scalars(stmt)).all()

    async def expire_silence(self, silence_id: str) -> None:
        async with self.db.session() as session:
            row = await session.get(SilenceRow, silence_id, with_for_update=True)
            if row is None:
                raise NotFoundError("silence", silence_id)
            now = utcnow()
            if row.ends_at > now:
                row.ends_at = max(now, row.starts_at)

    # ---- channels ---------------------------------------------------------------------------
    async def create_channel(self, row: ChannelRow) -> ChannelRow:
        return await create_once(self.db, row, "notification channel", ChannelRow.name)

    async def channels(self) -> Sequence[ChannelRow]:
        async with self.db.reader() as session:
            return (await session.scalars(select(ChannelRow))).all()

    async def channel_names(self, names: Sequence[str]) -> set[str]:
        async with self.db.reader() as session:
            return set(
                (await session.scalars(select(ChannelRow.name).where(ChannelRow.name.in_(names)))).all()
            )

    async def channels_page(self, page_size: int, page_token: str) -> tuple[Sequence[ChannelRow], str]:
        async with self.db.reader() as session:
            return await keyset_page(
                session,
                select(ChannelRow),
                CHANNELS,
                page_size=page_size,
                page_token=page_token,
                query=("channels",),
            )

    async def delete_channel(self, ident: str) -> None:
        async with self.db.session() as session:
            await session.delete(
                await by_id_or_name(session, ChannelRow, ident, "notification channel", lock=True)
            )

    # ---- defaults ---------------------------------------------------------------------------
    async def ensure_defaults(self) -> None:
        """Creates the default rules and the `events` channel, once per database."""
        now = utcnow()
        async with self.db.session() as session:
            if not await first_time(session, "alert-defaults"):
                return
            taken = set((await session.scalars(select(AlertRuleRow.name))).all())
            session.add_all(default_rule_row(d, now) for d in DEFAULT_RULES if d.name not in taken)
            if not await session.scalar(select(ChannelRow.id).where(ChannelRow.name == EVENTS_CHANNEL)):
                session.add(
                    ChannelRow(id=new_id(), name=EVENTS_CHANNEL, type=ChannelType.EVENT, created_at=now)
                )


def default_rule_row(default: DefaultRule, now: datetime) -> AlertRuleRow:
    c = default.condition
    return AlertRuleRow(
        id=new_id(),
        name=default.name,
        description=default.description,
        metric=c.metric,
        operator=c.operator,
        threshold=c.threshold,
        labels=dict(c.labels),
        severity=default.severity,
        channels=list(default.channels),
        for_seconds=float(default.for_seconds),
        interval_seconds=0.0,
        enabled=True,
        builtin=True,
        created_at=now,
        updated_at=now,
    )
