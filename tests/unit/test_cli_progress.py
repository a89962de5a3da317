"""Progress bars and live tables of ``godel workflow run --watch``, ``team start --watch`` and
``godel do`` on a terminal: the command writes to a pseudo-terminal (so standard output is a TTY),
and a small screen emulator replays what it wrote. The frames drawn while the work runs show the
bar and the table; the final screen is the same lines as without a terminal, the block erased.
Without a terminal the output is unchanged: tests/unit/test_cli_orchestration.py holds it."""

from __future__ import annotations

import io
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from godel.v1 import team_pb2
from godel_client import cli_common, cli_teams, cli_workflows, live
from godel_client.cli import main
from tests.fakes.cli import clean_environment, godel
from tests.fakes.mesh import API_KEY, FakeMesh, serve
from tests.terminal import Screen
from tests.unit.test_cli_orchestration import PIPELINE  # the two steps the fake mesh plays

BLOCK_CHARACTERS = ("█", "░")


class StdoutTerminal:
    """Standard output on a pseudo-terminal while a command runs in this process."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        self.received = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.stdout = io.TextIOWrapper(io.FileIO(slave, "w"), encoding="utf-8")
        assert self.stdout.isatty()
        self.saved, sys.stdout = sys.stdout, self.stdout

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the other end was closed
                return
            if not chunk:
                return
            self.received += chunk

    def screen(self) -> Screen:
        """Puts standard output back, closes the terminal and replays all it was sent."""
        sys.stdout = self.saved
        self.stdout.close()
        self.reader.join(timeout=30)
        os.close(self.master)
        return Screen(self.received.decode())


@pytest.fixture
def mesh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[FakeMesh, str]]:
    clean_environment(monkeypatch, tmp_path)
    monkeypatch.setattr(cli_common, "wait", lambda seconds: None)
    monkeypatch.setattr(cli_workflows, "POLL_INTERVAL", 0.01)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "160")
    monkeypatch.setenv("LINES", "50")
    with serve() as (state, address):
        state.run_created_agents()
        state.hold_stream_open = True
        yield state, address


def _on_terminal(address: str, *argv: str) -> tuple[int, Screen]:
    terminal = StdoutTerminal()
    try:
        code = main(["--addr", address, "--api-key", API_KEY, *argv])
    finally:
        screen = terminal.screen()
    return code, screen


def _blocks(screen: Screen) -> list[str]:
    return [frame for frame in screen.frames if any(char in frame for char in BLOCK_CHARACTERS)]


def test_workflow_run_watch_shows_a_bar_and_a_live_step_table_then_the_plain_lines(
    mesh: tuple[FakeMesh, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, address = mesh
    path = tmp_path / "release.yaml"
    path.write_text(PIPELINE)
    code, screen = _on_terminal(address, "workflow", "run", str(path), "--watch")
    assert code == 0
    frames = _blocks(screen)
    assert frames, screen.text
    # While it runs: the bar over the steps that ended, and every step, the pending one too.
    early = next(frame for frame in frames if "0/2 steps ended" in frame)
    assert "[░░░░░░░░░░░░░░░░░░░░░░░░]   0%" in early
    assert re.search(r"^test\s+pending", early, re.M), early
    assert any("████████████░░░░░░░░░░░░]  50%  1/2 steps ended" in frame for frame in frames)
    assert any(re.search(r"^build\s+completed", f, re.M) and "test" in f for f in frames)
    # At the end the block is gone: the same lines as without a terminal.
    assert not any(char in screen.text for char in BLOCK_CHARACTERS)
    plain = godel(capsys, address, "workflow", "run", str(path), "--watch")  # not on a terminal
    assert "\x1b" not in plain.out
    workflow_id = screen.text.splitlines()[0]
    assert screen.text.replace(workflow_id, plain.lines[0]) == plain.out.rstrip("\n")


def test_team_watch_shows_the_team_bar_and_its_members_live(mesh: tuple[FakeMesh, str]) -> None:
    world, address = mesh
    code, screen = _on_terminal(
        address, "team", "create", "reviewers", "--task", "review", "--size", "3", "--watch"
    )
    assert code == 0
    team = next(iter(world.teams.values()))
    frames = _blocks(screen)
    assert len(frames) >= 3, screen.text
    assert f"team {team.id[:8]}… reviewers  active  [████████░░░░░░░░░░░░░░░░]  33%" in frames[0]
    assert re.search(rf"^{team.agent_ids[0]}\s+completed$", frames[0], re.M), frames[0]
    assert re.search(rf"^{team.agent_ids[2]}\s+-$", frames[0], re.M), frames[0]
    assert "completed 3" in frames[-1] and "100%" in frames[-1]
    lines = screen.text.splitlines()
    assert lines[0] == team.id and lines[-1].startswith(f"team {team.id} completed: 3/3 agents completed")
    assert not any(char in screen.text for char in BLOCK_CHARACTERS)


def test_do_spawn_shows_a_bar_and_a_live_agent_table(mesh: tuple[FakeMesh, str]) -> None:
    world, address = mesh
    code, screen = _on_terminal(address, "do", "spawn 2 agents to fix the flaky test")
    assert code == 0
    frames = _blocks(screen)
    assert "0/2 ended" in frames[0] and "ID" in frames[0] and "STATUS" in frames[0]
    assert "[████████████████████████] 100%  2/2 ended" in frames[-1]
    assert all(agent_id in frames[-1] for agent_id in world.agents)
    assert not any(char in screen.text for char in BLOCK_CHARACTERS)
    assert sum("completed/completed" in line for line in screen.text.splitlines()) == 2


def test_json_and_dumb_terminals_get_no_block(
    mesh: tuple[FakeMesh, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _, address = mesh
    path = tmp_path / "release.yaml"
    path.write_text(PIPELINE)
    code, screen = _on_terminal(address, "--json", "workflow", "run", str(path), "--watch")
    assert code == 0 and screen.frames == [] and "\x1b" not in screen.text
    monkeypatch.setenv("TERM", "dumb")
    code, screen = _on_terminal(address, "workflow", "run", str(path), "--watch")
    assert code == 0 and screen.frames == [] and "step test   completed" in screen.text


def test_the_block_fits_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "12")
    monkeypatch.setenv("LINES", "6")
    assert live._fit("a short\n" + "x" * 30 + "\n1\n2\n3\n4\n5") == [
        "a short",
        "xxxxxxxxxx…",
        "1",
        "… 4 more",
    ]
    assert live.bar(1, 4, width=8) == "[██░░░░░░]  25%"
    assert live.bar(5, 0, width=4) == "[░░░░]   0%"


def test_the_team_block_counts_member_states_and_lists_members_not_heard_of() -> None:
    team = team_pb2.Team(
        id="0123456789abcdef", name="reviewers", status=team_pb2.TEAM_STATUS_ACTIVE, progress=50,
        agent_ids=["agent-a", "agent-b", "agent-c"], budget_consumed=0.5,
    )  # fmt: skip
    block = cli_teams.progress_block(team, {"agent-a": "completed", "agent-b": "running"}).splitlines()
    assert block[0] == (
        "team 01234567… reviewers  active  [████████████░░░░░░░░░░░░]  50%  spent $0.5000"
        "  completed 1  running 1"
    )
    assert [row.split() for row in block[1:]] == [
        ["AGENT", "STATE"], ["agent-a", "completed"], ["agent-b", "running"], ["agent-c", "-"],
    ]  # fmt: skip
