"""Intent components (spec §4.4): rule-based parsing, complexity, swarm configs, the optional LLM
parser against the scripted FakeOpenAI endpoint, and the IntentService request checks."""

from __future__ import annotations

import json
import logging
from typing import Any, cast

import grpc
import pytest
from google.protobuf import json_format

from godel.v1 import intent_pb2, intent_service_pb2, team_pb2
from godel_server.runtime.apikeys import ROLES
from godel_server.runtime.context import Caller, caller_var
from godel_server.runtime.errors import FailedPreconditionError, PermissionDeniedError, ValidationError
from godel_server.team.intent.complexity import analyze_complexity, weighted_score
from godel_server.team.intent.llm import chat_url, intent_from_reply, parse_with_llm
from godel_server.team.intent.parser import parse_intent, strategy_mention
from godel_server.team.intent.servicer import IntentServicer
from godel_server.team.intent.swarm import ROLE_TEMPLATES, generate_swarm_config, slug
from tests.fakes.openai_server import FakeOpenAI, final, http_error

pytestmark = pytest.mark.timeout(60)

SPEC_EXAMPLE = "Create a team of 3 agents to review the authentication code"
KEY = "sk-intent-secret-456"
CTX = cast(grpc.aio.ServicerContext, None)


def params(intent: intent_pb2.Intent) -> dict[str, Any]:
    return json_format.MessageToDict(intent.parameters)


def entities(intent: intent_pb2.Intent) -> list[tuple[str, str, str]]:
    return [(e.name, e.value, e.type) for e in intent.entities]


def violations(exc: pytest.ExceptionInfo[ValidationError]) -> dict[str, str]:
    return {v.field: v.description for v in exc.value.violations}


# --- parser -----------------------------------------------------------------------------------


def test_spec_example() -> None:
    intent = parse_intent(SPEC_EXAMPLE)
    assert intent.type == intent_pb2.INTENT_TYPE_CREATE_TEAM
    assert intent.confidence == pytest.approx(0.95)
    assert intent.original == SPEC_EXAMPLE
    assert entities(intent) == [("size", "3", "number"), ("task", "review authentication code", "task")]
    assert params(intent) == {"size": 3, "task": "review authentication code"}
    size, task = intent.entities
    assert SPEC_EXAMPLE[size.start : size.end] == "3"
    assert SPEC_EXAMPLE[task.start : task.end] == "review the authentication code"
    assert all(0 < e.confidence <= 1 for e in intent.entities)


def test_create_team_with_modifiers() -> None:
    text = "Please create a swarm of five agents in parallel to refactor the payment service using gpt-4o with a budget of $5"
    intent = parse_intent(text)
    assert intent.type == intent_pb2.INTENT_TYPE_CREATE_TEAM
    assert params(intent) == {
        "size": 5,
        "task": "refactor payment service",
        "strategy": "parallel",
        "model": "gpt-4o",
        "budget": 5,
    }
    by_name = {e.name: e for e in intent.entities}
    assert text[by_name["size"].start : by_name["size"].end] == "five"
    assert text[by_name["model"].start : by_name["model"].end] == "gpt-4o"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Form a squad of 4 agents to migrate the database as a pipeline",
            {"strategy": "pipeline", "size": 4},
        ),
        ("assemble a group of 2 agents to process each file using map-reduce", {"strategy": "map-reduce"}),
        (
            "create a crew of twelve agents to build a compiler with a tree strategy",
            {"strategy": "tree", "size": 12},
        ),
        ("create a team to review code, budget of 5 dollars", {"budget": 5, "task": "review code"}),
        ("Create a team for $7.50 to review the docs", {"budget": 7.5, "task": "review docs"}),
        ("create a 3-agent team: write docs for the API", {"size": 3, "task": "write docs for API"}),
        ("Create a team to review the auth code with 3 agents", {"size": 3, "task": "review auth code"}),
    ],
)
def test_create_team_variants(text: str, expected: dict[str, Any]) -> None:
    intent = parse_intent(text)
    assert intent.type == intent_pb2.INTENT_TYPE_CREATE_TEAM
    got = params(intent)
    assert {k: got.get(k) for k in expected} == expected


def test_create_team_without_size_is_less_certain() -> None:
    intent = parse_intent("Create a team to write the release notes")
    assert params(intent) == {"task": "write release notes"}
    assert intent.confidence < 0.95


@pytest.mark.parametrize("text", ["Build the team dashboard", "Write a progress bar component"])
def test_keywords_inside_a_task_do_not_decide(text: str) -> None:
    assert parse_intent(text).type == intent_pb2.INTENT_TYPE_CUSTOM


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("spawn an agent to fix the flaky test", {"count": 1, "task": "fix flaky test"}),
        (
            "start 2 agents to write unit tests for the parser",
            {"count": 2, "task": "write unit tests for parser"},
        ),
        ("Spawn a gpt-4o agent to triage issues", {"count": 1, "task": "triage issues", "model": "gpt-4o"}),
    ],
)
def test_spawn_agent(text: str, expected: dict[str, Any]) -> None:
    intent = parse_intent(text)
    assert intent.type == intent_pb2.INTENT_TYPE_SPAWN_AGENT
    assert params(intent) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("run workflow deploy.yaml", {"workflow": "deploy.yaml"}),
        ("please run the nightly workflow", {"workflow": "nightly"}),
        ("execute workflow release with env=prod", {"workflow": "release", "inputs": {"env": "prod"}}),
    ],
)
def test_execute_workflow(text: str, expected: dict[str, Any]) -> None:
    intent = parse_intent(text)
    assert intent.type == intent_pb2.INTENT_TYPE_EXECUTE_WORKFLOW
    assert params(intent) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("what is the status of team X", {"target": "team", "id": "X"}),
        ("What's the status of agent-123?", {"target": "agent", "id": "agent-123"}),
        ("show agents", {"target": "agent"}),
        ("list running agents", {"target": "agent", "filter": "running"}),
        ("Is agent 7 still running?", {"target": "agent", "id": "7"}),
    ],
)
def test_query_status(text: str, expected: dict[str, Any]) -> None:
    intent = parse_intent(text)
    assert intent.type == intent_pb2.INTENT_TYPE_QUERY_STATUS
    assert params(intent) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stop agent abc123", {"action": "stop", "target": "agent", "id": "abc123"}),
        ("Could you kill agent-42?", {"action": "kill", "target": "agent", "id": "agent-42"}),
        ("cancel task 7", {"action": "cancel", "target": "task", "id": "7"}),
        ("stop all agents", {"action": "stop", "target": "agent", "all": True}),
    ],
)
def test_stop_task(text: str, expected: dict[str, Any]) -> None:
    intent = parse_intent(text)
    assert intent.type == intent_pb2.INTENT_TYPE_STOP_TASK
    assert params(intent) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("scale team X to 5 agents", {"team": "X", "size": 5}),
        ("scale up the backend team to eight", {"team": "backend", "size": 8}),
        ("shrink team alpha by 2", {"team": "alpha", "delta": -2}),
        ("add 3 agents to team alpha", {"team": "alpha", "delta": 3}),
    ],
)
def test_scale_team(text: str, expected: dict[str, Any]) -> None:
    intent = parse_intent(text)
    assert intent.type == intent_pb2.INTENT_TYPE_SCALE_TEAM
    assert params(intent) == expected


def test_custom_fallback() -> None:
    intent = parse_intent("Write a poem about cats")
    assert intent.type == intent_pb2.INTENT_TYPE_CUSTOM
    assert intent.confidence < 0.5
    assert params(intent) == {"text": "Write a poem about cats"}


def test_parser_is_deterministic() -> None:
    assert parse_intent(SPEC_EXAMPLE) == parse_intent(SPEC_EXAMPLE)


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_empty_input_is_invalid(text: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_intent(text)
    assert "input" in violations(exc)


def test_strategy_mention() -> None:
    assert strategy_mention("review it in parallel") == "parallel"
    assert strategy_mention("build the deploy pipeline") is None
    assert strategy_mention("run it as a pipeline") == "pipeline"


# --- complexity -------------------------------------------------------------------------------


def test_simple_task() -> None:
    report = analyze_complexity("Fix typo in README")
    assert report.score < 3
    assert report.category == "simple"
    assert report.recommended_team_size == 1


def test_very_complex_task() -> None:
    report = analyze_complexity("Implement distributed consensus algorithm with Byzantine fault tolerance")
    assert report.score > 7
    assert report.category == "very-complex"
    assert report.recommended_team_size > 5
    assert {r.name for r in report.risks} >= {"domain-expertise", "uncertainty"}


def test_report_is_complete_and_consistent() -> None:
    simple = analyze_complexity("Fix typo in README")
    hard = analyze_complexity("Refactor the payment service and migrate the billing database to Postgres")
    for report in (simple, hard):
        assert 1 <= report.score <= 10
        assert report.score == pytest.approx(weighted_score(report.factors), abs=0.01)
        assert report.recommended_models
        assert report.estimated_duration > 0
        assert report.estimated_cost > 0
        assert 0 < report.confidence <= 1
        assert 1 <= report.recommended_team_size <= 10
    assert hard.score > simple.score
    assert hard.estimated_cost > simple.estimated_cost
    assert hard.recommended_team_size > simple.recommended_team_size
    assert analyze_complexity("Fix typo in README") == simple


# --- swarm ------------------------------------------------------------------------------------


def test_role_templates_match_spec() -> None:
    assert ROLE_TEMPLATES["worker"].model == "kimi-k2.5"
    assert ROLE_TEMPLATES["worker"].skills == ("coding", "testing")
    assert ROLE_TEMPLATES["worker"].responsibilities == ("Implement features", "Write tests")
    assert ROLE_TEMPLATES["reviewer"].model == "gpt-4o"
    assert ROLE_TEMPLATES["reviewer"].skills == ("code-review", "security")
    assert ROLE_TEMPLATES["reviewer"].responsibilities == ("Review code", "Identify issues")
    assert ROLE_TEMPLATES["architect"].model == "claude-sonnet-4"
    assert ROLE_TEMPLATES["architect"].skills == ("architecture", "design")
    assert ROLE_TEMPLATES["architect"].responsibilities == ("Design decisions", "Integration planning")
    assert all(t.count == 1 for t in ROLE_TEMPLATES.values())


def roles(config: intent_pb2.SwarmConfig) -> dict[str, int]:
    return {a.role: a.count for a in config.agents}


def test_review_task_gets_reviewers_in_parallel() -> None:
    config = generate_swarm_config("review the authentication code")
    assert config.name == "review-authentication-code"
    assert config.task == "review the authentication code"
    assert set(roles(config)) == {"reviewer"}
    assert sum(roles(config).values()) == config.size
    assert config.strategy == team_pb2.EXECUTION_STRATEGY_PARALLEL
    assert list(config.requirements.models) == ["gpt-4o"]
    assert not config.HasField("budget_limit")
    assert config.timeout > 0


def test_design_task_gets_an_architect_and_workers() -> None:
    config = generate_swarm_config("Design the architecture of the new notification service and implement it")
    counts = roles(config)
    assert counts["architect"] == 1
    assert counts["worker"] >= 1
    assert sum(counts.values()) == config.size
    architect = next(a for a in config.agents if a.role == "architect")
    assert architect.model == "claude-sonnet-4"
    assert list(architect.responsibilities) == ["Design decisions", "Integration planning"]


def test_default_is_workers() -> None:
    config = generate_swarm_config("Fix typo in README")
    assert roles(config) == {"worker": 1}
    assert config.size == 1


@pytest.mark.parametrize(
    ("task", "strategy"),
    [
        ("Analyze the logs of the checkout service", team_pb2.EXECUTION_STRATEGY_PARALLEL),
        ("Build and deploy the billing service in stages", team_pb2.EXECUTION_STRATEGY_PIPELINE),
        ("Process each file in the dataset and aggregate the counts", team_pb2.EXECUTION_STRATEGY_MAP_REDUCE),
        (
            "Implement distributed consensus algorithm with Byzantine fault tolerance",
            team_pb2.EXECUTION_STRATEGY_TREE,
        ),
    ],
)
def test_strategy_recommendation(task: str, strategy: team_pb2.ExecutionStrategy.ValueType) -> None:
    assert generate_swarm_config(task).strategy == strategy


def test_constraints_are_respected() -> None:
    task = "Implement distributed consensus algorithm with Byzantine fault tolerance"
    assert generate_swarm_config(task).size > 3
    constraints = intent_pb2.SwarmConstraints(
        max_agents=3,
        budget_limit=12.5,
        models=["gpt-4o", "kimi-k2.5"],
        strategy=team_pb2.EXECUTION_STRATEGY_PIPELINE,
    )
    config = generate_swarm_config(task, constraints)
    assert config.size == 3
    assert sum(roles(config).values()) == 3
    assert config.budget_limit == 12.5
    assert config.strategy == team_pb2.EXECUTION_STRATEGY_PIPELINE
    assert {a.model for a in config.agents} <= {"gpt-4o", "kimi-k2.5"}
    assert set(config.requirements.models) <= {"gpt-4o", "kimi-k2.5"}


def test_slug() -> None:
    assert slug("Review the authentication code!") == "review-authentication-code"
    assert slug("!!!") == "team"
    assert len(slug("x" * 200)) <= 48


# --- LLM parser -------------------------------------------------------------------------------

GOOD_REPLY = {
    "type": "create_team",
    "confidence": 0.9,
    "entities": [
        {"name": "size", "value": 3, "type": "number", "confidence": 0.99, "position": [17, 18]},
        {"name": "task", "value": "review authentication code", "type": "task", "position": [500, 9]},
    ],
    "parameters": {"size": 3, "task": "review authentication code"},
}


def test_chat_url() -> None:
    assert chat_url("https://api.openai.com") == "https://api.openai.com/v1/chat/completions"
    assert chat_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"


async def test_llm_good_reply() -> None:
    with FakeOpenAI([final("```json\n" + json.dumps(GOOD_REPLY) + "\n```")]) as fake:
        intent = await parse_with_llm(SPEC_EXAMPLE, fake.base_url, KEY, "gpt-4o-mini")
    assert intent.type == intent_pb2.INTENT_TYPE_CREATE_TEAM
    assert intent.confidence == pytest.approx(0.9)
    assert entities(intent) == [("size", "3", "number"), ("task", "review authentication code", "task")]
    assert params(intent) == {"size": 3, "task": "review authentication code", "parser": "llm"}
    # Offsets the model got wrong are dropped rather than trusted.
    assert (intent.entities[1].start, intent.entities[1].end) == (0, 0)
    assert fake.headers[0]["authorization"] == f"Bearer {KEY}"
    request = fake.requests[0]
    assert request["model"] == "gpt-4o-mini"
    assert request["messages"][-1] == {"role": "user", "content": SPEC_EXAMPLE}


@pytest.mark.parametrize(
    "step",
    [
        final("Sure! I think you want a team."),
        final(json.dumps({**GOOD_REPLY, "type": "launch_rockets"})),
        final(json.dumps({**GOOD_REPLY, "confidence": 7})),
        http_error(500),
    ],
)
async def test_llm_falls_back_on_bad_replies(step: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeOpenAI([step]) as fake:
        intent = await parse_with_llm(SPEC_EXAMPLE, fake.base_url, KEY, "gpt-4o-mini")
    assert intent.type == intent_pb2.INTENT_TYPE_CREATE_TEAM
    assert intent.confidence == pytest.approx(0.95)
    assert params(intent) == {
        "size": 3,
        "task": "review authentication code",
        "parser": "deterministic-fallback",
    }
    assert "deterministic parser" in caplog.text
    assert KEY not in caplog.text


async def test_llm_falls_back_when_unreachable(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeOpenAI()
    fake.close()
    intent = await parse_with_llm("show agents", fake.base_url, KEY, "m", timeout=5)
    assert intent.type == intent_pb2.INTENT_TYPE_QUERY_STATUS
    assert params(intent)["parser"] == "deterministic-fallback"
    assert KEY not in caplog.text


def test_intent_from_reply_rejects_non_objects() -> None:
    with pytest.raises(ValueError):
        intent_from_reply("x", "[1, 2]")
    with pytest.raises(ValueError):
        intent_from_reply("x", '{"type": "custom", "confidence": NaN}')


# --- servicer ---------------------------------------------------------------------------------


def servicer(base_url: str = "") -> IntentServicer:
    return IntentServicer(openai_base_url=base_url, openai_api_key=KEY, default_model="gpt-4o-mini")


async def test_servicer_parse() -> None:
    request = intent_service_pb2.ParseIntentRequest(input=SPEC_EXAMPLE)
    assert await servicer().ParseIntent(request, CTX) == parse_intent(SPEC_EXAMPLE)
    request.parser = "deterministic"
    assert await servicer().ParseIntent(request, CTX) == parse_intent(SPEC_EXAMPLE)


def as_role(role: str) -> None:
    """The caller of the servicer calls that follow (in this test's context)."""
    caller_var.set(Caller(key_id="k", user_id="u", role=role, permissions=ROLES[role]))


async def test_the_llm_parser_needs_more_than_a_viewer() -> None:
    request = intent_service_pb2.ParseIntentRequest(input=SPEC_EXAMPLE, parser="llm")
    with FakeOpenAI([final(json.dumps(GOOD_REPLY))]) as fake:
        as_role("viewer")
        with pytest.raises(PermissionDeniedError, match="may not use the llm parser"):
            await servicer(fake.base_url).ParseIntent(request, CTX)
        assert fake.requests == []  # refused before spending anything
        as_role("developer")
        intent = await servicer(fake.base_url).ParseIntent(request, CTX)
    assert params(intent)["parser"] == "llm"
    as_role("viewer")  # the deterministic parser is a read: viewers may use it
    await servicer().ParseIntent(intent_service_pb2.ParseIntentRequest(input=SPEC_EXAMPLE), CTX)


async def test_servicer_parse_with_llm() -> None:
    as_role("developer")
    with FakeOpenAI([final(json.dumps(GOOD_REPLY))]) as fake:
        request = intent_service_pb2.ParseIntentRequest(input=SPEC_EXAMPLE, parser="llm")
        intent = await servicer(fake.base_url).ParseIntent(request, CTX)
    assert params(intent)["parser"] == "llm"
    assert fake.requests[0]["model"] == "gpt-4o-mini"


async def test_servicer_parse_checks() -> None:
    as_role("developer")
    with pytest.raises(ValidationError) as exc:
        await servicer().ParseIntent(intent_service_pb2.ParseIntentRequest(input=" ", parser="magic"), CTX)
    assert set(violations(exc)) == {"input", "parser"}
    with pytest.raises(ValidationError):
        await servicer().ParseIntent(intent_service_pb2.ParseIntentRequest(input="x" * 10_001), CTX)
    with pytest.raises(FailedPreconditionError):
        await servicer().ParseIntent(intent_service_pb2.ParseIntentRequest(input="hi", parser="llm"), CTX)
    assert "sk-" not in repr(servicer())


async def test_servicer_complexity_and_swarm() -> None:
    svc = servicer()
    report = await svc.AnalyzeComplexity(
        intent_service_pb2.AnalyzeComplexityRequest(task="Fix typo in README"), CTX
    )
    assert report.category == "simple"
    request = intent_service_pb2.GenerateSwarmConfigRequest(
        task="review the authentication code", constraints=intent_pb2.SwarmConstraints(max_agents=1)
    )
    config = await svc.GenerateSwarmConfig(request, CTX)
    assert config.size == 1


async def test_servicer_task_checks() -> None:
    svc = servicer()
    with pytest.raises(ValidationError) as exc:
        await svc.AnalyzeComplexity(intent_service_pb2.AnalyzeComplexityRequest(task=""), CTX)
    assert "task" in violations(exc)
    with pytest.raises(ValidationError) as exc:
        await svc.AnalyzeComplexity(intent_service_pb2.AnalyzeComplexityRequest(task="x" * 10_001), CTX)
    assert "task" in violations(exc)
    request = intent_service_pb2.GenerateSwarmConfigRequest(
        task="",
        constraints=intent_pb2.SwarmConstraints(
            max_agents=1001,
            budget_limit=0,
            models=[""],
            strategy=cast(team_pb2.ExecutionStrategy.ValueType, 99),
        ),
    )
    with pytest.raises(ValidationError) as exc:
        await svc.GenerateSwarmConfig(request, CTX)
    assert set(violations(exc)) == {
        "task",
        "constraints.max_agents",
        "constraints.budget_limit",
        "constraints.models[0]",
        "constraints.strategy",
    }
