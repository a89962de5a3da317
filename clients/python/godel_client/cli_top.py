"""``godel top``: a live view of the fleet, redrawn from the API every few seconds: agents by
status, spend, the workers and their free slots, teams and the task queue, workflows, and rates
(events stored, API calls, agents created, per second) from the difference of two refreshes.

On a terminal it takes keys: up/down (or j/k) select an agent, ``p`` pauses it, ``r`` resumes it,
``x`` kills it after a ``y`` to confirm, ``q`` quits. ``--iterations N`` (``--once``) draws N
frames and exits; with ``--json`` each frame is one NDJSON line. It reads only the public API
(SystemService metrics summaries, ListAgents, ListWorkers, ListTeams, ListWorkflows)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format

from godel.v1 import agent_pb2, system_service_pb2, team_pb2, workflow_pb2
from godel_client import formatting as fmt
from godel_client import render
from godel_client.cli_common import command_parser, out, positive_float, positive_int, take
from godel_client.client import GodelClient
from godel_client.errors import GodelError
from godel_client.table import one_line

CLEAR_SCREEN = "\x1b[H\x1b[2J"
_clock = time.monotonic  # replaced in tests


@dataclass
class Frame:
    """What one refresh read."""

    at: float
    agents: system_service_pb2.GetAgentMetricsResponse
    teams: system_service_pb2.GetTeamsMetricsResponse
    figures: dict[str, Any]
    workers: list[agent_pb2.Worker]
    recent: list[agent_pb2.Agent]
    team_list: list[team_pb2.Team]
    workflows: list[workflow_pb2.Workflow]
    rates: dict[str, float] = field(default_factory=dict)


def read_frame(client: GodelClient, rows: int) -> Frame:
    figures = json_format.MessageToDict(client.system.system_metrics().figures)
    return Frame(
        at=_clock(),
        agents=client.system.agent_metrics(),
        teams=client.system.teams_metrics(),
        figures=figures,
        workers=list(client.agents.workers().workers),
        recent=take(client.agents.list(page_size=rows), rows),
        team_list=take(client.teams.list(page_size=rows), rows),
        workflows=take(client.workflows.list(page_size=rows), rows),
    )


def _counters(frame: Frame) -> dict[str, float]:
    services = frame.figures.get("services", {})
    return {
        "eventsPerSecond": float(frame.figures.get("eventsStored", 0.0)),
        "apiRequestsPerSecond": sum(float(s.get("apiRequests", 0.0)) for s in services.values()),
        "agentsCreatedPerSecond": float(frame.agents.total),
    }


def with_rates(previous: Frame | None, frame: Frame) -> Frame:
    """The frame with its per-second rates since `previous` (none on the first frame). A counter
    that went down (a service restarted, agents were deleted) counts as 0."""
    if previous is None or frame.at <= previous.at:
        return frame
    seconds = frame.at - previous.at
    before = _counters(previous)
    frame.rates = {name: max(0.0, value - before[name]) / seconds for name, value in _counters(frame).items()}
    return frame


def _counts(by_status: Any) -> str:
    return "  ".join(f"{name} {count}" for name, count in sorted(by_status.items()) if count) or "none"


def _rate(frame: Frame, name: str) -> str:
    return f"{frame.rates[name]:.1f}/s" if name in frame.rates else fmt.EMPTY


def render_frame(frame: Frame, address: str, selected: int = -1, message: str = "") -> str:
    """The screen: summary lines, then the workers, agents, teams and workflows tables."""
    a, t, f = frame.agents, frame.teams, frame.figures
    now = datetime.now(UTC)
    services = f.get("services", {})
    down = [name for name, s in sorted(services.items()) if not s.get("up")]
    lines = [
        f"godel top — {address} — {now.astimezone():%H:%M:%S}"
        + ("   services down: " + ", ".join(down) if down else ""),
        f"Agents   {a.total} total, {a.active} running   {_counts(a.by_status)}"
        f"   created {_rate(frame, 'agentsCreatedPerSecond')}   failed (5m) {a.failure_rate_5m:.0%}",
        f"Cost     {fmt.money(a.total_cost_usd, 'USD')}"
        + "".join(f"   {model} {fmt.money(usd, 'USD')}" for model, usd in sorted(a.cost_by_model.items())),
        f"Teams    {t.total} total   {_counts(t.by_status)}   members {t.agents}   queue {t.queue_depth}"
        f"   completion {t.completion_rate:.0%}",
        f"Workers  {int(f.get('workersConnected', 0))} connected, {int(f.get('workerFreeSlots', 0))} free slots",
        f"Events   {int(f.get('eventsStored', 0))} stored, {_rate(frame, 'eventsPerSecond')}"
        f"   API {_rate(frame, 'apiRequestsPerSecond')}   outbox {int(f.get('outboxPending', 0))}"
        f"   alerts firing {sum(int(v) for v in f.get('alertsFiring', {}).values())}",
        "",
    ]
    if frame.workers:
        lines += [render.workers_table(frame.workers), ""]
    if frame.recent:
        table = render.agents_table(frame.recent, now).splitlines()
        marked = [("> " if i - 1 == selected else "  ") + row for i, row in enumerate(table)]
        lines += [*marked, ""]
    else:
        lines += ["no agents", ""]
    if frame.team_list:
        lines += [render.teams_table(frame.team_list, now), ""]
    if frame.workflows:
        lines += [render.workflows_table(frame.workflows, now), ""]
    lines.append(message or "keys: ↑/↓ select  p pause  r resume  x kill  q quit")
    return "\n".join(lines)


def frame_json(frame: Frame) -> dict[str, Any]:
    return {
        "agents": json_format.MessageToDict(frame.agents),
        "teams": json_format.MessageToDict(frame.teams),
        "system": frame.figures,
        "workers": [json_format.MessageToDict(w) for w in frame.workers],
        "recentAgents": [
            {"id": x.id, "status": render.agent_status(x), "task": x.task} for x in frame.recent
        ],
        "rates": frame.rates,
    }


# -- keys -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _keys(interactive: bool) -> Iterator[int | None]:
    """stdin in cbreak mode (keys without Enter, no echo) while the view runs, on a terminal."""
    if not interactive:
        yield None
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _read_key(fd: int | None, timeout: float) -> str:
    """A key pressed within `timeout` seconds ("" if none); without a terminal, just waits."""
    if fd is None:
        time.sleep(timeout)
        return ""
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return ""
    key = os.read(fd, 16).decode(errors="ignore")
    return {"\x1b[A": "up", "\x1b[B": "down", "k": "up", "j": "down"}.get(key, key[:1])


_ACTIONS = {"p": "pause", "r": "resume", "x": "kill"}


def _act(client: GodelClient, agent: agent_pb2.Agent, action: str) -> str:
    try:
        getattr(client.agents, action)(agent.id)
    except GodelError as exc:
        return f"{action} {agent.id}: {one_line(exc.message)}"
    return f"{action} {agent.id}: done"


class _View:
    """The selection and the message line of an interactive view."""

    def __init__(self) -> None:
        self.selected = 0
        self.message = ""
        self.confirm: agent_pb2.Agent | None = None

    def on_key(self, client: GodelClient, frame: Frame, key: str) -> bool:
        """Applies a key; False when it asks to quit."""
        if self.confirm is not None:
            agent, self.confirm = self.confirm, None
            self.message = _act(client, agent, "kill") if key in ("y", "Y") else "kill cancelled"
            return True
        if key in ("q", "Q"):
            return False
        count = len(frame.recent)
        if key in ("up", "down") and count:
            self.selected = (self.selected + (1 if key == "down" else -1)) % count
        elif key in _ACTIONS and count:
            agent = frame.recent[min(self.selected, count - 1)]
            if _ACTIONS[key] == "kill":
                self.confirm = agent
                self.message = f"kill {agent.id} ({one_line(agent.task)[:40]})? y/n"
            else:
                self.message = _act(client, agent, _ACTIONS[key])
        return True


def _top(client: GodelClient, args: argparse.Namespace) -> int:
    iterations = 1 if args.once else args.iterations
    interactive = not args.json and sys.stdin.isatty() and sys.stdout.isatty()
    view = _View()
    previous: Frame | None = None
    drawn = 0
    with _keys(interactive) as fd:
        while True:
            frame = with_rates(previous, read_frame(client, args.rows))
            if args.json:
                out(json.dumps(frame_json(frame), ensure_ascii=False))
            else:
                screen = render_frame(
                    frame, client.address, view.selected if interactive else -1, view.message
                )
                out(f"{CLEAR_SCREEN if interactive else ''}{screen}\n")
            previous, drawn = frame, drawn + 1
            if iterations and drawn >= iterations:
                return 0
            deadline = _clock() + args.interval
            while (left := deadline - _clock()) > 0:
                key = _read_key(fd, left)
                if key and not view.on_key(client, frame, key):
                    return 0
                if key:
                    break  # redraw at once to show the selection or the action


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    top = command_parser(
        commands,
        "top",
        _top,
        common,
        help="live view of agents, teams, workflows, workers, cost and rates (keys pause/resume/kill)",
        epilog="Keys on a terminal: up/down or j/k select an agent, p pause, r resume, x kill (y confirms), q quit.",
    )
    top.add_argument(
        "--interval", metavar="SECONDS", type=positive_float, default=2.0, help="refresh every SECONDS (2)"
    )
    top.add_argument(
        "--iterations", metavar="N", type=positive_int, default=0, help="draw N frames, then exit"
    )
    top.add_argument("--once", action="store_true", help="draw one frame and exit (--iterations 1)")
    top.add_argument(
        "--rows", metavar="N", type=positive_int, default=10, help="agents, teams and workflows shown (10)"
    )
