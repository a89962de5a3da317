"""IntentService: natural language to intents, complexity reports and team configurations
(spec §4.4). Deterministic unless a request asks for the llm parser."""

from __future__ import annotations

import math

import grpc

from godel.v1 import intent_pb2, intent_service_pb2, intent_service_pb2_grpc, team_pb2
from godel_server.runtime.context import current_caller
from godel_server.runtime.errors import FailedPreconditionError
from godel_server.runtime.rbac import require_permission
from godel_server.runtime.validation import Violations
from godel_server.team.intent.complexity import analyze_complexity
from godel_server.team.intent.llm import parse_with_llm
from godel_server.team.intent.parser import MAX_INPUT_LEN, parse_intent
from godel_server.team.intent.swarm import generate_swarm_config

MAX_TASK_LEN = 10_000
MAX_AGENTS = 1000
MAX_MODELS = 20
MAX_MODEL_LEN = 255
PARSERS = ("deterministic", "llm")


class IntentServicer(intent_service_pb2_grpc.IntentServiceServicer):
    def __init__(self, *, openai_base_url: str, openai_api_key: str, default_model: str) -> None:
        self._base_url = openai_base_url
        self._api_key = openai_api_key
        self._model = default_model

    def __repr__(self) -> str:
        return f"IntentServicer(openai_base_url={self._base_url!r}, default_model={self._model!r})"

    async def ParseIntent(
        self, request: intent_service_pb2.ParseIntentRequest, context: grpc.aio.ServicerContext
    ) -> intent_pb2.Intent:
        v = Violations()
        v.require("input", request.input, max_len=MAX_INPUT_LEN)
        if request.parser not in ("", *PARSERS):
            v.add("parser", f"must be one of {', '.join(PARSERS)}")
        v.raise_if_any()
        if request.parser != "llm":
            return parse_intent(request.input)
        # The llm parser spends on its endpoint: more than the `intent:read` of this RPC.
        require_permission(current_caller(), "intent", "create", what="use the llm parser")
        if not self._base_url:
            raise FailedPreconditionError(
                "the llm parser needs an OpenAI-compatible endpoint; none is configured"
            )
        return await parse_with_llm(request.input, self._base_url, self._api_key, self._model)

    async def AnalyzeComplexity(
        self, request: intent_service_pb2.AnalyzeComplexityRequest, context: grpc.aio.ServicerContext
    ) -> intent_pb2.ComplexityReport:
        v = Violations()
        v.require("task", request.task, max_len=MAX_TASK_LEN)
        v.raise_if_any()
        return analyze_complexity(request.task)

    async def GenerateSwarmConfig(
        self, request: intent_service_pb2.GenerateSwarmConfigRequest, context: grpc.aio.ServicerContext
    ) -> intent_pb2.SwarmConfig:
        v = Violations()
        v.require("task", request.task, max_len=MAX_TASK_LEN)
        constraints = request.constraints if request.HasField("constraints") else None
        if constraints is not None:
            _check_constraints(v, constraints)
        v.raise_if_any()
        return generate_swarm_config(request.task, constraints)


def _check_constraints(v: Violations, c: intent_pb2.SwarmConstraints) -> None:
    if not 0 <= c.max_agents <= MAX_AGENTS:
        v.add("constraints.max_agents", f"must be between 0 and {MAX_AGENTS}")
    if c.HasField("budget_limit") and not (math.isfinite(c.budget_limit) and c.budget_limit > 0):
        v.add("constraints.budget_limit", "must be greater than 0")
    if len(c.models) > MAX_MODELS:
        v.add("constraints.models", f"must hold at most {MAX_MODELS} models")
    for i, model in enumerate(c.models):
        if not model.strip():
            v.add(f"constraints.models[{i}]", "must not be empty")
        elif len(model) > MAX_MODEL_LEN:
            v.add(f"constraints.models[{i}]", f"must be at most {MAX_MODEL_LEN} characters")
    if c.strategy not in team_pb2.ExecutionStrategy.values():
        v.add("constraints.strategy", "is not a known execution strategy")
