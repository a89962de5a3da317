"""Fixtures that start real components on free loopback ports and stop them afterwards:
Apache Kafka (KRaft), PostgreSQL, the four Godel services and the Envoy gateway."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from godel_deploy.kafka import KafkaBroker
from godel_deploy.mesh import Mesh, MeshPorts
from godel_deploy.postgres import PostgresServer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs real Kafka/PostgreSQL/Envoy (started by fixtures)")


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = PostgresServer(tmp_path_factory.mktemp("postgres")).start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@dataclass
class RunningMesh:
    mesh: Mesh
    kafka: KafkaBroker
    admin_key: str

    @property
    def rest(self) -> str:
        return self.mesh.gateway_url

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"x-api-key": key or self.admin_key}

    def metadata(self, key: str | None = None) -> list[tuple[str, str]]:
        return [("x-api-key", key or self.admin_key)]

    def http(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.rest, headers=self.headers(key), timeout=15.0)

    def channel(self, target: str | None = None) -> grpc.Channel:
        return grpc.insecure_channel(target or self.mesh.gateway_address)

    def create_key(self, role: str) -> str:
        key = self.mesh.create_api_key(f"{role}-{uuid.uuid4().hex[:6]}", role)
        assert key is not None
        return key


@contextmanager
def running_mesh(
    home: Path,
    database_url: str | None,
    prefix: str,
    *,
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
) -> Iterator[RunningMesh]:
    """Its own Kafka broker plus the four services, the gateway and `workers` workers; stopped on exit."""
    kafka = KafkaBroker(home / "kafka").start()
    mesh = Mesh(
        home / "mesh",
        kafka.bootstrap,
        ports=MeshPorts.free(),
        database_url=database_url,
        database_prefix=prefix,
        extra_env={"GODEL_AUTH_CACHE_SECONDS": "1", "GODEL_OUTBOX_POLL_SECONDS": "0.2", **(extra_env or {})},
        workers=workers,
    )
    try:
        kafka.wait_ready()
        mesh.logs.mkdir(parents=True, exist_ok=True)
        running = RunningMesh(mesh, kafka, "")
        running.admin_key = running.create_key("admin")
        mesh.start()
        yield running
    finally:
        mesh.stop()
        kafka.stop()


@pytest.fixture(scope="session")
def godel(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Iterator[RunningMesh]:
    """The whole mesh on PostgreSQL, shared by the integration tests that do not break it."""
    with running_mesh(tmp_path_factory.mktemp("mesh"), postgres.url(), "shared") as running:
        yield running
