"""GetCapabilities is derived from what each role serves: every gRPC service of the contract is served
by a role, an RPC left to the generated base is never a feature, and every RPC is implemented (as
README.md says)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator
from typing import cast

import grpc
import pytest
from google.protobuf import descriptor_pool
from prometheus_client import generate_latest

import godel.v1
from godel.v1 import worker_service_pb2 as wpb
from godel_server.__main__ import service_for
from godel_server.agent.runner import RunCoordinator
from godel_server.agent.worker_servicer import WorkerServicer
from godel_server.agent.workers import WorkerRegistry
from godel_server.cluster.capabilities import capabilities_of, execution_strategies, served_from
from godel_server.runtime.bounds import bounds
from godel_server.runtime.errors import ValidationError
from godel_server.runtime.served import publish, served_methods, servicer_in
from godel_server.runtime.topology import ROLES
from godel_server.team.teams.strategies import STRATEGIES


def contract_services() -> set[str]:
    """Every service declared in proto/godel/v1 (all generated modules imported)."""
    names: set[str] = set()
    for module in pkgutil.iter_modules(godel.v1.__path__):
        if module.name.endswith("_pb2"):
            names.update(importlib.import_module(f"godel.v1.{module.name}").DESCRIPTOR.services_by_name)
    return {descriptor_pool.Default().FindServiceByName(f"godel.v1.{n}").full_name for n in names}


def all_served() -> dict[str, bool]:
    methods: dict[str, bool] = {}
    for role in ROLES:
        methods.update(served_methods(service_for(role)))
    return methods


def test_every_contract_service_is_served_by_one_role() -> None:
    roles_of: dict[str, list[str]] = {}
    for role in ROLES:
        for name in service_for(role).grpc_services:
            roles_of.setdefault(name, []).append(role)
    assert set(roles_of) == contract_services()
    assert all(len(roles) == 1 for roles in roles_of.values()), roles_of


def test_every_rpc_is_implemented_as_the_readme_says() -> None:
    not_built = {m for m, implemented in all_served().items() if not implemented}
    assert not_built == set(), "README.md says every RPC is implemented"


def test_capabilities_are_read_back_from_the_published_series() -> None:
    for role in ROLES:
        publish(service_for(role))
    registry = WorkerRegistry()
    registry.add(wpb.WorkerHello(worker_id="w1", capacity=2, runtimes=["command", "openai"]))
    conn = registry.add(wpb.WorkerHello(worker_id="w2", capacity=2, runtimes=["custom"]))
    registry.remove(conn)
    caps = capabilities_of([served_from(generate_latest().decode())])
    served = all_served()
    assert set(caps.services) == contract_services()
    assert set(caps.features) == {m.lstrip("/") for m, ok in served.items() if ok}
    assert "godel.v1.AgentService/CreateAgent" in caps.features
    assert not {m.lstrip("/") for m, ok in served.items() if not ok} & set(caps.features)
    assert list(caps.runtimes) == ["command", "openai"]  # "custom" left with its worker


def test_strategies_are_those_the_team_service_runs() -> None:
    assert sorted(execution_strategies()) == sorted(STRATEGIES)


def test_a_role_without_its_servicer_is_refused() -> None:
    with pytest.raises(RuntimeError, match=r"expected one servicer of godel\.v1\.AgentService"):
        servicer_in("godel.v1.AgentService", "godel_server.team")


MAX_RUNTIMES = bounds(wpb.WorkerHello.DESCRIPTOR.fields_by_name["runtimes"]).max_items


@pytest.mark.parametrize(
    ("runtimes", "field"),
    [
        ([f"r{i}" for i in range(MAX_RUNTIMES + 1)], "hello.runtimes"),
        (["command", "x" * 65], "hello.runtimes[1]"),
        (["command", " "], "hello.runtimes[1]"),
    ],
)
async def test_runtime_names_a_worker_announces_are_bounded(runtimes: list[str], field: str) -> None:
    """They become labels of godel_worker_runtimes; a refused hello registers nothing."""
    registry = WorkerRegistry()
    servicer = WorkerServicer(cast(RunCoordinator, None), registry, run_lease_seconds=10.0)

    async def hello() -> AsyncIterator[wpb.ConnectRequest]:
        yield wpb.ConnectRequest(hello=wpb.WorkerHello(worker_id="w", capacity=1, runtimes=runtimes))

    with pytest.raises(ValidationError) as refused:
        await servicer.Connect(hello(), cast(grpc.aio.ServicerContext, None))
    assert [v.field for v in refused.value.violations] == [field]
    assert registry.workers == {}
