"""A burst of agent creations from several REST clients at once, as when many users create agents
while something is being killed (the crash tests and bench/crash_recovery.py), and the command
those agents run.

EXCLUSIVE_RUN shows from inside the sandbox whether two runs of one agent were alive at once: all an
agent sees is its worktree, the same directory for every run of the agent on every worker of the
host. Each run takes an exclusive flock on a file there before it commits "start <run id>", holds
it while it sleeps, commits "end <run id>" and exits. The kernel drops a lock when the last process
holding it dies (a run killed with its worker included), so a run that finds the lock held has
found another run of the same agent alive: it commits "overlap <run id>" and fails."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import httpx

from tests.waits import wait_for

# What every agent of a burst runs (in the bubblewrap sandbox, in its worktree).
EXCLUSIVE_RUN = [
    "sh",
    "-c",
    "exec 9>>.run.lock; "
    'if ! flock -n 9; then git commit -q --allow-empty -m "overlap $GODEL_RUN_ID"; exit 3; fi; '
    'git commit -q --allow-empty -m "start $GODEL_RUN_ID" && sleep 1 && '
    'git commit -q --allow-empty -m "end $GODEL_RUN_ID"',
]


@dataclass
class Burst:
    """`clients` threads creating `per_client` agents each through the REST gateway, as fast as
    the service answers; an answer other than 200 (the service is down) is counted, not retried."""

    rest: str
    api_key: str
    label: str
    clients: int
    per_client: int
    acknowledged: list[str] = field(default_factory=list)
    refused: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Burst:
        for n in range(self.clients):
            thread = threading.Thread(target=self._create, args=(n,), name=f"burst-{n}", daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def _create(self, client: int) -> None:
        with httpx.Client(base_url=self.rest, headers={"x-api-key": self.api_key}, timeout=15.0) as http:
            for i in range(self.per_client):
                body = {
                    "task": f"{self.label} {client}.{i}",
                    "label": self.label,
                    "maxRetries": 0,  # any failure of the agent itself ends it: none may happen
                    "config": {"runtime": "command", "command": EXCLUSIVE_RUN},
                }
                try:
                    reply = http.post("/api/v1/agents", json=body)
                    ok = reply.status_code == 200
                except httpx.HTTPError:
                    ok = False
                with self._lock:
                    if ok:
                        self.acknowledged.append(reply.json()["id"])
                    else:
                        self.refused += 1

    def wait_acknowledged(self, count: int, timeout: float = 60) -> None:
        wait_for(
            lambda: len(self.acknowledged) >= count,
            timeout,
            f"{count} creations acknowledged",
            interval=0.02,
            describe=lambda: f"{len(self.acknowledged)} acknowledged",
        )

    def join(self, timeout: float = 120) -> None:
        for thread in self._threads:
            thread.join(timeout)
            assert not thread.is_alive(), "a burst client did not finish"
