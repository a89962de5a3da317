"""Agent execution at scale: registration, state updates and indexed listing with many agents stored,
and many `command` agents running at once on one node, each compared with a raw grpc.aio echo
round trip measured in the same run.

It brings up a whole local mesh (Kafka, the four services, the Envoy gateway; SQLite by default, a
throw-away PostgreSQL with --postgres) **without workers**, plus `bench/echo_server.py`, then:

  1. seeds the agent database directly (bulk INSERTs of finished agents; see `seed_agents`) up to
     --stored agents and times ListAgents with selective filters (page_size 50);
  2. times CreateAgent (1 and --concurrency in flight) at that size; with no worker the new agents
     stay pending, which is what a registration benchmark measures;
  3. times KillAgent on those pending agents (guarded transition + history row + outbox event) and
     RestartAgent on the killed ones (then kills them again, untimed);
  4. seeds up to --stored-large agents and times the same ListAgents filters again;
  5. starts one worker with capacity --running, spawns --running `sleep` agents (runtime "command",
     each in its own git worktree), waits until all execute, samples CPU and RSS of the control
     plane (agent service + worker) and of the agent processes from /proc, kills them all (timed)
     and checks that no `sleep` is left.

Everything binds to 127.0.0.1 on free ports, every loop is bounded, every wait has a timeout, and
everything started is stopped again (also on Ctrl-C / SIGTERM).

    python bench/agent_execution.py [--stored 10000] [--stored-large 100000] [--running 1000] [--postgres] [--quick]

The figures go to bench/results/agent_execution.json (--json OUT: elsewhere).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import grpc
from sqlalchemy import Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from godel.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc
from godel_deploy.mesh import Mesh
from godel_deploy.ports import LOOPBACK
from godel_server.agent.models import AgentRow
from godel_server.runtime.config import database_url_for

if TYPE_CHECKING:
    from bench import common
else:
    import common

RPC_TIMEOUT = 60.0
NAME = "agent_execution"
PER_AGENT_FIGURES = {  # of RunningPhase.per_agent(), with their units
    "control_cpu_ms_per_s_per_agent": "ms CPU/s",
    "control_rss_kb_per_agent": "KiB",
    "control_rss_kb_marginal_per_agent": "KiB",
}
MAX_ERROR_FRACTION = 0.05  # a batch with more failed calls than this aborts the benchmark
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
WORKER_NAME = "bench-worker"
RUNNING_LABEL = "bench-running"

# Spec targets (issue text): registration < 10 ms, update < 5 ms, query < 20 ms at 10k agents.
TARGET_MS = {"CreateAgent": 10.0, "KillAgent": 5.0, "ListAgents": 20.0}

# Shape of the seeded agents: selective values for the indexed columns.
SEED_TEAMS = 100  # team_id: 1 % of the seeded agents each
SEED_LABELS = 500  # label: 0.2 % each
SEED_MODELS = ("kimi-k2.5", "gpt-4o", "claude-sonnet", "llama-3-70b", "qwen-2.5")  # 20 % each
# (lifecycle_state, status, share): all terminal or failed-without-retry, so no replica schedules them.
SEED_STATES = (("completed", "completed", 0.80), ("killed", "killed", 0.15), ("failed", "failed", 0.05))
SEED_CHUNK = 2000
# a call failing with one of these counts as an error of its batch; anything else aborts the run
CALL_FAILURES = (grpc.aio.AioRpcError, ValueError, KeyError, IndexError)


# -- measurement -----------------------------------------------------------------------------------


async def drive(call: common.Call, requests: int, concurrency: int) -> common.Batch:
    """`common.drive`, counting `CALL_FAILURES` as failed calls."""
    return await common.drive(call, requests, concurrency, failures=CALL_FAILURES)


@dataclass
class Latency:
    """One timed batch of one RPC."""

    phase: str  # registration | state-update | list | echo | running
    rpc: str  # CreateAgent, KillAgent, ... or Echo
    detail: str
    stored: int  # rows in the agents table when the batch started
    concurrency: int
    calls: int
    ok: int
    errors: int
    wall_s: float
    throughput_rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    client_cpu_us_per_call: float
    first_error: str = ""
    echo_p50_ms: float = float("nan")  # raw echo p50 at the same concurrency, same run
    echo_p99_ms: float = float("nan")
    target_ms: float | None = None

    @property
    def p50_x_echo(self) -> float:
        return self.p50_ms / self.echo_p50_ms

    @property
    def p99_x_echo(self) -> float:
        return self.p99_ms / self.echo_p99_ms


def summarise(
    phase: str, rpc: str, detail: str, stored: int, concurrency: int, calls: int, batch: common.Batch
) -> Latency:
    return Latency(
        phase=phase,
        rpc=rpc,
        detail=detail,
        stored=stored,
        concurrency=concurrency,
        calls=calls,
        **batch.summary(calls),
        target_ms=TARGET_MS.get(rpc) if phase != "running" else None,
    )


# -- /proc sampling --------------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    """Resident set size (VmRSS) of a process in KiB, 0 when it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def total_pss(pids: list[int]) -> int:
    return sum(pss_kb(pid) for pid in pids)


def pss_kb(pid: int) -> int:
    """Proportional set size (shared pages divided among their users), 0 when unreadable."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


@dataclass
class ProcInfo:
    pid: int
    ppid: int
    comm: str
    state: str
    cpu_s: float
    rss_kb: int


def all_processes() -> dict[int, ProcInfo]:
    """Every live process of the machine, from /proc/<pid>/stat (RSS = resident pages)."""
    procs: dict[int, ProcInfo] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        procs[int(entry.name)] = ProcInfo(
            pid=int(entry.name),
            ppid=int(fields[1]),
            comm=comm,
            state=fields[0],
            cpu_s=(int(fields[11]) + int(fields[12])) / common.CLK_TCK,
            rss_kb=int(fields[21]) * PAGE_KB,  # field 24 of proc(5): rss in pages
        )
    return procs


def descendants(root: int, procs: dict[int, ProcInfo]) -> list[ProcInfo]:
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    out: list[ProcInfo] = []
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if pid in procs:
            out.append(procs[pid])
        todo.extend(children.get(pid, ()))
    return out


def agent_sleeps(root: Path, seconds: str) -> list[int]:
    """Processes `sleep <seconds>` whose working directory is under `root` (our agents' worktrees),
    wherever they are in the process tree (also orphans)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv[:2] != [b"sleep", seconds.encode()]:
                continue
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(root)):  # also "<path> (deleted)" once the worktree is removed
            found.append(int(entry.name))
    return found


# -- seeding -----------------------------------------------------------------------------------------


@dataclass
class Seeder:
    """Writes agents straight into the agent service's database (bulk INSERTs through SQLAlchemy core
    on the `agents` table), shaped like rows the service writes for finished agents."""

    engine: AsyncEngine
    repo: str
    teams: list[str]
    seeded: int = 0
    seconds: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(20261125))

    @classmethod
    def open(cls, url: str, repo: str) -> Seeder:
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 60}
        teams = [str(uuid.UUID(int=random.Random(i).getrandbits(128), version=4)) for i in range(SEED_TEAMS)]
        return cls(create_async_engine(url, **kwargs), repo, teams)

    async def count(self) -> int:
        async with self.engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(AgentRow)) or 0)

    def _row(self, n: int, spawned: datetime) -> dict[str, Any]:
        roll, acc = self.rng.random(), 0.0
        state, status = SEED_STATES[-1][:2]
        for s, st, share in SEED_STATES:
            acc += share
            if roll < acc:
                state, status = s, st
                break
        runtime = self.rng.randint(5, 900)
        ended = spawned + timedelta(seconds=runtime)
        run_id = str(uuid.uuid4())
        return {
            "id": str(uuid.uuid4()),
            "request_id": None,
            "team_id": self.teams[n % SEED_TEAMS],
            "label": f"seed-{n % SEED_LABELS:03d}",
            "model": SEED_MODELS[n % len(SEED_MODELS)],
            "task": f"seeded agent #{n:07d}: refactor module {n % 97} and add tests",
            "config": {"runtime": "command", "command": ["make", "test"]},
            "context": None,
            "code": None,
            "reasoning": None,
            "safety_boundaries": None,
            "status": status,
            "lifecycle_state": state,
            "repo": self.repo,
            "worktree_path": None,
            "commits": [uuid.uuid4().hex + uuid.uuid4().hex[:8]] if state == "completed" else [],
            "spawned_at": spawned,
            "completed_at": ended,
            "pause_time": None,
            "paused_by": None,
            "runtime_seconds": runtime,
            "retry_count": 0 if state != "failed" else 3,
            "max_retries": 3,
            "last_error": "exited with code 2" if state == "failed" else None,
            "budget_limit": None,
            "budget_consumed": 0.0,
            "metadata": {},
            "updated_at": ended,
            "version": 5 if state == "completed" else 4,
            "session_id": run_id,
            "created_by": None,
            "result": "ok" if state == "completed" else None,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "budget_warned": False,
            "parent_session_id": None,
            "owner": None,
            "run_id": None,
            "worker_id": None,
            "run_started_at": None,
            "next_attempt_at": None,
        }

    async def seed_to(self, total: int) -> tuple[int, float]:
        """Inserts agents until the table holds `total` rows; returns (inserted, seconds)."""
        missing = total - await self.count()
        if missing <= 0:
            return 0, 0.0
        table = cast(Table, AgentRow.__table__)
        started = time.perf_counter()
        # Spawned over the past 30 days, older than anything the API creates during the run.
        base = datetime.now(UTC) - timedelta(days=30)
        step = timedelta(days=29) / max(total, 1)
        done = 0
        while done < missing:
            size = min(SEED_CHUNK, missing - done)
            rows = [self._row(self.seeded + k, base + step * (self.seeded + k)) for k in range(size)]
            async with self.engine.begin() as conn:
                await conn.execute(insert(table), rows)
            done += size
            self.seeded += size
        elapsed = time.perf_counter() - started
        self.seconds += elapsed
        return done, elapsed

    async def close(self) -> None:
        await self.engine.dispose()


# -- the benchmark -------------------------------------------------------------------------------------


@dataclass
class Sample:
    """CPU and memory over a window: control plane, agent processes, the rest of the mesh."""

    label: str
    wall_s: float
    running: int  # agents the window was measured with
    agent_service_cpu_pct: float
    worker_cpu_pct: float
    worker_children_cpu_pct: float  # reaped children of the worker (git, exited agents)
    agent_service_rss_mb: float
    worker_rss_mb: float
    agent_procs: int
    sleeps: int
    agent_procs_cpu_pct: float
    agent_procs_rss_mb: float
    agent_procs_pss_mb: float
    other_mesh_cpu_pct: dict[str, float]
    other_mesh_rss_mb: dict[str, float]

    @property
    def control_cpu_pct(self) -> float:
        return self.agent_service_cpu_pct + self.worker_cpu_pct

    @property
    def control_rss_mb(self) -> float:
        return self.agent_service_rss_mb + self.worker_rss_mb


@dataclass
class RunningPhase:
    requested: int
    sleep_seconds: int
    created: int = 0
    create: Latency | None = None
    seconds_to_all_executing: float = float("nan")
    executing_at_sample: int = 0
    failed_before_sample: int = 0
    first_failure: str = ""
    idle: Sample | None = None
    loaded: Sample | None = None
    kill: Latency | None = None
    seconds_until_no_sleep: float = float("nan")
    sleeps_left: int = -1
    worktrees_at_kill: int = -1
    worktrees_left: int = -1  # --cleanup-wait seconds after the last KillAgent returned
    progress: list[tuple[float, int]] = field(default_factory=list)  # (seconds, executing)
    # CPU % of one core from the first CreateAgent until all execute: agent service, worker, and the
    # worker's reaped children (the git processes that create the worktrees, the exec shims).
    ramp_cpu_pct: dict[str, float] = field(default_factory=dict)

    def per_agent(self) -> dict[str, float]:
        if self.idle is None or self.loaded is None or self.loaded.running == 0:
            return {}
        n = self.loaded.running
        idle, loaded = self.idle, self.loaded
        return {
            "control_cpu_pct_per_agent": loaded.control_cpu_pct / n,
            "control_cpu_ms_per_s_per_agent": loaded.control_cpu_pct * 10 / n,
            "control_cpu_pct_marginal_per_agent": (loaded.control_cpu_pct - idle.control_cpu_pct) / n,
            "control_rss_kb_per_agent": loaded.control_rss_mb * 1024 / n,
            "control_rss_kb_marginal_per_agent": (loaded.control_rss_mb - idle.control_rss_mb) * 1024 / n,
            "worker_rss_kb_marginal_per_agent": (loaded.worker_rss_mb - idle.worker_rss_mb) * 1024 / n,
            "agent_service_rss_kb_marginal_per_agent": (
                loaded.agent_service_rss_mb - idle.agent_service_rss_mb
            )
            * 1024
            / n,
            "agent_procs_rss_kb_per_agent": loaded.agent_procs_rss_mb * 1024 / n,
            "agent_procs_pss_kb_per_agent": loaded.agent_procs_pss_mb * 1024 / n,
            "agent_procs_cpu_pct_per_agent": loaded.agent_procs_cpu_pct / n,
        }


@dataclass
class Results:
    latencies: list[Latency] = field(default_factory=list)
    seeding: list[dict[str, Any]] = field(default_factory=list)
    pending_idle: dict[str, float] = field(default_factory=dict)
    running: RunningPhase | None = None
    log_problems: dict[str, dict[str, int]] = field(default_factory=dict)


def log_problems(path: Path) -> dict[str, int]:
    """Warnings and errors in a service's JSON log, counted by message (and exception or error)."""
    counts: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict) or record.get("level") not in ("warning", "error", "critical"):
                continue
            key = f"{record.get('level')}: {record.get('msg')}"
            exc = str(record.get("exc") or "").strip().splitlines()
            if exc:
                key += f" [{exc[-1][:120]}]"
            elif record.get("error"):
                key += f" [{str(record.get('error'))[:80]}]"
            counts[key] = counts.get(key, 0) + 1
    return counts


class Bench:
    def __init__(self, mesh: Mesh, echo_port: int, api_key: str, args: argparse.Namespace) -> None:
        self.mesh = mesh
        self.args = args
        self.metadata = (("x-api-key", api_key),)
        self.echo_channel = grpc.aio.insecure_channel(f"{LOOPBACK}:{echo_port}")
        self.channel = grpc.aio.insecure_channel(mesh.address("agent"))
        self.echo = self.echo_channel.unary_unary(common.ECHO_METHOD)  # bytes in, bytes out
        self.stub = agent_service_pb2_grpc.AgentServiceStub(self.channel)
        url = database_url_for("agent", mesh.env("agent"), mesh.home)
        self.seeder = Seeder.open(url, str(mesh.default_repo))
        self.results = Results()
        self.echo_by_concurrency: dict[int, Latency] = {}
        self.created: list[
            str
        ] = []  # every agent created through the API (to be killed before workers start)

    async def close(self) -> None:
        await self.seeder.close()
        for channel in (self.echo_channel, self.channel):
            await channel.close()

    # ---- calls --------------------------------------------------------------------------------
    def create_request(self, i: int, *, run: bool = False) -> agent_service_pb2.CreateAgentRequest:
        if run:
            return agent_service_pb2.CreateAgentRequest(
                task=f"bench: running agent #{i:05d}",
                label=RUNNING_LABEL,
                config=agent_pb2.AgentConfig(runtime="command", command=["sleep", str(self.args.sleep)]),
                max_retries=0,
            )
        return agent_service_pb2.CreateAgentRequest(task=f"bench: registration agent #{i:07d}", label="bench")

    async def call_echo(self, i: int) -> None:
        reply = await self.echo(self.create_request(i).SerializeToString(), timeout=RPC_TIMEOUT)
        agent_service_pb2.CreateAgentRequest.FromString(reply)

    def creator(self, into: list[str], *, run: bool = False) -> common.Call:
        async def call(i: int) -> None:
            agent = await self.stub.CreateAgent(
                self.create_request(i, run=run), metadata=self.metadata, timeout=RPC_TIMEOUT
            )
            into.append(agent.id)
            self.created.append(agent.id)

        return call

    def killer(self, ids: Sequence[str]) -> common.Call:
        async def call(i: int) -> None:
            await self.stub.KillAgent(
                agent_service_pb2.KillAgentRequest(id=ids[i], reason="bench"),
                metadata=self.metadata,
                timeout=RPC_TIMEOUT,
            )

        return call

    def restarter(self, ids: Sequence[str]) -> common.Call:
        async def call(i: int) -> None:
            await self.stub.RestartAgent(
                agent_service_pb2.RestartAgentRequest(id=ids[i]), metadata=self.metadata, timeout=RPC_TIMEOUT
            )

        return call

    def lister(self, request: agent_service_pb2.ListAgentsRequest) -> common.Call:
        async def call(i: int) -> None:
            reply = await self.stub.ListAgents(request, metadata=self.metadata, timeout=RPC_TIMEOUT)
            if request.page_size and len(reply.agents) > request.page_size:
                raise ValueError("ListAgents returned more agents than page_size")

        return call

    async def count_listed(self, request: agent_service_pb2.ListAgentsRequest) -> int:
        """Agents matching a ListAgents filter, by paging through all of it (pages of 1000)."""
        total, token = 0, ""
        for _ in range(1000):
            page = agent_service_pb2.ListAgentsRequest()
            page.CopyFrom(request)
            page.page_size, page.page_token = 1000, token
            reply = await self.stub.ListAgents(page, metadata=self.metadata, timeout=RPC_TIMEOUT)
            total += len(reply.agents)
            token = reply.next_page_token
            if not token:
                break
        return total

    # ---- batches ------------------------------------------------------------------------------
    async def timed(
        self,
        phase: str,
        rpc: str,
        detail: str,
        call: common.Call,
        calls: int,
        concurrency: int,
        *,
        stored: int = -1,
    ) -> Latency:
        if stored < 0:
            stored = await self.seeder.count()
        batch = await drive(call, calls, concurrency)
        result = summarise(phase, rpc, detail, stored, concurrency, calls, batch)
        echo = self.echo_by_concurrency.get(concurrency) or self.echo_by_concurrency.get(1)
        if echo is not None and rpc != "Echo":
            result.echo_p50_ms, result.echo_p99_ms = echo.p50_ms, echo.p99_ms
        common.say(
            f"  {rpc:<13} {detail:<44} c={concurrency:<3} {calls:>5} calls  p50 {result.p50_ms:7.2f} ms"
            f"  p99 {result.p99_ms:8.2f} ms  {result.throughput_rps:7.1f}/s"
            + (f"  = {result.p50_x_echo:.1f}x echo p50" if rpc != "Echo" else "")
            + (f"  errors {result.errors}" if result.errors else "")
        )
        if result.errors > MAX_ERROR_FRACTION * calls:
            raise RuntimeError(
                f"{rpc} {detail}: {result.errors} of {calls} calls failed, first: {result.first_error}"
            )
        if phase != "warm-up":
            self.results.latencies.append(result)
        return result

    async def echo_baseline(self) -> None:
        a = self.args
        for concurrency in sorted({1, a.concurrency}):
            await drive(self.call_echo, a.warmup, concurrency)
            result = await self.timed(
                "echo", "Echo", "raw grpc.aio echo", self.call_echo, a.requests, concurrency
            )
            self.echo_by_concurrency[concurrency] = result

    async def seed(self, total: int) -> None:
        common.say(
            f"seeding the agent database up to {total:,} agents (bulk INSERTs, not through the API) ..."
        )
        inserted, seconds = await self.seeder.seed_to(total)
        count = await self.seeder.count()
        rate = inserted / seconds if seconds else float("nan")
        common.say(
            f"  inserted {inserted:,} rows in {seconds:.1f}s ({rate:,.0f} rows/s); the table holds {count:,} agents"
        )
        self.results.seeding.append(
            {"target": total, "inserted": inserted, "seconds": seconds, "stored": count}
        )

    def list_filters(self) -> list[tuple[str, agent_service_pb2.ListAgentsRequest]]:
        size = 50
        failed = agent_pb2.AGENT_STATUS_FAILED
        lc_failed = agent_pb2.LIFECYCLE_STATE_FAILED
        return [
            ("no filter (newest first)", agent_service_pb2.ListAgentsRequest(page_size=size)),
            (
                "label (0.2 % of seeded)",
                agent_service_pb2.ListAgentsRequest(page_size=size, label="seed-042"),
            ),
            (
                "team_id (1 % of seeded)",
                agent_service_pb2.ListAgentsRequest(page_size=size, team_id=self.seeder.teams[7]),
            ),
            (
                "model (20 % of seeded)",
                agent_service_pb2.ListAgentsRequest(page_size=size, model=SEED_MODELS[3]),
            ),
            (
                "status+lifecycle=failed (5 %)",
                agent_service_pb2.ListAgentsRequest(
                    page_size=size, status=[failed], lifecycle_state=[lc_failed]
                ),
            ),
            (
                "team_id + status=completed",
                agent_service_pb2.ListAgentsRequest(
                    page_size=size, team_id=self.seeder.teams[11], status=[agent_pb2.AGENT_STATUS_COMPLETED]
                ),
            ),
        ]

    async def list_phase(self) -> None:
        a = self.args
        stored = await self.seeder.count()
        common.say(f"list-by-index at {stored:,} agents: ListAgents, page_size 50, 1 in flight")
        for detail, request in self.list_filters():
            await drive(self.lister(request), max(a.warmup // 3, 3), 1)
            await self.timed(
                "list", "ListAgents", detail, self.lister(request), a.list_requests, 1, stored=stored
            )

    async def idle_cpu(self, seconds: float) -> dict[str, float]:
        """CPU % of the agent service (and of the other services) over a quiet window."""
        procs = {name: p.pid for name, p in self.mesh.processes().items() if p.alive()}
        before = {name: common.cpu_seconds(pid) for name, pid in procs.items()}
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        wall = time.perf_counter() - started
        out: dict[str, float] = {}
        for name, pid in procs.items():
            with contextlib.suppress(OSError):
                out[name] = (common.cpu_seconds(pid) - before[name]) / wall * 100
        return out

    async def registration_and_updates(self) -> None:
        a = self.args
        common.say(
            f"registration: CreateAgent (no worker: the agents stay pending), {a.requests} calls per batch"
        )
        await drive(self.creator([]), a.warmup, a.concurrency)
        stored = await self.seeder.count()
        seq_ids: list[str] = []
        conc_ids: list[str] = []
        await self.timed(
            "registration",
            "CreateAgent",
            "pending agent, gRPC direct",
            self.creator(seq_ids),
            a.requests,
            1,
            stored=stored,
        )
        stored = await self.seeder.count()
        await self.timed(
            "registration",
            "CreateAgent",
            "pending agent, gRPC direct",
            self.creator(conc_ids),
            a.requests,
            a.concurrency,
            stored=stored,
        )
        # With no worker, every pending agent is retried by the owner's scheduler: what does it cost?
        await asyncio.sleep(2.0)
        pending = len(self.created)
        self.results.pending_idle = {"pending_agents": float(pending), **await self.idle_cpu(5.0)}
        common.say(
            f"  idle CPU with {pending} pending agents and no worker: "
            + ", ".join(
                f"{k} {v:.1f}%" for k, v in self.results.pending_idle.items() if k != "pending_agents"
            )
        )

        common.say("state updates: KillAgent on pending agents, RestartAgent on killed ones")
        await self.timed(
            "state-update", "KillAgent", "pending -> killed", self.killer(seq_ids), len(seq_ids), 1
        )
        await self.timed(
            "state-update",
            "KillAgent",
            "pending -> killed",
            self.killer(conc_ids),
            len(conc_ids),
            a.concurrency,
        )
        await self.timed(
            "state-update", "RestartAgent", "killed -> initializing", self.restarter(seq_ids), len(seq_ids), 1
        )
        await self.timed(
            "state-update",
            "RestartAgent",
            "killed -> initializing",
            self.restarter(conc_ids),
            len(conc_ids),
            a.concurrency,
        )
        await self.kill_leftovers()

    async def kill_leftovers(self) -> None:
        """Kill (untimed) every agent created so far that is not finished, so the worker started
        later only runs the agents of the running phase."""
        request = agent_service_pb2.ListAgentsRequest(
            lifecycle_state=[agent_pb2.LIFECYCLE_STATE_INITIALIZING, agent_pb2.LIFECYCLE_STATE_SPAWNING]
        )
        ids: list[str] = []
        token = ""
        for _ in range(1000):
            page = agent_service_pb2.ListAgentsRequest()
            page.CopyFrom(request)
            page.page_size, page.page_token = 1000, token
            reply = await self.stub.ListAgents(page, metadata=self.metadata, timeout=RPC_TIMEOUT)
            ids += [agent.id for agent in reply.agents]
            token = reply.next_page_token
            if not token:
                break
        if ids:
            batch = await drive(self.killer(ids), len(ids), self.args.concurrency)
            common.say(
                f"  killed the {len(ids)} agents still pending (untimed clean-up, {len(batch.errors)} errors)"
            )
        left = await self.count_listed(request)
        if left:
            raise RuntimeError(f"{left} agents are still pending before the worker starts")

    # ---- running agents ---------------------------------------------------------------------
    def sample_now(self, worker_pid: int) -> tuple[dict[int, ProcInfo], list[ProcInfo]]:
        procs = all_processes()
        return procs, descendants(worker_pid, procs)

    async def sample(self, label: str, seconds: float, running: int, *, pss: bool) -> Sample:
        """CPU % over `seconds` and mean RSS (sampled every second) of the agent service, the worker,
        the worker's descendants (agent processes) and the other mesh processes."""
        agent_pid = self.mesh.services["agent"].pid
        worker_pid = self.mesh.workers[WORKER_NAME].pid
        others = {
            name: p.pid
            for name, p in self.mesh.processes().items()
            if name not in ("agent", WORKER_NAME) and p.alive()
        }
        procs, kids = await asyncio.to_thread(self.sample_now, worker_pid)
        cpu0 = {pid: procs[pid].cpu_s for pid in (agent_pid, worker_pid, *others.values()) if pid in procs}
        kids0 = {k.pid: k.cpu_s for k in kids}
        reaped0 = common.cpu_seconds(worker_pid, children=True)
        started = time.perf_counter()
        rss: dict[str, list[float]] = {"agent": [], "worker": [], "kids": [], **{n: [] for n in others}}
        counts: list[tuple[int, int]] = []
        pss_total = 0
        ticks = max(1, round(seconds))
        for tick in range(ticks + 1):
            if tick:
                await asyncio.sleep(max(0.0, started + tick * seconds / ticks - time.perf_counter()))
            procs, kids = await asyncio.to_thread(self.sample_now, worker_pid)
            rss["agent"].append(procs[agent_pid].rss_kb / 1024 if agent_pid in procs else 0.0)
            rss["worker"].append(procs[worker_pid].rss_kb / 1024 if worker_pid in procs else 0.0)
            rss["kids"].append(sum(k.rss_kb for k in kids) / 1024)
            for name, pid in others.items():
                rss[name].append(procs[pid].rss_kb / 1024 if pid in procs else 0.0)
            counts.append((len(kids), sum(1 for k in kids if k.comm == "sleep")))
            if pss and tick == ticks // 2:
                pss_total = await asyncio.to_thread(total_pss, [k.pid for k in kids])
        wall = time.perf_counter() - started
        reaped = common.cpu_seconds(worker_pid, children=True) - reaped0
        kids_cpu = sum(k.cpu_s - kids0[k.pid] for k in kids if k.pid in kids0)

        def pct(pid: int) -> float:
            return (
                (procs[pid].cpu_s - cpu0[pid]) / wall * 100 if pid in procs and pid in cpu0 else float("nan")
            )

        return Sample(
            label=label,
            wall_s=wall,
            running=running,
            agent_service_cpu_pct=pct(agent_pid),
            worker_cpu_pct=pct(worker_pid),
            worker_children_cpu_pct=reaped / wall * 100,
            agent_service_rss_mb=statistics.fmean(rss["agent"]),
            worker_rss_mb=statistics.fmean(rss["worker"]),
            agent_procs=round(statistics.fmean(c for c, _ in counts)),
            sleeps=round(statistics.fmean(s for _, s in counts)),
            agent_procs_cpu_pct=kids_cpu / wall * 100,
            agent_procs_rss_mb=statistics.fmean(rss["kids"]),
            agent_procs_pss_mb=pss_total / 1024,
            other_mesh_cpu_pct={name: pct(pid) for name, pid in others.items()},
            other_mesh_rss_mb={name: statistics.fmean(rss[name]) for name in others},
        )

    async def count_state(self, state: agent_pb2.LifecycleState.ValueType) -> int:
        return await self.count_listed(
            agent_service_pb2.ListAgentsRequest(label=RUNNING_LABEL, lifecycle_state=[state])
        )

    async def running_phase(self) -> None:
        a = self.args
        phase = RunningPhase(requested=a.running, sleep_seconds=a.sleep)
        self.results.running = phase
        common.say(f"running agents: one worker with capacity {a.running} ({WORKER_NAME})")
        worker = self.mesh.start_worker(WORKER_NAME, capacity=a.running)
        await asyncio.sleep(3.0)  # connect, hello, first heartbeats
        if not worker.alive():
            raise RuntimeError(f"the worker exited:\n{worker.log_tail()}")
        phase.idle = await self.sample("idle (worker connected, no run)", 5.0, 0, pss=False)
        common.say(
            f"  idle: agent service {phase.idle.agent_service_cpu_pct:.1f}% CPU {phase.idle.agent_service_rss_mb:.0f} MB,"
            f" worker {phase.idle.worker_cpu_pct:.1f}% CPU {phase.idle.worker_rss_mb:.0f} MB"
        )

        ids: list[str] = []
        stored = await self.seeder.count()
        agent_pid, worker_pid = self.mesh.services["agent"].pid, worker.pid
        ramp0 = (
            common.cpu_seconds(agent_pid),
            common.cpu_seconds(worker_pid),
            common.cpu_seconds(worker_pid, children=True),
        )
        started = time.perf_counter()
        phase.create = await self.timed(
            "running",
            "CreateAgent",
            f"command agent `sleep {a.sleep}`",
            self.creator(ids, run=True),
            a.running,
            a.concurrency,
            stored=stored,
        )
        phase.created = len(ids)
        common.say(
            f"  waiting (at most {a.ready_timeout:.0f}s) until all {len(ids)} agents are executing ..."
        )
        deadline = started + a.ready_timeout
        executing = 0
        last_print = 0.0
        while time.perf_counter() < deadline:
            executing = await self.count_state(agent_pb2.LIFECYCLE_STATE_EXECUTING)
            elapsed = time.perf_counter() - started
            phase.progress.append((round(elapsed, 1), executing))
            if executing >= len(ids):
                phase.seconds_to_all_executing = elapsed
                break
            if elapsed - last_print >= 10:
                last_print = elapsed
                failed = await self.count_state(agent_pb2.LIFECYCLE_STATE_FAILED)
                common.say(f"    {elapsed:5.0f}s: {executing} executing, {failed} failed")
            if elapsed > a.sleep - 5 and executing < len(ids):
                common.say(
                    f"    the first agents' `sleep {a.sleep}` is about to end: sampling with {executing} executing"
                )
                break
            await asyncio.sleep(2.0)
        phase.failed_before_sample = await self.count_state(agent_pb2.LIFECYCLE_STATE_FAILED)
        if phase.failed_before_sample:
            reply = await self.stub.ListAgents(
                agent_service_pb2.ListAgentsRequest(
                    label=RUNNING_LABEL, lifecycle_state=[agent_pb2.LIFECYCLE_STATE_FAILED], page_size=1
                ),
                metadata=self.metadata,
                timeout=RPC_TIMEOUT,
            )
            phase.first_failure = reply.agents[0].last_error if reply.agents else ""
        if executing >= len(ids):
            common.say(
                f"  all {executing} executing {phase.seconds_to_all_executing:.1f}s after the first CreateAgent"
            )
        else:
            common.say(
                f"  only {executing} of {len(ids)} executing after {time.perf_counter() - started:.0f}s"
            )
        phase.executing_at_sample = executing
        ramp_wall = time.perf_counter() - started
        ramp1 = (
            common.cpu_seconds(agent_pid),
            common.cpu_seconds(worker_pid),
            common.cpu_seconds(worker_pid, children=True),
        )
        phase.ramp_cpu_pct = {
            name: (after - before) / ramp_wall * 100
            for name, before, after in zip(
                ("agent-service", "worker", "worker children (git, shims)"), ramp0, ramp1, strict=True
            )
        }
        phase.ramp_cpu_pct["machine load avg (1 min)"] = os.getloadavg()[0]
        common.say(
            f"  CPU while bringing them up ({ramp_wall:.0f}s): "
            + ", ".join(
                f"{k} {v:.1f}" + ("" if k.startswith("machine") else "%")
                for k, v in phase.ramp_cpu_pct.items()
            )
        )
        remaining = a.sleep - (time.perf_counter() - started) - 3
        window = min(a.sample, max(remaining, 1.0))
        if window < a.sample:
            common.say(f"  shortening the sample window to {window:.0f}s: the `sleep`s end soon")
        phase.loaded = await self.sample(f"{executing} agents executing", window, executing, pss=True)
        s = phase.loaded
        common.say(
            f"  loaded ({s.wall_s:.0f}s): agent service {s.agent_service_cpu_pct:.1f}% CPU {s.agent_service_rss_mb:.0f} MB,"
            f" worker {s.worker_cpu_pct:.1f}% CPU {s.worker_rss_mb:.0f} MB; {s.agent_procs} agent processes"
            f" ({s.sleeps} sleep) {s.agent_procs_rss_mb:.0f} MB RSS / {s.agent_procs_pss_mb:.0f} MB PSS"
        )

        common.say(f"  KillAgent on the {len(ids)} running agents, {a.concurrency} in flight")
        stored = await self.seeder.count()
        phase.kill = await self.timed(
            "running",
            "KillAgent",
            "executing -> killed (worker acks)",
            self.killer(ids),
            len(ids),
            a.concurrency,
            stored=stored,
        )
        kill_done = time.perf_counter()
        left: list[int] = []
        while time.perf_counter() - kill_done < 60:
            left = await asyncio.to_thread(agent_sleeps, self.mesh.worktree_root, str(a.sleep))
            if not left:
                phase.seconds_until_no_sleep = time.perf_counter() - kill_done
                break
            await asyncio.sleep(0.5)
        phase.sleeps_left = len(left)
        root = self.mesh.worktree_root
        remaining = worktree_count(root)
        phase.worktrees_at_kill = remaining
        while remaining and time.perf_counter() - kill_done < a.cleanup_wait:
            await asyncio.sleep(1.0)
            remaining = worktree_count(root)
        phase.worktrees_left = remaining
        common.say(
            f"  worktrees: {phase.worktrees_at_kill} when the last KillAgent returned, {remaining} left"
            f" {time.perf_counter() - kill_done:.0f}s later"
        )
        if left:
            common.say(f"  {len(left)} `sleep {a.sleep}` processes still alive 60 s after the last KillAgent")
        else:
            common.say(
                f"  no `sleep {a.sleep}` left, {phase.seconds_until_no_sleep:.1f}s after the last KillAgent returned"
            )


async def run_benchmark(mesh: Mesh, echo_port: int, api_key: str, args: argparse.Namespace) -> Results:
    bench = Bench(mesh, echo_port, api_key, args)
    try:
        common.say("raw grpc.aio echo baseline")
        await bench.echo_baseline()
        await bench.seed(args.stored)
        await bench.list_phase()
        await bench.registration_and_updates()
        if args.stored_large > args.stored:
            await bench.seed(args.stored_large)
            await bench.list_phase()
        if args.running > 0:
            await bench.running_phase()
        for name in ("agent-service", WORKER_NAME):
            found = log_problems(mesh.logs / f"{name}.log")
            if found:
                bench.results.log_problems[name] = found
        return bench.results
    finally:
        await bench.close()


# -- reporting ---------------------------------------------------------------------------------------


def _target(r: Latency) -> str:
    if r.target_ms is None or r.stored > 20_000:
        return ""
    return f"{'ok' if r.p99_ms < r.target_ms else ('p50 ok' if r.p50_ms < r.target_ms else 'MISS')} (<{r.target_ms:.0f})"


def print_report(facts: dict[str, Any], args: argparse.Namespace, results: Results) -> None:
    width = 132
    print()
    print("=" * width)
    print("Godel agent execution at scale")
    print(
        f"machine: {facts['usable_cores']} cores ({facts['cpu_model'] or 'unknown cpu'}), Python {facts['python']}, "
        f"grpcio {facts['grpcio']}, load avg at start {facts['load_avg_at_start']}, at end {facts.get('load_avg_at_end')}"
    )
    print(f"database: {facts['db_backend']}" + (f" ({facts['postgres']})" if "postgres" in facts else ""))
    seeded = ", ".join(f"{s['inserted']:,} rows in {s['seconds']:.1f}s" for s in results.seeding)
    print(
        "stored agents were SEEDED with bulk INSERTs straight into the agent database (not through CreateAgent): "
        f"{seeded}; finished agents (completed 80 %, killed 15 %, failed 5 %), {SEED_TEAMS} teams, "
        f"{SEED_LABELS} labels, {len(SEED_MODELS)} models"
    )
    print(
        "no worker runs before the running phase (agents created earlier stay pending); client, mesh and Kafka share the machine"
    )
    print("=" * width)
    header = (
        f"{'phase':<13}{'rpc':<13}{'detail':<40}{'stored':>8}{'c':>4}{'calls':>6}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'max ms':>8}{'req/s':>8}{'x echo p50':>11}{'x echo p99':>11}  target"
    )
    print(header)
    print("-" * width)
    for r in results.latencies:
        ratio50 = "" if r.rpc == "Echo" else f"{r.p50_x_echo:10.1f}x"
        ratio99 = "" if r.rpc == "Echo" else f"{r.p99_x_echo:10.1f}x"
        print(
            f"{r.phase:<13}{r.rpc:<13}{r.detail[:39]:<40}{r.stored:>8}{r.concurrency:>4}{r.ok:>6}{r.p50_ms:8.2f}"
            f"{r.p99_ms:8.1f}{r.max_ms:8.0f}{r.throughput_rps:8.0f}{ratio50:>11}{ratio99:>11}  {_target(r)}"
            + (f"  ERRORS {r.errors}" if r.errors else "")
        )
    print("-" * width)
    print(
        "x echo = divided by the raw grpc.aio echo figure at the same concurrency (1 or 16 in flight), same run;"
    )
    print(
        "target = spec target (registration < 10 ms, update < 5 ms, query < 20 ms at 10k): 'ok' = p99 under it"
    )
    if results.pending_idle:
        pi = results.pending_idle
        print(
            f"idle CPU with {pi['pending_agents']:.0f} pending agents and no worker (5 s): "
            + ", ".join(f"{k} {v:.1f}%" for k, v in pi.items() if k != "pending_agents")
        )
    rp = results.running
    if rp is not None and rp.loaded is not None and rp.idle is not None:
        print("=" * width)
        print(
            f"{rp.requested} `sleep {rp.sleep_seconds}` command agents on one worker: {rp.executing_at_sample} executing"
            f" at the sample"
            + (
                f", all after {rp.seconds_to_all_executing:.1f}s"
                f" ({rp.created / rp.seconds_to_all_executing:.1f} agents/s from the first CreateAgent)"
                if rp.seconds_to_all_executing == rp.seconds_to_all_executing
                else ""
            )
            + (
                f"; {rp.failed_before_sample} failed (first: {rp.first_failure[:80]})"
                if rp.failed_before_sample
                else ""
            )
        )
        print(
            f"{'window':<36}{'agent-svc CPU%':>15}{'worker CPU%':>12}{'agent-svc MB':>13}{'worker MB':>10}"
            f"{'agent procs':>12}{'procs MB RSS':>13}{'procs MB PSS':>13}{'procs CPU%':>11}"
        )
        for s in (rp.idle, rp.loaded):
            print(
                f"{s.label[:35]:<36}{s.agent_service_cpu_pct:15.1f}{s.worker_cpu_pct:12.1f}{s.agent_service_rss_mb:13.0f}"
                f"{s.worker_rss_mb:10.0f}{s.agent_procs:12d}{s.agent_procs_rss_mb:13.0f}{s.agent_procs_pss_mb:13.0f}"
                f"{s.agent_procs_cpu_pct:11.2f}"
            )
        per = rp.per_agent()
        print(
            f"per running agent: control plane (agent service + worker) {per['control_cpu_ms_per_s_per_agent']:.3f} ms CPU/s"
            f" ({per['control_cpu_pct_per_agent']:.4f} % of a core; marginal over idle {per['control_cpu_pct_marginal_per_agent']:.4f} %),"
            f" RSS {per['control_rss_kb_per_agent']:.0f} KiB (marginal {per['control_rss_kb_marginal_per_agent']:.0f} KiB:"
            f" worker {per['worker_rss_kb_marginal_per_agent']:.0f}, agent service {per['agent_service_rss_kb_marginal_per_agent']:.0f})"
        )
        print(
            f"per running agent: agent processes RSS {per['agent_procs_rss_kb_per_agent']:.0f} KiB,"
            f" PSS {per['agent_procs_pss_kb_per_agent']:.0f} KiB, CPU {per['agent_procs_cpu_pct_per_agent']:.5f} %"
        )
        if rp.ramp_cpu_pct:
            print(
                "CPU while bringing them up (% of one core): "
                + ", ".join(f"{k} {v:.1f}" for k, v in rp.ramp_cpu_pct.items())
            )
        others = ", ".join(
            f"{k} {rp.loaded.other_mesh_cpu_pct[k]:.1f}% / {rp.loaded.other_mesh_rss_mb[k]:.0f} MB"
            for k in rp.loaded.other_mesh_cpu_pct
        )
        print(f"rest of the mesh in the loaded window (CPU % / RSS): {others}")
        print(
            "after KillAgent of all: "
            + (
                f"no `sleep` left after {rp.seconds_until_no_sleep:.1f}s"
                if rp.sleeps_left == 0
                else f"{rp.sleeps_left} `sleep` processes still alive after 60 s"
            )
            + f"; worktrees: {rp.worktrees_at_kill} when the last KillAgent returned, {rp.worktrees_left} left"
            f" after at most {args.cleanup_wait:.0f}s more"
        )
    if results.log_problems:
        print("warnings and errors in the logs during the run (count, level: message [detail]):")
        for name, found in results.log_problems.items():
            for key, n in sorted(found.items(), key=lambda kv: -kv[1]):
                print(f"  {name:<14}{n:>6}  {key}")
    print("=" * width)


def figures_of(payload: dict[str, Any]) -> dict[str, common.Figure]:
    """Per timed batch p50, p99, req/s and p50 x echo; bring-up and per-agent costs of the running
    phase; the idle agent service's CPU with the pending agents."""
    figures: dict[str, common.Figure] = {}
    for r in payload["latencies"]:
        key = f"{r['phase']}/{r['rpc']}/{r['detail']}/{r['stored']} stored/{r['concurrency']} in flight"
        figures.update(common.latency_figures(key, r))
        if "p50_x_echo" in r:
            figures[f"{key}/p50 x echo"] = common.lower(r["p50_x_echo"], "x")
    idle = payload["pending_idle_cpu_pct"]
    if idle:
        figures["idle agent service with pending agents/CPU"] = common.lower(idle["agent"], "% of a core")
    running = payload["running"]
    if running:
        seconds = running["seconds_to_all_executing"]
        figures["running/bring-up"] = common.higher(running["created"] / seconds, "agents/s")
        per_agent = running["per_agent"]
        for key, unit in PER_AGENT_FIGURES.items():
            if key in per_agent:
                name = key.removesuffix("_per_agent").replace("_", " ")
                figures[f"running/{name} per agent"] = common.lower(per_agent[key], unit)
        figures["running/worktrees left after the kills"] = common.lower(running["worktrees_left"], "")
    return figures


def payload_of(facts: dict[str, Any], args: argparse.Namespace, results: Results) -> dict[str, Any]:
    running: dict[str, Any] | None = None
    if results.running is not None:
        running = asdict(results.running)
        running["per_agent"] = results.running.per_agent()
    return {
        "machine": facts,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "seeding": {
            "method": "bulk INSERT into the agents table (SQLAlchemy core), not through CreateAgent",
            "shape": {
                "states": [list(s) for s in SEED_STATES],
                "teams": SEED_TEAMS,
                "labels": SEED_LABELS,
                "models": list(SEED_MODELS),
            },
            "batches": results.seeding,
        },
        "latencies": [
            {**asdict(r), "p50_x_echo": r.p50_x_echo, "p99_x_echo": r.p99_x_echo}
            if r.rpc != "Echo"
            else asdict(r)
            for r in results.latencies
        ],
        "pending_idle_cpu_pct": results.pending_idle,
        "log_problems": results.log_problems,
        "running": running,
    }


# -- orchestration -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Agent execution at scale: CreateAgent, KillAgent, RestartAgent and ListAgents with many "
        "agents stored, and many running `command` agents on one node, against a raw grpc.aio echo.",
    )
    parser.add_argument(
        "--stored",
        type=int,
        default=10_000,
        help="agents stored for listing, registration and updates (10000)",
    )
    parser.add_argument(
        "--stored-large",
        type=int,
        default=100_000,
        help="agents stored for the second list phase (100000; 0 = skip)",
    )
    parser.add_argument(
        "--requests", type=int, default=500, help="timed calls per registration/update batch (500)"
    )
    parser.add_argument(
        "--list-requests", type=int, default=200, help="timed ListAgents calls per filter (200)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="calls in flight in concurrent batches (16)"
    )
    parser.add_argument("--warmup", type=int, default=30, help="untimed calls before a batch series (30)")
    parser.add_argument(
        "--running", type=int, default=1000, help="concurrently running `sleep` agents (1000; 0 = skip)"
    )
    parser.add_argument(
        "--sleep",
        type=int,
        default=600,
        help="seconds each running agent sleeps (600: bringing 1000 up takes ~3 min here, so `sleep 60` "
        "would end before the last one starts; the agents are killed after sampling anyway)",
    )
    parser.add_argument(
        "--sample", type=float, default=15.0, help="CPU/RSS sample window with all running (15 s)"
    )
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=300.0,
        help="max seconds to wait until all agents execute (300)",
    )
    parser.add_argument(
        "--cleanup-wait",
        type=float,
        default=30.0,
        help="max seconds to wait after the kills until the agents' worktrees are removed (30)",
    )
    common.add_json_option(parser, NAME)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 500 stored, no 100k phase, 20 calls per batch, 10 running agents, 3 s sample",
    )
    common.add_mesh_options(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.stored, args.stored_large, args.requests, args.list_requests = 500, 0, 20, 20
        args.warmup, args.running, args.sample = 5, 10, 3.0
    if args.requests < 2 or args.list_requests < 2 or args.concurrency < 1 or args.warmup < 1:
        parser.error("--requests and --list-requests must be >= 2, --concurrency and --warmup >= 1")
    if not 0 <= args.stored <= 1_000_000 or not 0 <= args.stored_large <= 1_000_000:
        parser.error("--stored and --stored-large must be between 0 and 1,000,000")
    if not 0 <= args.running <= 5000:
        parser.error("--running must be between 0 and 5000")
    if args.sleep < 10:
        parser.error("--sleep must be >= 10")
    return args


def worktree_count(root: Path) -> int:
    """Agent worktree directories under the worker's worktree root."""
    with contextlib.suppress(OSError):
        return sum(1 for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return 0


def kill_stray_sleeps(root: Path, seconds: int) -> int:
    """Last resort after the mesh stopped: SIGKILL agent `sleep`s of this run that survived."""
    pids = agent_sleeps(root, str(seconds))
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def stray_sleep_killer(seconds: int) -> Callable[[Mesh], None]:
    """What to do once the mesh stopped: kill this run's agent `sleep <seconds>`s that survived it."""

    def kill(mesh: Mesh) -> None:
        stray = kill_stray_sleeps(mesh.worktree_root, seconds)
        if stray:
            common.say(f"killed {stray} stray agent processes left after the mesh stopped")

    return kill


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with common.Run(
        args.home,
        keep=args.keep,
        prefix="godel-bench-exec-",
        postgres=args.postgres,
        after_mesh_stop=stray_sleep_killer(args.sleep),
    ) as run:
        # No workers while registration, updates and listing are measured (phases 1-4).
        mesh, api_key = run.start(echo=True, workers=0)
        facts = common.machine_facts(run.backend, envoy=True, pg=run.pg)
        results = asyncio.run(run_benchmark(mesh, run.echo_port, api_key, args))
        facts["load_avg_at_end"] = common.load_avg()
        print_report(facts, args, results)
        payload = payload_of(facts, args, results)
        common.write_results(NAME, payload, figures_of(payload), args.json)
        return 0
    return 130  # interrupted (Ctrl-C or SIGTERM); everything is stopped


if __name__ == "__main__":
    raise SystemExit(main())
