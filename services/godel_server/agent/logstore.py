"""Agent log lines: buffered writes with a per-agent sequence, pages, and followers.

What agents print is untrusted: every line is made storable (runtime/text.py), each agent keeps at
most `max_lines` lines (then one marker line says the quota is reached and later lines are counted
in godel_agent_log_lines_dropped_total, not stored), and a batch the database refuses
FLUSH_ATTEMPTS times is written line by line, dropping (and counting) only the lines that fail, so
one bad line cannot stop the writer (and the final states queued behind it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter
from sqlalchemy import func, insert, select

from godel_server.agent.models import AgentLogRow
from godel_server.runtime.db import Database, unreachable
from godel_server.runtime.pagination import Keyset, keyset_page
from godel_server.runtime.text import storable_text

log = logging.getLogger(__name__)

LINES = Keyset((AgentLogRow.sequence,))
FLUSH_SECONDS = 0.1
FLUSH_ATTEMPTS = 3
MAX_MESSAGE = 16_384
DEFAULT_MAX_LINES = 100_000
DROPPED = Counter(
    "godel_agent_log_lines_dropped_total", "Agent log lines not stored", ["reason"]
)  # reason: quota (over the agent's quota) or unstorable (refused by the database)


@dataclass(frozen=True)
class LogLine:
    time: datetime
    level: str
    stream: str
    message: str


class LogStore:
    def __init__(self, db: Database, max_lines: int = DEFAULT_MAX_LINES) -> None:
        self._db = db
        self._max_lines = max_lines
        self._failures = 0
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
            await self._write(batch)
        except Exception as exc:
            # Sequences may have been taken by another replica: reload them before the next try.
            for agent_id, _, _ in batch:
                self._next_seq.pop(agent_id, None)
            self._failures += 1
            if unreachable(exc) or self._failures < FLUSH_ATTEMPTS:
                self._pending[:0] = batch
                raise
            log.warning(
                "a batch of agent logs was refused; writing it line by line", extra={"error": repr(exc)}
            )
            for item in batch:
                await self._write_one(item)
        self._failures = 0
        for agent_id in {a for a, _, _ in batch}:
            self.notify(agent_id)

    async def _write(self, batch: list[tuple[str, str | None, LogLine]]) -> None:
        async with self._db.session() as session:
            rows = []
            for agent_id, session_id, line in batch:
                if agent_id not in self._next_seq:
                    last = await session.scalar(
                        select(func.max(AgentLogRow.sequence)).where(AgentLogRow.agent_id == agent_id)
                    )
                    self._next_seq[agent_id] = (last or 0) + 1
                row = self._row(agent_id, session_id, line)
                if row is not None:
                    rows.append(row)
            if rows:
                await session.execute(insert(AgentLogRow), rows)

    async def _write_one(self, item: tuple[str, str | None, LogLine]) -> None:
        try:
            await self._write([item])
        except Exception as exc:
            if unreachable(exc):
                self._pending.append(item)
                raise
            self._next_seq.pop(item[0], None)
            DROPPED.labels("unstorable").inc()
            log.warning("an agent log line was not stored", extra={"agentId": item[0], "error": repr(exc)})

    def _row(self, agent_id: str, session_id: str | None, line: LogLine) -> dict[str, object] | None:
        """The row of the agent's next line: the line, the quota marker once the quota is reached,
        or None (dropped) after it."""
        seq = self._next_seq[agent_id]
        if seq > self._max_lines + 1:
            DROPPED.labels("quota").inc()
            return None
        self._next_seq[agent_id] = seq + 1
        level, stream, message = line.level, line.stream, line.message
        if seq == self._max_lines + 1:
            DROPPED.labels("quota").inc()
            level, stream = "WARN", "runtime"
            message = f"[godel] log quota of {self._max_lines} lines reached: later lines of this agent are not stored"
        return {
            "agent_id": agent_id,
            "sequence": seq,
            "session_id": session_id,
            "time": line.time,
            "level": storable_text(level)[:10],
            "stream": storable_text(stream)[:20],
            "message": storable_text(message[:MAX_MESSAGE]),
        }

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

    async def page(self, agent_id: str, *, after: int, limit: int) -> list[AgentLogRow]:
        """Up to `limit` lines after sequence `after` (what a follower reads next)."""
        stmt = select(AgentLogRow).where(AgentLogRow.agent_id == agent_id, AgentLogRow.sequence > after)
        async with self._db.reader() as session:
            return list((await session.scalars(LINES.order(stmt).limit(limit))).all())

    async def list_page(
        self, agent_id: str, *, session_id: str, page_size: int, page_token: str
    ) -> tuple[Sequence[AgentLogRow], str]:
        """One page of the stored lines of an agent (of one of its sessions), oldest first."""
        stmt = select(AgentLogRow).where(AgentLogRow.agent_id == agent_id)
        if session_id:
            stmt = stmt.where(AgentLogRow.session_id == session_id)
        async with self._db.reader() as session:
            return await keyset_page(
                session,
                stmt,
                LINES,
                page_size=page_size,
                page_token=page_token,
                query=("logs", agent_id, session_id),
                default_size=100,
            )
