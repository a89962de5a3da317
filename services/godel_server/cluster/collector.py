"""The MetricsCollector of spec §4.3: scrapes every service's /metrics into a Snapshot and adds the
figures no single service can give because they need history, kept here over a sliding window:
`godel_agent_failure_rate_5m`, the failed share of the agent runs that ended in the last five
minutes (from the increase of `godel_agent_transitions_total`, counter resets allowed for)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping

from godel_server.cluster.metrics import scrape
from godel_server.cluster.snapshot import Sample, Snapshot, merge, parse
from godel_server.runtime.config import Settings

FAILURE_RATE = "godel_agent_failure_rate_5m"
WINDOW_SECONDS = 300.0
TRANSITIONS = "godel_agent_transitions_total"
# Lifecycle states that end a run (the `to` label of godel_agent_transitions_total).
FAILED = "failed"
ENDINGS = ("completed", FAILED, "killed")


class CounterHistory:
    """Totals of some counters at each collection within the window (time from a monotonic clock)."""

    def __init__(self, window: float = WINDOW_SECONDS) -> None:
        self._window = window
        self._points: deque[tuple[float, Mapping[str, float]]] = deque()

    def add(self, now: float, totals: Mapping[str, float]) -> None:
        self._points.append((now, dict(totals)))
        # Keep one point at or before the window's start: the increase is measured from it.
        while len(self._points) > 1 and self._points[1][0] <= now - self._window:
            self._points.popleft()

    def increase(self, key: str) -> float:
        """How much the counter grew over the points kept; a drop is a restart from zero."""
        grown = 0.0
        previous: float | None = None
        for _, totals in self._points:
            value = totals.get(key, 0.0)
            if previous is not None:
                grown += value - previous if value >= previous else value
            previous = value
        return grown


def failure_rate(history: CounterHistory) -> float:
    ended = sum(history.increase(state) for state in ENDINGS)
    return history.increase(FAILED) / ended if ended else 0.0


class MetricsCollector:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._history = CounterHistory()

    async def collect(self) -> Snapshot:
        return self.derive(parse(await scrape(self._settings)))

    def derive(self, snapshot: Snapshot) -> Snapshot:
        """The snapshot with the derived figures (the agent service's counters join the history)."""
        if "agent" in snapshot.answered:
            self._history.add(self._clock(), {s: snapshot.sum(TRANSITIONS, to=s) for s in ENDINGS})
        return merge(snapshot, [Sample(FAILURE_RATE, {}, failure_rate(self._history))])
