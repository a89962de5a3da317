#!/usr/bin/env python3
"""How long agents take to finish after a crash: kill -9 of the agent service, of the worker, and of
both, during a burst of agent creations, each followed by an immediate restart; the time from the
restart to the last agent completed, next to the same burst without a crash in the same run.

    .venv/bin/python bench/crash_recovery.py [--agents 48] [--clients 6] [--postgres] [--json OUT] [--quick]

The figures go to bench/results/crash_recovery.json (see bench/compare.py).

One mesh (Kafka, the four services, the gateway, one worker with 16 slots; SQLite by default, a
throw-away PostgreSQL with --postgres) with the shipped crash-safety settings
(GODEL_WORKER_LOST_GRACE 15 s). Per scenario, `--clients` REST clients create `--agents` agents
through the gateway as fast as it answers; each agent runs the command of the crash tests
(tests/fakes/burst.py: two git commits 1 s apart, in its bubblewrap sandbox). Once a third of them
are acknowledged and at least four execute, the scenario's processes are killed with SIGKILL and
started again at once. Measured, from the agents' own completion times (`completedAt`):

- restart -> last completed: from the moment the restarted process is back (the agent service
  serving again; the worker process started) to the last agent of the burst completed;
- kill -> last completed, and the outage (kill -> restarted);
- without a crash: burst start -> last completed (the same burst on the same mesh), and for the
  crash scenarios the same span, so the ratio says what the crash cost the burst as a whole;
- reruns (runs lost with the crash and run again) and the agents that did not complete (must be 0).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import grpc

from godel.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc
from godel_deploy.mesh import Mesh

if TYPE_CHECKING:
    from bench import common
    from tests.fakes.burst import Burst
else:
    import common

    # The burst of the crash tests lives in tests/, beside bench/.
    sys.path.insert(0, str(common.BENCH_DIR.parent))
    from tests.fakes.burst import Burst

NAME = "crash_recovery"
WORKER = "worker-1"
SCENARIOS = ("no crash", "agent service", "worker", "agent service and worker")
L = agent_pb2


@dataclass
class Outcome:
    agents: int
    acknowledged: int
    refused: int
    completed: int
    reruns: int
    burst_to_last_completed_s: float
    outage_s: float = 0.0
    kill_to_last_completed_s: float = 0.0
    restart_to_last_completed_s: float = 0.0


def _completed_at(agent: agent_pb2.Agent) -> float:
    return agent.completed_at.seconds + agent.completed_at.nanos / 1e9


class Watch:
    """The agents of one label, read through the agent service's gRPC port."""

    def __init__(self, mesh: Mesh, api_key: str) -> None:
        self.channel = grpc.insecure_channel(mesh.address("agent"))
        self.stub = agent_service_pb2_grpc.AgentServiceStub(self.channel)
        self.md = [("x-api-key", api_key)]

    def agents(self, label: str) -> list[agent_pb2.Agent]:
        try:
            return list(
                self.stub.ListAgents(
                    agent_service_pb2.ListAgentsRequest(label=label, page_size=1000),
                    metadata=self.md,
                    timeout=10,
                ).agents
            )
        except grpc.RpcError:
            return []  # the agent service is down

    def wait_executing(self, label: str, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while sum(a.lifecycle_state == L.LIFECYCLE_STATE_EXECUTING for a in self.agents(label)) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"fewer than {count} agents executing after {timeout}s")
            time.sleep(0.05)

    def wait_done(self, label: str, expected: int, timeout: float) -> list[agent_pb2.Agent]:
        """The agents of the label once each has completed, failed or been killed (or at the timeout)."""
        ended = (L.LIFECYCLE_STATE_COMPLETED, L.LIFECYCLE_STATE_FAILED, L.LIFECYCLE_STATE_KILLED)
        deadline = time.monotonic() + timeout
        while True:
            found = self.agents(label)
            if len(found) >= expected and all(a.lifecycle_state in ended for a in found):
                return found
            if time.monotonic() > deadline:
                return found
            time.sleep(0.2)


def scenario(mesh: Mesh, api_key: str, watch: Watch, name: str, args: argparse.Namespace) -> Outcome:
    label = f"bench-{name.replace(' ', '-')}-{time.time_ns()}"
    per_client = max(1, args.agents // args.clients)
    started = time.time()
    burst = Burst(mesh.gateway_url, api_key, label, args.clients, per_client).start()
    killed = restarted = 0.0
    if name != "no crash":
        burst.wait_acknowledged(max(1, args.agents // 3))
        watch.wait_executing(label, min(4, args.agents // 3))
        killed = time.time()
        if "worker" in name:
            mesh.workers[WORKER].kill9()
        if "agent service" in name:
            mesh.kill_service("agent")
            mesh.start_service("agent")
            mesh.wait_service("agent")
        if "worker" in name:
            mesh.start_worker(WORKER)
        restarted = time.time()
    burst.join()
    found = watch.wait_done(label, len(burst.acknowledged), timeout=180)
    done = [a for a in found if a.lifecycle_state == L.LIFECYCLE_STATE_COMPLETED]
    last = max((_completed_at(a) for a in done), default=float("nan"))
    outcome = Outcome(
        agents=len(found),
        acknowledged=len(burst.acknowledged),
        refused=burst.refused,
        completed=len(done),
        reruns=sum(a.reschedules for a in found),
        burst_to_last_completed_s=last - started,
    )
    if killed:
        outcome.outage_s = restarted - killed
        outcome.kill_to_last_completed_s = last - killed
        outcome.restart_to_last_completed_s = last - restarted
    for agent in found:
        if agent.lifecycle_state != L.LIFECYCLE_STATE_COMPLETED:
            state = L.LifecycleState.Name(agent.lifecycle_state)
            common.say(f"  NOT COMPLETED: {agent.id} {state}: {agent.last_error}")
    common.say(
        f"  {name}: {outcome.completed}/{outcome.agents} completed ({outcome.acknowledged} acknowledged, "
        f"{outcome.refused} refused), {outcome.reruns} reruns; restart -> last completed "
        f"{outcome.restart_to_last_completed_s:.1f}s"
    )
    return outcome


def report(outcomes: dict[str, Outcome]) -> None:
    base = outcomes["no crash"].burst_to_last_completed_s
    print(
        "\nCrash during a burst, restarted at once (seconds; ratio = burst span / the span without a crash)"
    )
    print(
        f"  {'crash':<26}{'agents':>7}{'done':>6}{'reruns':>7}{'outage':>8}"
        f"{'restart->last':>15}{'kill->last':>12}{'burst span':>12}{'ratio':>7}"
    )
    for name, o in outcomes.items():
        print(
            f"  {name:<26}{o.agents:>7}{o.completed:>6}{o.reruns:>7}{o.outage_s:>8.1f}"
            f"{o.restart_to_last_completed_s:>15.1f}{o.kill_to_last_completed_s:>12.1f}"
            f"{o.burst_to_last_completed_s:>12.1f}{o.burst_to_last_completed_s / base:>7.2f}"
        )


def figures_of(outcomes: dict[str, Outcome]) -> dict[str, common.Figure]:
    figures = {
        "no crash/burst to last completed": common.lower(outcomes["no crash"].burst_to_last_completed_s, "s")
    }
    for name, o in outcomes.items():
        if name == "no crash":
            continue
        figures[f"{name}/restart to last completed"] = common.lower(o.restart_to_last_completed_s, "s")
        figures[f"{name}/kill to last completed"] = common.lower(o.kill_to_last_completed_s, "s")
        figures[f"{name}/not completed"] = common.lower(float(o.agents - o.completed), "agents")
    return figures


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=48, help="agents per scenario (48)")
    parser.add_argument("--clients", type=int, default=6, help="REST clients creating them at once (6)")
    common.add_json_option(parser, NAME)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 12 agents from 3 clients")
    common.add_mesh_options(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.agents, args.clients = 12, 3
    if not 3 <= args.agents <= 2000 or not 1 <= args.clients <= 64 or args.clients > args.agents:
        parser.error("--agents must be 3..2000 and --clients 1..64, at most --agents")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    outcomes: dict[str, Outcome] = {}
    with common.Run(args.home, keep=args.keep, prefix="godel-crash-bench-", postgres=args.postgres) as run:
        facts = common.machine_facts(run.backend, envoy=True)
        mesh, api_key = run.start(echo=False)
        watch = Watch(mesh, api_key)
        for name in SCENARIOS:
            common.say(f"{name}: {args.agents} agents from {args.clients} clients")
            outcomes[name] = scenario(mesh, api_key, watch, name, args)
        watch.channel.close()
    if len(outcomes) < len(SCENARIOS):
        return 130
    facts["load_avg_at_end"] = common.load_avg()
    report(outcomes)
    payload: dict[str, Any] = {
        "machine": facts,
        "config": {"agents": args.agents, "clients": args.clients, "worker_capacity": 16, "lost_grace_s": 15},
        "scenarios": {name: asdict(o) for name, o in outcomes.items()},
    }
    common.write_results(NAME, payload, figures_of(outcomes), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
