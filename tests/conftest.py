"""Fixtures that start real components on free loopback ports and stop them afterwards:
Apache Kafka (KRaft), PostgreSQL, the four Godel services and the Envoy gateway."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from godel_deploy.kafka import KafkaBroker
from godel_deploy.mesh import Mesh, MeshPorts
from godel_deploy.ports import retry_on_port_taken
from godel_deploy.postgres import PostgresServer
from godel_server.runtime.db import Database, ensure_postgres_database
from godel_server.runtime.migrations import upgrade
from tests.waits import LineReader

# What a credential looks like: an API key, a refresh token, a JWT (longer than the display
# prefix `godel_sk_ab12` that may be logged).
CREDENTIAL = re.compile(
    rb"godel_(?:sk|rt)_[A-Za-z0-9_-]{16,}|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
)


def credentials_in_logs(root: Path) -> list[str]:
    """Every place under `root` where a log file (*.log) holds something shaped like a
    credential, as `path: first characters`."""
    found: list[str] = []
    for path in sorted(root.rglob("*.log")):
        if path.is_file():
            for match in CREDENTIAL.finditer(path.read_bytes()):
                found.append(f"{path}: {match.group()[:14].decode()}...")
    return found


@pytest.fixture(scope="session", autouse=True)
def no_credentials_in_logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the whole run (every mesh stopped, its logs flushed): no log file that any test's
    Kafka, PostgreSQL, services, workers or gateway wrote holds an API key or a token. Set up
    before every other session fixture, so it is torn down after them."""
    yield
    leaks = credentials_in_logs(tmp_path_factory.getbasetemp())
    assert not leaks, "credentials were written to logs:\n" + "\n".join(leaks[:20])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs real Kafka/PostgreSQL/Envoy (started by fixtures)")


def _started_postgres(data_dir: Path) -> PostgresServer:
    server = PostgresServer(data_dir).start()  # on a free port; initdb only the first time
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    data_dir = tmp_path_factory.mktemp("postgres")
    server = retry_on_port_taken(lambda attempt: _started_postgres(data_dir))
    try:
        yield server
    finally:
        server.stop()


@asynccontextmanager
async def postgres_database(server: PostgresServer, migrations: Path, prefix: str) -> AsyncIterator[Database]:
    """A new database `prefix_<random>` on the test PostgreSQL with a service's migrations applied,
    closed on exit."""
    url = server.url(f"{prefix}_{uuid.uuid4().hex[:10]}")
    await ensure_postgres_database(url)
    database = Database(url)
    try:
        await upgrade(database, migrations)
        yield database
    finally:
        await database.close()


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

    def client_env(self) -> dict[str, str]:
        """The environment of a client process that talks to this mesh with the admin key."""
        return {**os.environ, "GODEL_ADDR": self.mesh.gateway_address, "GODEL_API_KEY": self.admin_key}

    @contextmanager
    def serving_after(self, role: str) -> Iterator[None]:
        """Whatever the block does to the service `role` (kill, stop), it serves again after the
        block, also when the block fails: the next tests share this mesh."""
        try:
            yield
        finally:
            if not self.mesh.service_process(role).alive():
                self.mesh.start_service(role)
            self.mesh.wait_service(role)

    @contextmanager
    def kafka_after(self) -> Iterator[None]:
        """Kafka runs, and is not frozen, after the block, also when the block fails."""
        try:
            yield
        finally:
            self.kafka.process.signal_group(signal.SIGCONT)
            if not self.kafka.alive():
                self.kafka.start()
            self.kafka.wait_ready()


def godel_cli(
    godel: RunningMesh,
    *argv: str,
    check: bool = True,
    cwd: Path | None = None,
    timeout: float = 90,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``godel ARGV...`` run as a user runs it against the mesh (``stdin`` typed in); with
    ``check``, an exit code other than 0 fails the test and shows the command's output."""
    done = subprocess.run(
        [sys.executable, "-m", "godel_client", *argv],
        env=godel.client_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
        input=stdin,
    )
    if check:
        assert done.returncode == 0, (
            f"godel {shlex.join(argv)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
        )
    return done


@contextmanager
def godel_cli_lines(godel: RunningMesh, *argv: str) -> Iterator[tuple[subprocess.Popen[str], LineReader]]:
    """``godel ARGV...`` that runs on (a tail, a ``--watch``): the process and its output lines,
    read with deadlines. The process is killed when the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "godel_client", *argv],
        env=godel.client_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield process, LineReader(process.stdout, f"godel {shlex.join(argv)}")
    finally:
        process.kill()
        process.wait()


def _started_kafka(data_dir: Path) -> KafkaBroker:
    kafka = KafkaBroker(data_dir).start()
    try:
        kafka.wait_ready()
    except BaseException:
        kafka.stop()
        raise
    return kafka


@contextmanager
def running_mesh(
    home: Path,
    database_url: str | None,
    prefix: str,
    *,
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
) -> Iterator[RunningMesh]:
    """Its own Kafka broker plus the four services, the gateway and `workers` workers; stopped on exit.
    Each starts again on other free ports if a port was taken before its process could bind it."""
    # A new data directory per attempt: Kafka keeps its controller's address in its storage.
    kafka = retry_on_port_taken(lambda attempt: _started_kafka(home / f"kafka-{attempt}"))

    def start_mesh(attempt: int) -> RunningMesh:
        mesh = Mesh(
            home / "mesh",
            kafka.bootstrap,
            ports=MeshPorts.free(),
            database_url=database_url,
            database_prefix=prefix,
            extra_env={
                "GODEL_AUTH_CACHE_SECONDS": "1",
                "GODEL_OUTBOX_POLL_SECONDS": "0.2",
                **(extra_env or {}),
            },
            workers=workers,
        )
        try:
            mesh.logs.mkdir(parents=True, exist_ok=True)
            running = RunningMesh(mesh, kafka, "")
            running.admin_key = running.create_key("admin")
            mesh.start()
        except BaseException:
            mesh.stop()
            raise
        return running

    try:
        running = retry_on_port_taken(start_mesh)
        try:
            yield running
        finally:
            running.mesh.stop()
    finally:
        kafka.stop()


@pytest.fixture(scope="session")
def godel(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Iterator[RunningMesh]:
    """The whole mesh on PostgreSQL, shared by the integration tests that do not break it."""
    with running_mesh(tmp_path_factory.mktemp("mesh"), postgres.url(), "shared") as running:
        yield running
