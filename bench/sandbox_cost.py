#!/usr/bin/env python3
"""What the sandbox costs per agent start: the same agents started, in the same run and interleaved,
by a worker that sandboxes them (bubblewrap, GODEL_SANDBOX=bwrap) and by one that does not
(GODEL_SANDBOX=off), and the same command spawned with and without the bwrap wrapper.

    .venv/bin/python bench/sandbox_cost.py [--runs 100] [--spawns 300] [--json OUT] [--quick]

The figures go to bench/results/sandbox_cost.json (see bench/compare.py).

Two levels, each reported as p50 / p90 / mean per mode and the ratio sandboxed / unsandboxed:

1. agent start: two real workers (in this process), each connected to its own fake agent-service
   replica (tests/fakes/worker_controller.py, the one the worker tests use), each running
   `--runs` command agents `true` one after the other, alternating between the two workers. Per
   run: assignment -> RUNNING (worktree created, sandbox built, process started) and assignment ->
   SUCCEEDED (the process ran and ended, commits listed), from the workers' own update times.
2. process: `true` spawned `--spawns` times the way a run spawns its processes (death-signal
   wrapper, new process group), with the bwrap argv of a real run (its worktree, its git
   directories) and without, alternating; spawn -> exit.

No Kafka, database or services: the figures are the worker's own. Everything runs in a temporary
directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.protobuf import timestamp_pb2

from godel.v1 import agent_pb2
from godel.v1 import worker_service_pb2 as ws
from godel_server.runtime.config import WorkerSettings, load_worker_settings
from godel_server.worker import Worker
from godel_server.worker.procs import spawn_group
from godel_server.worker.sandbox import GitDirs, Sandbox, Sandboxes
from godel_server.worker.worktrees import Worktrees

if TYPE_CHECKING:
    from bench import common
    from tests.fakes.worker_controller import FakeController
    from tests.fakes.worker_env import assignment, make_git_repo
else:
    import common

    # The fake replica and helpers of the worker tests live in tests/, beside bench/.
    sys.path.insert(0, str(common.BENCH_DIR.parent))
    from tests.fakes.worker_controller import FakeController
    from tests.fakes.worker_env import assignment, make_git_repo

NAME = "sandbox_cost"
MODES = ("bwrap", "off")


def _seconds(stamp: timestamp_pb2.Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


async def start_worker(tmp: Path, mode: str) -> tuple[FakeController, Worker, WorkerSettings]:
    ctl = await FakeController(f"replica-{mode}").start()
    settings = load_worker_settings(
        {
            "GODEL_HOME": str(tmp / f"home-{mode}"),
            "GODEL_WORKER_CONNECT": ctl.address,
            "GODEL_WORKER_ID": f"bench-{mode}",
            "GODEL_WORKTREE_ROOT": str(tmp / f"worktrees-{mode}"),
            "GODEL_SANDBOX": mode,
        }
    )
    worker = Worker(settings)
    await worker.start()
    await ctl.wait_stream()
    return ctl, worker, settings


async def agent_starts(tmp: Path, repo: Path, runs: int) -> dict[str, dict[str, list[float]]]:
    """Seconds from assignment to RUNNING and to SUCCEEDED per mode, `runs` agents each."""
    started = {mode: await start_worker(tmp, mode) for mode in MODES}
    figures: dict[str, dict[str, list[float]]] = {m: {"running": [], "succeeded": []} for m in MODES}
    try:
        for i in range(runs):
            for mode in MODES if i % 2 == 0 else reversed(MODES):
                ctl = started[mode][0]
                run_id = f"{mode}-{i}"
                a = assignment(repo, run_id, f"agent-{run_id}", ["true"])
                t0 = time.time()
                ctl.assign(a)
                final = await ctl.wait_final(run_id, timeout=60)
                if final.state != ws.RUN_STATE_SUCCEEDED:
                    raise RuntimeError(f"{run_id} ended {ws.RunState.Name(final.state)}: {final.error}")
                running = await ctl.wait_update(run_id, ws.RUN_STATE_RUNNING)
                figures[mode]["running"].append(_seconds(running.time) - t0)
                figures[mode]["succeeded"].append(_seconds(final.time) - t0)
            if (i + 1) % 20 == 0:
                common.say(f"  {i + 1}/{runs} agents per mode")
    finally:
        for ctl, worker, _ in started.values():
            await worker.stop()
            await ctl.stop()
    return figures


async def process_spawns(tmp: Path, repo: Path, spawns: int) -> dict[str, list[float]]:
    """Seconds from spawn to exit of `true`, wrapped as a run's process is, per mode."""
    settings = load_worker_settings(
        {"GODEL_HOME": str(tmp / "home-spawn"), "GODEL_WORKTREE_ROOT": str(tmp / "worktrees-spawn")}
    )
    worktree = await Worktrees(settings.worktree_root).create(str(repo), "spawner", "godel/spawner", False)
    sandboxes = Sandboxes(settings)
    await sandboxes.check()
    git = GitDirs(worktree.common, worktree.admin, worktree.branch)
    sandboxed = sandboxes.for_run("spawn", agent_pb2.AgentConfig(), worktree.path, git)
    # The same policy (limits, rlimits) without bwrap: what GODEL_SANDBOX=off runs.
    boxes = {"bwrap": sandboxed, "off": Sandbox("spawn", sandboxed.policy, None, prlimit=sandboxes.prlimit)}
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for i in range(spawns):
        for mode in MODES if i % 2 == 0 else reversed(MODES):
            box = boxes[mode]
            argv, env = box.command(["true"], {"PATH": "/usr/bin:/bin"}, worktree.path)
            t0 = time.perf_counter()
            proc = await spawn_group(argv, worktree.path, env, root=settings.worktree_root)
            code = await proc.wait()
            times[mode].append(time.perf_counter() - t0)
            if box.exit_code(code) != 0:
                raise RuntimeError(f"`true` failed in mode {mode}: exit {code}")
    return times


def report(title: str, seconds: dict[str, list[float]]) -> dict[str, Any]:
    dists = {mode: common.Dist.of(values) for mode, values in seconds.items()}
    on, off = dists["bwrap"], dists["off"]
    ratio = {
        "p50": on.p50_ms / off.p50_ms,
        "p90": on.p90_ms / off.p90_ms,
        "mean": on.mean_ms / off.mean_ms,
    }
    added = statistics.median(seconds["bwrap"]) * 1000 - statistics.median(seconds["off"]) * 1000
    print(f"\n{title}")
    print(f"  {'mode':<22}{'n':>6}{'p50 ms':>10}{'p90 ms':>10}{'mean ms':>10}{'max ms':>10}")
    for mode, label in (("off", "unsandboxed"), ("bwrap", "sandboxed (bubblewrap)")):
        d = dists[mode]
        print(f"  {label:<22}{d.n:>6}{d.p50_ms:>10.2f}{d.p90_ms:>10.2f}{d.mean_ms:>10.2f}{d.max_ms:>10.2f}")
    print(
        f"  sandboxed / unsandboxed: p50 {ratio['p50']:.2f}x, p90 {ratio['p90']:.2f}x, "
        f"mean {ratio['mean']:.2f}x; the sandbox adds {added:.1f} ms at the median"
    )
    return {"sandboxed": asdict(on), "unsandboxed": asdict(off), "ratio": ratio, "added_p50_ms": added}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="godel-sandbox-bench-") as raw:
        tmp = Path(raw)
        repo = make_git_repo(tmp / "repo")
        common.say(f"agent starts: {args.runs} per mode, alternating")
        starts = await agent_starts(tmp, repo, args.runs)
        common.say(f"process spawns: {args.spawns} per mode, alternating")
        spawns = await process_spawns(tmp, repo, args.spawns)
    return {
        "agent_start_to_running": report(
            "Agent start: assignment -> RUNNING (worktree, sandbox, process started)",
            {m: starts[m]["running"] for m in MODES},
        ),
        "agent_start_to_succeeded": report(
            "Agent run of `true`: assignment -> SUCCEEDED", {m: starts[m]["succeeded"] for m in MODES}
        ),
        "process_spawn_to_exit": report("Process: spawn -> exit of `true`", spawns),
    }


def figures_of(payload: dict[str, Any]) -> dict[str, common.Figure]:
    """p50 of each mode and the ratios sandboxed / unsandboxed, per level."""
    figures: dict[str, common.Figure] = {}
    for level in ("agent_start_to_running", "agent_start_to_succeeded", "process_spawn_to_exit"):
        data = payload[level]
        figures[f"{level}/unsandboxed p50"] = common.lower(data["unsandboxed"]["p50_ms"], "ms")
        figures[f"{level}/sandboxed p50"] = common.lower(data["sandboxed"]["p50_ms"], "ms")
        figures[f"{level}/sandboxed x unsandboxed p50"] = common.lower(data["ratio"]["p50"], "x")
        figures[f"{level}/sandboxed x unsandboxed mean"] = common.lower(data["ratio"]["mean"], "x")
    return figures


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=100, help="agents per mode (100)")
    parser.add_argument("--spawns", type=int, default=300, help="process spawns per mode (300)")
    common.add_json_option(parser, NAME)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 10 agents, 20 spawns")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.spawns = 10, 20
    if not 1 <= args.runs <= 2000 or not 2 <= args.spawns <= 20000:
        parser.error("--runs must be 1..2000 and --spawns 2..20000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    facts = common.machine_facts("none")
    common.say(f"{facts['cores']} cores ({facts['cpu_model']}), load average {facts['load_avg_at_start']}")
    figures = asyncio.run(main_async(args))
    facts["load_avg_at_end"] = common.load_avg()
    print(f"\nload average at start {facts['load_avg_at_start']}, at end {facts['load_avg_at_end']}")
    payload = {"machine": facts, "config": {"runs": args.runs, "spawns": args.spawns}, **figures}
    common.write_results(NAME, payload, figures_of(payload), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
