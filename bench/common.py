"""What the benchmarks under bench/ share: progress lines, machine facts, the closed-loop load driver
and its latency figures, CPU time from /proc, the results file of a run (bench/results/<name>.json,
with the flat `figures` table that bench/compare.py compares), and one benchmark run's processes (`Run`: Kafka,
optionally PostgreSQL and the raw echo server, the mesh; stopped again on the way out, also on
Ctrl-C and SIGTERM).

The benchmarks are run as scripts (`python bench/<name>.py`), which puts bench/ itself on sys.path,
so they import this module as `common`; mypy, run from the repository root, sees it as
`bench.common`. Each script therefore imports it as

    if TYPE_CHECKING:
        from bench import common
    else:
        import common

Importing it also puts the repository root on sys.path, so the scripts can use the shared test
doubles of tests/fakes/ (bench/workflow_dag.py runs the engine with tests.fakes.members).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, ModuleType, TracebackType
from typing import Any

import grpc

from godel_deploy.envoy import envoy_binary
from godel_deploy.kafka import KafkaBroker
from godel_deploy.mesh import Mesh, MeshPorts
from godel_deploy.ports import LOOPBACK, free_port, port_open
from godel_deploy.postgres import PostgresServer
from godel_deploy.process import ManagedProcess

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR.parent) not in sys.path:
    sys.path.append(str(BENCH_DIR.parent))  # for tests.fakes (see the module docstring)
RESULTS_DIR = BENCH_DIR / "results"
ECHO_METHOD = "/bench.Echo/Echo"  # served by bench/echo_server.py
CLK_TCK = os.sysconf("SC_CLK_TCK")

Call = Callable[[int], Awaitable[None]]
"""One timed call; its argument is the call's number within the batch (0, 1, ...)."""


def say(message: str) -> None:
    """A progress line, time-stamped and flushed at once."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- measurement -----------------------------------------------------------------------------------


@dataclass
class Dist:
    """A latency distribution in milliseconds (percentiles with `statistics.quantiles(...,
    method="inclusive")`; with one value every figure is that value, with none they are NaN)."""

    n: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    p95_ms: float = float("nan")

    @classmethod
    def of(cls, seconds: Iterable[float]) -> Dist:
        ms = sorted(x * 1000.0 for x in seconds)
        nan = float("nan")
        if not ms:
            return cls(0, nan, nan, nan, nan, nan, nan, nan)
        if len(ms) == 1:
            return cls(1, ms[0], ms[0], ms[0], ms[0], ms[0], ms[0], ms[0])
        cuts = statistics.quantiles(ms, n=100, method="inclusive")
        return cls(len(ms), cuts[49], cuts[89], cuts[98], statistics.fmean(ms), ms[0], ms[-1], cuts[94])


@dataclass
class Batch:
    """What one run of `drive` saw (batches of one target add up with `+=`)."""

    latencies: list[float] = field(default_factory=list)  # seconds, successful calls only
    errors: list[str] = field(default_factory=list)
    wall: float = 0.0  # seconds from the first call issued to the last one answered
    client_cpu: float = 0.0  # CPU seconds of this (client) process, all threads, meanwhile

    def __iadd__(self, other: Batch) -> Batch:
        self.latencies += other.latencies
        self.errors += other.errors
        self.wall += other.wall
        self.client_cpu += other.client_cpu
        return self

    @property
    def throughput_rps(self) -> float:
        """Successful calls per second of wall time (NaN when nothing was timed)."""
        return len(self.latencies) / self.wall if self.wall > 0 else float("nan")

    def summary(self, calls: int) -> dict[str, Any]:
        """The figures of a result row for `calls` calls: counts, wall time, throughput, latency
        percentiles (ms), the client's CPU per call and the first error."""
        dist = Dist.of(self.latencies)
        return {
            "ok": dist.n,
            "errors": len(self.errors),
            "wall_s": self.wall,
            "throughput_rps": self.throughput_rps,
            "p50_ms": dist.p50_ms,
            "p90_ms": dist.p90_ms,
            "p99_ms": dist.p99_ms,
            "mean_ms": dist.mean_ms,
            "min_ms": dist.min_ms,
            "max_ms": dist.max_ms,
            "client_cpu_us_per_call": self.client_cpu / max(calls, 1) * 1e6,
            "first_error": self.errors[0] if self.errors else "",
        }


async def drive(
    call: Call, requests: int, concurrency: int, *, failures: tuple[type[Exception], ...]
) -> Batch:
    """Issue exactly `requests` calls from `concurrency` workers (a bounded loop) and time each.
    A call raising one of `failures` is counted as an error; anything else aborts the batch."""
    counter: Iterator[int] = itertools.count()
    batch = Batch()

    async def worker() -> None:
        while (i := next(counter)) < requests:
            started = time.perf_counter()
            try:
                await call(i)
            except failures as exc:
                batch.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            batch.latencies.append(time.perf_counter() - started)

    cpu = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    batch.wall = time.perf_counter() - started
    batch.client_cpu = time.process_time() - cpu
    return batch


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """utime + stime of a process (all its threads), or with `children` cutime + cstime of its reaped
    children, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    if children:
        return (int(fields[13]) + int(fields[14])) / CLK_TCK  # fields 16, 17 of proc(5)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14, 15 of proc(5)


def metrics(admin_port: int) -> dict[str, float]:
    """A service's Prometheus samples from `/metrics` on its admin port, as `name{labels}` -> value
    (empty when it cannot be read)."""
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{admin_port}/metrics", timeout=2) as reply:
            text = reply.read().decode()
    except OSError:
        return {}
    samples: dict[str, float] = {}
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key and not line.startswith("#"):
            with contextlib.suppress(ValueError):
                samples[key] = float(value)
    return samples


# -- reporting ---------------------------------------------------------------------------------------


def load_avg() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded to two places."""
    return [round(x, 2) for x in os.getloadavg()]


def machine_facts(
    backend: str,
    *,
    libraries: Sequence[ModuleType] = (),
    envoy: bool = False,
    pg: PostgresServer | None = None,
) -> dict[str, Any]:
    """Cores, CPU, platform, Python and grpcio (then the `__version__` of each of `libraries`), the
    database backend and the load average; with `envoy` also Envoy's version, with `pg` the PostgreSQL
    server's."""
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    facts: dict[str, Any] = {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        **{module.__name__: module.__version__ for module in libraries},
        "db_backend": backend,
        "load_avg_at_start": load_avg(),
    }
    if envoy:
        with contextlib.suppress(OSError, RuntimeError, IndexError):
            out = subprocess.run(
                [str(envoy_binary()), "--version"], capture_output=True, text=True, timeout=10, check=False
            ).stdout
            facts["envoy"] = out.split("version:")[1].split("/")[1]
    if pg is not None:
        with contextlib.suppress(OSError):
            out = subprocess.run(
                [str(pg.bin_dir / "postgres"), "--version"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout
            facts["postgres"] = out.strip()
    return facts


@dataclass(frozen=True)
class Figure:
    """One figure of a run as `bench/compare.py` reads it: value, unit and which way is better."""

    value: float
    unit: str
    better: str  # "lower" or "higher"


def lower(value: float, unit: str) -> Figure:
    return Figure(value, unit, "lower")


def higher(value: float, unit: str) -> Figure:
    return Figure(value, unit, "higher")


def latency_figures(key: str, batch: dict[str, Any]) -> dict[str, Figure]:
    """p50 and p99 (ms) and throughput (req/s) of one timed batch, as a results file holds it."""
    return {
        f"{key}/p50": lower(batch["p50_ms"], "ms"),
        f"{key}/p99": lower(batch["p99_ms"], "ms"),
        f"{key}/throughput": higher(batch["throughput_rps"], "req/s"),
    }


def results_file(name: str) -> Path:
    """bench/results/<name>.json: the one results file of a benchmark, rewritten by every run."""
    return RESULTS_DIR / f"{name}.json"


def write_results(name: str, payload: dict[str, Any], figures: dict[str, Figure], out: Path | None) -> None:
    """Writes a run's payload to `out` (default `results_file(name)`), headed by the benchmark's name,
    the time and `figures`, the flat table `bench/compare.py` compares between two runs."""
    head = {
        "benchmark": name,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "figures": {key: asdict(figure) for key, figure in figures.items()},
    }
    path = out or results_file(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**head, **payload}, indent=2) + "\n")
    say(f"figures written to {path}")


# -- orchestration -----------------------------------------------------------------------------------


class Interrupted(Exception):
    """SIGTERM: unwind through the finally blocks like Ctrl-C does."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(f"signal {signum}")


def add_json_option(parser: argparse.ArgumentParser, name: str) -> None:
    """--json: where the figures go instead of bench/results/<name>.json."""
    parser.add_argument(
        "--json",
        type=Path,
        metavar="OUT",
        help=f"write the figures here instead of bench/results/{name}.json",
    )


def add_mesh_options(parser: argparse.ArgumentParser) -> None:
    """The options of a benchmark that starts a mesh: --postgres, --home and --keep."""
    parser.add_argument("--postgres", action="store_true", help="run the services on a throw-away PostgreSQL")
    add_home_options(parser)


def add_home_options(parser: argparse.ArgumentParser) -> None:
    """--home and --keep: where a `Run` keeps its data and logs, and whether it removes them."""
    parser.add_argument("--home", type=Path, help="working directory (default: a fresh temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, databases)")


class Run:
    """The processes of one benchmark run, in one working directory (`home`, or a fresh temporary one
    that is removed again unless `keep`).

    As a context manager it turns SIGTERM into `Interrupted`; on the way out it stops everything that
    `start` started (mesh, then `after_mesh_stop(mesh)`, Kafka, PostgreSQL, the echo server), also on
    Ctrl-C or SIGTERM. Those two are swallowed, so code after the `with` block runs only when the run
    was interrupted (the benchmarks return 130 there); any other exception propagates.
    """

    def __init__(
        self,
        home: Path | None,
        *,
        keep: bool,
        prefix: str,
        postgres: bool,
        after_mesh_stop: Callable[[Mesh], None] | None = None,
    ) -> None:
        self.kept = keep or home is not None
        self.home = (home or Path(tempfile.mkdtemp(prefix=prefix))).resolve()
        self.postgres = postgres
        self.after_mesh_stop = after_mesh_stop
        self.kafka: KafkaBroker | None = None
        self.pg: PostgresServer | None = None
        self.mesh: Mesh | None = None
        self.echo: ManagedProcess | None = None
        self.echo_port = 0
        self.started = time.monotonic()

    @property
    def backend(self) -> str:
        """The database backend the services run on, as the reports name it."""
        if self.postgres:
            return "PostgreSQL (asyncpg; fsync, synchronous_commit, full_page_writes off)"
        return "SQLite (aiosqlite; WAL, synchronous=NORMAL; one file per service)"

    def __enter__(self) -> Run:
        signal.signal(signal.SIGTERM, _on_sigterm)
        self.home.mkdir(parents=True, exist_ok=True)
        say(f"working directory {self.home}")
        load1 = os.getloadavg()[0]
        if load1 > 0.75 * len(os.sched_getaffinity(0)):
            say(f"warning: 1-minute load average is {load1:.2f} before starting; the figures will be noisy")
        self.started = time.monotonic()
        return self

    def start(self, *, echo: bool, workers: int = 1) -> tuple[Mesh, str]:
        """Starts the echo server (with `echo`), Kafka, PostgreSQL (when the run is on it) and the mesh
        with `workers` workers; returns the mesh and an admin API key."""
        if echo:
            self.echo_port = free_port()
            self.echo = ManagedProcess(
                [sys.executable, str(BENCH_DIR / "echo_server.py"), str(self.echo_port)],
                self.home / "echo-server.log",
                name="echo-server",
            ).start()
        say("starting Kafka (KRaft) ...")
        self.kafka = KafkaBroker(self.home / "kafka").start()
        database_url: str | None = None
        if self.postgres:
            say("starting PostgreSQL ...")
            self.pg = PostgresServer(self.home / "pg").start()
            self.pg.wait_ready()
            database_url = self.pg.url()
        self.kafka.wait_ready()
        if self.echo is not None:
            port = self.echo_port
            self.echo.wait_for(lambda: port_open(port), 30, f"echo server on {LOOPBACK}:{port}")
            say(f"echo server on {LOOPBACK}:{port}; Kafka on {self.kafka.bootstrap}")
        else:
            say(f"Kafka on {self.kafka.bootstrap}")
        self.mesh = mesh = Mesh(
            self.home / "mesh",
            self.kafka.bootstrap,
            ports=MeshPorts.free(),
            database_url=database_url,
            workers=workers,
            # The benchmarks measure the platform, not the per-caller limits (one key drives them),
            # nor the self-healing policies: agent_execution's `sleep` agents are idle by design,
            # and restart-stuck-agents would restart those idle for 300 s (the loop only
            # recommends).
            extra_env={
                "GODEL_AUTONOMIC_DRY_RUN": "true",
                "GODEL_RATE_LIMIT_PER_KEY": "0",
                "GODEL_RATE_LIMIT_PER_USER": "0",
                "GODEL_MAX_STREAMS_PER_USER": "0",
                "GODEL_MAX_SUBSCRIPTIONS_PER_USER": "0",
                "GODEL_MAX_RUNNING_AGENTS_PER_USER": "0",
            },
        )
        mesh.logs.mkdir(parents=True, exist_ok=True)
        api_key = mesh.create_api_key("bench-admin", "admin")
        assert api_key is not None
        say("starting the mesh" + (" (no worker yet)" if workers == 0 else "") + " ...")
        mesh.start(progress=True)
        say(f"mesh up after {time.monotonic() - self.started:.1f}s")
        return mesh, api_key

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        interrupted = kind is not None and issubclass(kind, KeyboardInterrupt | Interrupted)
        if interrupted:
            say("interrupted: stopping everything")
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the clean-up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if self.mesh is not None:
                self.mesh.stop()
                if self.after_mesh_stop is not None:
                    self.after_mesh_stop(self.mesh)
            if self.kafka is not None:
                self.kafka.stop()
            if self.pg is not None:
                self.pg.stop()
            if self.echo is not None:
                self.echo.stop(timeout=5)
            say(f"stopped everything ({time.monotonic() - self.started:.1f}s in total)")
            if self.kept:
                say(f"kept {self.home}")
            else:
                shutil.rmtree(self.home, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        return interrupted
