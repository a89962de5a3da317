"""Baseline benchmark: how long does spawning an agent (CreateAgent) take, and how does that compare
with the cheapest possible grpc.aio round trip on the same machine?

It brings up a whole local mesh (Kafka, the four services, the Envoy gateway; SQLite by default, a
real PostgreSQL with --postgres) plus a raw grpc.aio echo server (bench/echo_server.py), then times:

  echo          raw grpc.aio echo, bytes of a serialized CreateAgentRequest (the floor)
  grpc-direct   CreateAgent, gRPC straight to the agent service
  grpc-gateway  CreateAgent, plain gRPC through Envoy (same gateway port as REST)
  rest-gateway  POST /api/v1/agents through Envoy (JSON <-> gRPC transcoding), httpx HTTP/1.1 keep-alive
  get-direct    GetAgent (a read), gRPC straight to the agent service

each once sequentially (1 in flight) and once concurrently (--concurrency in flight), from one
client process with the same client loop. Everything binds to 127.0.0.1 and everything started is
stopped again (also on Ctrl-C).

    python bench/spawn_latency.py [--requests N] [--concurrency C] [--warmup W] [--postgres] [--quick]

The figures go to bench/results/spawn_latency.json (--json OUT: elsewhere).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import grpc
import httpx

from godel.v1 import agent_service_pb2, agent_service_pb2_grpc
from godel_deploy.mesh import Mesh
from godel_deploy.ports import LOOPBACK

if TYPE_CHECKING:
    from bench import common
else:
    import common

NAME = "spawn_latency"
RPC_TIMEOUT = 30.0
MAX_ERROR_FRACTION = 0.05  # a phase with more failed calls than this is reported as failed

# (key, human label, operation) in the order they are run and printed
TARGETS: tuple[tuple[str, str, str], ...] = (
    ("echo", "raw grpc.aio echo", "Echo"),
    ("grpc-direct", "direct gRPC", "CreateAgent"),
    ("grpc-gateway", "gRPC via Envoy", "CreateAgent"),
    ("rest-gateway", "REST via Envoy", "CreateAgent"),
    ("get-direct", "direct gRPC", "GetAgent"),
)
LABELS = {key: f"{label} {op}" for key, label, op in TARGETS}
# a call failing with one of these counts as an error of its phase; anything else aborts the run
CALL_FAILURES = (grpc.aio.AioRpcError, httpx.HTTPError, ValueError, KeyError)


# -- measurement -----------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    target: str
    label: str
    mode: str  # "sequential" | "concurrent"
    concurrency: int
    requests: int
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


def summarise(target: str, mode: str, concurrency: int, requests: int, batch: common.Batch) -> PhaseResult:
    return PhaseResult(
        target=target,
        label=LABELS[target],
        mode=mode,
        concurrency=concurrency,
        requests=requests,
        **batch.summary(requests),
    )


async def drive(call: common.Call, requests: int, concurrency: int) -> common.Batch:
    """`common.drive`, counting `CALL_FAILURES` as failed calls."""
    return await common.drive(call, requests, concurrency, failures=CALL_FAILURES)


# -- the calls -------------------------------------------------------------------------------------


def create_request(i: int) -> agent_service_pb2.CreateAgentRequest:
    return agent_service_pb2.CreateAgentRequest(task=f"bench: spawn-latency agent #{i:07d}", label="bench")


class Clients:
    """The persistent client objects shared by all phases (opened once, closed at the end)."""

    def __init__(self, mesh: Mesh, echo_port: int, api_key: str, concurrency: int) -> None:
        self.metadata = (("x-api-key", api_key),)
        self.echo_channel = grpc.aio.insecure_channel(f"{LOOPBACK}:{echo_port}")
        self.direct_channel = grpc.aio.insecure_channel(mesh.address("agent"))
        self.gateway_channel = grpc.aio.insecure_channel(mesh.gateway_address)
        self.echo = self.echo_channel.unary_unary(common.ECHO_METHOD)  # bytes in, bytes out
        self.direct = agent_service_pb2_grpc.AgentServiceStub(self.direct_channel)
        self.gateway = agent_service_pb2_grpc.AgentServiceStub(self.gateway_channel)
        self.rest_url = f"{mesh.gateway_url}/api/v1/agents"
        self.http = httpx.AsyncClient(
            http1=True,
            http2=False,
            headers={"x-api-key": api_key},
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            timeout=RPC_TIMEOUT,
        )
        self.agent_ids: list[str] = []
        self.request_bytes = len(create_request(0).SerializeToString())

    async def call_echo(self, i: int) -> None:
        reply = await self.echo(create_request(i).SerializeToString(), timeout=RPC_TIMEOUT)
        agent_service_pb2.CreateAgentRequest.FromString(reply)

    async def call_grpc_direct(self, i: int) -> None:
        agent = await self.direct.CreateAgent(create_request(i), metadata=self.metadata, timeout=RPC_TIMEOUT)
        self.agent_ids.append(agent.id)

    async def call_grpc_gateway(self, i: int) -> None:
        await self.gateway.CreateAgent(create_request(i), metadata=self.metadata, timeout=RPC_TIMEOUT)

    async def call_rest_gateway(self, i: int) -> None:
        reply = await self.http.post(
            self.rest_url, json={"task": f"bench: spawn-latency agent #{i:07d}", "label": "bench"}
        )
        if reply.status_code != 200:
            raise ValueError(f"HTTP {reply.status_code}: {reply.text[:200]}")
        if not reply.json()["id"]:
            raise ValueError("REST create answered without an id")

    async def call_get_direct(self, i: int) -> None:
        agent_id = self.agent_ids[i % len(self.agent_ids)]
        await self.direct.GetAgent(
            agent_service_pb2.GetAgentRequest(id=agent_id), metadata=self.metadata, timeout=RPC_TIMEOUT
        )

    def call(self, target: str) -> common.Call:
        calls: dict[str, common.Call] = {
            "echo": self.call_echo,
            "grpc-direct": self.call_grpc_direct,
            "grpc-gateway": self.call_grpc_gateway,
            "rest-gateway": self.call_rest_gateway,
            "get-direct": self.call_get_direct,
        }
        return calls[target]

    async def close(self) -> None:
        await self.http.aclose()
        for channel in (self.echo_channel, self.direct_channel, self.gateway_channel):
            await channel.close()


def outbox_pending(admin_port: int) -> float | None:
    """The agent service's `godel_outbox_pending` gauge (None when it cannot be read)."""
    return common.metrics(admin_port).get("godel_outbox_pending")


async def settle(mesh: Mesh, pause: float, limit: float = 15.0) -> None:
    """After a batch of creates: let the outbox relay ship that batch's events to Kafka (bounded wait),
    so one target's background work does not land in the next target's figures."""
    if pause <= 0:
        return
    await asyncio.sleep(pause)
    started = time.monotonic()
    pending: float | None = None
    while time.monotonic() - started < limit:
        pending = await asyncio.to_thread(outbox_pending, mesh.ports.admin["agent"])
        if not pending:
            break
        await asyncio.sleep(0.2)
    waited = time.monotonic() - started
    if waited > 1.0:
        left = f", {pending:.0f} events still pending" if pending else ""
        common.say(f"  (waited {waited:.1f}s for the agent outbox to drain{left})")


def split(total: int, parts: int) -> list[int]:
    """`total` calls as `parts` near-equal batches (no empty ones)."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def run_benchmark(
    mesh: Mesh, echo_port: int, api_key: str, args: argparse.Namespace
) -> tuple[list[PhaseResult], int]:
    clients = Clients(mesh, echo_port, api_key, args.concurrency)
    results: list[PhaseResult] = []
    try:
        # Warm-up: connections, Envoy clusters, SQLAlchemy pools and caches, the auth cache.
        # The direct warm-up creates also give GetAgent some ids to read. Warmed up with
        # `concurrency` in flight so the HTTP/1.1 pool already holds its connections.
        common.say(f"warm-up: {args.warmup} calls per target")
        for key, _label, _op in TARGETS:
            warm = await drive(clients.call(key), max(args.warmup, 1), args.concurrency)
            if warm.errors:
                raise RuntimeError(f"warm-up of {LABELS[key]} failed: {warm.errors[0]}")
        await settle(mesh, args.settle)

        # Each phase runs in `rounds` rounds; every round gives each target one batch. Interleaving
        # spreads slow drift (database growth, background consumers, other load on the machine)
        # over all targets instead of penalising whichever target happens to run last.
        batches = split(args.requests, args.rounds)
        for mode, concurrency in (("sequential", 1), ("concurrent", args.concurrency)):
            common.say(
                f"{mode} phase: {concurrency} in flight, {args.requests} calls per target "
                f"in {len(batches)} interleaved rounds"
            )
            totals = {key: common.Batch() for key, _l, _o in TARGETS}
            for number, size in enumerate(batches, 1):
                for key, _label, _op in TARGETS:
                    batch = await drive(clients.call(key), size, concurrency)
                    totals[key] += batch
                    part = summarise(key, mode, concurrency, size, batch)
                    common.say(
                        f"  {mode:<10} round {number}/{len(batches)}  {LABELS[key]:<27} {size:>5} calls  "
                        f"p50 {part.p50_ms:7.2f} ms  p99 {part.p99_ms:8.2f} ms  {part.throughput_rps:7.1f} req/s"
                        + (f"  errors {part.errors}" if part.errors else "")
                    )
                    if len(totals[key].errors) > MAX_ERROR_FRACTION * args.requests:
                        raise RuntimeError(
                            f"{LABELS[key]} ({mode}): {len(totals[key].errors)} calls failed, "
                            f"first: {totals[key].errors[0]}"
                        )
                    if key != "echo":
                        await settle(mesh, args.settle)
            results.extend(summarise(key, mode, concurrency, args.requests, totals[key]) for key in totals)
        return results, clients.request_bytes
    finally:
        await clients.close()


# -- reporting ---------------------------------------------------------------------------------------


def ratio_lines(results: list[PhaseResult]) -> list[str]:
    lines: list[str] = []
    for mode in ("sequential", "concurrent"):
        rows = {r.target: r for r in results if r.mode == mode}
        echo = rows.get("echo")
        if echo is None:
            continue
        lines.append(f"{mode} (c={echo.concurrency}):")
        for key, _label, _op in TARGETS[1:]:
            r = rows.get(key)
            if r is None:
                continue
            lines.append(
                f"  {r.label:<27} p50 = {r.p50_ms:7.2f} ms = {r.p50_ms / echo.p50_ms:6.1f}x raw echo p50"
                f" ({echo.p50_ms:.2f} ms);  p99 = {r.p99_ms / echo.p99_ms:5.1f}x;"
                f"  throughput = {r.throughput_rps:7.1f} req/s = 1/{echo.throughput_rps / r.throughput_rps:.1f}"
                " of echo"
            )
        direct, gw_grpc, gw_rest = rows.get("grpc-direct"), rows.get("grpc-gateway"), rows.get("rest-gateway")
        if direct and gw_grpc and gw_rest:
            lines.append(
                f"  Envoy hop (gRPC via Envoy - direct) p50: {gw_grpc.p50_ms - direct.p50_ms:+.2f} ms;"
                f"  transcoding + HTTP/1.1 + JSON (REST - gRPC via Envoy) p50: "
                f"{gw_rest.p50_ms - gw_grpc.p50_ms:+.2f} ms"
            )
    return lines


def ratios_json(results: list[PhaseResult]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for mode in ("sequential", "concurrent"):
        rows = {r.target: r for r in results if r.mode == mode}
        echo = rows.get("echo")
        if echo is None:
            continue
        out[mode] = {
            key: {
                "p50_x_echo": r.p50_ms / echo.p50_ms,
                "p90_x_echo": r.p90_ms / echo.p90_ms,
                "p99_x_echo": r.p99_ms / echo.p99_ms,
                "mean_x_echo": r.mean_ms / echo.mean_ms,
                "throughput_fraction_of_echo": r.throughput_rps / echo.throughput_rps,
            }
            for key, r in rows.items()
            if key != "echo"
        }
    return out


def figures_of(payload: dict[str, Any]) -> dict[str, common.Figure]:
    """Per phase and target: p50, p99 and req/s, and the p50 and req/s ratios against the raw echo."""
    figures: dict[str, common.Figure] = {}
    for r in payload["results"]:
        figures.update(common.latency_figures(f"{r['mode']}/{r['target']}", r))
    for mode, rows in payload["ratios"].items():
        for target, ratio in rows.items():
            figures[f"{mode}/{target}/p50 x echo"] = common.lower(ratio["p50_x_echo"], "x")
            figures[f"{mode}/{target}/throughput of echo"] = common.higher(
                ratio["throughput_fraction_of_echo"], "fraction"
            )
    return figures


def print_report(facts: dict[str, Any], args: argparse.Namespace, results: list[PhaseResult]) -> None:
    print()
    print("=" * 100)
    print("Godel spawn-latency baseline")
    print(
        f"machine: {facts['usable_cores']} cores ({facts['cpu_model'] or 'unknown cpu'}), "
        f"Python {facts['python']}, grpcio {facts['grpcio']}, Envoy {facts.get('envoy', '?')}, "
        f"load avg at start {facts['load_avg_at_start']}, at end {facts.get('load_avg_at_end')}"
    )
    print(f"database: {facts['db_backend']}" + (f" ({facts['postgres']})" if "postgres" in facts else ""))
    print(
        f"calls per target and phase: {args.requests} (in {args.rounds} interleaved rounds), "
        f"warm-up: {args.warmup} per target, "
        f"concurrent phase: {args.concurrency} in flight; client, services, Kafka and Envoy share the machine"
    )
    print("=" * 100)
    header = (
        f"{'mode':<11}{'c':>3}  {'target':<28}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}{'mean ms':>9}"
        f"{'max ms':>9}{'req/s':>9}{'cli us':>8}{'err':>5}"
    )
    print(header)
    print("-" * len(header))
    for mode in ("sequential", "concurrent"):
        for r in (r for r in results if r.mode == mode):
            print(
                f"{r.mode:<11}{r.concurrency:>3}  {r.label:<28}{r.p50_ms:8.2f}{r.p90_ms:8.2f}{r.p99_ms:8.2f}"
                f"{r.mean_ms:9.2f}{r.max_ms:9.2f}{r.throughput_rps:9.1f}{r.client_cpu_us_per_call:8.0f}{r.errors:>5}"
            )
    print("-" * len(header))
    print("cli us = CPU time the benchmark client process itself spent per call (microseconds, all threads)")
    print("ratios against the raw grpc.aio echo of the same phase:")
    for line in ratio_lines(results):
        print(line)
    print("=" * 100)


# -- orchestration -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Baseline CreateAgent (spawn) latency: REST via Envoy, gRPC via Envoy, direct gRPC, "
        "GetAgent, against a raw grpc.aio echo server.",
    )
    parser.add_argument("--requests", type=int, default=1000, help="timed calls per target and phase (1000)")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="calls in flight in the concurrent phase (16)"
    )
    parser.add_argument("--warmup", type=int, default=30, help="untimed calls per target before timing (30)")
    parser.add_argument(
        "--rounds", type=int, default=4, help="interleaved rounds each phase is split into (4)"
    )
    common.add_json_option(parser, NAME)
    parser.add_argument(
        "--settle",
        type=float,
        default=0.5,
        help="pause (s) after each mesh phase, then wait (max 15 s) for the agent outbox to drain (0.5)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="workers running the created agents (1); 0 times the create path alone",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 40 requests, 4 warm-up, 1 round")
    common.add_mesh_options(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.warmup, args.rounds = 40, 4, 1
    if args.requests < 1 or args.concurrency < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--requests, --concurrency and --rounds must be >= 1, --warmup >= 0")
    if not 0 <= args.workers <= 8:
        parser.error("--workers must be 0..8")
    if args.requests > 1_000_000:
        parser.error("--requests is capped at 1,000,000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with common.Run(args.home, keep=args.keep, prefix="godel-bench-", postgres=args.postgres) as run:
        mesh, api_key = run.start(echo=True, workers=args.workers)
        facts = common.machine_facts(run.backend, libraries=(httpx,), envoy=True, pg=run.pg)
        results, request_bytes = asyncio.run(run_benchmark(mesh, run.echo_port, api_key, args))
        facts["request_bytes"] = request_bytes
        facts["load_avg_at_end"] = common.load_avg()
        print_report(facts, args, results)
        payload = {
            "machine": facts,
            "config": {
                "requests": args.requests,
                "concurrency": args.concurrency,
                "warmup": args.warmup,
                "rounds": args.rounds,
                "settle": args.settle,
                "postgres": args.postgres,
                "workers": args.workers,
            },
            "results": [asdict(r) for r in results],
            "ratios": ratios_json(results),
        }
        common.write_results(NAME, payload, figures_of(payload), args.json)
        return 0
    return 130  # interrupted (Ctrl-C or SIGTERM); everything is stopped


if __name__ == "__main__":
    raise SystemExit(main())
