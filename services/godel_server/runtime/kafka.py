"""Kafka plumbing shared by every service: producer, topic creation, reachability check."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from godel_server.runtime.topics import KAFKA_TOPICS

log = logging.getLogger(__name__)


def new_producer(bootstrap: str, client_id: str) -> AIOKafkaProducer:
    """Idempotent, acks=all producer: per-key order survives retries."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        request_timeout_ms=15000,
        retry_backoff_ms=200,
    )


async def ensure_topics(bootstrap: str, partitions: int, topics: tuple[str, ...] = KAFKA_TOPICS) -> None:
    """Creates the catalogue's topics that do not exist yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(name=t, num_partitions=partitions, replication_factor=1) for t in missing]
                )
            log.info("created kafka topics", extra={"topics": missing})
    finally:
        await admin.close()


async def kafka_ping(bootstrap: str, timeout: float = 3.0) -> float:
    """Milliseconds to list topics; raises when Kafka is unreachable."""
    started = time.perf_counter()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        await asyncio.wait_for(admin.list_topics(), timeout)
    finally:
        await admin.close()
    return (time.perf_counter() - started) * 1000


async def wait_for_kafka(bootstrap: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await kafka_ping(bootstrap)
            return
        except (TimeoutError, KafkaError, OSError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kafka at {bootstrap} not reachable after {timeout:.0f}s: {exc}") from exc
            log.warning("waiting for kafka", extra={"bootstrap": bootstrap, "error": str(exc)})
            await asyncio.sleep(1.0)
