"""The cluster-service deployable: federation registry, API keys and system endpoints."""

from __future__ import annotations

from pathlib import Path

from godel.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    cluster_service_pb2,
    cluster_service_pb2_grpc,
    system_service_pb2,
    system_service_pb2_grpc,
)
from godel_server.cluster.auth import AuthServicer
from godel_server.cluster.keys import LocalKeyVerifier
from godel_server.cluster.registry import ClusterServicer
from godel_server.cluster.system import SystemServicer
from godel_server.runtime.host import Service, ServiceHost
from godel_server.runtime.interceptors import KeyVerifier


class ClusterService(Service):
    role = "cluster"
    grpc_services = (
        cluster_service_pb2.DESCRIPTOR.services_by_name["ClusterService"].full_name,
        auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
        system_service_pb2.DESCRIPTOR.services_by_name["SystemService"].full_name,
    )
    migrations = Path(__file__).parent / "migrations"

    def verifier(self, host: ServiceHost) -> KeyVerifier:
        self._verifier = LocalKeyVerifier(host.db)
        return self._verifier

    def register(self, host: ServiceHost) -> None:
        # RPCs not implemented yet fall through to the generated base (UNIMPLEMENTED).
        cluster_service_pb2_grpc.add_ClusterServiceServicer_to_server(
            ClusterServicer(host.db, host.publisher, instance=host.settings.instance_id),  # type: ignore[abstract]
            host.server,
        )
        auth_service_pb2_grpc.add_AuthServiceServicer_to_server(
            AuthServicer(host.db, self._verifier),  # type: ignore[abstract]
            host.server,
        )
        system_service_pb2_grpc.add_SystemServiceServicer_to_server(
            SystemServicer(host.settings, host.db),  # type: ignore[abstract]
            host.server,
        )
