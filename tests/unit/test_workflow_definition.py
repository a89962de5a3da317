"""The pure workflow-definition layer: parsing, validation, expressions, templates and the DAG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from godel.v1 import common_pb2, workflow_pb2
from godel_server.runtime.errors import FieldViolation, ValidationError
from godel_server.runtime.statuses import STEP_STATUS
from godel_server.team.workflows.dag import Dag, Reachability, backoff_seconds, find_cycles
from godel_server.team.workflows.definition import (
    DEFAULT_CONCURRENCY,
    MAX_CONCURRENCY,
    MAX_STEPS,
    MAX_TEXT_LENGTH,
    check_definition,
    concurrency,
    load_definition,
    parse_and_validate,
    validate,
)
from godel_server.team.workflows.expressions import ExpressionError, compile_expression, to_text, truthy
from godel_server.team.workflows.templates import (
    check_template,
    compile_template,
    render,
    template_step_refs,
)

ROOT = Path(__file__).resolve().parents[2]

DIAMOND_YAML = """
name: diamond
description: fan out and back in
runtime: command
command: ["sh", "-c", "{task}"]
maxConcurrency: 3
timeout: 10m
onError: continue
retryPolicy:
  maxRetries: 2
  initialBackoff: 2s
  maxBackoff: 1m
  backoffMultiplier: 3
steps:
  - id: fetch
    name: Fetch
    task: git log --oneline -1
  - id: lint
    dependsOn: [fetch]
    task: echo lint ok
    retries: 1
    timeout: 30
  - id: build
    depends_on: fetch
    task: "echo built from {{ trim(steps.fetch.output) }}"
    agentSelector: {teamId: 0b6f4f5e-1d2a-4c3b-9a8e-7f6d5c4b3a21, skills: [go, sh], label: fast}
  - id: package
    dependsOn: [lint, build]
    when: "'ok' in steps.lint.output and steps.build.status == 'completed'"
    task: "echo {{ steps.fetch.output }}"
    runtime: openai
"""


def violations_of(text_or_defn: str | workflow_pb2.WorkflowDefinition) -> list[FieldViolation]:
    with pytest.raises(ValidationError) as info:
        if isinstance(text_or_defn, str):
            parse_and_validate(text_or_defn)
        else:
            validate(text_or_defn)
    return info.value.violations


def fields_of(text_or_defn: str | workflow_pb2.WorkflowDefinition) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for v in violations_of(text_or_defn):
        found.setdefault(v.field, []).append(v.description)
    return found


def definition(*steps: dict[str, Any], **top: Any) -> str:
    return json.dumps({"name": "wf", **top, "steps": list(steps)})


# ---------------------------------------------------------------------------------------------
# Loading


def test_yaml_loads_every_field() -> None:
    d = parse_and_validate(DIAMOND_YAML)
    assert d.name == "diamond" and d.description == "fan out and back in"
    assert d.runtime == "command" and list(d.command) == ["sh", "-c", "{task}"]
    assert d.max_concurrency == 3 and d.timeout == 600
    assert d.on_error == workflow_pb2.ON_ERROR_POLICY_CONTINUE
    assert d.retry_policy.max_retries == 2
    assert d.retry_policy.initial_backoff.seconds == 2
    assert d.retry_policy.max_backoff.seconds == 60
    assert d.retry_policy.backoff_multiplier == 3.0
    assert [s.id for s in d.steps] == ["fetch", "lint", "build", "package"]
    lint, build, package = d.steps[1], d.steps[2], d.steps[3]
    assert list(lint.depends_on) == ["fetch"] and lint.retries == 1 and lint.timeout == 30
    assert list(build.depends_on) == ["fetch"]  # snake_case key, single string
    assert build.agent_selector.team_id.startswith("0b6f4f5e")
    assert list(build.agent_selector.skills) == ["go", "sh"] and build.agent_selector.label == "fast"
    assert package.runtime == "openai" and package.when.startswith("'ok' in")


def test_json_loads_the_same_as_yaml() -> None:
    as_json = json.dumps(
        {
            "name": "j",
            "max_concurrency": 2,
            "onError": "ON_ERROR_POLICY_RETRY",
            "retry_policy": {"initial_backoff": 1.5, "max_backoff": "2m30s", "backoff_multiplier": 2},
            "model": "gpt-x",
            "repo": "/srv/repo",
            "steps": [
                {"id": "a", "task": "x", "agent": "agent-1"},
                {"id": "b", "task": "y", "dependsOn": ["a"]},
            ],
        }
    )
    d = parse_and_validate(as_json)
    assert d.max_concurrency == 2 and d.on_error == workflow_pb2.ON_ERROR_POLICY_RETRY
    assert d.retry_policy.initial_backoff.ToNanoseconds() == 1_500_000_000
    assert d.retry_policy.max_backoff.seconds == 150
    assert d.model == "gpt-x" and d.repo == "/srv/repo" and d.steps[0].agent == "agent-1"
    assert list(d.steps[1].depends_on) == ["a"]


def test_yaml_flow_mapping_is_not_mistaken_for_json() -> None:
    d = parse_and_validate("{name: flow, steps: [{id: a, task: x}]}")
    assert d.name == "flow"


def test_load_definition_does_not_validate() -> None:
    d = load_definition("name: x\nsteps: []\n")
    assert d.name == "x" and not d.steps
    with pytest.raises(ValidationError):
        validate(d)


def test_numeric_ids_and_durations_are_coerced() -> None:
    d = parse_and_validate("name: n\ntimeout: 1h30m\nsteps:\n  - {id: 1, task: x, timeout: '90s'}\n")
    assert d.timeout == 5400 and d.steps[0].id == "1" and d.steps[0].timeout == 90


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name: [unclosed\n", "invalid YAML at line"),
        ('{"name": "x",\n "steps": [}', "invalid JSON at line 2"),
        ("", "is empty"),
        ("   \n", "is empty"),
        ("- just\n- a list\n", "must be a mapping"),
        ("name: a\nname: b\nsteps: []\n", "duplicate key 'name'"),
        ('{"name": "a", "name": "b"}', "duplicate key 'name'"),
    ],
)
def test_syntax_errors_are_a_violation_on_definition_text(text: str, needle: str) -> None:
    violations = violations_of(text)
    assert [v.field for v in violations] == ["definitionText"]
    assert needle in violations[0].description


def test_yaml_error_names_the_line() -> None:
    (violation,) = violations_of("name: x\nsteps:\n  - id: a\n    task: [oops\n")
    assert "line 5" in violation.description or "line 4" in violation.description


def test_shape_violations() -> None:
    found = fields_of(
        definition(
            {"id": "a", "task": ["not", "a", "string"], "bogus": 1, "dependsOn": [1.5, None]},
            {"id": "b", "task": "t", "timeout": "soon", "retries": "two", "agentSelector": {"team": "x"}},
            {"id": "c", "task": "t", "dependsOn": "a", "depends_on": "b"},
            onError="sometimes",
            maxConcurrency=1.5,
            retryPolicy={"backoffMultiplier": "fast", "initialBackoff": True},
            command="sh -c x",
            unknown=True,
        )
    )
    assert found["unknown"] == [
        "unknown key (known: name, description, steps, timeout, maxConcurrency, onError, retryPolicy, "
        "runtime, command, model, repo, notifyChannels)"
    ]
    assert found["steps[0].bogus"][0].startswith("unknown key")
    assert found["steps[0].task"] == ["must be a string"]  # not also "is required"
    assert found["steps[0].dependsOn[1]"] == ["must be a string"]
    assert "steps[0].dependsOn[0]" in found  # "1.5" is an unknown step
    assert found["steps[1].timeout"][0].startswith("must be a number of seconds")
    assert found["steps[1].retries"] == ["must be a whole number"]
    assert found["steps[1].agentSelector.team"][0].startswith("unknown key")
    assert found["steps[2].dependsOn"] == ["is given twice (camelCase and snake_case)"]
    assert found["onError"] == ["must be one of fail, continue, retry"]
    assert found["maxConcurrency"] == ["must be a whole number"]
    assert found["retryPolicy.backoffMultiplier"] == ["must be a number"]
    assert found["retryPolicy.initialBackoff"][0].startswith("must be a number of seconds")
    assert found["command"] == ["must be a list of strings"]


def test_out_of_range_numbers() -> None:
    found = fields_of(definition({"id": "a", "task": "t", "retries": 2**40, "timeout": 1e300}))
    assert found["steps[0].retries"] == ["is out of range"]
    assert found["steps[0].timeout"] == ["is out of range"]


# ---------------------------------------------------------------------------------------------
# Validation


def test_every_problem_is_reported_in_one_error() -> None:
    text = definition(
        {"id": "a", "task": "t"},
        {"id": "a", "task": "t"},
        {"id": "bad id!", "task": "t"},
        {"id": "c", "task": "", "dependsOn": ["nope", "c", "a", "a"], "retries": -1, "timeout": -5},
        {"id": "d", "task": "{{ steps.e.output }}", "when": "steps.a.status ==", "runtime": "python"},
        {"id": "e", "task": "t", "when": "steps.d.output", "dependsOn": ["f"]},
        {
            "id": "f",
            "task": "t",
            "dependsOn": ["e"],
            "agentSelector": {"teamId": "not-a-uuid", "skills": [""]},
        },
        {"task": "no id"},
        timeout=-1,
        maxConcurrency=-2,
        retryPolicy={"maxRetries": -1, "backoffMultiplier": 0.5, "initialBackoff": -1},
        runtime="docker",
    )
    with pytest.raises(ValidationError) as info:
        parse_and_validate(text)
    found: dict[str, list[str]] = {}
    for v in info.value.violations:
        found.setdefault(v.field, []).append(v.description)
    assert found["timeout"] == ["must not be negative"]
    assert found["maxConcurrency"] == [
        f"must be between 0 (the default, {DEFAULT_CONCURRENCY}) and {MAX_CONCURRENCY}"
    ]
    assert found["runtime"] == ["must be one of command, openai, openclaw"]
    assert found["retryPolicy.maxRetries"] == ["must be between 0 and 100"]
    assert found["retryPolicy.backoffMultiplier"] == ["must be at least 1"]
    assert found["retryPolicy.initialBackoff"] == ["must not be negative"]
    assert found["steps[1].id"] == ["'a' is already the id of steps[0]"]
    assert found["steps[2].id"] == ["must be 1-100 characters: letters, digits, '_' or '-'"]
    assert found["steps[3].task"] == ["is required"]
    assert found["steps[3].retries"] == ["must be between 0 and 100"]
    assert found["steps[3].timeout"] == ["must not be negative"]
    assert found["steps[3].dependsOn[0]"] == ["unknown step 'nope'"]
    assert found["steps[3].dependsOn[1]"] == ["a step cannot depend on itself"]
    assert found["steps[3].dependsOn[3]"] == ["'a' is listed twice"]
    assert found["steps[4].when"][0].startswith("syntax error")
    assert found["steps[4].task"] == [
        "refers to step 'e', which it does not depend on (add 'e' to dependsOn)"
    ]
    assert found["steps[4].runtime"] == ["must be one of command, openai, openclaw"]
    assert found["steps[5].when"] == [
        "refers to step 'd', which it does not depend on (add 'd' to dependsOn)"
    ]
    assert found["steps[5].dependsOn"] == ["cycle: e -> f -> e"]
    assert found["steps[6].agentSelector.teamId"] == ["must be a UUID"]
    assert found["steps[6].agentSelector.skills[0]"] == ["is required"]
    assert found["steps[7].id"] == ["is required"]
    # One message that names them all.
    assert "steps[5].dependsOn: cycle: e -> f -> e" in info.value.message
    assert "timeout: must not be negative" in info.value.message


def test_validate_works_on_protos_too() -> None:
    defn = workflow_pb2.WorkflowDefinition(steps=[workflow_pb2.StepDefinition(id="a", task="t")])
    assert fields_of(defn) == {"name": ["is required"]}
    assert check_definition(workflow_pb2.WorkflowDefinition(name="x")) == [
        FieldViolation("steps", "at least one step is required")
    ]


def test_cycle_path_is_reported() -> None:
    text = definition(
        {"id": "a", "task": "t", "dependsOn": ["c"]},
        {"id": "b", "task": "t", "dependsOn": ["a"]},
        {"id": "c", "task": "t", "dependsOn": ["b"]},
        {"id": "x", "task": "t", "dependsOn": ["y"]},
        {"id": "y", "task": "t", "dependsOn": ["x", "a"]},
    )
    found = fields_of(text)
    assert found == {
        "steps[0].dependsOn": ["cycle: a -> c -> b -> a"],
        "steps[3].dependsOn": ["cycle: x -> y -> x"],
    }


def test_find_cycles_shortest_path_in_a_bigger_component() -> None:
    deps = {"a": ["b"], "b": ["c", "a"], "c": ["a"]}
    assert find_cycles(["a", "b", "c"], deps) == [["a", "b", "a"]]
    assert find_cycles(["a", "b"], {"a": ["b", "zzz", "a"], "b": []}) == []


def test_long_chain_does_not_recurse() -> None:
    n = MAX_STEPS  # as deep as Python's default recursion limit
    steps = [{"id": f"s{i}", "task": "t", "dependsOn": [f"s{i - 1}"] if i else []} for i in range(n)]
    steps[0]["dependsOn"] = [f"s{n - 1}"]
    found = fields_of(definition(*steps))
    (message,) = found["steps[0].dependsOn"]
    assert message.startswith(f"cycle: s0 -> s{n - 1} -> s{n - 2}") and message.endswith("s1 -> s0")


def test_references_must_be_dependencies() -> None:
    text = definition(
        {"id": "a", "task": "t"},
        {"id": "b", "task": "t", "dependsOn": ["a"]},
        {"id": "c", "task": "{{ steps.a.output }} {{ steps['b'].status }}", "dependsOn": ["b"]},
        {"id": "d", "task": "{{ steps.c.output }}", "when": "steps.b.output"},
        {"id": "e", "task": "{{ steps.e.output }} {{ steps.zz.output }} {{ env.HOME }}"},
    )
    found = fields_of(text)
    assert "steps[2].task" not in found  # a is a transitive dependency
    assert found["steps[3].task"] == [
        "refers to step 'c', which it does not depend on (add 'c' to dependsOn)"
    ]
    assert found["steps[3].when"] == [
        "refers to step 'b', which it does not depend on (add 'b' to dependsOn)"
    ]
    assert found["steps[4].task"] == [
        "unknown variable 'env' (available: context, steps, workflow)",
        "a step cannot refer to itself",
        "refers to unknown step 'zz'",
    ]


def test_template_errors_are_violations() -> None:
    found = fields_of(definition({"id": "a", "task": "run {{ open('x') }} and {{ oops"}))
    assert found["steps[0].task"] == [
        "placeholder at offset 4: only these functions can be called: "
        "contains, endswith, float, int, len, lower, shquote, startswith, str, trim, upper",
        "'{{' at offset 24 has no matching '}}' (check the quotes inside it)",
    ]


def test_command_runtime_needs_a_command() -> None:
    found = fields_of(
        definition(
            {"id": "a", "task": "t"},
            {"id": "b", "task": "t", "runtime": "command"},
            {"id": "c", "task": "t", "command": ["echo"]},
            {"id": "d", "task": "t", "command": [" ", "x"]},
            runtime="command",
        )
    )
    assert found == {
        "command": ["is required for the command runtime (here, or on every step)"],
        "steps[1].command": ["is required for the command runtime"],
        "steps[3].command[0]": ["must name the program to run"],
    }


def test_retry_policy_limits() -> None:
    found = fields_of(
        definition({"id": "a", "task": "t"}, retryPolicy={"initialBackoff": "10s", "maxBackoff": "5s"})
    )
    assert found == {"retryPolicy.maxBackoff": ["must not be less than initialBackoff"]}
    # 0 means "unset" (default x2).
    parse_and_validate(definition({"id": "a", "task": "t"}, retryPolicy={"backoffMultiplier": 0}))


def test_on_error_defaults_and_spellings() -> None:
    assert parse_and_validate(definition({"id": "a", "task": "t"})).on_error == 0
    for spelling, value in [("FAIL", 1), ("Continue", 2), ("retry", 3)]:
        assert parse_and_validate(definition({"id": "a", "task": "t"}, onError=spelling)).on_error == value


def test_step_limit() -> None:
    defn = workflow_pb2.WorkflowDefinition(
        name="big", steps=[workflow_pb2.StepDefinition(id=f"s{i}", task="t") for i in range(MAX_STEPS + 1)]
    )
    assert fields_of(defn) == {"steps": [f"at most {MAX_STEPS} steps are allowed, got {MAX_STEPS + 1}"]}


def alias_bomb(levels: int = 8) -> str:
    """Each level lists the previous one ten times: 10**levels strings from a few hundred bytes."""
    lines = ['l0: &l0 ["' + "x" * 100 + '"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join([*lines, "name: bomb", "steps: [{id: s, task: t}]"])


def test_yaml_aliases_cannot_expand_the_text_past_its_limit() -> None:
    text = alias_bomb()
    assert len(text) < 1000
    assert fields_of(text) == {
        "definitionText": [f"expands to more than {MAX_TEXT_LENGTH} characters through YAML aliases"]
    }
    with pytest.raises(ValidationError, match="refers to a node that contains it"):
        parse_and_validate("loop: &loop [*loop]\nname: x\nsteps: [{id: s, task: t}]")
    # Aliases that stay within the limit are YAML as usual.
    shared = parse_and_validate("name: w\nsteps:\n  - {id: a, task: &t hello}\n  - {id: b, task: *t}\n")
    assert [s.task for s in shared.steps] == ["hello", "hello"]


def test_concurrency_has_a_default_and_a_ceiling() -> None:
    assert concurrency(parse_and_validate(definition({"id": "a", "task": "t"}))) == DEFAULT_CONCURRENCY
    assert concurrency(parse_and_validate(definition({"id": "a", "task": "t"}, maxConcurrency=3))) == 3
    too_many = definition({"id": "a", "task": "t"}, maxConcurrency=MAX_CONCURRENCY + 1)
    assert "maxConcurrency" in fields_of(too_many)


def test_violations_are_capped() -> None:
    steps = [{"id": "dup", "task": "t"} for _ in range(300)]
    violations = violations_of(definition(*steps))
    assert len(violations) == 101
    assert violations[-1] == FieldViolation("definition", "199 more problems")


# ---------------------------------------------------------------------------------------------
# Expressions

VARS: dict[str, Any] = {
    "steps": {
        "build": {"status": "completed", "output": "build ok\n"},
        "unit-tests": {"status": "failed", "output": "3 passed, 1 failed"},
    },
    "context": {"env": "prod", "n": 3, "items": ["a", "b"], "nothing": None},
    "workflow": {"id": "w1", "name": "wf"},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'ok' in steps.build.output", True),
        ("'ok' not in steps.build.output", False),
        ("contains(steps['unit-tests'].output, 'failed')", True),
        ("steps.build.status == 'completed' and context.n >= 3", True),
        ("steps.build.status != 'completed' or context.env", "prod"),
        ("not context.nothing", True),
        ("context.nothing == null", True),
        ("1 < context.n < 5", True),
        ("1 < context.n > 5", False),
        ("context.n * 2 + 1 - 4 / 2", 5.0),
        ("context.n % 2", 1),
        ("-context.n", -3),
        ("+context.n", 3),
        ("context.items[1]", "b"),
        ("context.items[-1]", "b"),
        ("context['env']", "prod"),
        ("len(context.items) == 2", True),
        ("len(steps)", 2),
        ("lower('AbC') + upper('x')", "abcX"),
        ("trim(steps.build.output)", "build ok"),
        ("startswith(steps.build.output, 'build')", True),
        ("endswith(trim(steps.build.output), 'ok')", True),
        ("int(' 42\\n') + float('0.5')", 42.5),
        ("str(context.items)", '["a", "b"]'),
        ("str(true)", "true"),
        ('shquote("it\'s")', "'it'\"'\"'s'"),
        ("'b' in context.items", True),
        ("'env' in context", True),
        ("[1, 2] + [3]", [1, 2, 3]),
        ("('a', 'b')", ["a", "b"]),
        ("'yes' if context.n > 2 else 'no'", "yes"),
        ("true and false", False),
        ("workflow.name", "wf"),
    ],
)
def test_expression_values(text: str, expected: Any) -> None:
    assert compile_expression(text).evaluate(VARS) == expected


def test_expression_names_and_step_refs() -> None:
    expr = compile_expression("steps.build.output and steps['unit-tests'].status == context.env and true")
    assert expr.names == {"steps", "context"}
    assert expr.step_refs == {"build", "unit-tests"}
    assert compile_expression("len(steps) > 0").step_refs == set()


def test_multiline_expressions_are_joined() -> None:
    assert compile_expression("'ok' in steps.build.output\nand context.n == 3").test(VARS)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("__import__('os')", "only these functions can be called"),
        ("().__class__", "'__class__' not allowed"),
        ("context.__class__", "'__class__' not allowed"),
        ("__builtins__", "'__builtins__' not allowed"),
        ("open('x')", "only these functions can be called"),
        ("context.env.upper()", "only these functions can be called"),
        ("lambda: 1", "lambda not allowed"),
        ("[x for x in context.items]", "comprehensions not allowed"),
        ("{x for x in context.items}", "comprehensions not allowed"),
        ("(x for x in context.items)", "comprehensions not allowed"),
        ("{'a': 1}", "mapping literals not allowed"),
        ("f'{context}'", "f-strings not allowed"),
        ("(x := 1)", "assignment (:=) not allowed"),
        ("context.items[0:1]", "slices not allowed"),
        ("2 ** 10", "operator Pow not allowed"),
        ("7 // 2", "operator FloorDiv not allowed"),
        ("~1", "operator Invert not allowed"),
        ("context is None", "use == or !="),
        ("b'bytes'", "bytes literals not allowed"),
        ("1j", "complex literals not allowed"),
        ("len(*context.items)", "* unpacking not allowed"),
        ("len(x=1)", "takes no keyword arguments"),
        ("contains('a')", "contains() takes 2 arguments"),
        ("steps[context.env]", "needs a literal step id"),
        ("1 +", "syntax error"),
        ("import os", "syntax error"),
        ("x = 1", "syntax error"),
        ("", "expression is empty"),
        ("x" * 2001, "longer than 2000"),
        ("[" * 60 + "]" * 60, "nested more than"),
        ("-" * 100 + "1", "nested more than"),
    ],
)
def test_rejected_expressions(text: str, needle: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression(text)
    assert needle in info.value.message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("steps.deploy.output", "steps has no key 'deploy' (keys: build, unit-tests)"),
        ("steps.build.outptu", "steps.build has no key 'outptu' (keys: output, status)"),
        ("missing", "unknown variable 'missing'"),
        ("context.items[5]", "context.items has no index 5 (length 2)"),
        ("context.items['x']", "index it with a whole number"),
        ("context.env.length", "cannot look up 'length' in context.env"),
        ("context.n.x", "it is a number"),
        ("context.n < 'a'", "cannot order a number and a string"),
        ("context.env - 1", "cannot compute string - number"),
        ("context.n / 0", "division by zero"),
        ("-context.env", "needs a number"),
        ("len(context.n)", "len() needs a string, list or mapping, got number"),
        ("lower(context.n)", "lower() needs a string"),
        ("int('x')", "int() cannot convert 'x'"),
        ("float(context.items)", "float() cannot convert a list"),
        ("1 in context.env", "cannot look for a number in a string"),
        ("'a' in context.n", "'in' needs a string, list or mapping"),
        ("[] in context", "cannot look for a list in a mapping"),
    ],
)
def test_evaluation_errors_say_what_is_wrong(text: str, needle: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression(text).evaluate(VARS)
    assert needle in info.value.message


def test_short_circuit_avoids_errors() -> None:
    assert compile_expression("'deploy' in steps and steps.deploy.output").evaluate(VARS) is False
    assert compile_expression("'build' in steps or steps.deploy.output").evaluate(VARS) is True


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        ("", False),
        ("  false\n", False),
        ("No", False),
        ("0", False),
        ("off", False),
        ("null", False),
        ("ok", True),
        ("true\n", True),
        (0, False),
        (0.0, False),
        (2, True),
        ([], False),
        ([0], True),
        ({}, False),
        ({"a": 1}, True),
        (True, True),
        (False, False),
    ],
)
def test_truthy(value: Any, expected: bool) -> None:
    assert truthy(value) is expected


def test_to_text() -> None:
    assert to_text(None) == "" and to_text(True) == "true" and to_text(1.5) == "1.5"
    assert to_text({"a": [1, "é"]}) == '{"a": [1, "é"]}'


# ---------------------------------------------------------------------------------------------
# Templates


def test_render() -> None:
    out = render(
        "build said {{ trim(steps.build.output) }}; items={{ context.items }} none=[{{ context.nothing }}] "
        "n={{context.n}} ok={{ 'ok' in steps.build.output }}",
        VARS,
    )
    assert out == 'build said build ok; items=["a", "b"] none=[] n=3 ok=true'


def test_render_quoted_braces_and_literals() -> None:
    assert render("{{ '{{' }}.State}} and {{ \"}}\" }}", {}) == "{{.State}} and }}"
    assert render("no placeholders { } }}", {}) == "no placeholders { } }}"


def test_template_refs_and_checks() -> None:
    assert template_step_refs("{{ steps.a.output }} {{ steps['b-c'].status }} {{ context.x }}") == {
        "a",
        "b-c",
    }
    assert check_template("fine {{ 1 }}") == []
    errors = check_template("{{ 1 + }} {{ 'unterminated }}")
    assert errors[0].startswith("placeholder at offset 0: syntax error")
    assert errors[1] == "'{{' at offset 10 has no matching '}}' (check the quotes inside it)"
    with pytest.raises(ExpressionError):
        template_step_refs("{{ nope(1) }}")
    template = compile_template("{{ a }}{{ b }}")
    assert template.names == {"a", "b"} and not template.is_static
    assert compile_template("plain").is_static


def test_render_errors_name_the_placeholder() -> None:
    with pytest.raises(ExpressionError) as info:
        render("x {{ steps.nope.output }}", VARS)
    assert info.value.message.startswith("{{ steps.nope.output }}: steps has no key 'nope'")


def test_render_is_capped() -> None:
    big = {"s": "x" * 600_000}
    with pytest.raises(ExpressionError, match="longer than"):
        render("{{ s }}{{ s }}", big)


def test_unclosed_placeholder_scan_is_linear() -> None:
    assert len(check_template("{{" * 50_000)) == 1


# ---------------------------------------------------------------------------------------------
# DAG


def diamond() -> Dag:
    return Dag(
        [
            ("fetch", []),
            ("lint", ["fetch"]),
            ("test", ["fetch"]),
            ("build", ["fetch"]),
            ("pkg", ["lint", "test", "build"]),
        ]
    )


def test_dag_structure() -> None:
    dag = diamond()
    assert dag.order == ("fetch", "lint", "test", "build", "pkg")
    assert dag.roots == ("fetch",) and dag.leaves == ("pkg",)
    assert dag.deps["pkg"] == ("lint", "test", "build")
    assert dag.dependents["fetch"] == ("lint", "test", "build")
    assert dag.upstream("pkg") == ["fetch", "lint", "test", "build"]
    assert dag.downstream("fetch") == ["lint", "test", "build", "pkg"]
    assert dag.is_upstream("fetch", "pkg") and not dag.is_upstream("pkg", "fetch")
    assert not dag.is_upstream("lint", "test")
    assert len(dag) == 5 and "pkg" in dag and "nope" not in dag and dag.rank("pkg") == 4


def test_topological_order_is_stable_by_definition_order() -> None:
    dag = Dag([("c", ["b"]), ("a", []), ("b", ["a"]), ("d", []), ("e", ["a"])])
    assert dag.order == ("a", "b", "c", "d", "e")
    assert dag.roots == ("a", "d")


def test_diamond_ready() -> None:
    dag = diamond()
    assert dag.ready({}) == ["fetch"]
    statuses = {"fetch": "running"}
    assert dag.ready(statuses) == []
    assert dag.unblocked_by("fetch", statuses) == ["lint", "test", "build"]  # once it finishes
    statuses["fetch"] = "completed"
    assert dag.ready(statuses) == ["lint", "test", "build"]
    assert dag.unblocked_by("fetch", statuses) == ["lint", "test", "build"]
    statuses.update(lint="completed", test="running", build="retrying")
    assert dag.ready(statuses) == [] and dag.unblocked_by("lint", statuses) == []
    statuses.update(test="skipped", build="failed")
    assert dag.ready(statuses) == ["pkg"]
    assert dag.unblocked_by("build", statuses) == ["pkg"]
    assert dag.blocked_by_failure("pkg", statuses) == ["build"]
    statuses["build"] = "cancelled"
    assert dag.blocked_by_failure("pkg", statuses) == ["build"]
    statuses["pkg"] = "completed"
    assert dag.ready(statuses) == []


def test_wide_diamond_ready() -> None:
    # 30 steps: root -> 28 parallel middles -> sink.
    middles = [f"m{i:02d}" for i in range(28)]
    dag = Dag([("root", []), *((m, ["root"]) for m in middles), ("sink", middles)])
    assert len(dag) == 30
    statuses: dict[str, str] = {"root": "completed"}
    assert dag.ready(statuses) == middles == dag.unblocked_by("root", statuses)
    for i, m in enumerate(middles):
        statuses[m] = "completed"
        expected = ["sink"] if i == len(middles) - 1 else []
        assert dag.unblocked_by(m, statuses) == expected
        assert dag.ready(statuses) == middles[i + 1 :] + expected


def test_layered_diamond_runs_to_completion() -> None:
    # 30 steps in diamonds stacked: each layer fans out from the previous join.
    steps: list[tuple[str, list[str]]] = [("j0", [])]
    for layer in range(1, 8):
        branches = [f"l{layer}b{b}" for b in range(3)]
        steps += [(b, [f"j{layer - 1}"]) for b in branches]
        steps.append((f"j{layer}", branches))
    steps.append(("end", ["j7"]))
    dag = Dag(steps)
    assert len(dag) == 30
    statuses: dict[str, str] = {}
    finished: list[str] = []
    ready = dag.ready(statuses)
    while ready:
        step = ready.pop(0)
        statuses[step] = "completed"
        finished.append(step)
        ready += dag.unblocked_by(step, statuses)
        assert sorted(ready) == sorted(dag.ready(statuses))
    assert len(finished) == 30
    assert all(dag.rank(a) < dag.rank(b) for b in dag.order for a in dag.deps[b])
    assert finished.index("j3") > max(finished.index(f"l3b{b}") for b in range(3))


def test_dag_rejects_bad_graphs() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Dag([("a", []), ("a", [])])
    with pytest.raises(ValueError, match="invalid dependency"):
        Dag([("a", ["zz"])])
    with pytest.raises(ValueError, match="cycle: a -> b -> a"):
        Dag([("a", ["b"]), ("b", ["a"])])


def test_dag_from_definition_and_step_status_names() -> None:
    dag = Dag.from_definition(parse_and_validate(DIAMOND_YAML))
    assert dag.order == ("fetch", "lint", "build", "package")
    assert STEP_STATUS.name(workflow_pb2.STEP_STATUS_COMPLETED) == "completed"
    assert STEP_STATUS.name(workflow_pb2.STEP_STATUS_RETRYING) == "retrying"


def test_reachability_tolerates_cycles() -> None:
    reach = Reachability(["a", "b", "c", "d"], {"a": ["b"], "b": ["a"], "c": ["a"], "d": []})
    assert reach.depends_on("c", "b") and reach.depends_on("a", "a") and not reach.depends_on("d", "a")
    assert reach.upstream("c") == ["a", "b"]


def test_reachability_on_a_long_chain() -> None:
    n = 10_000
    dag = Dag((f"s{i}", [f"s{i - 1}"] if i else []) for i in range(n))
    assert dag.is_upstream("s0", f"s{n - 1}") and not dag.is_upstream(f"s{n - 1}", "s0")


# ---------------------------------------------------------------------------------------------
# Backoff


def policy(**kwargs: Any) -> common_pb2.RetryPolicy:
    p = common_pb2.RetryPolicy(backoff_multiplier=kwargs.pop("multiplier", 0))
    if "initial" in kwargs:
        p.initial_backoff.FromNanoseconds(int(kwargs["initial"] * 1e9))
    if "maximum" in kwargs:
        p.max_backoff.FromNanoseconds(int(kwargs["maximum"] * 1e9))
    return p


def test_backoff_defaults() -> None:
    assert [backoff_seconds(None, a) for a in range(0, 9)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff_seconds(policy(), 3) == 4


def test_backoff_with_policy() -> None:
    p = policy(initial=0.5, maximum=10, multiplier=3)
    assert [backoff_seconds(p, a) for a in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, 10]
    assert backoff_seconds(policy(initial=0), 5) == 0
    assert backoff_seconds(policy(multiplier=1.0, initial=2), 50) == 2
    assert backoff_seconds(policy(multiplier=1e300), 10) == 60
    assert backoff_seconds(policy(multiplier=float("nan")), 2) == 2  # nonsense falls back to x2
    assert backoff_seconds(None, 10_000) == 60


# ---------------------------------------------------------------------------------------------
# Examples


@pytest.mark.parametrize("name", ["diamond.yaml", "diamond.json"])
def test_examples_are_valid(name: str) -> None:
    defn = parse_and_validate((ROOT / "examples" / name).read_text())
    dag = Dag.from_definition(defn)
    assert defn.runtime == "command" and list(defn.command) == ["sh", "-c", "{task}"]
    assert len(dag.roots) == 1 and max(len(d) for d in dag.deps.values()) >= 2
    assert any(s.when for s in defn.steps)
    assert any(compile_template(s.task).step_refs for s in defn.steps)
