"""`godel-server worker`: run a worker process until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal

from godel_server.runtime.config import WorkerSettings
from godel_server.runtime.logs import configure_logging
from godel_server.worker.worker import Worker


async def serve(settings: WorkerSettings) -> None:
    """Runs a worker in the current event loop until SIGTERM or SIGINT."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    worker = Worker(settings)
    await worker.start()
    try:
        await stopping.wait()
    finally:
        await worker.stop()


def run_worker(settings: WorkerSettings) -> None:
    configure_logging("worker", settings.worker_id, settings.log_level)
    asyncio.run(serve(settings))
