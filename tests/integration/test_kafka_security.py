"""Kafka as a production cluster runs it: listeners with TLS (SSL, client certificates required) and
SASL over TLS, and topics created with a replication factor and `min.insync.replicas` from the
settings. One broker of our own, with a certificate authority made by the test."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError

from godel_deploy.kafka import KafkaBroker
from godel_deploy.mesh import grpc_serving
from godel_deploy.ports import LOOPBACK, free_port
from godel_deploy.process import ManagedProcess
from godel_server.runtime.config import KafkaSettings, load_kafka
from godel_server.runtime.kafka import client_options, ensure_topics, kafka_ping, new_producer
from tests.certs import TestCA

SASL_USER, SASL_PASSWORD = "godel", "kafka-secret-for-tests"


@dataclass
class SecureKafka:
    broker: KafkaBroker
    ca: TestCA
    sasl_ssl: KafkaSettings
    ssl: KafkaSettings
    plaintext: KafkaSettings
    env: dict[str, str]  # GODEL_KAFKA_* of the SASL_SSL listener


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    home = tmp_path_factory.mktemp("kafka-security")
    ca = TestCA(home / "ca")
    broker_cert = ca.issue("broker")
    client = ca.issue("godel-client")
    keystore = home / "ca" / "broker-keystore.pem"
    keystore.write_text(broker_cert.pem_bundle)
    plain, sasl_ssl, ssl = free_port(), free_port(), free_port()
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="broker" password="broker-secret" user_{SASL_USER}="{SASL_PASSWORD}";'
    )
    broker = KafkaBroker(
        home / "broker",
        port=plain,
        extra_config={
            "listeners": (
                f"PLAINTEXT://{LOOPBACK}:{plain},SASL_SSL://{LOOPBACK}:{sasl_ssl},SSL://{LOOPBACK}:{ssl},"
                f"CONTROLLER://{LOOPBACK}:{{controller}}"
            ),
            "advertised.listeners": (
                f"PLAINTEXT://{LOOPBACK}:{plain},SASL_SSL://{LOOPBACK}:{sasl_ssl},SSL://{LOOPBACK}:{ssl}"
            ),
            "listener.security.protocol.map": (
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL"
            ),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(ca.ca_file),
            "listener.name.ssl.ssl.client.auth": "required",
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_ssl.plain.sasl.jaas.config": jaas,
        },
    )
    # The controller port is only known once the broker object picked it.
    broker.extra_config["listeners"] = broker.extra_config["listeners"].replace(
        "{controller}", str(broker.controller_port)
    )
    env = {
        "GODEL_KAFKA_BOOTSTRAP": f"{LOOPBACK}:{sasl_ssl}",
        "GODEL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "GODEL_KAFKA_SSL_CA_FILE": str(ca.ca_file),
        "GODEL_KAFKA_SASL_MECHANISM": "PLAIN",
        "GODEL_KAFKA_SASL_USERNAME": SASL_USER,
        "GODEL_KAFKA_SASL_PASSWORD_FILE": str(_secret_file(home / "sasl-password", SASL_PASSWORD)),
    }
    broker.start()
    try:
        broker.wait_ready()
        yield SecureKafka(
            broker=broker,
            ca=ca,
            sasl_ssl=load_kafka(env),
            ssl=load_kafka(
                {
                    "GODEL_KAFKA_BOOTSTRAP": f"{LOOPBACK}:{ssl}",
                    "GODEL_KAFKA_SECURITY_PROTOCOL": "SSL",
                    "GODEL_KAFKA_SSL_CA_FILE": str(ca.ca_file),
                    "GODEL_KAFKA_SSL_CERT_FILE": str(client.cert),
                    "GODEL_KAFKA_SSL_KEY_FILE": str(client.key),
                }
            ),
            plaintext=KafkaSettings(bootstrap=broker.bootstrap),
            env=env,
        )
    finally:
        broker.stop()


def _secret_file(path: Path, secret: str) -> Path:
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return path


async def _round_trip(kafka: KafkaSettings) -> bytes:
    """Creates a topic, produces one record and consumes it back, all with `kafka`'s settings."""
    topic = f"godel.test.security.{uuid.uuid4().hex[:8]}"
    await ensure_topics(replace(kafka, partitions=1), (topic,))
    producer = new_producer(kafka, "security-test")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"over-tls", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, **client_options(kafka), auto_offset_reset="earliest")
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 30)
        return bytes(record.value or b"")
    finally:
        await consumer.stop()


async def test_sasl_over_tls_round_trips_and_a_wrong_password_is_refused(
    kafka: SecureKafka, caplog: pytest.LogCaptureFixture
) -> None:
    assert kafka.sasl_ssl.sasl_password == SASL_PASSWORD  # read from the _FILE
    assert await _round_trip(kafka.sasl_ssl) == b"over-tls"
    with pytest.raises(KafkaConnectionError):
        await kafka_ping(replace(kafka.sasl_ssl, sasl_password="wrong"), timeout=10)
    assert "SaslAuthenticationFailed" in caplog.text  # aiokafka logs why it could not bootstrap


async def test_tls_with_a_client_certificate_round_trips_and_none_is_refused(kafka: SecureKafka) -> None:
    assert await _round_trip(kafka.ssl) == b"over-tls"
    with pytest.raises((KafkaConnectionError, TimeoutError)):
        await kafka_ping(replace(kafka.ssl, ssl_cert_file=None, ssl_key_file=None), timeout=10)


async def describe_new_topic(
    kafka: KafkaSettings, topic: str, timeout: float = 30
) -> tuple[dict[str, Any], Any]:
    """The topic's config entries (by name) and metadata once the broker answers for it.
    CreateTopics returns when the controller has the topic; the broker a describe goes to may not
    have caught up yet (UNKNOWN_TOPIC_OR_PARTITION, no entries), which a loaded machine shows."""
    admin = AIOKafkaAdminClient(**client_options(kafka))
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
            config_error, _message, _type, _name, entries = described[0].resources[0][:5]
            # Only then the metadata: a metadata request for a topic the broker does not know
            # may create it with the broker's defaults (auto.create.topics.enable).
            metadata = await admin.describe_topics([topic]) if config_error == 0 else [{"error_code": None}]
            if metadata[0]["error_code"] == 0:
                return {e[0]: e for e in entries}, metadata[0]
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{topic} not described after {timeout:g}s: config error {config_error}, "
                    f"metadata error {metadata[0]['error_code']}"
                )
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def test_topics_get_the_configured_min_insync_replicas(kafka: SecureKafka) -> None:
    topic = f"godel.test.isr.{uuid.uuid4().hex[:8]}"
    await ensure_topics(replace(kafka.plaintext, partitions=2, min_insync_replicas=1), (topic,))
    entries, metadata = await describe_new_topic(kafka.plaintext, topic)
    name, value, _read_only, source = entries["min.insync.replicas"][:4]
    assert (name, value) == ("min.insync.replicas", "1")
    assert source == 1  # DYNAMIC_TOPIC_CONFIG: set on the topic by us, not the broker default
    assert len(metadata["partitions"]) == 2


async def test_a_replication_factor_the_cluster_cannot_meet_fails_loudly(kafka: SecureKafka) -> None:
    topic = f"godel.test.rf.{uuid.uuid4().hex[:8]}"
    with pytest.raises(RuntimeError, match=rf"Kafka refused to create topics: {topic}: .*replication factor"):
        await ensure_topics(replace(kafka.plaintext, replication_factor=3, min_insync_replicas=2), (topic,))


def test_a_service_runs_on_sasl_over_tls(kafka: SecureKafka, tmp_path: Path) -> None:
    """The cluster service waits for Kafka, creates the topics and starts its producer through
    the SASL_SSL listener only (its settings name no other)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GODEL_")}
    env.update(kafka.env)
    env.update(GODEL_HOME=str(tmp_path), GODEL_CLUSTER_PORT=str(port), GODEL_CLUSTER_ADMIN_PORT="0")
    log = tmp_path / "cluster.log"
    argv = [sys.executable, "-m", "godel_server", "cluster"]
    with ManagedProcess(argv, log, env=env, name="cluster-sasl-ssl") as proc:
        proc.wait_for(lambda: grpc_serving(f"{LOOPBACK}:{port}"), 120, "the cluster service to serve")
    assert SASL_PASSWORD not in log.read_text()
