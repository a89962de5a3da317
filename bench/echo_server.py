"""A raw grpc.aio echo server: the floor that the Godel services are measured against.

One unary method, `/bench.Echo/Echo`, registered through a generic handler with identity
(de)serializers, so there is no protobuf, no interceptor, no database and no Kafka: only the
grpc.aio server, HTTP/2 on 127.0.0.1 and one Python coroutine per call. It returns the request bytes.

    python bench/echo_server.py PORT
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import grpc

SERVICE = "bench.Echo"
METHOD = "Echo"
METHOD_PATH = f"/{SERVICE}/{METHOD}"
LOOPBACK = "127.0.0.1"


def _identity(data: bytes) -> bytes:
    return data


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


async def serve(port: int) -> None:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            METHOD: grpc.unary_unary_rpc_method_handler(
                _echo, request_deserializer=_identity, response_serializer=_identity
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    if server.add_insecure_port(f"{LOOPBACK}:{port}") != port:
        raise SystemExit(f"echo server: cannot bind {LOOPBACK}:{port}")
    await server.start()
    print(f"echo server serving {METHOD_PATH} on {LOOPBACK}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=1.0)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python bench/echo_server.py PORT", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(int(argv[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
