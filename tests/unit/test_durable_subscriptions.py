"""A durable subscription's cursor is saved when its stream ends, and the subscription reads as
connected (with its live position) until that save is committed, also when the stream's task
is cancelled because the client went away."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from godel_server.event.durable import DurableSubscriptions
from godel_server.event.options import SubscribeOptions
from godel_server.event.service import EventService
from godel_server.event.store import EventFilter
from godel_server.runtime.db import Database
from godel_server.runtime.migrations import upgrade
from tests.waits import wait_for_async


@pytest.fixture
async def durable(tmp_path: Path) -> AsyncIterator[DurableSubscriptions]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/event.db")
    await upgrade(database, EventService.migrations)
    yield DurableSubscriptions(database)
    await database.close()


async def test_a_cancelled_close_saves_the_cursor_before_forgetting_it(
    durable: DurableSubscriptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = SubscribeOptions(filter=EventFilter(types=("x:*",)), from_sequence=0, name="mine")
    _, cursor = await durable.open("alice", options, 0, field="subscription_name")
    cursor.advance(7)
    committed = asyncio.Event()
    save = durable._save

    async def slow_save(cursors: list[object]) -> None:
        await committed.wait()
        await save(cursors)  # type: ignore[arg-type]

    monkeypatch.setattr(durable, "_save", slow_save)
    closing = asyncio.create_task(durable.close(cursor))
    await asyncio.sleep(0.05)  # close() is waiting for the save
    closing.cancel()  # the client went away
    with pytest.raises(asyncio.CancelledError):
        await closing
    during = await durable.get("alice", "mine")
    assert (during.connected, during.last_sequence) == (True, 7), "not forgotten before it is saved"

    committed.set()

    await wait_for_async(
        lambda: ("alice", "mine") not in durable._open, 10, "the subscription to be forgotten"
    )
    stored = await durable.get("alice", "mine")
    assert (stored.connected, stored.last_sequence) == (False, 7)


async def test_a_read_that_a_close_overtakes_shows_the_live_cursor(
    durable: DurableSubscriptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A get reads the row (last_sequence still 0), and before it answers the stream ends: its
    save commits and the cursor is forgotten. The answer must not be the stale row, disconnected."""
    options = SubscribeOptions(filter=EventFilter(types=("x:*",)), from_sequence=0, name="mine")
    _, cursor = await durable.open("alice", options, 0, field="subscription_name")
    cursor.advance(580)
    reader = durable._db.reader

    @contextlib.asynccontextmanager
    async def overtaken_reader() -> AsyncIterator[Any]:
        async with reader() as session:
            real_get: Any = session.get

            async def get(*args: Any, **kwargs: Any) -> Any:
                row = await real_get(*args, **kwargs)
                await durable.close(cursor)  # saved and forgotten while this read is in flight
                return row

            overtaken: Any = session
            overtaken.get = get
            yield overtaken

    monkeypatch.setattr(durable._db, "reader", overtaken_reader)
    answer = await durable.get("alice", "mine")
    monkeypatch.undo()
    assert answer.last_sequence == 580, "never the row as it was before the save"
    stored = await durable.get("alice", "mine")
    assert (stored.connected, stored.last_sequence) == (False, 580)
