"""A transaction's events go to the outbox when it commits: all in one statement, in the order
they were published, and none when it rolls back."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from godel_server.runtime.db import Database
from godel_server.runtime.events import custom_event
from godel_server.runtime.outbox import enqueue
from tests.unit.conftest import outbox_events


def _events(n: int, start: int = 0) -> list[Any]:
    return [
        custom_event("outbox:test", {"i": i}, partition_key="k", component="test") for i in range(start, n)
    ]


async def test_the_events_of_a_transaction_are_written_together_at_its_commit(db: Database) -> None:
    inserts: list[bool] = []

    def seen(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if statement.startswith("INSERT INTO outbox"):
            inserts.append(many)

    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    first, second = _events(3), _events(6, 3)
    async with db.session() as session:
        for e in first:
            await enqueue(session, [e])  # a consumer batch publishes per event it handles
        await enqueue(session, second)
        assert inserts == []  # nothing written before the commit
    assert len(inserts) == 1
    assert [e.id for e in await outbox_events(db)] == [e.id for e in first + second]


async def test_a_rolled_back_transaction_leaves_no_event_and_the_next_one_only_its_own(db: Database) -> None:
    lost, kept = _events(2), _events(4, 2)
    with pytest.raises(RuntimeError):
        async with db.session() as session:
            await enqueue(session, lost)
            raise RuntimeError("the handler failed")
    async with db.session() as session:
        await enqueue(session, kept)
    assert [e.id for e in await outbox_events(db)] == [e.id for e in kept]


async def test_each_commit_of_a_session_writes_what_was_published_since_the_last(db: Database) -> None:
    batches = [_events(2), _events(5, 2)]
    async with db.sessions() as session:
        for batch in batches:
            async with session.begin():
                await enqueue(session, batch)
    assert [e.id for e in await outbox_events(db)] == [e.id for b in batches for e in b]
