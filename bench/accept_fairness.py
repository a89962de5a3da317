"""How a CPU-bound grpc.aio server shares its queue between a hot and a rarely called method.

grpcio's aio server (`_server_main_loop` in grpc/_cython/_cygrpc/aio/server.pyx.pxi) keeps one
outstanding accept (`grpc_server_request_registered_call`) per *registered* method and re-arms it
after each call it accepts, inside one `asyncio.wait(FIRST_COMPLETED)` over all of them: each
method has at most one call accepted per pass of that loop, so when the server cannot keep up, the
calls of a busy method wait in C-core while a rare method's are taken at once. Unregistered
(generic) methods share one accept for all, first come first served.

This starts a server in a subprocess with two methods, Hot and Cold, whose handlers burn the same
CPU (--work-ms), registered (as the generated `*_pb2_grpc` code registers Godel's) or, with
--generic, generic only; a closed loop of --concurrency calls, 90 % of the slots calling Hot, then
prints each method's calls, throughput and latency. Equal work, so any difference is queueing.

    python bench/accept_fairness.py [--generic] [--concurrency 200] [--duration 8] [--work-ms 1]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

import grpc

from godel_deploy.ports import LOOPBACK, free_port

SERVICE = "bench.Fair"
METHODS = ("Hot", "Cold")


async def serve(port: int, work_ms: float, generic: bool) -> None:
    def burn(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        until = time.thread_time() + work_ms / 1000
        while time.thread_time() < until:
            pass
        return request

    async def handle(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return burn(request, context)

    handlers = {name: grpc.unary_unary_rpc_method_handler(handle) for name in METHODS}
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    if not generic:
        server.add_registered_method_handlers(SERVICE, handlers)
    server.add_insecure_port(f"{LOOPBACK}:{port}")
    await server.start()
    await server.wait_for_termination()


async def load(port: int, args: argparse.Namespace) -> dict[str, list[float]]:
    latencies: dict[str, list[float]] = {name: [] for name in METHODS}
    async with grpc.aio.insecure_channel(f"{LOOPBACK}:{port}") as channel:
        await channel.channel_ready()
        calls = {name: channel.unary_unary(f"/{SERVICE}/{name}") for name in METHODS}
        stop = time.monotonic() + args.duration

        async def worker(name: str) -> None:
            while time.monotonic() < stop:
                started = time.perf_counter()
                await calls[name](b"x", timeout=30)
                latencies[name].append(time.perf_counter() - started)

        hot = round(args.concurrency * 0.9)
        await asyncio.gather(*(worker("Hot" if i < hot else "Cold") for i in range(args.concurrency)))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--generic", action="store_true", help="register the methods as generic only")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--work-ms", type=float, default=1.0, help="CPU each handler burns")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.work_ms, args.generic))
        return
    port = free_port()
    server_args = ["--serve", str(port), "--work-ms", str(args.work_ms)]
    server = subprocess.Popen(
        [sys.executable, __file__, *server_args, *(["--generic"] if args.generic else [])]
    )
    try:
        latencies = asyncio.run(load(port, args))
    finally:
        server.terminate()
        server.wait(timeout=10)
    how = "generic" if args.generic else "registered"
    print(f"{how} methods, {args.concurrency} in flight (90 % Hot), {args.work_ms} ms of CPU per call:")
    for name, seconds in latencies.items():
        ordered = sorted(seconds)
        p50 = statistics.median(ordered) * 1000
        p99 = ordered[int(len(ordered) * 0.99)] * 1000
        rate = len(ordered) / args.duration
        print(f"  {name:<4} {len(ordered):6d} calls {rate:7.0f}/s  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms")


if __name__ == "__main__":
    main()
