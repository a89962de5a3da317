"""``client.system``: health and capabilities of the mesh (SystemService)."""

from __future__ import annotations

from godel.v1 import system_service_pb2
from godel_client.methods import Mode, SubClient, unary


def _health() -> system_service_pb2.GetHealthRequest:
    """Overall health (public: needs no credential)."""
    return system_service_pb2.GetHealthRequest()


def _detailed_health() -> system_service_pb2.GetDetailedHealthRequest:
    """Health of every service, Kafka and each database (needs a credential)."""
    return system_service_pb2.GetDetailedHealthRequest()


def _capabilities() -> system_service_pb2.GetCapabilitiesRequest:
    """What this deployment can do (public)."""
    return system_service_pb2.GetCapabilitiesRequest()


def _agent_metrics() -> system_service_pb2.GetAgentMetricsRequest:
    """Agents per status, running now, spend (total and per model), recent failure rate."""
    return system_service_pb2.GetAgentMetricsRequest()


def _teams_metrics() -> system_service_pb2.GetTeamsMetricsRequest:
    """Teams per status, completion rate, queue depth and live members."""
    return system_service_pb2.GetTeamsMetricsRequest()


def _system_metrics() -> system_service_pb2.GetSystemMetricsRequest:
    """Per service up, memory and requests served; events stored, outbox, workers, alerts."""
    return system_service_pb2.GetSystemMetricsRequest()


class System(SubClient[Mode]):
    """The mesh as a whole."""

    SERVICE = system_service_pb2.DESCRIPTOR.services_by_name["SystemService"]

    health = unary("GetHealth", _health, system_service_pb2.GetHealthResponse)
    detailed_health = unary(
        "GetDetailedHealth", _detailed_health, system_service_pb2.GetDetailedHealthResponse
    )
    capabilities = unary("GetCapabilities", _capabilities, system_service_pb2.GetCapabilitiesResponse)
    agent_metrics = unary("GetAgentMetrics", _agent_metrics, system_service_pb2.GetAgentMetricsResponse)
    teams_metrics = unary("GetTeamsMetrics", _teams_metrics, system_service_pb2.GetTeamsMetricsResponse)
    system_metrics = unary("GetSystemMetrics", _system_metrics, system_service_pb2.GetSystemMetricsResponse)
