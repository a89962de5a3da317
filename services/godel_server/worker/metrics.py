"""What a worker exports on its admin port (GODEL_WORKER_ADMIN_PORT): the runs it accepted per
runtime, the runs it executes now, its capacity and whether it is connected to an agent-service
replica. The gauges are read from the worker when /metrics is scraped."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

if TYPE_CHECKING:
    from godel_server.worker.worker import Worker

RUNS_STARTED = Counter("godel_worker_runs_started", "Runs this worker accepted, per runtime", ["runtime"])
RUNS_ACTIVE = Gauge("godel_worker_runs_active", "Runs this worker executes now")
CAPACITY = Gauge("godel_worker_capacity", "Runs this worker executes at once at most (GODEL_WORKER_CAPACITY)")
CONNECTED = Gauge("godel_worker_connected", "1 while the worker is connected to an agent-service replica")


def export(worker: Worker) -> None:
    """Reads the gauges from `worker` at every scrape (one worker per process)."""
    # A copy of the runs: the scrape runs in the admin port's thread while the loop changes them.
    RUNS_ACTIVE.set_function(lambda: sum(1 for run in list(worker.runs.values()) if not run.finished))
    CAPACITY.set(worker.settings.capacity)
    CONNECTED.set_function(lambda: 1.0 if worker.connected() else 0.0)
