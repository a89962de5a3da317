"""`make up`: Kafka (KRaft), optionally PostgreSQL, the four services and the Envoy gateway on
127.0.0.1, left running in the background; prints the endpoints and the admin key.

Environment: GODEL_HOME (default <repo>/.data), GODEL_DATABASE_URL (unset = SQLite files; a
postgresql:// URL = that server; `local` = a PostgreSQL started here on 127.0.0.1:5433),
GODEL_GATEWAY_PORT (7373), GODEL_GATEWAY_ADMIN_PORT (7374), GODEL_KAFKA_PORT (9092),
GODEL_KAFKA_CONTROLLER_PORT (9093), GODEL_<ROLE>_PORT and GODEL_<ROLE>_ADMIN_PORT."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from godel_deploy import state
from godel_deploy.kafka import KafkaBroker
from godel_deploy.mesh import ROLES, Mesh, MeshPorts, ensure_repo
from godel_deploy.paths import data_dir
from godel_deploy.ports import port_open
from godel_deploy.postgres import PostgresServer

LOCAL_PG_PORT = 5433


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


def _admin_key(mesh: Mesh, key_file: Path) -> str:
    secret = mesh.create_api_key("admin", "admin", if_none=True)
    if secret is None:
        return "exists"
    key_file.write_text(secret + "\n")
    key_file.chmod(0o600)
    return "created"


def main() -> int:
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
        kafka_port = int(os.environ.get("GODEL_KAFKA_PORT", "9092"))
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
        mesh = Mesh(root, broker.bootstrap, ports=ports, database_url=database_url)
        mesh.logs.mkdir(parents=True, exist_ok=True)
        key_file = root / "admin.key"
        key_state = _admin_key(mesh, key_file)

        ensure_repo(mesh.default_repo)
        _step(f"services ({'PostgreSQL' if database_url else 'SQLite files in ' + str(root)})")
        for role in ROLES:
            started_procs.append(state.record(mesh.start_service(role).pid, f"{role}-service"))
        for role in ROLES:
            mesh.wait_service(role)
            print(
                f"    {role}-service  grpc {mesh.address(role)}  metrics http://127.0.0.1:{ports.admin[role]}/metrics"
            )
        mesh.ensure_service_keys()
        _step("gateway (Envoy)")
        gateway = mesh.start_gateway()
        started_procs.append(state.record(gateway.pid, "gateway"))
        _step("worker (runs agents; runtimes: command, openai)")
        worker = mesh.start_worker("worker-1")
        started_procs.append(state.record(worker.pid, "worker-1"))
        print(f"    worker-1  capacity {mesh.worker_capacity}  default repo {mesh.default_repo}")
        for proc in [broker.process, *mesh.processes().values()]:
            proc.detach()
        state.save(state_file, started_procs, {"gateway": mesh.gateway_address})
    except BaseException:
        for p in reversed(started_procs):
            state.stop(p)
        raise

    key = key_file.read_text().strip() if key_file.exists() else ""
    print(
        f"""
Godel is up ({time.monotonic() - t0:.1f}s). Logs: {mesh.logs}

  REST + gRPC gateway   {mesh.gateway_url}   (e.g. {mesh.gateway_url}/api/v1/agents)
  OpenAPI               {mesh.gateway_url}/api/v1/openapi.json
  Events (SSE)          {mesh.gateway_url}/api/v1/events/stream?pattern=agent:*
  Events (WebSocket)    {mesh.events_ws_url}?token=<API key>
  Kafka                 {broker.bootstrap}   (topics godel.<domain>.events)
  Envoy admin           http://127.0.0.1:{ports.gateway_admin}
"""
    )
    if key_state == "created":
        print(f"  Admin API key (shown once; also saved to {key_file}, mode 600):\n\n    {key}\n")
    elif key:
        print(f"  Admin API key: in {key_file} (created by the first `make up`)\n")
    else:
        print(
            "  Admin API key: created by an earlier `make up`; its file is gone — make another with\n"
            "    `.venv/bin/godel-server keys create --name admin2 --role admin`\n"
        )
    print(
        f"""Try:
  curl -s -X POST {mesh.gateway_url}/api/v1/agents -H "X-API-Key: $(cat {key_file})" \\
       -H 'content-type: application/json' -d '{{"task": "hello"}}'
  .venv/bin/godel agent spawn "write hello.txt" --runtime command -- sh -c 'echo hi > hello.txt && git add . && git commit -m hi'
  .venv/bin/godel events tail --type 'agent:*'
Stop everything with `make down`."""
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
