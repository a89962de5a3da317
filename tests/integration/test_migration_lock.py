"""Replicas of one service (and a migration Job) may start at the same moment on a fresh PostgreSQL
server: the database is created once and migrated once, under the migration lock, and every one of
them comes up, also past the defaults the cluster service seeds once. A replica told not to
migrate refuses a database that is behind its release."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import pytest

from godel_deploy.postgres import PostgresServer
from godel_server.agent.service import AgentService
from godel_server.cluster.seeds import first_time
from godel_server.event.service import EventService
from godel_server.runtime.db import Database
from godel_server.runtime.host import Service
from godel_server.runtime.migrations import head_revision
from tests.waits import wait_for_async

REPLICAS = 4


def _env(server: PostgresServer, prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GODEL_")}
    env.update(GODEL_DATABASE_URL=server.dsn(), GODEL_DATABASE_NAME_PREFIX=prefix)
    return env


def _revision(server: PostgresServer, database: str) -> str:
    return server.psql("SELECT version_num FROM alembic_version", dbname=database).strip()


@pytest.mark.parametrize("service", [AgentService, EventService], ids=lambda s: s.role)
def test_replicas_migrating_at_once_all_succeed(postgres: PostgresServer, service: type[Service]) -> None:
    prefix = f"lock_{uuid.uuid4().hex[:8]}"
    argv = [sys.executable, "-m", "godel_server", "migrate", service.role, "up"]
    procs = [
        subprocess.Popen(argv, env=_env(postgres, prefix), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(REPLICAS)
    ]
    results: list[tuple[int, str, str]] = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        results.append((proc.returncode, out.decode(), err.decode()))
    failed = [err for code, _, err in results if code != 0]
    assert not failed, f"{len(failed)} of {REPLICAS} concurrent migrations failed:\n{failed[0]}"
    head = head_revision(service.migrations)
    assert all(out.strip().endswith(f"at revision {head}") for _, out, _ in results), results
    assert _revision(postgres, f"{prefix}_{service.role}") == head


def test_a_replica_that_must_not_migrate_refuses_a_database_behind_it(postgres: PostgresServer) -> None:
    prefix = f"lock_{uuid.uuid4().hex[:8]}"
    env = _env(postgres, prefix)
    migrate = [sys.executable, "-m", "godel_server", "migrate", "agent"]
    subprocess.run([*migrate, "up", "0002"], env=env, check=True, capture_output=True)
    run = subprocess.run(
        [sys.executable, "-m", "godel_server", "agent"],
        env={
            **env,
            "GODEL_MIGRATE_ON_START": "false",
            "GODEL_AGENT_PORT": "0",
            "GODEL_AGENT_ADMIN_PORT": "0",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "the agent database is at revision 0002" in run.stderr
    assert "godel-server migrate agent up" in run.stderr
    assert _revision(postgres, f"{prefix}_agent") == "0002"  # it changed nothing


def test_cluster_replicas_starting_at_once_seed_the_defaults_once(postgres: PostgresServer) -> None:
    """The defaults a cluster service seeds on its first start (alert rules, autonomic policies):
    a replica starting while another seeds waits for it and leaves the seed alone, instead of
    failing its start on the seed's primary key."""
    prefix = f"lock_{uuid.uuid4().hex[:8]}"
    migrate = [sys.executable, "-m", "godel_server", "migrate", "cluster", "up"]
    subprocess.run(migrate, env=_env(postgres, prefix), check=True, capture_output=True)
    database = f"{prefix}_cluster"

    def second_waits() -> bool:
        waiting = postgres.psql(
            f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}' AND wait_event_type = 'Lock'"
        )
        return int(waiting) == 1

    async def race() -> bool:
        db = Database(postgres.url(database))
        try:

            async def second() -> bool:
                async with db.session() as session:
                    return await first_time(session, "defaults")

            async with db.session() as session:
                assert await first_time(session, "defaults")
                other = asyncio.create_task(second())
                await wait_for_async(
                    second_waits, 60, "the second replica to wait for the seed", blocking=True
                )
            return await other
        finally:
            await db.close()

    assert asyncio.run(race()) is False
    assert postgres.psql("SELECT name FROM seeds", dbname=database).split() == ["defaults"]
