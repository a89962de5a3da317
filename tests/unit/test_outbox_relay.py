"""The SQLite outbox relay: sends without the write lock, deletes sent rows in batches, and sends
again after a restart whatever it had not deleted (at-least-once; consumers dedupe by id)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from godel_server.agent.service import AgentService
from godel_server.runtime.db import Database
from godel_server.runtime.events import custom_event
from godel_server.runtime.migrations import upgrade
from godel_server.runtime.outbox import OutboxRelay, enqueue
from godel_server.runtime.tables import outbox


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, topic: str, *, value: bytes, key: bytes, headers: list[Any]) -> asyncio.Future[None]:
        self.sent.append(dict(headers)["ce_id"].decode())
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def _add(db: Database, n: int) -> list[str]:
    events = [custom_event("relay:test", {"i": i}, partition_key="a", component="test") for i in range(n)]
    async with db.session() as session:
        await enqueue(session, events)
    return [e.id for e in events]


async def _rows(db: Database) -> int:
    async with db.reader() as session:
        return int(await session.scalar(select(func.count()).select_from(outbox)) or 0)


# time.monotonic() counts from boot: half a minute after boot, and after five weeks up.
@pytest.mark.parametrize("uptime", [30.0, 5 * 7 * 86400.0])
async def test_sqlite_relay_batches_deletes_and_resends_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uptime: float
) -> None:
    monkeypatch.setattr("godel_server.runtime.outbox.time.monotonic", lambda: uptime)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'agent.db'}")
    await upgrade(db, AgentService.migrations)
    producer = FakeProducer()
    relay = OutboxRelay(db, producer, poll_seconds=1.0, delete_seconds=3600)

    first = await _add(db, 3)
    assert await relay.relay_once() == 3
    assert producer.sent == first
    assert await _rows(db) == 0  # the first batch is deleted at once

    second = await _add(db, 2)
    assert await relay.relay_once() == 2
    assert producer.sent == first + second
    assert await _rows(db) == 2  # sent, deletion batched
    assert await relay.relay_once() == 0  # nothing is sent twice by the same relay

    restarted = OutboxRelay(db, producer, poll_seconds=1.0)
    assert await restarted.relay_once(final=True) == 2
    assert producer.sent == first + second + second  # at least once
    assert await _rows(db) == 0
    await db.close()
