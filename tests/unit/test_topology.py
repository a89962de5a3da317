"""The one topology table (runtime/topology.py): every service of the contract is served by one
process, and the configuration, the launcher, the gateway and the deployables all take their
ports and services from it."""

from __future__ import annotations

from pathlib import Path

import yaml

from godel_deploy import gateway
from godel_deploy.mesh import ROLES as START_ORDER
from godel_deploy.mesh import MeshPorts
from godel_server.__main__ import service_class
from godel_server.runtime.config import load_settings, load_worker_settings
from godel_server.runtime.rbac import API_SERVICES
from godel_server.runtime.topology import (
    EVENT_WS_PORT,
    GATEWAY_ADMIN_PORT,
    GATEWAY_PORT,
    KAFKA_PORT,
    PROCESSES,
    ROLES,
    role_serving,
)


def test_every_service_of_the_contract_is_served_by_exactly_one_process() -> None:
    served = [s for p in PROCESSES.values() for s in p.services]
    assert len(served) == len(set(served))
    assert set(served) == {s.full_name for s in API_SERVICES}
    assert role_serving("godel.v1.WorkerService") == "agent"
    assert role_serving("godel.v1.IntentService") == "team"


def test_the_deployables_serve_what_the_table_says() -> None:
    for role in ROLES:
        assert service_class(role).role == role
        assert service_class(role).grpc_services == PROCESSES[role].services


def test_ports_are_distinct() -> None:
    ports = [p.grpc_port for p in PROCESSES.values()] + [p.admin_port for p in PROCESSES.values()]
    ports += [GATEWAY_PORT, GATEWAY_ADMIN_PORT, EVENT_WS_PORT, KAFKA_PORT]
    assert len(ports) == len(set(ports))


def test_the_configuration_defaults_come_from_the_table(tmp_path: Path) -> None:
    for role in ROLES:
        settings = load_settings(role, {"GODEL_HOME": str(tmp_path)})
        assert (settings.grpc_port, settings.admin_port) == (
            PROCESSES[role].grpc_port,
            PROCESSES[role].admin_port,
        )
        assert settings.service_addrs == {r: f"127.0.0.1:{p.grpc_port}" for r, p in PROCESSES.items()}
        assert settings.event_ws_port == EVENT_WS_PORT
        assert settings.kafka.bootstrap == f"127.0.0.1:{KAFKA_PORT}"
    worker = load_worker_settings({"GODEL_HOME": str(tmp_path)})
    assert worker.connect == (f"127.0.0.1:{PROCESSES['agent'].grpc_port}",)


def test_the_launcher_starts_every_role_on_the_tables_ports() -> None:
    assert sorted(START_ORDER) == sorted(ROLES)
    ports = MeshPorts()
    assert (ports.gateway, ports.gateway_admin, ports.event_ws) == (
        GATEWAY_PORT,
        GATEWAY_ADMIN_PORT,
        EVENT_WS_PORT,
    )
    assert ports.grpc == {r: p.grpc_port for r, p in PROCESSES.items()}
    assert ports.admin == {r: p.admin_port for r, p in PROCESSES.items()}


def test_the_gateway_sends_each_role_to_its_port(tmp_path: Path) -> None:
    config = yaml.safe_load(gateway._render_defaults(tmp_path).read_text())
    upstreams = {
        c["name"]: c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
            "socket_address"
        ]["port_value"]
        for c in config["static_resources"]["clusters"]
    }
    assert {r: upstreams[f"godel_{r}"] for r in ROLES} == {r: p.grpc_port for r, p in PROCESSES.items()}
    assert upstreams["godel_event_ws"] == EVENT_WS_PORT
    listener = config["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"]["port_value"] == GATEWAY_PORT
