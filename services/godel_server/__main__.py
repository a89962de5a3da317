"""`godel-server`: run one service role, migrate a service database, or create API keys.

godel-server agent|team|event|cluster        run that service (settings from GODEL_* env)
godel-server migrate ROLE|all up [REV]       upgrade ROLE's database (default: head), under a lock
godel-server migrate ROLE|all down [REV]     downgrade ROLE's database (default: base)
godel-server worker [--connect ADDRS] [--capacity N]
                                             run a worker process that executes agents' runs
                                             for the agent-service replicas ADDRS (comma-separated)
godel-server keys create --name N [--role admin] [--if-none]
                                             create an API key in the cluster database and
                                             print its secret once (--user: the key belongs
                                             to that user; else it is a service key)
godel-server users create --username U [--role admin] [--password-stdin] [--if-none]
                                             create a user in the cluster database; without
                                             --password-stdin a password is generated and
                                             printed once
godel-server keys generate                   print a new key without storing it (for a Secret)
godel-server keys register DIR               register the deployment's keys DIR/<name>.key
                                             (admin, team-service, cluster-service,
                                             agent-service, worker); idempotent
godel-server probe [ROLE] [--live]           exit 0 when the process of ROLE on this host is ready
                                             (--live: running) per its admin port; without ROLE,
                                             whichever Godel processes answer here (a container's)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from godel_server.runtime.apikeys import ROLES as KEY_ROLES
from godel_server.runtime.config import ConfigError, load_settings
from godel_server.runtime.topology import ROLES, Role

if TYPE_CHECKING:
    from godel_server.runtime.db import Database
    from godel_server.runtime.host import Service


def service_class(role: Role) -> type[Service]:
    """The deployable of a role; its `grpc_services` say which godel.v1 services it serves."""
    if role == "agent":
        from godel_server.agent.service import AgentService

        return AgentService
    if role == "team":
        from godel_server.team.service import TeamService

        return TeamService
    if role == "event":
        from godel_server.event.service import EventService

        return EventService
    from godel_server.cluster.service import ClusterService

    return ClusterService


def service_for(role: Role) -> Service:
    return service_class(role)()


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


async def _create_key(name: str, role: str, if_none: bool, username: str | None) -> int:
    from godel_server.cluster.keys import count_keys, create_key
    from godel_server.cluster.users import find_user, key_role_allowed

    db = await _cluster_db()
    try:
        async with db.session() as session:
            if if_none and await count_keys(session, role) > 0:
                print(f"an active {role} key exists already; not creating another", file=sys.stderr)
                return 3
            user = await find_user(session, username) if username else None
            if username and user is None:
                print(f"no user {username!r}", file=sys.stderr)
                return 2
            if user is not None and not key_role_allowed(user.role, role):
                print(f"a {role} key may not belong to {username!r} (role {user.role})", file=sys.stderr)
                return 2
            _, secret = await create_key(session, name=name, role=role, user_id=user.id if user else "")
        print(secret)
        return 0
    finally:
        await db.close()


async def _create_user(username: str, role: str, password: str | None, if_none: bool) -> int:
    import secrets

    from godel_server.cluster.passwords import check_password, hash_password
    from godel_server.cluster.users import check_user_role, check_username, create_user, find_user
    from godel_server.runtime.validation import Violations

    v = Violations()
    check_username(v, "--username", username)
    check_user_role(v, "--role", role)
    generated = password is None
    password = secrets.token_urlsafe(18) if password is None else password
    check_password(v, "password", password)
    if v.items:
        for item in v.items:
            print(f"{item.field}: {item.description}", file=sys.stderr)
        return 2
    db = await _cluster_db()
    try:
        async with db.session() as session:
            if await find_user(session, username) is not None:
                print(f"user {username!r} exists already; not creating another", file=sys.stderr)
                return 3 if if_none else 1
            await create_user(
                session, username=username, password_hash=await hash_password(password), role=role
            )
        if generated:
            print(password)
        return 0
    finally:
        await db.close()


async def _cluster_db() -> Database:
    """The cluster service's database, created and migrated if needed (keys live there)."""
    from godel_server.runtime.db import Database, ensure_postgres_database
    from godel_server.runtime.migrations import upgrade

    settings = load_settings("cluster")
    db = Database(settings.database_url)
    if not db.is_sqlite:
        await ensure_postgres_database(settings.database_url)
    await upgrade(db, service_for("cluster").migrations)
    return db


def _key_files(directory: Path) -> dict[str, tuple[str, str]]:
    """name -> (role, secret) of the deployment's key files `<name>.key` in `directory`."""
    from godel_server.runtime.apikeys import DEPLOYMENT_KEYS, is_strong_key

    found: dict[str, tuple[str, str]] = {}
    for path in sorted(directory.glob("*.key")):
        role = DEPLOYMENT_KEYS.get(path.stem)
        if role is None:
            raise ConfigError(
                f"{path}: unknown key name; expected {', '.join(f'{n}.key' for n in DEPLOYMENT_KEYS)}"
            )
        secret = path.read_text().strip()
        if not is_strong_key(secret):
            raise ConfigError(f"{path} does not hold a key (godel_sk_ and 32+ URL-safe characters)")
        found[path.stem] = (role, secret)
    if not found:
        raise ConfigError(f"no <name>.key files in {directory}")
    return found


async def _register_keys(directory: Path) -> int:
    """Stores the hashes of keys generated elsewhere (a Kubernetes Secret, compose secrets);
    idempotent, so a deployment runs it on every upgrade."""
    from sqlalchemy import select

    from godel_server.cluster.keys import create_key
    from godel_server.cluster.models import ApiKeyRow
    from godel_server.runtime.apikeys import ROLE_UPGRADES, hash_key

    keys = _key_files(directory)
    db = await _cluster_db()
    try:
        async with db.session() as session:
            for name, (role, secret) in keys.items():
                row = await session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == hash_key(secret)))
                if row is None:
                    await create_key(session, name=name, role=role, secret=secret)
                    print(f"{name}: registered ({role})")
                elif not row.revoked and row.name == name and (row.role, role) in ROLE_UPGRADES:
                    print(f"{name}: registered already; its role changes from {row.role} to {role}")
                    row.role = role
                elif row.revoked or row.role != role:
                    raise ConfigError(
                        f"{name}: this key is registered already, but {'revoked' if row.revoked else f'as {row.role}'}"
                    )
                else:
                    print(f"{name}: registered already ({role})")
        return 0
    finally:
        await db.close()


def _worker(connect: str | None, capacity: int | None) -> int:
    from godel_server.runtime.config import load_worker_settings
    from godel_server.worker.main import run_worker

    env = dict(os.environ)
    if connect is not None:
        env["GODEL_WORKER_CONNECT"] = connect
    if capacity is not None:
        env["GODEL_WORKER_CAPACITY"] = str(capacity)
    run_worker(load_worker_settings(env))
    return 0


def _probe_targets(role: str | None, env: Mapping[str, str]) -> dict[str, str]:
    """Admin addresses on this host to probe: of `role`, or of every role (ports 0 are off). Reads
    only the ports, so a probe works whatever else the process's settings need."""
    from godel_server.runtime.config import admin_port, bind_host

    host = bind_host(env)
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    names = (role,) if role else (*ROLES, "worker")
    return {name: f"{host}:{port}" for name in names if (port := admin_port(name, env))}


def _probe(role: str | None, live: bool) -> int:
    from godel_server.runtime.admin import probe

    targets = _probe_targets(role, os.environ)
    if not targets:
        print(f"godel-server probe: {role or 'no role'} has no admin port here", file=sys.stderr)
        return 2
    answers = {name: probe(address, "/healthz" if live else "/readyz") for name, address in targets.items()}
    if role is None:  # only the processes that run here count
        answers = {name: a for name, a in answers.items() if a[0] or a[1].startswith("HTTP")}
    for name, (ok, said) in answers.items():
        print(f"{name} {targets[name]}: {'ok' if ok else 'FAIL'} ({said})")
    return 0 if answers and all(ok for ok, _ in answers.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="godel-server", description="Run a Godel service.")
    sub = parser.add_subparsers(dest="command", required=True)
    for role in ROLES:
        sub.add_parser(role, help=f"run the {role} service")
    migrate = sub.add_parser("migrate", help="migrate a service database")
    migrate.add_argument("role", choices=(*ROLES, "all"))
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
    create.add_argument("--user", metavar="USERNAME", help="the user the key belongs to (default: none)")
    keys_sub.add_parser("generate", help="print a new key without storing it")
    register = keys_sub.add_parser("register", help="register the deployment's keys DIR/<name>.key")
    register.add_argument("directory", type=Path)
    probe = sub.add_parser("probe", help="check the admin port of a process on this host (health checks)")
    probe.add_argument("role", nargs="?", choices=(*ROLES, "worker"))
    probe.add_argument("--live", action="store_true", help="only check that it runs (/healthz)")
    users = sub.add_parser("users", help="manage users directly in the cluster database")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    create_user = users_sub.add_parser("create", help="create a user (printing a generated password once)")
    create_user.add_argument("--username", required=True)
    create_user.add_argument("--role", default="admin", choices=("viewer", "developer", "operator", "admin"))
    create_user.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    create_user.add_argument(
        "--if-none", action="store_true", help="do nothing (exit 3) when the user exists"
    )
    args = parser.parse_args(argv)
    if args.command == "migrate" and args.role == "all" and args.revision:
        parser.error("migrate all takes no revision (each service has its own)")
    try:
        if args.command in ROLES:
            from godel_server.runtime.host import run_service

            run_service(load_settings(args.command), service_for(args.command))
            return 0
        if args.command == "worker":
            return _worker(args.connect, args.capacity)
        if args.command == "probe":
            return _probe(args.role, args.live)
        if args.command == "migrate":
            for role in ROLES if args.role == "all" else (args.role,):
                asyncio.run(_migrate(role, args.direction, args.revision))
            return 0
        if args.command == "users":
            password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
            return asyncio.run(_create_user(args.username, args.role, password, args.if_none))
        if args.keys_command == "generate":
            from godel_server.runtime.apikeys import generate_key

            print(generate_key())
            return 0
        if args.keys_command == "register":
            return asyncio.run(_register_keys(args.directory))
        return asyncio.run(_create_key(args.name, args.role, args.if_none, args.user))
    except ConfigError as exc:
        print(f"godel-server: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
