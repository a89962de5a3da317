#!/usr/bin/env python3
"""Agent bring-up on one worker host, without the control plane: how fast worker processes take a
burst of agents to RUNNING, what they cost once the agents run, and the raw baseline the issue names
(`git worktree add` and a sandboxed process start, timed alone, one agent after the other).

    .venv/bin/python bench/worker_bringup.py [--agents 1000] [--workers 1] [--baseline 300]
                                             [--steady 15] [--json OUT] [--quick]

The figures go to bench/results/worker_bringup.json (see bench/compare.py).

What runs: the fake agent-service replica of the worker tests (tests/fakes/worker_controller.py,
heartbeats every second as the agent service asks) in this process, and `--workers` real worker
processes (`godel-server worker`, bubblewrap sandbox) connected to it. Each agent is `sleep 900` in its
own git worktree of one repository. The replica hands each worker at most 64 assignments it has
not heard of yet, as the agent service does (agent/workers.py MAX_IN_FLIGHT). A worker process can
hold about (its open-files limit - 256) / 3 runs (two output pipes and a pidfd each): where the hard
limit cannot be raised (no CAP_SYS_RESOURCE), more agents need more worker processes. The host needs
kernel.pid_max above ~4 processes per agent; the benchmark says so before it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from godel.v1 import agent_pb2
from godel.v1 import worker_service_pb2 as ws
from godel_server.agent.workers import MAX_IN_FLIGHT
from godel_server.runtime.config import load_worker_settings
from godel_server.worker.messages import TERMINAL_STATES
from godel_server.worker.procs import signal_group, spawn_group
from godel_server.worker.sandbox import GitDirs, Sandboxes

if TYPE_CHECKING:
    from bench import common
    from tests.fakes.worker_controller import FakeController, FakeStream
    from tests.fakes.worker_env import assignment, make_git_repo
else:
    import common

    from tests.fakes.worker_controller import FakeController, FakeStream
    from tests.fakes.worker_env import assignment, make_git_repo

NAME = "worker_bringup"
HEARTBEAT_MS = 1000  # what the agent service asks for (agent/worker_servicer.py HEARTBEAT_MS)
AGENT = ["sleep", "900"]
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class ProcessCost:
    cpu_seconds: float  # the process's own utime + stime
    reaped_cpu_seconds: float  # of the children it reaped (git, the sandbox's setup)
    rss_kib: int
    files: int


def host_memory_kib() -> dict[str, int]:
    """MemAvailable and the kernel's own share (slab, page tables, kernel stacks), KiB."""
    info = {
        line.split(":")[0]: int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
    }
    return {
        "available": info["MemAvailable"],
        "kernel": info["Slab"] + info["PageTables"] + info["KernelStack"],
    }


def cost_of(pid: int) -> ProcessCost:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    rss = next(
        line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS")
    )
    return ProcessCost(
        (int(fields[11]) + int(fields[12])) / _TICKS,
        (int(fields[13]) + int(fields[14])) / _TICKS,
        int(rss.split()[1]),
        len(os.listdir(f"/proc/{pid}/fd")),
    )


async def baseline(tmp: Path, count: int) -> dict[str, Any]:
    """`git worktree add -b` and a sandboxed `sleep` per agent, one after the other, on a fresh
    repository: what the issue calls the raw cost of an agent start."""
    repo = make_git_repo(tmp / "baseline-repo")
    settings = load_worker_settings(
        {"GODEL_HOME": str(tmp / "baseline-home"), "GODEL_WORKTREE_ROOT": str(tmp / "baseline-wt")}
    )
    sandboxes = Sandboxes(settings)
    await sandboxes.check()
    seconds: list[float] = []
    procs = []
    try:
        for n in range(count):
            path = settings.worktree_root / f"b{n}"
            began = time.perf_counter()
            git = await asyncio.create_subprocess_exec(
                "git", "worktree", "add", "-q", "-b", f"base/b{n}", str(path), "HEAD", cwd=repo
            )
            if await git.wait() != 0:
                raise RuntimeError(f"git worktree add failed for b{n}")
            dirs = GitDirs(repo / ".git", repo / ".git" / "worktrees" / f"b{n}", f"base/b{n}")
            box = sandboxes.for_run(f"b{n}", agent_pb2.AgentConfig(), path, dirs)
            argv, env = box.command(AGENT, {"PATH": "/usr/bin:/bin"}, path)
            procs.append(await spawn_group(argv, path, env, root=settings.worktree_root))
            seconds.append(time.perf_counter() - began)
    finally:
        for proc in procs:
            signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
    tenth = max(count // 10, 1)
    return {
        "agents": count,
        "agents_per_s": count / sum(seconds),
        "first_tenth_ms": 1000 * sum(seconds[:tenth]) / tenth,
        "last_tenth_ms": 1000 * sum(seconds[-tenth:]) / tenth,
    }


def start_workers(
    tmp: Path, ctl: FakeController, workers: int, capacity: int
) -> list[subprocess.Popen[bytes]]:
    procs = []
    for n in range(workers):
        env = {
            **os.environ,
            "GODEL_HOME": str(tmp / f"home-{n}"),
            "GODEL_WORKER_CONNECT": ctl.address,
            "GODEL_WORKER_ID": f"bench-{n}",
            "GODEL_WORKTREE_ROOT": str(tmp / "worktrees"),
            "GODEL_WORKER_CAPACITY": str(capacity),
            "GODEL_SANDBOX": "bwrap",
            "GODEL_LOG_LEVEL": "warning",
        }
        log = (tmp / f"worker-{n}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "godel_server", "worker"], env=env, stdout=log, stderr=log, cwd=tmp
            )
        )
    return procs


async def streams_of(ctl: FakeController, workers: int) -> list[FakeStream]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        live = [s for s in ctl.streams if s.hello is not None and not s.closed]
        if len(live) == workers:
            return sorted(live, key=lambda s: s.hello.worker_id if s.hello else "")
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{workers} workers did not connect within 60 s")


class Burst:
    """Assigns the agents to the streams round robin, at most MAX_IN_FLIGHT unheard per stream, and
    counts them RUNNING."""

    def __init__(self, repo: Path, streams: list[FakeStream], agents: int) -> None:
        self.repo, self.streams, self.agents = repo, streams, agents
        self.next = 0
        self.unheard: list[set[str]] = [set() for _ in streams]
        self.read = [0 for _ in streams]
        self.running: set[str] = set()

    def step(self) -> None:
        for i, stream in enumerate(self.streams):
            new = stream.received[self.read[i] :]
            self.read[i] += len(new)
            for request in new:
                if request.WhichOneof("message") != "update":
                    continue
                update = request.update
                self.unheard[i].discard(update.run_id)
                if update.state == ws.RUN_STATE_RUNNING:
                    self.running.add(update.run_id)
                elif update.state in TERMINAL_STATES:
                    raise RuntimeError(
                        f"run {update.run_id} ended {ws.RunState.Name(update.state)}: {update.error}"
                    )
        while self.next < self.agents:
            i = self.next % len(self.streams)
            if len(self.unheard[i]) >= MAX_IN_FLIGHT:
                break
            run_id = f"r{self.next}"
            self.streams[i].send(
                ws.ConnectResponse(assign=assignment(self.repo, run_id, f"a{self.next}", AGENT))
            )
            self.unheard[i].add(run_id)
            self.next += 1


async def bring_up(repo: Path, streams: list[FakeStream], agents: int) -> float:
    burst = Burst(repo, streams, agents)
    began = time.perf_counter()
    said = began
    while len(burst.running) < agents:
        burst.step()
        await asyncio.sleep(0.01)
        now = time.perf_counter()
        if now - said >= 10:
            common.say(f"  {len(burst.running)} running after {now - began:.0f}s")
            said = now
        if now - began > 3600:
            raise RuntimeError(f"only {len(burst.running)} of {agents} running after an hour")
    return time.perf_counter() - began


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="godel-bringup-bench-") as raw:
        tmp = Path(raw)
        common.say(
            f"baseline: `git worktree add` + a sandboxed `sleep`, {args.baseline} agents one after the other"
        )
        base = await baseline(tmp, args.baseline)
        common.say(
            f"  {base['agents_per_s']:.1f} agents/s; {base['first_tenth_ms']:.1f} ms each for the first tenth, "
            f"{base['last_tenth_ms']:.1f} ms for the last"
        )
        repo = make_git_repo(tmp / "repo")
        ctl = await FakeController("bench", heartbeat_interval_ms=HEARTBEAT_MS).start()
        capacity = -(-args.agents // args.workers) + 10
        procs = start_workers(tmp, ctl, args.workers, capacity)
        try:
            streams = await streams_of(ctl, args.workers)
            pids = [p.pid for p in procs]
            idle = [cost_of(pid) for pid in pids]
            memory_idle = host_memory_kib()
            common.say(f"{args.agents} agents on {args.workers} worker process(es), capacity {capacity} each")
            seconds = await bring_up(repo, streams, args.agents)
            up = [cost_of(pid) for pid in pids]
            common.say(
                f"  all {args.agents} running after {seconds:.1f}s ({args.agents / seconds:.1f} agents/s)"
            )
            await asyncio.sleep(2)  # the last acknowledgements and journal saves
            before, t0 = [cost_of(pid) for pid in pids], time.perf_counter()
            await asyncio.sleep(args.steady)
            after, t1 = [cost_of(pid) for pid in pids], time.perf_counter()
            memory_running = host_memory_kib()
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
            await ctl.stop()
    per_worker = args.agents / args.workers
    cpu_up = sum(u.cpu_seconds - i.cpu_seconds for u, i in zip(up, idle, strict=True))
    children_up = sum(u.reaped_cpu_seconds - i.reaped_cpu_seconds for u, i in zip(up, idle, strict=True))
    steady_pct = [
        100 * (a.cpu_seconds - b.cpu_seconds) / (t1 - t0) for a, b in zip(after, before, strict=True)
    ]
    return {
        "baseline": base,
        "bring_up": {
            "agents": args.agents,
            "workers": args.workers,
            "seconds": seconds,
            "agents_per_s": args.agents / seconds,
            "x_baseline": (args.agents / seconds) / base["agents_per_s"],
            "worker_cpu_ms_per_agent": 1000 * cpu_up / args.agents,
            "reaped_children_cpu_ms_per_agent": 1000 * children_up / args.agents,
        },
        "running": {
            "worker_cpu_pct": steady_pct,
            "worker_cpu_pct_per_1k_agents": 1000 * sum(steady_pct) / args.agents,
            "worker_rss_mib": [a.rss_kib / 1024 for a in after],
            "marginal_rss_kib_per_agent": sum(a.rss_kib - i.rss_kib for a, i in zip(after, idle, strict=True))
            / args.agents,
            "files_per_run": sum(a.files - i.files for a, i in zip(after, idle, strict=True)) / args.agents,
            # Everything the host gave the agents: their sandbox's processes, the kernel's share
            # (namespaces, page tables), the workers.
            "host_memory_kib_per_agent": (memory_idle["available"] - memory_running["available"])
            / args.agents,
            "kernel_memory_kib_per_agent": (memory_running["kernel"] - memory_idle["kernel"]) / args.agents,
            "agents_per_worker": per_worker,
        },
    }


def print_report(figures: dict[str, Any]) -> None:
    b, up, run = figures["baseline"], figures["bring_up"], figures["running"]
    print("\nAgent bring-up on one worker host (no control plane)")
    print(
        f"  baseline, `git worktree add` + sandboxed start, one at a time: {b['agents_per_s']:.1f} agents/s "
        f"({b['first_tenth_ms']:.1f} ms each at first, {b['last_tenth_ms']:.1f} ms after {b['agents']})"
    )
    print(
        f"  workers: {up['agents']} agents on {up['workers']} process(es) in {up['seconds']:.1f}s = "
        f"{up['agents_per_s']:.1f} agents/s = {up['x_baseline']:.2f}x baseline"
    )
    print(
        f"  worker CPU per agent brought up: {up['worker_cpu_ms_per_agent']:.1f} ms in the worker, "
        f"{up['reaped_children_cpu_ms_per_agent']:.1f} ms in its git and sandbox-setup children"
    )
    print(
        f"  running: worker CPU {', '.join(f'{p:.1f}' for p in run['worker_cpu_pct'])} % of a core "
        f"({run['worker_cpu_pct_per_1k_agents']:.1f} % per 1,000 agents); RSS "
        f"{', '.join(f'{m:.0f}' for m in run['worker_rss_mib'])} MiB, {run['marginal_rss_kib_per_agent']:.0f} KiB "
        f"per agent; {run['files_per_run']:.1f} open files per run"
    )
    print(
        f"  host memory per running agent: {run['host_memory_kib_per_agent']:.0f} KiB "
        f"({run['kernel_memory_kib_per_agent']:.0f} KiB of it the kernel's: slab, page tables, stacks)"
    )


def figures_of(payload: dict[str, Any]) -> dict[str, common.Figure]:
    up, run = payload["bring_up"], payload["running"]
    return {
        "baseline/agents per s": common.higher(payload["baseline"]["agents_per_s"], "agents/s"),
        "bring-up/agents per s": common.higher(up["agents_per_s"], "agents/s"),
        "bring-up/x baseline": common.higher(up["x_baseline"], "x"),
        "bring-up/worker CPU per agent": common.lower(up["worker_cpu_ms_per_agent"], "ms"),
        "running/worker CPU per 1k agents": common.lower(run["worker_cpu_pct_per_1k_agents"], "% of a core"),
        "running/marginal RSS per agent": common.lower(run["marginal_rss_kib_per_agent"], "KiB"),
        "running/host memory per agent": common.lower(run["host_memory_kib_per_agent"], "KiB"),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=1000, help="agents brought up (1000)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes on this host (1)")
    parser.add_argument("--baseline", type=int, default=300, help="agents of the baseline (300)")
    parser.add_argument(
        "--steady", type=float, default=15.0, help="seconds the running agents are measured (15)"
    )
    common.add_json_option(parser, NAME)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 100 agents, baseline 30, 3 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.agents, args.baseline, args.steady = 100, 30, 3.0
    if not 1 <= args.workers <= 16 or not 1 <= args.agents <= 50_000 or not 10 <= args.baseline <= 5000:
        parser.error("--workers must be 1..16, --agents 1..50000 and --baseline 10..5000")
    return args


def check_host(args: argparse.Namespace) -> None:
    """Stops early, saying what to raise, where the host cannot hold the agents."""
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    if pid_max < 4 * args.agents + 1000:
        raise SystemExit(
            f"kernel.pid_max is {pid_max}: {args.agents} agents need ~{4 * args.agents + 1000} pids "
            f"(sysctl -w kernel.pid_max=4194304)"
        )
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    per_worker = -(-args.agents // args.workers) + 10
    if hard != resource.RLIM_INFINITY and 3 * per_worker + 256 > hard:
        common.say(
            f"warning: the hard open-files limit is {hard}; {per_worker} runs per worker need ~{3 * per_worker + 256} "
            "unless the worker may raise it (CAP_SYS_RESOURCE): use more --workers"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_host(args)
    facts = common.machine_facts("none")
    common.say(f"{facts['cores']} cores ({facts['cpu_model']}), load average {facts['load_avg_at_start']}")
    figures = asyncio.run(main_async(args))
    facts["load_avg_at_end"] = common.load_avg()
    print_report(figures)
    print(f"\nload average at start {facts['load_avg_at_start']}, at end {facts['load_avg_at_end']}")
    payload = {
        "machine": facts,
        "config": {
            "agents": args.agents,
            "workers": args.workers,
            "baseline": args.baseline,
            "steady": args.steady,
        },
        **figures,
    }
    common.write_results(NAME, payload, figures_of(payload), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
