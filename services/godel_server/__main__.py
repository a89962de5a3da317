"""`godel-server`: run one service role, migrate a service database, or create API keys.

godel-server agent|team|event|cluster        run that service (settings from GODEL_* env)
godel-server migrate ROLE up [REV]           upgrade ROLE's database (default: head)
godel-server migrate ROLE down [REV]         downgrade ROLE's database (default: base)
godel-server worker [--connect ADDRS] [--capacity N]
                                             run a worker process that executes agents' runs
                                             for the agent-service replicas ADDRS (comma-separated)
godel-server keys create --name N [--role admin] [--if-none]
                                             create an API key in the cluster database and
                                             print its secret once
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from godel_server.runtime.apikeys import ROLES as KEY_ROLES
from godel_server.runtime.config import ROLES, ConfigError, Role, load_settings
from godel_server.runtime.host import Service


def service_for(role: Role) -> Service:
    if role == "agent":
        from godel_server.agent.service import AgentService

        return AgentService()
    if role == "team":
        from godel_server.team.service import TeamService

        return TeamService()
    if role == "event":
        from godel_server.event.service import EventService

        return EventService()
    from godel_server.cluster.service import ClusterService

    return ClusterService()


async def _migrate(role: Role, direction: str, revision: str | None) -> None:
    from godel_server.runtime.db import Database, ensure_postgres_database
    from godel_server.runtime.migrations import current_revision, downgrade, upgrade

    settings = load_settings(role)
    db = Database(settings.database_url)
    try:
        if direction == "up":
            if not db.is_sqlite:
                await ensure_postgres_database(settings.database_url)
            await upgrade(db, service_for(role).migrations, revision or "head")
        else:
            await downgrade(db, service_for(role).migrations, revision or "base")
        print(f"{role}: database at revision {await current_revision(db) or 'base'}")
    finally:
        await db.close()


async def _create_key(name: str, role: str, if_none: bool) -> int:
    from godel_server.cluster.keys import count_keys, create_key
    from godel_server.runtime.db import Database, ensure_postgres_database
    from godel_server.runtime.migrations import upgrade

    settings = load_settings("cluster")
    db = Database(settings.database_url)
    try:
        if not db.is_sqlite:
            await ensure_postgres_database(settings.database_url)
        await upgrade(db, service_for("cluster").migrations)
        async with db.session() as session:
            if if_none and await count_keys(session, role) > 0:
                print(f"an active {role} key exists already; not creating another", file=sys.stderr)
                return 3
            _, secret = await create_key(session, name=name, role=role)
        print(secret)
        return 0
    finally:
        await db.close()


def _worker(connect: str | None, capacity: int | None) -> int:
    import os

    from godel_server.runtime.config import load_worker_settings
    from godel_server.worker.main import run_worker

    env = dict(os.environ)
    if connect is not None:
        env["GODEL_WORKER_CONNECT"] = connect
    if capacity is not None:
        env["GODEL_WORKER_CAPACITY"] = str(capacity)
    run_worker(load_worker_settings(env))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="godel-server", description="Run a Godel service.")
    sub = parser.add_subparsers(dest="command", required=True)
    for role in ROLES:
        sub.add_parser(role, help=f"run the {role} service")
    migrate = sub.add_parser("migrate", help="migrate a service database")
    migrate.add_argument("role", choices=ROLES)
    migrate.add_argument("direction", choices=("up", "down"))
    migrate.add_argument("revision", nargs="?")
    worker = sub.add_parser("worker", help="run a worker process (executes agents' runs)")
    worker.add_argument(
        "--connect", help="agent-service replica addresses, comma-separated (GODEL_WORKER_CONNECT)"
    )
    worker.add_argument("--capacity", type=int, help="runs executed at once (GODEL_WORKER_CAPACITY)")
    keys = sub.add_parser("keys", help="manage API keys directly in the cluster database")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create an API key and print its secret once")
    create.add_argument("--name", required=True)
    create.add_argument("--role", default="admin", choices=tuple(KEY_ROLES))
    create.add_argument("--if-none", action="store_true", help="do nothing (exit 3) when such a key exists")
    args = parser.parse_args(argv)
    try:
        if args.command in ROLES:
            from godel_server.runtime.host import run_service

            run_service(load_settings(args.command), service_for(args.command))
            return 0
        if args.command == "worker":
            return _worker(args.connect, args.capacity)
        if args.command == "migrate":
            asyncio.run(_migrate(args.role, args.direction, args.revision))
            return 0
        return asyncio.run(_create_key(args.name, args.role, args.if_none))
    except ConfigError as exc:
        print(f"godel-server: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
