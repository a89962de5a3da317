"""Smoke test of the local stack: ``python -m godel_deploy.selftest [--keep]``.

Starts Kafka on free ports, round-trips a message with aiokafka, checks it
survives a clean restart and a SIGKILL, then starts PostgreSQL, creates a
database and runs ``select 1`` with asyncpg.  Prints timings.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .kafka import KafkaBroker, ensure_jars
from .postgres import PostgresServer, ensure_postgres_binaries

TOPIC = "godel-selftest"


@contextmanager
def timed(label: str, timings: dict[str, float]) -> Iterator[None]:
    start = time.monotonic()
    yield
    timings[label] = time.monotonic() - start
    print(f"  {label:<38} {timings[label]:6.2f}s", flush=True)


async def produce(bootstrap: str, payload: bytes) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(TOPIC, payload, key=b"selftest")
    finally:
        await producer.stop()


async def consume_all(bootstrap: str, group: str, wait_s: float = 20.0) -> list[bytes]:
    """Read the topic from the beginning with a fresh consumer group (and commit)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                values.extend(r.value for r in records if r.value is not None)
            if values and not batches:
                break
        await consumer.commit()
    finally:
        await consumer.stop()
    return values


async def select_one(dsn: str) -> int:
    import asyncpg  # type: ignore[import-untyped, unused-ignore]

    conn = await asyncpg.connect(dsn)
    try:
        value: int = await conn.fetchval("select 1")
        return value
    finally:
        await conn.close()


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)
    print(f"  ok: {message}", flush=True)


def kafka_checks(base: Path, timings: dict[str, float]) -> None:
    print("Kafka", flush=True)
    with timed("fetch/verify jars", timings):
        ensure_jars()
    broker = KafkaBroker(base / "kafka")
    try:
        with timed("kafka start (format+launch+ready)", timings):
            broker.start()
            broker.wait_ready()
        print(f"  broker at {broker.bootstrap} (pid {broker.pid})", flush=True)
        payload = f"hello-{uuid.uuid4()}".encode()
        with timed("produce 1 message", timings):
            asyncio.run(produce(broker.bootstrap, payload))
        with timed("consume (new group)", timings):
            got = asyncio.run(consume_all(broker.bootstrap, "selftest-1"))
        expect(payload in got, "message consumed")

        with timed("kafka restart (stop+start+ready)", timings):
            broker.restart()
        got = asyncio.run(consume_all(broker.bootstrap, "selftest-2"))
        expect(payload in got, "message still there after clean restart")

        broker.kill9()
        with timed("kafka start after kill -9", timings):
            broker.start()
            broker.wait_ready()
        got = asyncio.run(consume_all(broker.bootstrap, "selftest-3"))
        expect(payload in got, "message still there after kill -9")
    finally:
        with timed("kafka stop", timings):
            broker.stop()


def postgres_checks(base: Path, timings: dict[str, float]) -> None:
    print("PostgreSQL", flush=True)
    with timed("find/install binaries", timings):
        bin_dir = ensure_postgres_binaries()
    print(f"  binaries: {bin_dir}", flush=True)
    server = PostgresServer(base / "postgres")
    try:
        with timed("postgres start (initdb+launch+ready)", timings):
            server.start()
            server.wait_ready()
        print(f"  server at {server.dsn()} (pid {server.pid})", flush=True)
        with timed("create database", timings):
            server.create_database("godel_selftest")
            server.create_database("godel_selftest")  # idempotent
        expect(asyncio.run(select_one(server.dsn("godel_selftest"))) == 1, "select 1 == 1")
        with timed("postgres restart (stop+start+ready)", timings):
            server.restart()
        expect(
            "godel_selftest" in server.psql("select datname from pg_database"),
            "database survives restart",
        )
    finally:
        with timed("postgres stop", timings):
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--skip-kafka", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args(argv)

    # aiokafka logs errors about the not-yet-existing topic/group coordinator while
    # they are auto-created; that is expected here.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    base = Path(tempfile.mkdtemp(prefix="godel-selftest-"))
    base.chmod(0o755)  # the postgres OS user must be able to traverse it
    timings: dict[str, float] = {}
    started = time.monotonic()
    try:
        if not args.skip_kafka:
            kafka_checks(base, timings)
        if not args.skip_postgres:
            postgres_checks(base, timings)
    finally:
        if args.keep:
            print(f"data kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print(f"selftest passed in {time.monotonic() - started:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
