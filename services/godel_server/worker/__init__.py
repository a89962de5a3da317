"""The built-in worker process: connects to every agent-service replica (WorkerService.Connect) and
executes the runs they assign in git worktrees, with the "command" and "openai" runtimes.

    from godel_server.runtime.config import load_worker_settings
    from godel_server.worker import Worker

    worker = Worker(load_worker_settings({"GODEL_WORKER_CONNECT": "127.0.0.1:50051", ...}))
    await worker.start()
    ...
    await worker.stop()

As a process: `godel-server worker [--connect ADDRS] [--capacity N]` (settings from GODEL_* env).
"""

from __future__ import annotations

from godel_server.worker.worker import Worker

__all__ = ["Worker"]
