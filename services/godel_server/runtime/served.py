"""What a service process serves over gRPC, derived from its code instead of kept in a list: every
service in `Service.grpc_services` and, per RPC, whether the role's servicer implements it or leaves
it to the generated base class (which answers UNIMPLEMENTED).

Each process publishes this as the `godel_grpc_method_info` series on its admin port, and the agent
service the runtimes its connected workers offer as `godel_worker_runtimes`; the cluster service
reads both from every role to answer GetCapabilities, so capabilities say what the running processes
serve without the cluster service importing another deployable's code."""

from __future__ import annotations

import importlib
from typing import Protocol

from google.protobuf import descriptor_pool
from prometheus_client import Gauge

METHOD_INFO_METRIC = "godel_grpc_method_info"
METHOD_INFO = Gauge(
    METHOD_INFO_METRIC,
    'gRPC methods this process serves (1 each); implemented="false" answers UNIMPLEMENTED',
    ["method", "implemented"],
)
WORKER_RUNTIMES_METRIC = "godel_worker_runtimes"
WORKER_RUNTIMES = Gauge(WORKER_RUNTIMES_METRIC, "Connected workers offering each runtime", ["runtime"])


class Deployable(Protocol):
    """A `runtime.host.Service`: its servicers live in the package of its class."""

    grpc_services: tuple[str, ...]


def servicer_base(service: str) -> type:
    """The generated `<Name>Servicer` base class of a gRPC service, e.g. "godel.v1.AgentService"."""
    descriptor = descriptor_pool.Default().FindServiceByName(service)
    module = importlib.import_module(
        descriptor.file.name.removesuffix(".proto").replace("/", ".") + "_pb2_grpc"
    )
    base: type = getattr(module, f"{descriptor.name}Servicer")
    return base


def servicer_in(service: str, package: str) -> type:
    """The one servicer class of `service` defined under `package` (e.g. "godel_server.agent")."""
    subclasses: list[type] = servicer_base(service).__subclasses__()
    found = [c for c in subclasses if c.__module__.startswith(package + ".")]
    if len(found) != 1:
        names = ", ".join(f"{c.__module__}.{c.__qualname__}" for c in found) or "none"
        raise RuntimeError(f"expected one servicer of {service} in {package}, found {names}")
    return found[0]


def method_status(service: str, servicer: type) -> dict[str, bool]:
    """'/<service>/<Method>' → whether `servicer` implements it (False: the generated base answers)."""
    base = servicer_base(service)
    methods = descriptor_pool.Default().FindServiceByName(service).methods
    return {f"/{service}/{m.name}": getattr(servicer, m.name) is not getattr(base, m.name) for m in methods}


def served_methods(service: Deployable) -> dict[str, bool]:
    """Every RPC of the services a role registers, with whether its servicer implements it."""
    package = type(service).__module__.rpartition(".")[0]
    status: dict[str, bool] = {}
    for name in service.grpc_services:
        status.update(method_status(name, servicer_in(name, package)))
    return status


def publish(service: Deployable) -> None:
    """Sets the `godel_grpc_method_info` series of this process."""
    for method, implemented in served_methods(service).items():
        METHOD_INFO.labels(method, "true" if implemented else "false").set(1)
