"""Keyset pages (runtime/pagination.py) over a real table: every row once, in order, ties on the
first key column broken by the second, in both directions; tokens bound to their query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from godel_server.runtime.db import Database
from godel_server.runtime.errors import ValidationError
from godel_server.runtime.pagination import Keyset, keyset_page
from godel_server.runtime.statuses import TaskStatus
from godel_server.team.models import TaskRow

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NEWEST = Keyset((TaskRow.created_at, TaskRow.id), descending=True)
OLDEST = Keyset((TaskRow.created_at, TaskRow.id))


async def add_tasks(db: Database, count: int) -> list[TaskRow]:
    """`count` tasks, three per timestamp (so pages end inside runs of equal created_at)."""
    rows = [
        TaskRow(
            id=f"task-{i:03d}",
            title=f"t{i}",
            status=TaskStatus.PENDING if i % 2 else TaskStatus.COMPLETED,
            priority=2,
            created_at=T0 + timedelta(seconds=i // 3),
            updated_at=T0,
            meta={},
        )
        for i in range(count)
    ]
    async with db.session() as session:
        session.add_all(rows)
    return rows


async def all_pages(
    db: Database, keyset: Keyset, size: int, *, pending_only: bool = False
) -> list[list[str]]:
    stmt = select(TaskRow)
    if pending_only:
        stmt = stmt.where(TaskRow.status == TaskStatus.PENDING)
    pages: list[list[str]] = []
    token = ""
    while True:
        async with db.reader() as session:
            rows, token = await keyset_page(
                session, stmt, keyset, page_size=size, page_token=token, query=("tasks", pending_only)
            )
        pages.append([r.id for r in rows])
        if not token:
            return pages


async def test_pages_cover_every_row_once_in_order(db: Database) -> None:
    rows = await add_tasks(db, 23)
    newest = sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)
    pages = await all_pages(db, NEWEST, 5)
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [i for p in pages for i in p] == [r.id for r in newest]
    oldest = await all_pages(db, OLDEST, 4)
    assert [i for p in oldest for i in p] == [r.id for r in reversed(newest)]
    # A filter rides along; exactly one page when everything fits.
    pending = await all_pages(db, NEWEST, 100, pending_only=True)
    assert pending == [[r.id for r in newest if r.status == TaskStatus.PENDING]]


async def test_a_single_column_key(db: Database) -> None:
    await add_tasks(db, 7)
    pages = await all_pages(db, Keyset((TaskRow.id,)), 3)
    assert pages == [["task-000", "task-001", "task-002"], ["task-003", "task-004", "task-005"], ["task-006"]]


async def test_a_token_only_works_for_its_own_query(db: Database) -> None:
    await add_tasks(db, 4)
    async with db.reader() as session:
        _, token = await keyset_page(
            session, select(TaskRow), NEWEST, page_size=2, page_token="", query=("tasks", False)
        )
        with pytest.raises(ValidationError, match="page_token"):
            await keyset_page(
                session, select(TaskRow), NEWEST, page_size=2, page_token=token, query=("tasks", True)
            )
        with pytest.raises(ValidationError, match="page_token"):
            await keyset_page(
                session, select(TaskRow), OLDEST, page_size=2, page_token=token[:-3], query=("tasks", False)
            )
