"""Limits per caller through the gateway: a key over its rate limit gets 429 (RESOURCE_EXHAUSTED
over gRPC) with the retry delay as a `retry-after` header and google.rpc.RetryInfo, while another
key's requests go on; the llm intent parser needs more than a viewer."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from godel.v1 import agent_service_pb2, agent_service_pb2_grpc
from tests.conftest import RunningMesh


def limited_key(godel: RunningMesh, per_second: int) -> str:
    with godel.http() as admin:
        made = admin.post(
            "/api/v1/auth/keys",
            json={"name": f"slow-{uuid.uuid4().hex[:6]}", "role": "viewer", "requestsPerSecond": per_second},
        )
    assert made.status_code == 200, made.text
    assert made.json()["apiKey"]["requestsPerSecond"] == per_second
    return str(made.json()["secret"])


def test_a_key_over_its_rate_limit_gets_429_while_another_keys_requests_succeed(godel: RunningMesh) -> None:
    slow, other = limited_key(godel, 3), godel.create_key("viewer")
    slow_codes: list[int] = []
    other_codes: list[int] = []
    limited = None
    with godel.http(slow) as slow_http, godel.http(other) as other_http:
        for _ in range(20):
            answer = slow_http.get("/api/v1/agents", params={"pageSize": 1})
            slow_codes.append(answer.status_code)
            if answer.status_code == 429:
                limited = answer
            other_codes.append(other_http.get("/api/v1/agents", params={"pageSize": 1}).status_code)
    assert slow_codes[:3] == [200, 200, 200] and 429 in slow_codes, slow_codes
    assert set(slow_codes) == {200, 429}, slow_codes
    assert other_codes == [200] * 20, other_codes
    assert limited is not None
    assert 1 <= int(limited.headers["retry-after"]) <= 1
    body = limited.json()
    assert (
        body["code"] == 8
        and "rate limit of this credential exceeded (3 requests per second)" in body["message"]
    )
    (retry,) = [d for d in body["details"] if d["@type"].endswith("google.rpc.RetryInfo")]
    assert 0 < float(retry["retryDelay"].rstrip("s")) <= 1


def test_grpc_callers_get_resource_exhausted_with_retry_info(godel: RunningMesh) -> None:
    slow = limited_key(godel, 2)
    request = agent_service_pb2.ListAgentsRequest(page_size=1)
    with godel.channel() as channel:
        stub = agent_service_pb2_grpc.AgentServiceStub(channel)
        for _ in range(20):
            try:
                stub.ListAgents(request, metadata=[("x-api-key", slow)], timeout=15)
            except grpc.RpcError as exc:
                failed = exc
                break
        else:
            pytest.fail("20 calls in a row were not limited to 2 per second")
    assert failed.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(failed)
    assert status is not None
    delays = []
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            delays.append(info.retry_delay.ToTimedelta().total_seconds())
    assert len(delays) == 1 and 0 < delays[0] <= 1
    assert ("retry-after", "1") in list(failed.trailing_metadata() or ())


def test_the_llm_intent_parser_needs_more_than_a_viewer(godel: RunningMesh) -> None:
    body = {"input": "create a team of 3 agents to review the auth code", "parser": "llm"}
    with godel.http(godel.create_key("viewer")) as viewer:
        refused = viewer.post("/api/v1/intent/parse", json=body)
        assert refused.status_code == 403, refused.text
        assert "may not use the llm parser (needs intent:create)" in refused.json()["message"]
        assert viewer.post("/api/v1/intent/parse", json={"input": body["input"]}).status_code == 200
    with godel.http(godel.create_key("developer")) as developer:
        # Allowed; this mesh has no LLM endpoint configured, so it stops one step later.
        assert developer.post("/api/v1/intent/parse", json=body).status_code == 400
