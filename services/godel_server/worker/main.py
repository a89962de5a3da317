"""`godel-server worker`: run a worker process until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from godel_server.runtime import tracing
from godel_server.runtime.admin import AdminServer
from godel_server.runtime.config import WorkerSettings
from godel_server.runtime.logs import configure_logging
from godel_server.worker.metrics import export as export_metrics
from godel_server.worker.procs import raise_open_files_limit, watch_children_with_pidfds
from godel_server.worker.sandbox import SandboxError
from godel_server.worker.statedir import StateDir, StateDirError, claim
from godel_server.worker.worker import Worker

log = logging.getLogger(__name__)


async def serve(settings: WorkerSettings, state: StateDir | None = None) -> None:
    """Runs a worker in the current event loop until SIGTERM or SIGINT."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    worker = Worker(settings, state)
    export_metrics(worker)
    admin = None
    if settings.admin_port:
        admin = AdminServer(settings.bind_host, settings.admin_port, worker.connected).start()
    await worker.start()
    try:
        await stopping.wait()
    finally:
        await worker.stop()
        if admin is not None:
            admin.stop()


def run_worker(settings: WorkerSettings) -> None:
    """Runs the worker; exits with status 2 when agents cannot be sandboxed here or its state
    directory cannot be used."""
    try:
        state = claim(settings)
    except StateDirError as exc:
        configure_logging("worker", settings.worker_id or "worker", settings.log_level)
        log.error("the worker cannot start: %s", exc)
        raise SystemExit(2) from None
    configure_logging("worker", state.worker_id, settings.log_level)
    tracing.configure(settings.tracing, state.worker_id)
    watch_children_with_pidfds()
    raise_open_files_limit(settings.capacity)
    try:
        asyncio.run(serve(settings, state))
    except SandboxError as exc:
        log.error("the worker refuses to start without a sandbox: %s", exc)
        raise SystemExit(2) from None
    finally:
        tracing.shutdown()
