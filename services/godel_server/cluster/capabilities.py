"""GetCapabilities from what the running processes serve: every role publishes its gRPC methods
(`godel_grpc_method_info`, implemented or not) and the agent service the runtimes of its connected
workers (`godel_worker_runtimes`) on its admin port (see `runtime/served.py`); this module reads them
from every role. Services are those with a method served, features the implemented methods, so an RPC
that answers UNIMPLEMENTED is never listed as a feature. Strategies come from the contract's enum."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from godel.v1 import system_service_pb2, team_pb2
from godel_server import __version__
from godel_server.cluster.metrics import scrape
from godel_server.runtime.config import Settings
from godel_server.runtime.served import METHOD_INFO_METRIC, WORKER_RUNTIMES_METRIC
from godel_server.runtime.topics import ALL_TOPICS, kafka_name
from godel_server.runtime.topology import ROLES, Role

REFRESH_SECONDS = 10.0  # a role's answer is reused this long (the endpoint is public: no scrape per call)
STRATEGY_PREFIX = "EXECUTION_STRATEGY_"


@dataclass(frozen=True)
class Served:
    """What one role's admin port says it serves."""

    methods: dict[str, bool] = field(default_factory=dict)  # "/godel.v1.X/Method" -> implemented
    runtimes: frozenset[str] = frozenset()


def served_from(exposition: str) -> Served:
    """Reads the two series of `runtime/served.py` out of a Prometheus exposition."""
    methods: dict[str, bool] = {}
    runtimes: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        if family.name == METHOD_INFO_METRIC:
            for sample in family.samples:
                methods[sample.labels["method"]] = sample.labels["implemented"] == "true"
        elif family.name == WORKER_RUNTIMES_METRIC:
            runtimes.update(s.labels["runtime"] for s in family.samples if s.value > 0)
    return Served(methods, frozenset(runtimes))


def execution_strategies() -> list[str]:
    """The strategies of the contract's ExecutionStrategy enum, as the API names them ("map-reduce")."""
    return [
        v.name.removeprefix(STRATEGY_PREFIX).lower().replace("_", "-")
        for v in team_pb2.ExecutionStrategy.DESCRIPTOR.values
        if v.number != team_pb2.EXECUTION_STRATEGY_UNSPECIFIED
    ]


def capabilities_of(served: list[Served]) -> system_service_pb2.GetCapabilitiesResponse:
    methods = {m: ok for s in served for m, ok in s.methods.items()}
    return system_service_pb2.GetCapabilitiesResponse(
        version=__version__,
        api_version="v1",
        services=sorted({m.split("/")[1] for m in methods}),
        features=sorted(m.lstrip("/") for m, ok in methods.items() if ok),
        runtimes=sorted({r for s in served for r in s.runtimes}),
        execution_strategies=execution_strategies(),
        auth_methods=["api_key"],
        topics=[kafka_name(t) for t in ALL_TOPICS],
    )


class Capabilities:
    """Each role's last answer. A role is asked again when its last question is REFRESH_SECONDS old,
    whether it answered or not; one that did not answer keeps its previous answer, if any."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._asked: dict[Role, float] = {}
        self._served: dict[Role, Served] = {}
        self._lock = asyncio.Lock()

    async def current(self) -> system_service_pb2.GetCapabilitiesResponse:
        async with self._lock:
            now = time.monotonic()
            due = tuple(r for r in ROLES if r not in self._asked or now - self._asked[r] >= REFRESH_SECONDS)
            if due:
                for role, text in (await scrape(self._settings, due)).items():
                    self._asked[role] = now
                    served = served_from(text)
                    if served.methods:
                        self._served[role] = served
            return capabilities_of(list(self._served.values()))
