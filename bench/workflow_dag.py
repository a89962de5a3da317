"""Scheduling overhead of the team service's WorkflowEngine: how long does the real engine take to
push a DAG of no-op steps through, on a real database, compared with a plain asyncio DAG runner on
the same DAG in the same run?

The engine is the real `WorkflowEngine` (`create`, `start`, `member_changed`) on a real SQLite file
in a temporary directory (migrated with the team service's migrations) and, with --postgres, on
PostgreSQL too: a throw-away database of the server at --postgres URL, or of a throw-away server the
run starts when no URL is given (`make bench`). Only the agent side is faked, in process:
`InstantMembers.apply(effects)` (tests/fakes/members.py) queues every launched member instead of calling CreateAgent, and a
consumer loop completes the queued members the way the Kafka consumer (`dispatch.py`) does: per batch
one `db.session()` transaction that dedupes the batch's events in `processed_events`, runs
`apply_agent_event` on a real `agent:complete` event and hands the member to
`engine.member_changed`; the effects of that transaction (the next launches) are applied after the
commit. Batches drain up to --batch (500, like the consumer's `max_poll_records`) queued completions;
every figure is given for batch size 1 and for the batched loop.

Shapes: a "wide diamond" (source -> layers of parallel steps -> sink, maxConcurrency 50) and a chain.
The baseline is a plain asyncio runner in this file: counters of unmet dependencies, an
asyncio.Queue of ready steps and maxConcurrency worker tasks running `await asyncio.sleep(0)` steps.

Every run is checked: each step launched and completed exactly once, never launched before all of
its dependencies completed, never more than maxConcurrency in flight, and (engine) the workflow,
step and member rows and the outbox events are what a completed run leaves. Any failed check makes
the script exit 1.

    python bench/workflow_dag.py [--steps N] [--quick] [--batch B] [--postgres [URL]] [--profile]

The figures go to bench/results/workflow_dag.json (--json OUT: elsewhere).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import itertools
import os
import pstats
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy
from google.protobuf import json_format
from sqlalchemy import func, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from godel.v1 import workflow_pb2
from godel_deploy.postgres import PostgresServer
from godel_server.runtime.config import Settings, load_settings
from godel_server.runtime.db import Database
from godel_server.runtime.events import utcnow
from godel_server.runtime.migrations import upgrade
from godel_server.runtime.publisher import EventPublisher
from godel_server.runtime.tables import outbox
from godel_server.team.models import MemberRow, WorkflowRow, WorkflowStepRow
from godel_server.team.workflows.definition import validate
from godel_server.team.workflows.engine import WorkflowEngine

if TYPE_CHECKING:
    from bench import common
else:
    import common  # also puts the repository root on sys.path, for tests.fakes
from tests.fakes.members import InstantMembers, Progress

NAME = "workflow_dag"
THROWAWAY = "throw-away"  # --postgres without a URL
REPO_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = REPO_ROOT / "services" / "godel_server" / "team" / "migrations"


class CheckFailed(Exception):
    """A run did not do what a correct DAG run does."""


# -- the DAGs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A DAG: step ids in definition order and each step's dependencies."""

    name: str
    description: str
    ids: list[str]
    deps: dict[str, list[str]]

    def dependents(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {s: [] for s in self.ids}
        for step in self.ids:
            for dep in self.deps[step]:
                out[dep].append(step)
        return out

    def edges(self) -> int:
        return sum(len(d) for d in self.deps.values())


def diamond(steps: int, width: int) -> Shape:
    """source -> layers of `width` parallel steps -> sink. Step i of a layer depends on steps i and
    i+1 (mod the layer's width) of the layer before; the sink on every step nothing else depends on."""
    middle = steps - 2
    width = max(1, min(width, middle))
    ids = ["source"]
    deps: dict[str, list[str]] = {"source": []}
    previous = ["source"]
    layer = 0
    while len(ids) - 1 < middle:
        count = min(width, middle - (len(ids) - 1))
        current = [f"l{layer:03d}-{i:04d}" for i in range(count)]
        for i, step in enumerate(current):
            deps[step] = list(dict.fromkeys([previous[i % len(previous)], previous[(i + 1) % len(previous)]]))
            ids.append(step)
        previous = current
        layer += 1
    used = {d for step in ids for d in deps[step]}
    deps["sink"] = [s for s in ids if s not in used]
    ids.append("sink")
    return Shape(
        "diamond",
        f"source -> {layer} layers of <= {width} -> sink",
        ids,
        deps,
    )


def chain(steps: int) -> Shape:
    ids = [f"c{i:05d}" for i in range(steps)]
    deps = {step: ([ids[i - 1]] if i else []) for i, step in enumerate(ids)}
    return Shape("chain", f"{steps} steps one after the other", ids, deps)


def definition_of(shape: Shape, max_concurrency: int) -> workflow_pb2.WorkflowDefinition:
    definition = workflow_pb2.WorkflowDefinition(
        name=f"bench-{shape.name}",
        max_concurrency=max_concurrency,
        runtime="command",
        command=["true"],
    )
    for step in shape.ids:
        definition.steps.append(
            workflow_pb2.StepDefinition(id=step, task="no-op", depends_on=shape.deps[step])
        )
    validate(definition)  # what CreateWorkflow does; raises on a malformed definition
    return definition


# -- checks ------------------------------------------------------------------------------------------


def check_log(shape: Shape, log: list[tuple[str, str]], limit: int) -> int:
    """Checks a run's (kind, step) log, kind "launch" or "complete"; returns the most steps that
    were in flight at once. Raises CheckFailed."""
    launched: dict[str, int] = {}
    completed: dict[str, int] = {}
    in_flight = peak = 0
    problems: list[str] = []
    for i, (kind, step) in enumerate(log):
        if step not in shape.deps:
            problems.append(f"unknown step {step!r}")
            continue
        if kind == "launch":
            if step in launched:
                problems.append(f"{step} launched twice")
            launched[step] = i
            missing = [d for d in shape.deps[step] if d not in completed]
            if missing:
                problems.append(f"{step} launched before its dependencies {missing[:3]} completed")
            in_flight += 1
            peak = max(peak, in_flight)
        else:
            if step in completed:
                problems.append(f"{step} completed twice")
            if step not in launched:
                problems.append(f"{step} completed without being launched")
            completed[step] = i
            in_flight -= 1
        if len(problems) > 5:
            break
    missing_steps = [s for s in shape.ids if s not in completed]
    if missing_steps:
        problems.append(f"{len(missing_steps)} steps never completed, e.g. {missing_steps[:3]}")
    # completion order respects the dependencies (implied by the launch check; checked on its own)
    late = [s for s in completed if any(completed.get(d, len(log)) > completed[s] for d in shape.deps[s])]
    if late:
        problems.append(f"{len(late)} steps completed before a dependency, e.g. {late[:3]}")
    if peak > limit:
        problems.append(f"{peak} steps in flight at once, maxConcurrency is {limit}")
    if problems:
        raise CheckFailed("; ".join(problems[:6]))
    return peak


# -- the engine run --------------------------------------------------------------------------------


def progress(label: str, steps: int) -> Progress:
    """A progress line every few seconds of a long engine run."""

    def say(completed: int, transactions: int, seconds: float) -> None:
        common.say(
            f"    {label}: {completed}/{steps} steps after {seconds:.1f}s, "
            f"{transactions} transactions, {completed / seconds:.0f} steps/s"
        )

    return say


@dataclass
class Result:
    backend: str
    shape: str
    runner: str  # "engine" | "plain"
    batch: int  # completions per transaction at most (engine); 0 for the plain runner
    steps: int
    wall_s: float
    cpu_s: float
    steps_per_s: float
    ms_per_step: float
    max_in_flight: int
    transactions: int = 0
    create_s: float = 0.0  # engine: the create transaction (workflow + step rows), not in wall_s
    runs: int = 1  # plain: repetitions, wall_s / cpu_s are their medians
    ratio_vs_plain: float = float("nan")
    profile: str = field(default="", repr=False)


@contextmanager
def profiled(enabled: bool, sink: list[str]) -> Iterator[None]:
    if not enabled:
        yield
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(20)
        sink.append(out.getvalue())


async def engine_run(
    db: Database,
    settings: Settings,
    shape: Shape,
    definition: workflow_pb2.WorkflowDefinition,
    *,
    batch: int,
    backend: str,
    profile: bool = False,
) -> Result:
    limit = definition.max_concurrency
    members = InstantMembers(db)
    engine = WorkflowEngine(settings, db, EventPublisher(None), members)
    stored = json_format.MessageToDict(definition)
    row = WorkflowRow(
        id=str(uuid.uuid4()),
        name=definition.name,
        definition=stored,
        status="pending",
        context={},
        results={},
        progress=0,
        created_at=utcnow(),
        meta={},
    )
    async with db.reader() as session:
        outbox_before = await session.scalar(select(func.count()).select_from(outbox)) or 0
    label = f"{backend} {shape.name} engine batch<={batch}"
    began = time.perf_counter()
    async with db.session() as session:
        await engine.create(session, row, definition)
    create_s = time.perf_counter() - began
    profiles: list[str] = []
    cpu = time.process_time()
    began = time.perf_counter()
    with profiled(profile, profiles):
        await engine.start(row.id)
        await members.drain(engine, batch, progress(label, len(shape.ids)))
    wall = time.perf_counter() - began
    cpu_s = time.process_time() - cpu
    await engine.stop()
    peak = check_log(shape, members.step_log(), limit)
    await check_rows(db, row.id, shape, outbox_before)
    if members.kills:
        raise CheckFailed(f"{members.kills} kill/pause/resume calls in a run without failures")
    n = len(shape.ids)
    return Result(
        backend=backend,
        shape=shape.name,
        runner="engine",
        batch=batch,
        steps=n,
        wall_s=wall,
        cpu_s=cpu_s,
        steps_per_s=n / wall,
        ms_per_step=wall / n * 1000,
        max_in_flight=peak,
        transactions=members.transactions,
        create_s=create_s,
        profile=profiles[0] if profiles else "",
    )


async def check_rows(db: Database, workflow_id: str, shape: Shape, outbox_before: int) -> None:
    """What a completed run leaves in the database."""
    n = len(shape.ids)
    async with db.reader() as session:
        wf = await session.get(WorkflowRow, workflow_id)
        steps = (
            await session.execute(
                select(WorkflowStepRow.status, func.count())
                .where(WorkflowStepRow.workflow_id == workflow_id)
                .group_by(WorkflowStepRow.status)
            )
        ).all()
        members = (
            await session.execute(
                select(MemberRow.status, func.count(), func.count(sqlalchemy.distinct(MemberRow.step_id)))
                .where(MemberRow.workflow_id == workflow_id)
                .group_by(MemberRow.status)
            )
        ).all()
        outbox_after = await session.scalar(select(func.count()).select_from(outbox)) or 0
    problems: list[str] = []
    if wf is None or wf.status != "completed" or wf.progress != 100:
        problems.append(f"workflow is {wf.status if wf else 'gone'} at {wf.progress if wf else '?'} %")
    step_counts = {status: count for status, count in steps}
    if step_counts != {"completed": n}:
        problems.append(f"step rows by status {step_counts}, expected {{'completed': {n}}}")
    member_counts = {status: (count, distinct) for status, count, distinct in members}
    if member_counts != {"completed": (n, n)}:
        problems.append(f"member rows (status: rows, steps) {member_counts}, expected one completed per step")
    # workflow:create, workflow:start, step:start and step:complete per step, workflow:complete
    expected_events = 2 * n + 3
    if outbox_after - outbox_before != expected_events:
        problems.append(f"{outbox_after - outbox_before} outbox events, expected {expected_events}")
    if wf is not None and len(wf.results or {}) != n:
        problems.append(f"workflow results hold {len(wf.results or {})} steps, expected {n}")
    if problems:
        raise CheckFailed("; ".join(problems))


# -- the plain asyncio baseline --------------------------------------------------------------------


async def plain_once(shape: Shape, limit: int) -> tuple[float, float, list[tuple[str, str]]]:
    """One run of the plain runner: (wall seconds, CPU seconds, log)."""
    dependents = shape.dependents()
    unmet = {s: len(shape.deps[s]) for s in shape.ids}
    ready: asyncio.Queue[str | None] = asyncio.Queue()
    log: list[tuple[str, str]] = []
    n = len(shape.ids)
    done = 0
    workers = max(1, limit)

    async def worker() -> None:
        nonlocal done
        while (step := await ready.get()) is not None:
            log.append(("launch", step))
            await asyncio.sleep(0)  # the no-op step
            log.append(("complete", step))
            done += 1
            for dependent in dependents[step]:
                unmet[dependent] -= 1
                if not unmet[dependent]:
                    ready.put_nowait(dependent)
            if done == n:
                for _ in range(workers):
                    ready.put_nowait(None)

    cpu = time.process_time()
    began = time.perf_counter()
    for step in shape.ids:
        if not unmet[step]:
            ready.put_nowait(step)
    await asyncio.gather(*(worker() for _ in range(workers)))
    return time.perf_counter() - began, time.process_time() - cpu, log


async def plain_run(shape: Shape, limit: int, repeats: int) -> Result:
    walls: list[float] = []
    cpus: list[float] = []
    peak = 0
    for _ in range(repeats):
        wall, cpu, log = await plain_once(shape, limit)
        peak = max(peak, check_log(shape, log, limit))
        walls.append(wall)
        cpus.append(cpu)
    wall, n = statistics.median(walls), len(shape.ids)
    return Result(
        backend="-",
        shape=shape.name,
        runner="plain",
        batch=0,
        steps=n,
        wall_s=wall,
        cpu_s=statistics.median(cpus),
        steps_per_s=n / wall,
        ms_per_step=wall / n * 1000,
        max_in_flight=peak,
        runs=repeats,
        ratio_vs_plain=1.0,
    )


# -- databases -------------------------------------------------------------------------------------


def asyncpg_url(url: str) -> URL:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    if parsed.drivername != "postgresql+asyncpg":
        raise SystemExit(f"--postgres needs a postgresql:// URL, got {parsed.drivername}://")
    return parsed


@asynccontextmanager
async def postgres_database(url: str) -> AsyncIterator[Database]:
    """A fresh database on the server of `url` (dropped again on the way out), migrated."""
    server = asyncpg_url(url)
    name = f"godel_bench_wfdag_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_async_engine(
        server.set(database=server.database or "postgres"), isolation_level="AUTOCOMMIT"
    )
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        db = Database(server.set(database=name).render_as_string(hide_password=False))
        try:
            await upgrade(db, MIGRATIONS)
            yield db
        finally:
            await db.close()
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        await admin.dispose()


async def postgres_version(db: Database) -> str:
    async with db.reader() as session:
        return str(await session.scalar(text("SHOW server_version")))


@asynccontextmanager
async def sqlite_database(home: Path, name: str) -> AsyncIterator[Database]:
    """A fresh SQLite file (WAL, synchronous=NORMAL: the service's settings), migrated."""
    db = Database(f"sqlite+aiosqlite:///{home / f'{name}.db'}")
    try:
        await upgrade(db, MIGRATIONS)
        yield db
    finally:
        await db.close()


@asynccontextmanager
async def open_database(
    backend: str, postgres_url: str | None, home: Path, number: int
) -> AsyncIterator[Database]:
    """A fresh, migrated database of `backend` ("sqlite" or "postgres")."""
    if backend == "postgres":
        assert postgres_url
        async with postgres_database(postgres_url) as db:
            yield db
    else:
        async with sqlite_database(home, f"team-{number}") as db:
            yield db


# -- the benchmark -----------------------------------------------------------------------------------


async def run_benchmark(args: argparse.Namespace, home: Path) -> tuple[list[Result], dict[str, str]]:
    settings = load_settings("team", {"GODEL_HOME": str(home)})
    shapes = [diamond(args.steps, args.width), chain(args.steps)]
    definitions = {shape.name: definition_of(shape, args.concurrency) for shape in shapes}
    batches = list(dict.fromkeys([1, args.batch]))
    backends = ["sqlite"] + (["postgres"] if args.postgres else [])
    versions: dict[str, str] = {}
    results: list[Result] = []
    for shape in shapes:
        common.say(
            f"shape {shape.name}: {len(shape.ids)} steps, {shape.edges()} edges ({shape.description}), "
            f"maxConcurrency {args.concurrency}"
        )

    warm = diamond(min(args.steps, 30), 5)
    warm_definition = definition_of(warm, args.concurrency)
    numbers = itertools.count(1)
    for backend in backends:
        async with open_database(backend, args.postgres, home, next(numbers)) as db:
            if backend == "postgres":
                versions["postgres"] = await postgres_version(db)
            common.say(f"{backend}: warm-up ({len(warm.ids)}-step diamond, untimed)")
            await engine_run(db, settings, warm, warm_definition, batch=args.batch, backend=backend)
        for shape in shapes:
            for batch in batches:
                # A fresh database per run, so no run pays for the rows of the one before.
                async with open_database(backend, args.postgres, home, next(numbers)) as db:
                    common.say(
                        f"{backend} {shape.name}: engine, up to {batch} completions per transaction ..."
                    )
                    result = await engine_run(
                        db,
                        settings,
                        shape,
                        definitions[shape.name],
                        batch=batch,
                        backend=backend,
                        profile=args.profile,
                    )
                results.append(result)
                common.say(
                    f"  done: {result.wall_s:.2f}s, {result.steps_per_s:.0f} steps/s, "
                    f"{result.ms_per_step:.2f} ms/step, CPU {result.cpu_s:.2f}s, "
                    f"{result.transactions} transactions, peak in flight {result.max_in_flight}; checks passed"
                )
                if result.profile:
                    print(result.profile, flush=True)

    for shape in shapes:
        common.say(f"plain asyncio {shape.name}: {args.plain_runs} runs ...")
        plain = await plain_run(shape, args.concurrency, args.plain_runs)
        results.append(plain)
        common.say(
            f"  done: median {plain.wall_s * 1000:.2f} ms, {plain.steps_per_s:.0f} steps/s; checks passed"
        )
        for r in results:
            if r.runner == "engine" and r.shape == shape.name:
                r.ratio_vs_plain = r.wall_s / plain.wall_s
    return results, versions


def figures_of(payload: dict[str, Any]) -> dict[str, common.Figure]:
    """Per backend, shape and runner: ms per step and steps/s; for the engine, wall x plain."""
    figures: dict[str, common.Figure] = {}
    for r in payload["results"]:
        if r["runner"] == "engine":
            key = f"{r['backend']}/{r['shape']}/engine, batch {r['batch']}"
        else:
            key = f"{r['shape']}/plain asyncio"
        figures[f"{key}/ms per step"] = common.lower(r["ms_per_step"], "ms")
        figures[f"{key}/steps per second"] = common.higher(r["steps_per_s"], "steps/s")
        if r["runner"] == "engine":
            figures[f"{key}/x plain"] = common.lower(r["ratio_vs_plain"], "x")
    return figures


def print_report(facts: dict[str, Any], args: argparse.Namespace, results: list[Result]) -> None:
    print()
    print("=" * 112)
    print("Godel workflow engine: scheduling overhead of a DAG of no-op steps")
    print(
        f"machine: {facts['usable_cores']} cores ({facts['cpu_model'] or 'unknown cpu'}), "
        f"Python {facts['python']}, SQLAlchemy {facts['sqlalchemy']}, "
        f"load avg at start {facts['load_avg_at_start']}, at end {facts.get('load_avg_at_end')}"
    )
    print(f"databases: {facts['db_backend']}" + (f" ({facts['postgres']})" if "postgres" in facts else ""))
    print(
        f"{args.steps} steps per shape, maxConcurrency {args.concurrency}, diamond width {args.width}; "
        "agents complete at once (in-process fake), no Kafka, no AgentService"
    )
    print("=" * 112)
    header = (
        f"{'backend':<9}{'shape':<9}{'runner':<22}{'steps':>6}{'wall s':>9}{'steps/s':>10}"
        f"{'ms/step':>9}{'CPU s':>8}{'tx':>6}{'peak':>6}{'create s':>9}{'x plain':>9}"
    )
    print(header)
    print("-" * len(header))
    for shape in dict.fromkeys(r.shape for r in results):
        for r in (r for r in results if r.shape == shape):
            if r.runner == "engine":
                runner = f"engine, batch {'1' if r.batch == 1 else f'<={r.batch}'}"
                extra = f"{r.transactions:>6}{r.max_in_flight:>6}{r.create_s:>9.2f}{r.ratio_vs_plain:>9.0f}"
            else:
                runner = f"plain asyncio ({r.runs}x)"
                extra = f"{'':>6}{r.max_in_flight:>6}{'':>9}{'1':>9}"
            print(
                f"{r.backend:<9}{r.shape:<9}{runner:<22}{r.steps:>6}{r.wall_s:>9.3f}{r.steps_per_s:>10.0f}"
                f"{r.ms_per_step:>9.3f}{r.cpu_s:>8.2f}" + extra
            )
    print("-" * len(header))
    print("wall s: engine.start() until the last completion committed (create not included: 'create s');")
    print(
        "ms/step = wall / steps; CPU s: this process (all threads; a PostgreSQL server's CPU is not in it);"
    )
    print("tx: completion transactions; peak: most steps in flight at once; x plain: wall / plain wall")
    print("every run passed the checks: each step launched and completed once, in dependency order")
    print("=" * 112)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Scheduling overhead of the team service's WorkflowEngine on a DAG of no-op steps "
        "(real engine, real database, in-process fake agents) against a plain asyncio DAG runner.",
    )
    parser.add_argument("--steps", type=int, help="steps per DAG (1000; 100 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run: 100 steps, 3 plain runs")
    parser.add_argument(
        "--width", type=int, help="parallel steps per layer of the diamond (default: steps / 10)"
    )
    parser.add_argument("--concurrency", type=int, default=50, help="maxConcurrency of the workflows (50)")
    parser.add_argument(
        "--batch", type=int, default=500, help="most completions per transaction in the batched runs (500)"
    )
    parser.add_argument("--plain-runs", type=int, help="runs of the plain runner, median reported (5)")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        nargs="?",
        const=THROWAWAY,
        help="also run on PostgreSQL: a throw-away database of the server at URL, or without URL of a "
        "throw-away server this run starts",
    )
    parser.add_argument("--profile", action="store_true", help="print a cProfile summary of each engine run")
    common.add_json_option(parser, NAME)
    common.add_home_options(parser)
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 100 if args.quick else 1000
    if args.plain_runs is None:
        args.plain_runs = 3 if args.quick else 5
    if args.width is None:
        args.width = max(1, round(args.steps / 10))
    if not 3 <= args.steps <= 10_000:
        parser.error("--steps must be between 3 and 10,000 (the definition limit)")
    if args.concurrency < 1 or args.batch < 1 or args.width < 1 or args.plain_runs < 1:
        parser.error("--concurrency, --batch, --width and --plain-runs must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kept = args.keep or args.home is not None
    home = (args.home or Path(tempfile.mkdtemp(prefix="godel-bench-wfdag-"))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    common.say(f"working directory {home}")
    load1 = os.getloadavg()[0]
    if load1 > 0.75 * len(os.sched_getaffinity(0)):
        common.say(
            f"warning: 1-minute load average is {load1:.2f} before starting; the figures will be noisy"
        )
    backend = "SQLite (aiosqlite; WAL, synchronous=NORMAL; a fresh file per run)"
    if args.postgres:
        backend += " and PostgreSQL (asyncpg; a fresh database per run)"
    facts = common.machine_facts(backend, libraries=(sqlalchemy,))
    server: PostgresServer | None = None
    try:
        if args.postgres == THROWAWAY:
            server = PostgresServer(home / "pg").start()
            server.wait_ready()
            args.postgres = server.url()
        results, versions = asyncio.run(run_benchmark(args, home))
    except (CheckFailed, AssertionError) as exc:  # the fake members assert what they see
        common.say(f"CHECK FAILED: {exc}")
        return 1
    except KeyboardInterrupt:
        common.say("interrupted")
        return 130
    finally:
        if server is not None:
            server.stop()
        if kept:
            common.say(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    facts.update(versions)
    facts["load_avg_at_end"] = common.load_avg()
    print_report(facts, args, results)
    payload = {
        "machine": facts,
        "config": {
            "steps": args.steps,
            "width": args.width,
            "concurrency": args.concurrency,
            "batch": args.batch,
            "plain_runs": args.plain_runs,
            "postgres": bool(args.postgres),
        },
        "results": [{k: v for k, v in asdict(r).items() if k != "profile"} for r in results],
    }
    common.write_results(NAME, payload, figures_of(payload), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
