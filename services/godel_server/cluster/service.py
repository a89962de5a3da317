"""The cluster-service deployable: the federation registry (with its monitor and router), users,
tokens, API keys, system endpoints, and the autonomic loop (metrics, alerts, policies) with its
AlertService and AutonomicService."""

from __future__ import annotations

from pathlib import Path

from godel.v1 import (
    alert_service_pb2_grpc,
    auth_service_pb2_grpc,
    autonomic_service_pb2_grpc,
    cluster_service_pb2_grpc,
    system_service_pb2_grpc,
)
from godel_server.cluster.affinity import AffinityStore
from godel_server.cluster.alerts.manager import AlertManager
from godel_server.cluster.alerts.notify import Notifier
from godel_server.cluster.alerts.outcomes import OutcomeNotifications
from godel_server.cluster.alerts.servicer import AlertServicer
from godel_server.cluster.alerts.store import AlertStore
from godel_server.cluster.auth import AuthServicer
from godel_server.cluster.autonomic.actuator import Actuator
from godel_server.cluster.autonomic.loop import AutonomicLoop
from godel_server.cluster.autonomic.orchestrator import AutonomicOrchestrator
from godel_server.cluster.autonomic.servicer import AutonomicServicer
from godel_server.cluster.autonomic.store import PolicyStore
from godel_server.cluster.balancer import LoadBalancer
from godel_server.cluster.clusters import ClusterRegistry, HealthPolicy
from godel_server.cluster.collector import MetricsCollector
from godel_server.cluster.gauges import GAUGES
from godel_server.cluster.identity import LocalVerifier
from godel_server.cluster.monitor import ClusterMonitor
from godel_server.cluster.registry import ClusterServicer
from godel_server.cluster.router import Router
from godel_server.cluster.scoring import Timeouts
from godel_server.cluster.sessions import Sessions
from godel_server.cluster.system import SystemServicer
from godel_server.cluster.tokens import TokenSigner, load_secret
from godel_server.runtime.db_gauges import GaugeSpec
from godel_server.runtime.host import Service, ServiceHost
from godel_server.runtime.interceptors import KeyVerifier
from godel_server.runtime.limits import LoginAttempts


class ClusterService(Service):
    role = "cluster"
    migrations = Path(__file__).parent / "migrations"

    def __init__(self) -> None:
        # Background work started with the service (the registry's monitor, the autonomic loop).
        self._monitor: ClusterMonitor | None = None
        self._loop: AutonomicLoop | None = None
        self._notifier: Notifier | None = None
        self._actuator: Actuator | None = None
        self._stores: tuple[AlertStore, PolicyStore] | None = None
        self._outcomes: OutcomeNotifications | None = None

    def verifier(self, host: ServiceHost) -> KeyVerifier:
        s = host.settings
        signer = TokenSigner(load_secret(s), s.access_token_seconds)
        self._sessions = Sessions(
            host.db, signer, s.refresh_token_seconds, LoginAttempts(s.login_attempts_per_minute)
        )
        self._verifier = LocalVerifier(host.db, self._sessions)
        return self._verifier

    def gauges(self) -> GaugeSpec:
        return GAUGES

    def register(self, host: ServiceHost) -> None:
        s, db = host.settings, host.db
        federation = s.federation
        registry = ClusterRegistry(
            db,
            host.publisher,
            instance=s.instance_id,
            policy=HealthPolicy(
                Timeouts(federation.heartbeat_seconds, federation.degraded_after, federation.offline_after),
                federation.max_latency_ms,
                local_name=federation.cluster_name,
            ),
        )
        affinity = AffinityStore(host.db, federation.affinity_seconds)
        self._monitor = ClusterMonitor(
            registry, federation.probe_seconds, housekeeping=affinity.purge_expired
        )
        router = Router(registry, affinity, LoadBalancer(federation.routing))
        cluster_service_pb2_grpc.add_ClusterServiceServicer_to_server(
            ClusterServicer(registry, router, affinity, federation.heartbeat_seconds), host.server
        )
        # RPCs not implemented yet fall through to the generated base (UNIMPLEMENTED).
        auth_service_pb2_grpc.add_AuthServiceServicer_to_server(
            AuthServicer(db, self._verifier, self._sessions),
            host.server,
        )
        collector = MetricsCollector(s)
        system = SystemServicer(s, db, collector)
        system.dead_letters = host.dead_letters
        system_service_pb2_grpc.add_SystemServiceServicer_to_server(system, host.server)
        alert_store, policy_store = self._stores = AlertStore(db), PolicyStore(db)
        notifier = self._notifier = Notifier(s.instance_id, s.home)
        alerts = AlertManager(
            alert_store, host.publisher, notifier, instance=s.instance_id, interval=s.autonomic_interval
        )
        actuator = self._actuator = Actuator(s, db, notifier)
        self._outcomes = OutcomeNotifications(
            db, s.kafka, host.publisher, notifier, client_id=s.instance_id, dead_letters=host.dead_letters
        )
        orchestrator = AutonomicOrchestrator(
            policy_store, actuator, host.publisher, interval=s.autonomic_interval, dry_run=s.autonomic_dry_run
        )
        self._loop = AutonomicLoop(
            db, collector, alerts, orchestrator, instance=s.instance_id, interval=s.autonomic_interval
        )
        alert_service_pb2_grpc.add_AlertServiceServicer_to_server(AlertServicer(alert_store), host.server)
        autonomic_service_pb2_grpc.add_AutonomicServiceServicer_to_server(
            AutonomicServicer(policy_store, alert_store, collector, alerts, orchestrator), host.server
        )

    async def start(self, host: ServiceHost) -> None:
        assert self._stores and self._loop and self._monitor and self._outcomes
        for store in self._stores:
            await store.ensure_defaults()
        self._monitor.start()
        self._loop.start()
        self._outcomes.start()

    async def stop(self, host: ServiceHost) -> None:
        if self._outcomes:
            await self._outcomes.stop()
        if self._loop:
            await self._loop.stop()
        if self._actuator:
            await self._actuator.close()
        if self._notifier:
            await self._notifier.close()
        if self._monitor:
            await self._monitor.stop()
