"""The agent service's CPU per read call, in one process: where a GetAgent and a ListAgents page
spend it (issue 18).

It starts the real pieces of the agent service without Kafka or a mesh: `ServiceHost` with the
`AgentService` (the real grpc.aio server, `GodelServerInterceptor` with its caller policy, the real
`RemoteKeyVerifier` and its cache, the servicers, the migrated database through the one `Database`:
SQLite, or with --postgres a throw-away PostgreSQL), plus a stub AuthService in the same process that answers `Authenticate` for one admin
API key (the verifier asks it once per cache period, as it asks the cluster service). It seeds
--agents agents, then a client in a *separate* process (so its CPU is not counted) drives, over a
real channel at --concurrency in flight:

  1. --calls GetAgent calls (a seeded agent at random), then --calls ListAgents pages
     (--page-size, no filter), unprofiled: the service process's CPU time (all its threads, from
     `time.process_time`) per call;
  2. the same again under cProfile (CPU time of the event-loop thread; aiosqlite's thread is not
     in it), printing each method's top entries by own time and its Python function calls per
     call (a count: what load on the machine does not change, so compare trees by it on a busy one).

    python bench/read_path_profile.py [--calls 3000] [--concurrency 32] [--agents 500] [--top 25] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from godel.v1 import agent_service_pb2, agent_service_pb2_grpc, auth_service_pb2, auth_service_pb2_grpc
from godel_deploy.ports import LOOPBACK, free_port
from godel_deploy.postgres import PostgresServer
from godel_server.agent.mapping import new_agent_row
from godel_server.agent.service import AgentService
from godel_server.runtime.apikeys import ROLES
from godel_server.runtime.config import load_settings
from godel_server.runtime.host import ServiceHost
from godel_server.runtime.ownership import Owner

API_KEY = "godel_sk_read-path-profile-0123456789abcdef"
METHODS = ("GetAgent", "ListAgents")


class AdminKeyAuth(auth_service_pb2_grpc.AuthServiceServicer):
    """The cluster service's Authenticate, for the one key: an admin's."""

    async def Authenticate(
        self, request: auth_service_pb2.AuthenticateRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.AuthenticateResponse:
        if request.credential != API_KEY:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid API key")
        return auth_service_pb2.AuthenticateResponse(
            user_id="u-profile", key_id="k-profile", role="admin", permissions=ROLES["admin"]
        )


async def _auth_server() -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    auth_service_pb2_grpc.add_AuthServiceServicer_to_server(AdminKeyAuth(), server)  # type: ignore[abstract]
    port = server.add_insecure_port(f"{LOOPBACK}:0")
    await server.start()
    return server, f"{LOOPBACK}:{port}"


async def _seed(host: ServiceHost, count: int) -> None:
    async with host.db.session() as session:
        for i in range(count):
            request = agent_service_pb2.CreateAgentRequest(task=f"profile task {i}", label=f"l{i % 7}")
            session.add(new_agent_row(request, model="m", repo=None, caller=None, owner=Owner("u-profile")))


async def _client_phase(addr: str, method: str, args: argparse.Namespace) -> None:
    """Runs the client process for one phase and waits for it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--client",
        addr,
        "--method",
        method,
        "--calls",
        str(args.calls),
        "--concurrency",
        str(args.concurrency),
        "--page-size",
        str(args.page_size),
    )
    if await proc.wait() != 0:
        raise RuntimeError(f"the client of {method} failed")


async def _measure(
    addr: str, args: argparse.Namespace, *, profile: bool
) -> tuple[dict[str, float], dict[str, cProfile.Profile]]:
    """CPU µs of this process per call of each method, and (profile=True) each method's profile."""
    per_call: dict[str, float] = {}
    profiles: dict[str, cProfile.Profile] = {}
    for method in METHODS:
        # CPU time of the event-loop thread, not wall time: waits (and, on a busy machine, the
        # time other processes had the core) are not charged to whatever function was running.
        profiler = profiles[method] = cProfile.Profile(time.thread_time)
        started = time.process_time()
        if profile:
            profiler.enable()
        await _client_phase(addr, method, args)
        profiler.disable()
        per_call[method] = (time.process_time() - started) / args.calls * 1e6
    return per_call, profiles


async def serve(args: argparse.Namespace, home: str, database_url: str | None) -> dict[str, Any]:
    auth, auth_addr = await _auth_server()
    port = free_port()
    env = {
        "GODEL_HOME": home,
        "GODEL_CLUSTER_ADDR": auth_addr,
        "GODEL_AGENT_PORT": str(port),
        "GODEL_BIND_HOST": LOOPBACK,
        "GODEL_LOG_LEVEL": "WARNING",
        # As the benchmarks run the mesh (bench/common.py): no limit per key or user.
        "GODEL_RATE_LIMIT_PER_KEY": "0",
        "GODEL_RATE_LIMIT_PER_USER": "0",
    }
    if database_url:
        env["GODEL_AGENT_DATABASE_URL"] = database_url
    host = ServiceHost(load_settings("agent", env), AgentService())
    await host.prepare_database()
    await _seed(host, args.agents)
    host.service.register(host)
    host.server.add_insecure_port(f"{LOOPBACK}:{port}")
    await host.server.start()
    addr = f"{LOOPBACK}:{port}"
    try:
        await _client_phase(addr, "warmup", args)
        plain, _ = await _measure(addr, args, profile=False)
        profiled, profiles = await _measure(addr, args, profile=True)
    finally:
        await host.server.stop(grace=1)
        await host.db.close()
        await host.producer.stop()  # never started; closes its client
        await auth.stop(grace=None)
    out = io.StringIO()
    py_calls: dict[str, float] = {}
    for method, profiler in profiles.items():
        stats = pstats.Stats(profiler, stream=out)
        py_calls[method] = stats.total_calls / args.calls  # type: ignore[attr-defined]
        out.write(f"==== {method}: {args.calls} calls, top {args.top} by own time ====\n")
        stats.sort_stats("tottime").print_stats(args.top)
    return {
        "cpu_us_per_call": plain,
        "cpu_us_per_call_profiled": profiled,
        "py_calls_per_call": py_calls,
        "profile": out.getvalue(),
    }


async def drive(addr: str, method: str, args: argparse.Namespace) -> None:
    """The client: --calls calls of one method (warmup: some of each) at --concurrency in flight."""
    metadata = (("x-api-key", API_KEY),)
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = agent_service_pb2_grpc.AgentServiceStub(channel)
        page = await stub.ListAgents(agent_service_pb2.ListAgentsRequest(page_size=100), metadata=metadata)
        ids = [agent.id for agent in page.agents]
        rng = random.Random(18)
        remaining = args.calls if method != "warmup" else 400

        async def one(name: str) -> None:
            if name == "GetAgent":
                await stub.GetAgent(agent_service_pb2.GetAgentRequest(id=rng.choice(ids)), metadata=metadata)
            else:
                request = agent_service_pb2.ListAgentsRequest(page_size=args.page_size)
                await stub.ListAgents(request, metadata=metadata)

        async def worker(index: int) -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await one(method if method != "warmup" else METHODS[remaining % 2])

        await asyncio.gather(*(worker(i) for i in range(args.concurrency)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000, help="calls of each method per phase")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--agents", type=int, default=500, help="agents seeded")
    parser.add_argument("--page-size", type=int, default=50)
    parser.add_argument("--top", type=int, default=25, help="profile entries printed")
    parser.add_argument("--postgres", action="store_true", help="on a throw-away PostgreSQL, not SQLite")
    parser.add_argument("--json", type=Path, help="also write the CPU figures here")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        asyncio.run(drive(args.client, args.method, args))
        return
    with tempfile.TemporaryDirectory(prefix="godel-read-profile-") as home:
        pg = PostgresServer(Path(home) / "pg").start() if args.postgres else None
        try:
            if pg is not None:
                pg.wait_ready()
            result = asyncio.run(serve(args, home, pg.url("agent") if pg is not None else None))
        finally:
            if pg is not None:
                pg.stop()
    print(result["profile"])
    load = os.getloadavg()[0]
    for method in METHODS:
        print(
            f"{method:<11} service CPU per call: {result['cpu_us_per_call'][method]:8.0f} µs "
            f"(under cProfile: {result['cpu_us_per_call_profiled'][method]:8.0f} µs), "
            f"Python calls per call: {result['py_calls_per_call'][method]:6.0f}"
        )
    print(
        f"database: {'PostgreSQL' if args.postgres else 'SQLite'}; load average (1 min) at the end: {load:.1f}"
    )
    if args.json:
        figures = {k: v for k, v in result.items() if k != "profile"} | {
            "load_avg_1m": load,
            "database": "postgresql" if args.postgres else "sqlite",
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
