"""Kafka plumbing shared by every service: the connection options every client gets (SSL, SASL),
the producer, topic creation (partitions, replication factor, min.insync.replicas), reachability,
and the one record-size limit: the producer refuses a record over KAFKA_MAX_RECORD_BYTES (the outbox
relay quarantines it), the topics Godel creates and the local broker (deploy/godel_deploy/kafka.py)
accept batches of KAFKA_MAX_MESSAGE_BYTES, and the request bounds of the contract
(runtime/bounds.py) keep every event a valid request can make below it."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from godel_server.runtime.config import KafkaSettings
from godel_server.runtime.topics import KAFKA_TOPICS, kafka_name

log = logging.getLogger(__name__)

# Kafka's own defaults (producer max.request.size, broker message.max.bytes): a record of at
# most 1 MiB, in a batch that carries it with its header.
KAFKA_MAX_RECORD_BYTES = 1_048_576
KAFKA_MAX_MESSAGE_BYTES = KAFKA_MAX_RECORD_BYTES + 12


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """The connection keyword arguments of every aiokafka client (producer, consumer, admin)."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.uses_ssl:
        options["ssl_context"] = create_ssl_context(
            cafile=str(kafka.ssl_ca_file) if kafka.ssl_ca_file else None,
            certfile=str(kafka.ssl_cert_file) if kafka.ssl_cert_file else None,
            keyfile=str(kafka.ssl_key_file) if kafka.ssl_key_file else None,
        )
    if kafka.uses_sasl:
        options.update(
            sasl_mechanism=kafka.sasl_mechanism,
            sasl_plain_username=kafka.sasl_username,
            sasl_plain_password=kafka.sasl_password,
        )
    return options


def new_producer(kafka: KafkaSettings, client_id: str) -> AIOKafkaProducer:
    """Idempotent, acks=all producer: per-key order survives retries."""
    return AIOKafkaProducer(
        **client_options(kafka),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        request_timeout_ms=15000,
        retry_backoff_ms=200,
        max_request_size=KAFKA_MAX_RECORD_BYTES,
    )


def new_topics(kafka: KafkaSettings, names: list[str]) -> list[NewTopic]:
    """Topic specs from the settings: partitions, replication factor and min.insync.replicas."""
    configs = {"max.message.bytes": str(KAFKA_MAX_MESSAGE_BYTES)}
    if kafka.min_insync_replicas:
        configs["min.insync.replicas"] = str(kafka.min_insync_replicas)
    return [
        NewTopic(
            name=name,
            num_partitions=kafka.partitions,
            replication_factor=kafka.replication_factor,
            topic_configs=configs,
        )
        for name in names
    ]


async def ensure_topics(kafka: KafkaSettings, topics: tuple[str, ...] = KAFKA_TOPICS) -> None:
    """Creates the catalogue's topics (with the installation's prefix) that do not exist yet; raises
    when Kafka refuses one (e.g. a replication factor larger than the number of brokers). Existing
    topics are left as they are."""
    admin = AIOKafkaAdminClient(**client_options(kafka), request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [kafka_name(t) for t in topics if kafka_name(t) not in existing]
        if missing:
            response = await admin.create_topics(new_topics(kafka, missing))
            # (name, error code[, message]); another replica creating it first is no error.
            refused = [
                f"{error[0]}: {error[2] if len(error) > 2 and error[2] else f'error code {error[1]}'}"
                for error in response.topic_errors
                if error[1] not in (0, TopicAlreadyExistsError.errno)
            ]
            if refused:
                raise RuntimeError(f"Kafka refused to create topics: {'; '.join(refused)}")
            log.info(
                "created kafka topics",
                extra={"topics": missing, "replication_factor": kafka.replication_factor},
            )
    finally:
        await admin.close()


async def kafka_ping(kafka: KafkaSettings, timeout: float = 3.0) -> float:
    """Milliseconds to list topics; raises when Kafka is unreachable."""
    started = time.perf_counter()
    admin = AIOKafkaAdminClient(**client_options(kafka), request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        await asyncio.wait_for(admin.list_topics(), timeout)
    finally:
        await admin.close()
    return (time.perf_counter() - started) * 1000


async def wait_for_kafka(kafka: KafkaSettings, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await kafka_ping(kafka)
            return
        except (TimeoutError, KafkaError, OSError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Kafka at {kafka.bootstrap} not reachable after {timeout:.0f}s: {exc}"
                ) from exc
            log.warning("waiting for kafka", extra={"bootstrap": kafka.bootstrap, "error": str(exc)})
            await asyncio.sleep(1.0)
