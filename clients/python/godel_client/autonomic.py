"""``client.autonomic``: the autonomic loop of the mesh (AutonomicService): its self-healing and
autoscaling policies, and what they would do now."""

from __future__ import annotations

from godel.v1 import autonomic_pb2, autonomic_service_pb2
from godel_client.methods import Mode, SubClient, by_id, paged, unary


def _policies(page_size: int = 100) -> autonomic_service_pb2.ListPoliciesRequest:
    """Every policy (the spec's self-healing defaults first), fetched page by page."""
    return autonomic_service_pb2.ListPoliciesRequest(page_size=page_size)


def _recommendations() -> autonomic_service_pb2.GetRecommendationsRequest:
    """What the enabled policies would do now, without acting (the dry run)."""
    return autonomic_service_pb2.GetRecommendationsRequest()


class Autonomic(SubClient[Mode]):
    """Autonomic policies and recommendations."""

    SERVICE = autonomic_service_pb2.DESCRIPTOR.services_by_name["AutonomicService"]

    policies = paged(
        "ListPolicies", _policies, autonomic_service_pb2.ListPoliciesResponse, lambda page: page.policies
    )
    get_policy = unary(
        "GetPolicy", by_id(autonomic_service_pb2.GetPolicyRequest), autonomic_pb2.AutonomicPolicy
    )
    delete_policy = unary(
        "DeletePolicy",
        by_id(autonomic_service_pb2.DeletePolicyRequest),
        autonomic_service_pb2.DeletePolicyResponse,
    )
    recommendations = unary(
        "GetRecommendations", _recommendations, autonomic_service_pb2.GetRecommendationsResponse
    )
