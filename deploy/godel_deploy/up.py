"""`make up`: Kafka (KRaft), optionally PostgreSQL, the four services and the Envoy gateway on
127.0.0.1, left running in the background; prints the endpoints and the admin key.

Keys (godel_deploy.keys): every key saved in GODEL_HOME (the admin key, the team service's and the
workers') is checked with the cluster service once it serves, and replaced, saying so, when that
service does not accept it. Keys are kept per database, so changing GODEL_DATABASE_URL between two
`make up`s sets the other database's keys aside instead of overwriting them.

Environment: GODEL_HOME (default <repo>/.data), GODEL_DATABASE_URL (unset = SQLite files; a
postgresql:// URL = that server; `local` = a PostgreSQL started here on 127.0.0.1:5433),
GODEL_GATEWAY_PORT (7373), GODEL_GATEWAY_ADMIN_PORT (7374), GODEL_KAFKA_PORT (9092),
GODEL_KAFKA_CONTROLLER_PORT (9093), GODEL_<ROLE>_PORT and GODEL_<ROLE>_ADMIN_PORT; the federation
settings (GODEL_CLUSTER_*, GODEL_FEDERATION_PEERS) and GODEL_KAFKA_TOPIC_PREFIX go to the services."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

from godel_deploy import state
from godel_deploy.kafka import KafkaBroker
from godel_deploy.mesh import PASSED_THROUGH, ROLES, Mesh, MeshPorts, SavedKey, ensure_repo
from godel_deploy.paths import data_dir
from godel_deploy.ports import port_open
from godel_deploy.postgres import PostgresServer
from godel_server.runtime.topology import KAFKA_PORT

LOCAL_PG_PORT = 5433
# The user's admin key: <home>/admin.key (see godel_deploy.keys).
ADMIN_KEY = "admin"
# The first user, an admin, who owns that key; its password: <home>/admin-password.key.
ADMIN_USER = "admin"


def home() -> Path:
    return Path(os.environ.get("GODEL_HOME") or data_dir()).resolve()


def ports_from_env() -> MeshPorts:
    """Default ports, each overridable with the variables the services read (GODEL_<ROLE>_PORT, ...)."""
    d = MeshPorts()
    env = os.environ
    return MeshPorts(
        gateway=int(env.get("GODEL_GATEWAY_PORT", d.gateway)),
        gateway_admin=int(env.get("GODEL_GATEWAY_ADMIN_PORT", d.gateway_admin)),
        grpc={r: int(env.get(f"GODEL_{r.upper()}_PORT", p)) for r, p in d.grpc.items()},
        admin={r: int(env.get(f"GODEL_{r.upper()}_ADMIN_PORT", p)) for r, p in d.admin.items()},
        event_ws=int(env.get("GODEL_EVENT_WS_PORT", d.event_ws)),
    )


def _step(message: str) -> None:
    print(f"==> {message}", flush=True)


def _service_key_note(key: SavedKey) -> str | None:
    """A line about a mesh process's key that changed (None when it was kept as it was)."""
    if key.problem:
        return f"    {key.name} key: the saved one is {key.problem}; issued a new one ({key.path})"
    if key.selected.restored:
        return f"    {key.name} key: back to the one saved for this database ({key.path})"
    if key.created and key.selected.stashed:
        return f"    {key.name} key: new for this database; the other database's key waits in {key.selected.stashed}"
    return None


def _admin_key_text(key: SavedKey, database: str) -> str:
    """What `make up` says about the admin key: never replaced without saying so and why."""
    lines: list[str] = []
    picked = key.selected
    if picked.stashed is not None:
        lines.append(
            f"  The database changed: this mesh uses {database}.\n"
            f"  The admin key of {picked.stashed_database} is kept in {picked.stashed}\n"
            "  (it comes back by itself when you use that database again)."
        )
    if key.set_aside is not None:
        lines.append(
            f"  The saved admin key did not say which database it belongs to, and {database}\n"
            f"  does not accept it ({key.problem}): it was moved to {key.set_aside}."
        )
    elif key.problem:
        lines.append(f"  The saved admin key was refused by {database} ({key.problem}): a new one was made.")
    if key.created:
        lines.append(
            f"  Admin API key (shown once; also saved to {key.path}, mode 600)\n"
            f"  for {database}:\n\n    {key.secret}\n"
        )
    elif picked.restored:
        lines.append(f"  Admin API key: in {key.path} (the one saved earlier for {database})\n")
    else:
        lines.append(f"  Admin API key: in {key.path} (for {database})\n")
    return "\n".join(lines)


def _admin_user_text(username: str, password_file: Path, password: str | None) -> str:
    """What `make up` says about the first user: its password once, then where it is kept."""
    if password is None:
        return f"  Admin user `{username}`: its password is in {password_file}\n"
    return (
        f"  Admin user `{username}`, password (shown once; also saved to {password_file}, mode 600):\n\n"
        f"    {password}\n\n  `.venv/bin/godel login {username}` logs in with it.\n"
    )


def _sandbox_missing() -> str | None:
    """Why the worker would refuse to start (it sandboxes agents with bubblewrap), or None."""
    if (os.environ.get("GODEL_SANDBOX") or "").strip().lower() == "off":
        return None
    bwrap = os.environ.get("GODEL_SANDBOX_BWRAP") or "bwrap"
    if shutil.which(bwrap):
        return None
    return (
        f"the worker runs agents in a bubblewrap sandbox, and {bwrap!r} is not installed: "
        "`apt-get install -y bubblewrap` (or GODEL_SANDBOX=off: agents then run unsandboxed, UNSAFE)"
    )


def main() -> int:
    missing = _sandbox_missing()
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 1
    root = home()
    root.mkdir(parents=True, exist_ok=True)
    state_file = root / "mesh.json"
    if state_file.exists():
        started, info = state.load(state_file)
        if started and all(state.is_running(p) for p in started):
            print(f"Godel is already up (gateway {info.get('gateway', '?')}); `make down` stops it.")
            return 0
        print("a previous `make up` left a partial mesh; stopping its remains first", flush=True)
        for p in reversed(started):
            state.stop(p)
        state_file.unlink()

    ports = ports_from_env()
    busy = [
        p
        for p in (
            ports.gateway,
            ports.gateway_admin,
            ports.event_ws,
            *ports.grpc.values(),
            *ports.admin.values(),
        )
        if port_open(p)
    ]
    if busy:
        print(f"error: ports already in use on 127.0.0.1: {busy}; is another Godel running?", file=sys.stderr)
        return 1

    started_procs: list[state.StartedProcess] = []
    t0 = time.monotonic()
    try:
        _step("Kafka (KRaft, Apache Kafka jars from Maven Central, cached in .cache/)")
        kafka_port = int(os.environ.get("GODEL_KAFKA_PORT", KAFKA_PORT))
        controller_port = int(os.environ.get("GODEL_KAFKA_CONTROLLER_PORT", kafka_port + 1))
        broker = KafkaBroker(root / "kafka", port=kafka_port, controller_port=controller_port).start()
        started_procs.append(state.record(broker.pid, "kafka"))
        broker.wait_ready()

        database_url = os.environ.get("GODEL_DATABASE_URL") or None
        if database_url == "local":
            _step(f"PostgreSQL on 127.0.0.1:{LOCAL_PG_PORT}")
            pg = PostgresServer(root / "postgres", port=LOCAL_PG_PORT).start()
            started_procs.append(state.record(pg.pid, "postgres", stop_signal=signal.SIGINT))
            pg.wait_ready()
            pg.process.detach()
            database_url = pg.url()
        passed = {k: v for k, v in os.environ.items() if k.startswith(PASSED_THROUGH)}
        mesh = Mesh(root, broker.bootstrap, ports=ports, database_url=database_url, extra_env=passed)
        mesh.logs.mkdir(parents=True, exist_ok=True)

        ensure_repo(mesh.default_repo)
        _step(f"services ({'PostgreSQL' if database_url else 'SQLite files in ' + str(root)})")
        for role in ROLES:
            started_procs.append(state.record(mesh.start_service(role).pid, f"{role}-service"))
        for role in ROLES:
            mesh.wait_service(role)
            print(
                f"    {role}-service  grpc {mesh.address(role)}  metrics http://127.0.0.1:{ports.admin[role]}/metrics"
            )
        _step("API keys (checked with the cluster service; one set per database)")
        for key in mesh.ensure_service_keys():
            if note := _service_key_note(key):
                print(note, flush=True)
        admin_user = mesh.ensure_admin_user(ADMIN_USER)
        admin = mesh.ensure_key(ADMIN_KEY, "admin", user=ADMIN_USER)
        _step("gateway (Envoy)")
        gateway = mesh.start_gateway()
        started_procs.append(state.record(gateway.pid, "gateway"))
        _step("worker (runs agents; runtimes: command, openai)")
        worker = mesh.start_worker("worker-1")
        started_procs.append(state.record(worker.pid, "worker-1"))
        print(f"    worker-1  capacity {mesh.worker_capacity}  default repo {mesh.default_repo}")
        print(f"              worktrees in {mesh.worktree_root} (beside {root}, which holds the keys)")
        for proc in [broker.process, *mesh.processes().values()]:
            proc.detach()
        state.save(state_file, started_procs, {"gateway": mesh.gateway_address})
    except BaseException:
        for p in reversed(started_procs):
            state.stop(p)
        raise

    print(
        f"""
Godel is up ({time.monotonic() - t0:.1f}s). Logs: {mesh.logs}

  Web console           {mesh.gateway_url}/ui/   (log in with the admin key or the admin user below)
  REST + gRPC gateway   {mesh.gateway_url}   (e.g. {mesh.gateway_url}/api/v1/agents)
  OpenAPI               {mesh.gateway_url}/api/v1/openapi.json
  Events (SSE)          {mesh.gateway_url}/api/v1/events/stream?pattern=agent:*
  Events (WebSocket)    {mesh.events_ws_url}   (credential in a header or the bearer.<credential> subprotocol)
  Kafka                 {broker.bootstrap}   (topics godel.<domain>.events)
  Envoy admin           http://127.0.0.1:{ports.gateway_admin}
"""
    )
    print(_admin_key_text(admin, mesh.key_files().database))
    print(_admin_user_text(ADMIN_USER, *admin_user))
    print(
        f"""Try:
  curl -s -X POST {mesh.gateway_url}/api/v1/agents -H "X-API-Key: $(cat {admin.path})" \\
       -H 'content-type: application/json' -d '{{"task": "hello"}}'
  .venv/bin/godel agent spawn "write hello.txt" --runtime command -- sh -c 'echo hi > hello.txt && git add . && git commit -m hi'
  .venv/bin/godel events tail --type 'agent:*'
Stop everything with `make down`."""
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
