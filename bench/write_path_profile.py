"""CPU and database statements of the agent service's write calls, in one process.

Builds the AgentService's real pieces (AgentServicer, AgentStateStore, the one EventPublisher, the
project's Database, migrated) without gRPC, Kafka or other services, and times N CreateAgent and N
KillAgent calls (each kill ends one of the pending agents the creates made). Prints per call: CPU
time of the whole process (the event loop and aiosqlite's thread), wall time, and the statements
the database saw; then, with --profile, cProfile's top functions by own time for each call.
What load on the machine disturbs least is the CPU per call; compare trees by that.

    .venv/bin/python bench/write_path_profile.py                  # SQLite, 300 calls each
    .venv/bin/python bench/write_path_profile.py --postgres       # a throw-away PostgreSQL
    .venv/bin/python bench/write_path_profile.py --profile 15     # and the top 15 of cProfile
    SHOW_STATEMENTS=1 .venv/bin/python bench/write_path_profile.py --calls 2   # the SQL of each call
    .venv/bin/python bench/write_path_profile.py --live-cap 500 --stored 10000  # the per-user cap
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import event

from godel.v1 import agent_service_pb2
from godel_deploy.postgres import PostgresServer
from godel_server.agent.federation import Federation
from godel_server.agent.logstore import LogStore
from godel_server.agent.mapping import new_agent_row
from godel_server.agent.references import References
from godel_server.agent.runner import RunCoordinator
from godel_server.agent.service import AgentService
from godel_server.agent.servicer import AgentServicer
from godel_server.agent.state import AgentStateStore
from godel_server.agent.workers import WorkerRegistry
from godel_server.runtime.apikeys import ROLES
from godel_server.runtime.config import TlsSettings, load_settings
from godel_server.runtime.context import Caller, caller_var, method_var
from godel_server.runtime.db import Database, ensure_postgres_database
from godel_server.runtime.migrations import upgrade
from godel_server.runtime.outbox import OutboxRelay
from godel_server.runtime.ownership import Owner
from godel_server.runtime.publisher import EventPublisher
from godel_server.runtime.statuses import AgentStatus, LifecycleState

CALLER = Caller(key_id="bench-key", user_id="bench", role="admin", permissions=ROLES["admin"])
METHOD = "/godel.v1.AgentService/{}"
SHOW_STATEMENTS = bool(os.environ.get("SHOW_STATEMENTS"))


class Context:
    """The part of grpc.aio's ServicerContext the two calls read."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()


class IdleRelay:
    def notify(self) -> None:
        return None


@dataclass
class Timing:
    call: str
    calls: int
    cpu_us: float
    wall_us: float
    statements: float
    # Python function calls per RPC, counted by cProfile in a second pass: unlike CPU time, the
    # same on a busy machine as on a quiet one.
    python_calls: float = 0.0


def git_repo(path: Path) -> str:
    """A repository with one commit (agents branch from HEAD)."""
    path.mkdir(parents=True)
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "init"]):
        subprocess.run(
            ["git", "-c", "user.name=b", "-c", "user.email=b@b", *args],
            cwd=path,
            check=True,
            capture_output=True,
        )
    return str(path)


def servicer(db: Database, home: Path, live_cap: int) -> AgentServicer:
    settings = load_settings("agent", {"GODEL_HOME": str(home), "GODEL_INSTANCE_ID": "bench"})
    # A relay that is woken and sends nothing, so publishing costs what it costs in the service.
    store = AgentStateStore(db, EventPublisher(cast(OutboxRelay, IdleRelay())), "bench")
    coordinator = RunCoordinator(settings, store, LogStore(db), WorkerRegistry())
    return AgentServicer(
        store,
        coordinator,
        LogStore(db),
        default_model="bench-model",
        default_repo=git_repo(home / "repo"),
        event_addr="127.0.0.1:1",
        tls=TlsSettings(),
        federation=Federation(settings, store),
        references=References(db, "127.0.0.1:1", TlsSettings()),
        max_live_per_user=live_cap,
    )


def url(pg: PostgresServer | None, home: Path, name: str) -> str:
    return pg.url(name) if pg is not None else f"sqlite+aiosqlite:///{home}/{name}.db"


async def timed(
    name: str,
    db: Database,
    calls: int,
    one: Callable[[int], Awaitable[Any]],
    profile: cProfile.Profile | None,
    *,
    offset: int = 0,
) -> Timing:
    statements = 0

    def count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        nonlocal statements
        statements += 1
        if SHOW_STATEMENTS and statements <= 12:
            print(f"  {name}: {' '.join(statement.split())[:150]}")

    method_var.set(METHOD.format(name))
    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    cpu, wall = time.process_time(), time.perf_counter()
    if profile is not None:
        profile.enable()
    for i in range(offset, offset + calls):
        await one(i)
    if profile is not None:
        profile.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    return Timing(name, calls, cpu / calls * 1e6, wall / calls * 1e6, statements / calls)


async def store_ended(db: Database, count: int) -> None:
    """`count` killed agents of the benchmark's caller (what the per-user cap has to look past)."""
    async with db.session() as session:
        for i in range(count):
            row = new_agent_row(
                agent_service_pb2.CreateAgentRequest(task=f"old {i}"),
                model="m",
                repo=None,
                caller=CALLER,
                owner=Owner(CALLER.user_id, None),
            )
            row.lifecycle_state, row.status = LifecycleState.KILLED, AgentStatus.KILLED
            session.add(row)


async def measure(url: str, home: Path, args: argparse.Namespace) -> list[Timing]:
    calls, warmup, top, request_ids = args.calls, args.warmup, args.profile, args.request_ids
    await ensure_postgres_database(url)
    db = Database(url)
    await upgrade(db, AgentService.migrations)
    await store_ended(db, args.stored)
    agents = servicer(db, home, args.live_cap)
    caller_var.set(CALLER)
    ids: deque[str] = deque()  # the agents created and not yet killed

    async def create(i: int) -> None:
        # As bench/spawn_latency.py sends it (no request_id; --request-ids adds one).
        request = agent_service_pb2.CreateAgentRequest(task=f"task {i}", label="bench")
        if request_ids:
            request.request_id = f"r-{i}"
        ids.append((await agents.CreateAgent(request, Context())).id)

    async def kill(_: int) -> None:
        await agents.KillAgent(agent_service_pb2.KillAgentRequest(id=ids.popleft()), Context())

    try:
        method_var.set(METHOD.format("CreateAgent"))
        for i in range(warmup):
            await create(2 * calls + i)
        method_var.set(METHOD.format("KillAgent"))
        for i in range(warmup):
            await kill(i)
        rpcs: list[tuple[str, Callable[[int], Awaitable[None]]]] = [
            ("CreateAgent", create),
            ("KillAgent", kill),
        ]
        results = [await timed(name, db, calls, one, None) for name, one in rpcs]
        if not args.no_count:
            for timing, (name, one) in zip(results, rpcs, strict=True):
                # Own CPU of the event loop's thread, not wall time (the machine may be busy).
                profiler = cProfile.Profile(time.thread_time)
                await timed(name, db, calls, one, profiler, offset=calls)
                stats = pstats.Stats(profiler, stream=io.StringIO())
                timing.python_calls = stats.total_calls / calls  # type: ignore[attr-defined]
                if top:
                    out = io.StringIO()
                    stats.stream = out  # type: ignore[attr-defined]
                    stats.sort_stats(os.environ.get("PROFILE_SORT", "tottime")).print_stats(top)
                    print(f"--- cProfile {name}, {calls} calls, top {top} by own time ---")
                    print(out.getvalue().split("\n\n", 1)[-1].strip())
        return results
    finally:
        await db.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=300, help="timed calls of each RPC (default 300)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed calls of each RPC first")
    parser.add_argument("--postgres", action="store_true", help="on a throw-away PostgreSQL, not SQLite")
    parser.add_argument("--profile", type=int, default=0, metavar="TOP", help="print cProfile's TOP entries")
    parser.add_argument("--request-ids", action="store_true", help="creates carry a request_id")
    parser.add_argument("--live-cap", type=int, default=0, help="the per-user cap on live agents (0: none)")
    parser.add_argument("--stored", type=int, default=0, help="killed agents of the caller stored first")
    parser.add_argument("--no-count", action="store_true", help="skip the profiled pass that counts calls")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="godel-write-profile-") as tmp:
        home = Path(tmp)
        pg = PostgresServer(home / "pg").start() if args.postgres else None
        try:
            if pg is not None:
                pg.wait_ready()
            # The CPU figures come from a pass without the profiler; a second, profiled pass
            # counts the Python calls (and prints the top entries with --profile).
            timings = asyncio.run(measure(url(pg, home, "agent"), home, args))
        finally:
            if pg is not None:
                pg.stop()
    backend = "postgresql" if args.postgres else "sqlite"
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(
        f"{'call':<12} {'backend':<10} {'calls':>6} {'CPU us/call':>12} {'wall us/call':>13} {'stmts/call':>11}"
        f" {'py calls/call':>14}"
    )
    for t in timings:
        print(
            f"{t.call:<12} {backend:<10} {t.calls:>6} {t.cpu_us:>12.0f} {t.wall_us:>13.0f} {t.statements:>11.1f}"
            f" {t.python_calls:>14.0f}"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"backend": backend, "timings": [asdict(t) for t in timings]}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
