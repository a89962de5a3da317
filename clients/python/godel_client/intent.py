"""``client.intent``: natural language to intents, complexity reports and team configurations
(IntentService)."""

from __future__ import annotations

from collections.abc import Iterable

from godel.v1 import intent_pb2, intent_service_pb2, team_pb2
from godel_client.enums import StrategyLike, execution_strategy
from godel_client.methods import Mode, SubClient, unary


def _parse(text: str, *, parser: str | None = None) -> intent_service_pb2.ParseIntentRequest:
    """What a natural-language request asks for; ``parser`` is ``deterministic`` (default) or
    ``llm``."""
    return intent_service_pb2.ParseIntentRequest(input=text, parser=parser or "")


def _analyze_complexity(task: str) -> intent_service_pb2.AnalyzeComplexityRequest:
    """How complex a task looks (the figures that size a team)."""
    return intent_service_pb2.AnalyzeComplexityRequest(task=task)


def _swarm_config(
    task: str,
    *,
    max_agents: int | None = None,
    budget_limit: float | None = None,
    models: Iterable[str] = (),
    strategy: StrategyLike | None = None,
) -> intent_service_pb2.GenerateSwarmConfigRequest:
    """A team configuration (size, roles, strategy) for ``task`` within the given limits."""
    constraints = intent_pb2.SwarmConstraints(
        max_agents=max_agents or 0,
        budget_limit=budget_limit,
        models=list(models),
        strategy=execution_strategy(strategy)
        if strategy is not None
        else team_pb2.EXECUTION_STRATEGY_UNSPECIFIED,
    )
    return intent_service_pb2.GenerateSwarmConfigRequest(
        task=task, constraints=constraints if constraints.ByteSize() else None
    )


class Intent(SubClient[Mode]):
    """What a request in plain words asks for, and the team that would do it."""

    SERVICE = intent_service_pb2.DESCRIPTOR.services_by_name["IntentService"]

    parse = unary("ParseIntent", _parse, intent_pb2.Intent)
    analyze_complexity = unary("AnalyzeComplexity", _analyze_complexity, intent_pb2.ComplexityReport)
    swarm_config = unary("GenerateSwarmConfig", _swarm_config, intent_pb2.SwarmConfig)
