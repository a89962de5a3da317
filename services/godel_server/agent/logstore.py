"""Agent log lines: buffered writes with a per-agent sequence, pages, and followers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select

from godel_server.agent.models import AgentLogRow
from godel_server.runtime.db import Database

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.1
MAX_MESSAGE = 16_384


@dataclass(frozen=True)
class LogLine:
    time: datetime
    level: str
    stream: str
    message: str


class LogStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: list[tuple[str, str | None, LogLine]] = []
        self._next_seq: dict[str, int] = {}
        self._changed: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="log-writer")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.flush()

    def append(self, agent_id: str, session_id: str | None, lines: list[LogLine]) -> None:
        self._pending.extend((agent_id, session_id, line) for line in lines)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
            except Exception:
                log.exception("writing agent logs failed; retrying")
                await asyncio.sleep(1.0)
                self._wake.set()

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            async with self._db.session() as session:
                rows = []
                for agent_id, session_id, line in batch:
                    if agent_id not in self._next_seq:
                        last = await session.scalar(
                            select(func.max(AgentLogRow.sequence)).where(AgentLogRow.agent_id == agent_id)
                        )
                        self._next_seq[agent_id] = (last or 0) + 1
                    seq = self._next_seq[agent_id]
                    self._next_seq[agent_id] = seq + 1
                    rows.append(
                        {
                            "agent_id": agent_id,
                            "sequence": seq,
                            "session_id": session_id,
                            "time": line.time,
                            "level": line.level,
                            "stream": line.stream,
                            "message": line.message[:MAX_MESSAGE],
                        }
                    )
                await session.execute(insert(AgentLogRow), rows)
        except Exception:
            # Sequences may have been taken by another replica: reload them and retry the batch.
            for agent_id, _, _ in batch:
                self._next_seq.pop(agent_id, None)
            self._pending[:0] = batch
            raise
        for agent_id in {a for a, _, _ in batch}:
            self.notify(agent_id)

    def notify(self, agent_id: str) -> None:
        event = self._changed.pop(agent_id, None)
        if event is not None:
            event.set()

    async def wait_for_change(self, agent_id: str, timeout: float) -> None:
        """Returns when new lines of the agent were written here, or after `timeout` (lines written
        by another replica are found by the caller's next read)."""
        event = self._changed[agent_id]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    async def page(self, agent_id: str, *, after: int, limit: int, session_id: str = "") -> list[AgentLogRow]:
        stmt = select(AgentLogRow).where(AgentLogRow.agent_id == agent_id, AgentLogRow.sequence > after)
        if session_id:
            stmt = stmt.where(AgentLogRow.session_id == session_id)
        stmt = stmt.order_by(AgentLogRow.sequence).limit(limit)
        async with self._db.reader() as session:
            return list((await session.scalars(stmt)).all())
