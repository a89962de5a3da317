"""Agent logs (agent/logstore.py): what an agent prints is stored whatever it is, up to a quota,
and a line the database refuses cannot stop the writer."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import InternalError

from godel_server.agent.logstore import LogLine, LogStore
from godel_server.runtime.db import Database
from godel_server.runtime.events import utcnow

AGENT = "a" * 36


def _line(message: str) -> LogLine:
    return LogLine(time=utcnow(), level="INFO", stream="stdout", message=message)


async def _messages(logs: LogStore) -> list[str]:
    return [row.message for row in await logs.page(AGENT, after=0, limit=1000)]


async def test_a_nul_and_a_lone_surrogate_are_stored_as_replacement_characters(agent_db: Database) -> None:
    logs = LogStore(agent_db)
    logs.append(AGENT, None, [_line("before\x00after"), _line("half \ud800 pair")])
    await logs.flush()
    assert await _messages(logs) == ["before\ufffdafter", "half \ufffd pair"]


async def test_past_the_quota_one_marker_line_is_kept_and_the_rest_dropped(agent_db: Database) -> None:
    logs = LogStore(agent_db, max_lines=3)
    logs.append(AGENT, None, [_line(f"line {i}") for i in range(5)])
    await logs.flush()
    logs.append(AGENT, None, [_line("later")])
    await logs.flush()
    messages = await _messages(logs)
    assert messages[:3] == ["line 0", "line 1", "line 2"]
    assert len(messages) == 4 and "log quota of 3 lines reached" in messages[3]
    # A restarted replica finds the marker and keeps dropping.
    again = LogStore(agent_db, max_lines=3)
    again.append(AGENT, None, [_line("after a restart")])
    await again.flush()
    assert len(await _messages(again)) == 4


class RefusingLogStore(LogStore):
    """A database that refuses every batch holding a line with "bad" in it; while `broken`, every
    write fails as when the connection breaks under the statement (the database restarts)."""

    broken = False

    async def _write(self, batch: list[tuple[str, str | None, LogLine]]) -> None:
        if self.broken:
            raise InternalError("INSERT", {}, Exception("connection lost"), connection_invalidated=True)
        if any("bad" in line.message for _, _, line in batch):
            raise ValueError("refused")
        await super()._write(batch)


async def test_a_line_the_database_refuses_is_dropped_after_bounded_attempts(agent_db: Database) -> None:
    logs = RefusingLogStore(agent_db)
    logs.append(AGENT, None, [_line("good 1"), _line("bad"), _line("good 2")])
    for _ in range(2):
        with pytest.raises(ValueError):
            await logs.flush()
    await logs.flush()  # the third attempt writes line by line
    assert await _messages(logs) == ["good 1", "good 2"]
    logs.append(AGENT, None, [_line("next")])
    await logs.flush()
    assert (await _messages(logs))[-1] == "next"


async def test_no_line_is_dropped_while_the_database_is_away(agent_db: Database) -> None:
    logs = RefusingLogStore(agent_db)
    logs.append(AGENT, None, [_line("one"), _line("two")])
    logs.broken = True
    for _ in range(5):  # more failed flushes than a refused batch gets
        with pytest.raises(InternalError):
            await logs.flush()
    logs.broken = False
    await logs.flush()
    assert await _messages(logs) == ["one", "two"]
