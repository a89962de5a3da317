"""Workflow definitions: YAML or JSON text to a WorkflowDefinition, and the checks a definition
must pass before it runs. Every problem is collected and reported in one ValidationError whose
field paths use the definition's own (camelCase) keys, e.g. `steps[3].dependsOn[0]`.

The bounds are the contract's (`(godel.v1.limits)` on CreateWorkflowRequest and its messages),
and they hold for the text as YAML expands it: a YAML alias repeats a node without repeating its
text, so the expanded size is measured on the parsed node graph, before anything is built from it
(14 KB of anchors and aliases once became 10 MB of strings). A workflow runs at most
maxConcurrency steps at once: DEFAULT_CONCURRENCY when it gives none, never more than
MAX_CONCURRENCY."""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from godel.v1 import common_pb2, workflow_pb2, workflow_service_pb2
from godel_server.runtime.agent_rules import KNOWN_RUNTIMES
from godel_server.runtime.bounds import bounds
from godel_server.runtime.enums import ProtoEnum
from godel_server.runtime.errors import FieldViolation, ValidationError
from godel_server.runtime.validation import Violations
from godel_server.team.notifications import check_notify_channels
from godel_server.team.workflows.dag import Reachability
from godel_server.team.workflows.expressions import ExpressionError, compile_expression
from godel_server.team.workflows.templates import check_template, compile_template

_REQUEST = workflow_service_pb2.CreateWorkflowRequest.DESCRIPTOR.fields_by_name
_WORKFLOW = workflow_pb2.WorkflowDefinition.DESCRIPTOR.fields_by_name
_STEP = workflow_pb2.StepDefinition.DESCRIPTOR.fields_by_name
MAX_STEPS = bounds(_WORKFLOW["steps"]).max_items
# Characters of the text, and of what its YAML aliases expand it to.
MAX_TEXT_LENGTH = bounds(_REQUEST["definition_text"]).max_len
MAX_DEFINITION_BYTES = bounds(_REQUEST["definition"]).max_bytes
MAX_TASK_LENGTH = bounds(_STEP["task"]).max_len
MAX_NAME_LENGTH = bounds(_WORKFLOW["name"]).max_len
MAX_DESCRIPTION_LENGTH = bounds(_WORKFLOW["description"]).max_len
MAX_RETRIES = 100
DEFAULT_CONCURRENCY = 16
MAX_CONCURRENCY = 256
MAX_VIOLATIONS = 100
STEP_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
# The variables the engine gives `when` conditions and task templates.
EXPRESSION_VARIABLES = frozenset({"steps", "context", "workflow"})
# The field a problem with the text as a whole (syntax, shape) is reported on.
TEXT_FIELD = "definitionText"

_INT32_MAX = 2**31 - 1
_DURATION = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
ON_ERROR = ProtoEnum(workflow_pb2.OnErrorPolicy, str)

_WORKFLOW_KEYS = (
    "name",
    "description",
    "steps",
    "timeout",
    "maxConcurrency",
    "onError",
    "retryPolicy",
    "runtime",
    "command",
    "model",
    "repo",
    "notifyChannels",
)
_STEP_KEYS = (
    "id",
    "name",
    "task",
    "dependsOn",
    "timeout",
    "retries",
    "when",
    "agent",
    "agentSelector",
    "runtime",
    "command",
)
_SELECTOR_KEYS = ("teamId", "model", "label", "skills")
_RETRY_KEYS = ("maxRetries", "initialBackoff", "maxBackoff", "backoffMultiplier")


def load_definition(text: str) -> workflow_pb2.WorkflowDefinition:
    """Parses YAML or JSON (camelCase or snake_case keys) into a definition; raises ValidationError
    for syntax errors, unknown keys and wrongly typed values. Does not run validate()."""
    definition, violations = _load(text)
    _raise_if_any(violations)
    assert definition is not None
    return definition


def validate(definition: workflow_pb2.WorkflowDefinition) -> None:
    """Raises one ValidationError listing every problem with the definition."""
    _raise_if_any(check_definition(definition))


def parse_and_validate(text: str) -> workflow_pb2.WorkflowDefinition:
    """load_definition() then validate(), with the problems of both in one ValidationError."""
    definition, violations = _load(text)
    if definition is not None:
        # A value of the wrong type is loaded as empty; don't also call it missing.
        seen = {v.field for v in violations}
        violations += [v for v in check_definition(definition) if v.field not in seen]
    _raise_if_any(violations)
    assert definition is not None
    return definition


def _raise_if_any(violations: list[FieldViolation]) -> None:
    if len(violations) > MAX_VIOLATIONS:
        hidden = len(violations) - MAX_VIOLATIONS
        violations = [*violations[:MAX_VIOLATIONS], FieldViolation("definition", f"{hidden} more problems")]
    if violations:
        raise ValidationError(violations)


# ---------------------------------------------------------------------------------------------
# Checks


def check_definition(definition: workflow_pb2.WorkflowDefinition) -> list[FieldViolation]:
    """Every problem with the definition (empty when it can run)."""
    v = Violations()
    v.require("name", definition.name, max_len=MAX_NAME_LENGTH)
    v.max_len("description", definition.description, MAX_DESCRIPTION_LENGTH)
    _not_negative(v, "timeout", definition.timeout)
    if not 0 <= definition.max_concurrency <= MAX_CONCURRENCY:
        v.add(
            "maxConcurrency", f"must be between 0 (the default, {DEFAULT_CONCURRENCY}) and {MAX_CONCURRENCY}"
        )
    size = definition.ByteSize()
    if size > MAX_DEFINITION_BYTES:
        v.add("definition", f"must be at most {MAX_DEFINITION_BYTES} bytes as protobuf (has {size})")
    if definition.on_error not in workflow_pb2.OnErrorPolicy.values():
        v.add("onError", f"must be one of {', '.join(ON_ERROR.names)}")
    if definition.HasField("retry_policy"):
        _check_retry_policy(v, definition.retry_policy)
    _check_runtime(v, "runtime", definition.runtime)
    _check_command(v, "command", definition.command)
    v.max_len("model", definition.model, MAX_NAME_LENGTH)
    v.max_len("repo", definition.repo, 4096)
    check_notify_channels(v, "notifyChannels", definition.notify_channels)

    steps = definition.steps
    if not steps:
        v.add("steps", "at least one step is required")
    elif len(steps) > MAX_STEPS:
        v.add("steps", f"at most {MAX_STEPS} steps are allowed, got {len(steps)}")

    first: dict[str, int] = {}  # step id -> index of the step that owns it
    workflow_command_missing = False
    for i, step in enumerate(steps):
        path = f"steps[{i}]"
        if not step.id:
            v.add(f"{path}.id", "is required")
        elif not STEP_ID.fullmatch(step.id):
            v.add(f"{path}.id", "must be 1-100 characters: letters, digits, '_' or '-'")
        elif step.id in first:
            v.add(f"{path}.id", f"{step.id!r} is already the id of steps[{first[step.id]}]")
        else:
            first[step.id] = i
        v.max_len(f"{path}.name", step.name, MAX_NAME_LENGTH)
        v.require(f"{path}.task", step.task, max_len=MAX_TASK_LENGTH)
        _not_negative(v, f"{path}.timeout", step.timeout)
        if step.retries < 0 or step.retries > MAX_RETRIES:
            v.add(f"{path}.retries", f"must be between 0 and {MAX_RETRIES}")
        v.max_len(f"{path}.agent", step.agent, MAX_NAME_LENGTH)
        if step.HasField("agent_selector"):
            _check_selector(v, f"{path}.agentSelector", step.agent_selector)
        _check_runtime(v, f"{path}.runtime", step.runtime)
        _check_command(v, f"{path}.command", step.command)
        if (step.runtime or definition.runtime) == "command" and not (step.command or definition.command):
            if step.runtime:
                v.add(f"{path}.command", "is required for the command runtime")
            else:
                workflow_command_missing = True
    if workflow_command_missing:
        v.add("command", "is required for the command runtime (here, or on every step)")

    reach = Reachability(list(first), _check_dependencies(v, definition, first))
    for cycle in reach.cycles():
        v.add(f"steps[{first[cycle[0]]}].dependsOn", "cycle: " + " -> ".join(cycle))

    for i, step in enumerate(steps):
        owner = step.id if first.get(step.id) == i else None
        refs = _References(v, first, owner, reach)
        if step.when:
            try:
                condition = compile_expression(step.when)
            except ExpressionError as exc:
                v.add(f"steps[{i}].when", exc.message)
            else:
                refs.check(f"steps[{i}].when", condition.names, condition.step_refs)
        errors = check_template(step.task)
        for error in errors:
            v.add(f"steps[{i}].task", error)
        if not errors:
            template = compile_template(step.task)
            refs.check(f"steps[{i}].task", template.names, template.step_refs)
    return v.items


def concurrency(definition: workflow_pb2.WorkflowDefinition) -> int:
    """How many steps of the workflow run at once."""
    return definition.max_concurrency or DEFAULT_CONCURRENCY


def _not_negative(v: Violations, field: str, value: int) -> None:
    if value < 0:
        v.add(field, "must not be negative")


def _check_runtime(v: Violations, field: str, runtime: str) -> None:
    if runtime not in KNOWN_RUNTIMES:
        v.add(field, f"must be one of {', '.join(r for r in KNOWN_RUNTIMES if r)}")


def _check_command(v: Violations, field: str, command: Sequence[str]) -> None:
    if command and not command[0].strip():
        v.add(f"{field}[0]", "must name the program to run")


def _check_selector(v: Violations, path: str, selector: workflow_pb2.AgentSelector) -> None:
    v.uuid(f"{path}.teamId", selector.team_id)
    v.max_len(f"{path}.model", selector.model, MAX_NAME_LENGTH)
    v.max_len(f"{path}.label", selector.label, MAX_NAME_LENGTH)
    for j, skill in enumerate(selector.skills):
        v.require(f"{path}.skills[{j}]", skill, max_len=MAX_NAME_LENGTH)


def _check_retry_policy(v: Violations, policy: common_pb2.RetryPolicy) -> None:
    if not 0 <= policy.max_retries <= MAX_RETRIES:
        v.add("retryPolicy.maxRetries", f"must be between 0 and {MAX_RETRIES}")
    initial = policy.initial_backoff.seconds + policy.initial_backoff.nanos / 1e9
    maximum = policy.max_backoff.seconds + policy.max_backoff.nanos / 1e9
    if initial < 0:
        v.add("retryPolicy.initialBackoff", "must not be negative")
    if maximum < 0:
        v.add("retryPolicy.maxBackoff", "must not be negative")
    elif policy.HasField("max_backoff") and policy.HasField("initial_backoff") and maximum < initial:
        v.add("retryPolicy.maxBackoff", "must not be less than initialBackoff")
    multiplier = policy.backoff_multiplier
    # 0 means unset (the default, 2, applies).
    if multiplier != 0 and not 1 <= multiplier < math.inf:
        v.add("retryPolicy.backoffMultiplier", "must be at least 1")


def _check_dependencies(
    v: Violations, definition: workflow_pb2.WorkflowDefinition, first: Mapping[str, int]
) -> dict[str, list[str]]:
    """Checks every dependsOn entry; returns the usable edges of each (uniquely named) step."""
    deps: dict[str, list[str]] = {}
    for i, step in enumerate(definition.steps):
        usable: dict[str, None] = {}  # ordered set
        for j, dep in enumerate(step.depends_on):
            field = f"steps[{i}].dependsOn[{j}]"
            if not dep:
                v.add(field, "is empty")
            elif dep == step.id:
                v.add(field, "a step cannot depend on itself")
            elif dep not in first:
                v.add(field, f"unknown step {dep!r}")
            elif dep in usable:
                v.add(field, f"{dep!r} is listed twice")
            else:
                usable[dep] = None
        if first.get(step.id) == i:
            deps[step.id] = list(usable)
    return deps


class _References:
    """Checks the variables and steps an expression of one step reads."""

    def __init__(
        self, v: Violations, first: Mapping[str, int], owner: str | None, reach: Reachability
    ) -> None:
        self.v = v
        self.first = first
        self.owner = owner
        self.reach = reach

    def check(self, field: str, names: frozenset[str], step_refs: frozenset[str]) -> None:
        for name in sorted(names - EXPRESSION_VARIABLES):
            available = ", ".join(sorted(EXPRESSION_VARIABLES))
            self.v.add(field, f"unknown variable {name!r} (available: {available})")
        for ref in sorted(step_refs):
            if ref not in self.first:
                self.v.add(field, f"refers to unknown step {ref!r}")
            elif ref == self.owner:
                self.v.add(field, "a step cannot refer to itself")
            elif self.owner is not None and not self.reach.depends_on(self.owner, ref):
                self.v.add(
                    field,
                    f"refers to step {ref!r}, which it does not depend on (add {ref!r} to dependsOn)",
                )


# ---------------------------------------------------------------------------------------------
# Loading


def _load(text: str) -> tuple[workflow_pb2.WorkflowDefinition | None, list[FieldViolation]]:
    try:
        raw = _parse_text(text)
    except ValidationError as exc:
        return None, exc.violations
    if not isinstance(raw, Mapping):
        return None, [FieldViolation(TEXT_FIELD, "must be a mapping (name, steps, ...)")]
    reader = _Reader()
    definition = reader.workflow(raw)
    return definition, reader.v.items


def _parse_text(text: str) -> Any:
    if len(text) > MAX_TEXT_LENGTH:
        raise ValidationError.single(TEXT_FIELD, f"must be at most {MAX_TEXT_LENGTH} characters")
    if not text.strip():
        raise ValidationError.single(TEXT_FIELD, "is empty")
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            json_error = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        except _DuplicateKeyError as exc:
            raise ValidationError.single(TEXT_FIELD, f"invalid JSON: duplicate key {exc.key!r}") from None
        except RecursionError:
            raise ValidationError.single(TEXT_FIELD, "is nested too deeply") from None
        # `{name: x}` is YAML flow style, not JSON: give YAML a chance before reporting.
        try:
            return _parse_yaml(text)
        except ValidationError:
            raise ValidationError.single(TEXT_FIELD, json_error) from None
    return _parse_yaml(text)


class _DuplicateKeyError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _parse_yaml(text: str) -> Any:
    found = _yaml()
    if found is None:
        raise ValidationError.single(TEXT_FIELD, "YAML needs PyYAML, which is not installed: send JSON")
    yaml, loader_class = found
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ValidationError.single(TEXT_FIELD, f"invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise ValidationError.single(TEXT_FIELD, "is nested too deeply") from None
    finally:
        loader.dispose()


def _check_expansion(root: Any) -> None:
    """Refuses a YAML node graph whose aliases expand it past MAX_TEXT_LENGTH characters, or that
    contains itself. Each node is measured once (an alias shares its anchor's node)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ValidationError.single(TEXT_FIELD, "a YAML alias refers to a node that contains it")
        open_nodes.add(key)
        if isinstance(node.value, str):
            total = len(node.value) + 1
        else:
            total = 1
            for item in node.value:
                total += sum(size(n) for n in item) if isinstance(item, tuple) else size(item)
                if total > MAX_TEXT_LENGTH:
                    break
        open_nodes.discard(key)
        if total > MAX_TEXT_LENGTH:
            raise ValidationError.single(
                TEXT_FIELD, f"expands to more than {MAX_TEXT_LENGTH} characters through YAML aliases"
            )
        sizes[key] = total
        return total

    size(root)


@functools.cache
def _yaml() -> tuple[Any, Any] | None:
    """PyYAML and a safe loader that rejects duplicate keys, or None when PyYAML is missing."""
    try:
        import yaml
    except ImportError:
        return None

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                seen: set[str] = set()
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                        continue
                    if key_node.value in seen:
                        raise yaml.constructor.ConstructorError(
                            "while constructing a mapping",
                            node.start_mark,
                            f"found duplicate key {key_node.value!r}",
                            key_node.start_mark,
                        )
                    seen.add(key_node.value)
            return super().construct_mapping(node, deep=deep)

    return yaml, UniqueKeyLoader


@functools.cache
def _aliases(keys: tuple[str, ...]) -> dict[str, str]:
    """camelCase and snake_case spellings -> the camelCase key."""
    snake = {re.sub(r"[A-Z]", lambda m: "_" + m.group().lower(), k): k for k in keys}
    return {k: k for k in keys} | snake


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Reader:
    """Turns the parsed document into protobuf messages, noting every value it cannot use."""

    def __init__(self) -> None:
        self.v = Violations()

    def fields(self, raw: Any, path: str, keys: tuple[str, ...]) -> dict[str, Any]:
        """The mapping's values by camelCase key (nulls dropped); unknown keys are violations."""
        if not isinstance(raw, Mapping):
            self.v.add(path or TEXT_FIELD, "must be a mapping")
            return {}
        aliases = _aliases(keys)
        found: dict[str, Any] = {}
        for key, value in raw.items():
            canonical = aliases.get(key) if isinstance(key, str) else None
            if canonical is None:
                self.v.add(_join(path, str(key)), f"unknown key (known: {', '.join(keys)})")
            elif canonical in found:
                self.v.add(_join(path, canonical), "is given twice (camelCase and snake_case)")
            elif value is not None:
                found[canonical] = value
        return found

    def workflow(self, raw: Any) -> workflow_pb2.WorkflowDefinition:
        f = self.fields(raw, "", _WORKFLOW_KEYS)
        d = workflow_pb2.WorkflowDefinition(
            name=self.string(f, "", "name"),
            description=self.string(f, "", "description"),
            timeout=self.seconds(f, "", "timeout"),
            max_concurrency=self.integer(f, "", "maxConcurrency"),
            runtime=self.string(f, "", "runtime"),
            command=self.strings(f, "", "command"),
            model=self.string(f, "", "model"),
            repo=self.string(f, "", "repo"),
            notify_channels=self.strings(f, "", "notifyChannels"),
        )
        if "onError" in f:
            d.on_error = self.on_error(f["onError"])
        if "retryPolicy" in f:
            d.retry_policy.CopyFrom(self.retry_policy(f["retryPolicy"]))
        if "steps" in f:
            d.steps.extend(self.steps(f["steps"]))
        return d

    def steps(self, raw: Any) -> list[workflow_pb2.StepDefinition]:
        if not isinstance(raw, list):
            self.v.add("steps", "must be a list")
            return []
        if len(raw) > MAX_STEPS:
            self.v.add("steps", f"at most {MAX_STEPS} steps are allowed, got {len(raw)}")
            raw = raw[:MAX_STEPS]
        return [self.step(item, f"steps[{i}]") for i, item in enumerate(raw)]

    def step(self, raw: Any, path: str) -> workflow_pb2.StepDefinition:
        f = self.fields(raw, path, _STEP_KEYS)
        step = workflow_pb2.StepDefinition(
            id=self.string(f, path, "id"),
            name=self.string(f, path, "name"),
            task=self.string(f, path, "task"),
            depends_on=self.strings(f, path, "dependsOn", single=True),
            timeout=self.seconds(f, path, "timeout"),
            retries=self.integer(f, path, "retries"),
            when=self.string(f, path, "when"),
            agent=self.string(f, path, "agent"),
            runtime=self.string(f, path, "runtime"),
            command=self.strings(f, path, "command"),
        )
        if "agentSelector" in f:
            selector_path = f"{path}.agentSelector"
            s = self.fields(f["agentSelector"], selector_path, _SELECTOR_KEYS)
            step.agent_selector.CopyFrom(
                workflow_pb2.AgentSelector(
                    team_id=self.string(s, selector_path, "teamId"),
                    model=self.string(s, selector_path, "model"),
                    label=self.string(s, selector_path, "label"),
                    skills=self.strings(s, selector_path, "skills", single=True),
                )
            )
        return step

    def retry_policy(self, raw: Any) -> common_pb2.RetryPolicy:
        path = "retryPolicy"
        f = self.fields(raw, path, _RETRY_KEYS)
        policy = common_pb2.RetryPolicy(max_retries=self.integer(f, path, "maxRetries"))
        for key, target in (("initialBackoff", policy.initial_backoff), ("maxBackoff", policy.max_backoff)):
            if key in f:
                seconds = self.duration(_join(path, key), f[key])
                if seconds is not None:
                    target.FromNanoseconds(round(seconds * 1e9))
        if "backoffMultiplier" in f:
            value = f["backoffMultiplier"]
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.v.add(_join(path, "backoffMultiplier"), "must be a number")
            else:
                policy.backoff_multiplier = float(value)
        return policy

    def on_error(self, raw: Any) -> workflow_pb2.OnErrorPolicy.ValueType:
        if isinstance(raw, str):
            name = ON_ERROR.parse(raw)
            if name is not None:
                return ON_ERROR.to_proto(name)
            if raw.strip().upper().removeprefix(ON_ERROR.prefix) in ("", "UNSPECIFIED"):
                return workflow_pb2.ON_ERROR_POLICY_UNSPECIFIED
        self.v.add("onError", f"must be one of {', '.join(ON_ERROR.names)}")
        return workflow_pb2.ON_ERROR_POLICY_UNSPECIFIED

    def string(self, f: Mapping[str, Any], path: str, key: str) -> str:
        value = f.get(key, "")
        if isinstance(value, str):
            return value
        # YAML reads `id: 1` as a number; a whole number is an unambiguous string.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        self.v.add(_join(path, key), "must be a string")
        return ""

    def strings(self, f: Mapping[str, Any], path: str, key: str, *, single: bool = False) -> list[str]:
        """A list of strings; with single=True a lone string is taken as a list of one."""
        value = f.get(key, [])
        field = _join(path, key)
        if single and isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            self.v.add(field, "must be a list of strings")
            return []
        result: list[str] = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                result.append(item)
            elif isinstance(item, int | float) and not isinstance(item, bool):
                result.append(str(item))
            else:
                self.v.add(f"{field}[{i}]", "must be a string")
        return result

    def integer(self, f: Mapping[str, Any], path: str, key: str) -> int:
        value = f.get(key, 0)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.v.add(_join(path, key), "must be a whole number")
            return 0
        return self.int32(_join(path, key), value)

    def seconds(self, f: Mapping[str, Any], path: str, key: str) -> int:
        """Whole seconds, given as a number or a duration like "90s", "5m" or "1h30m"."""
        if key not in f:
            return 0
        field = _join(path, key)
        seconds = self.duration(field, f[key])
        if seconds is None:
            return 0
        if not seconds.is_integer():
            self.v.add(field, "must be a whole number of seconds")
            return 0
        return self.int32(field, int(seconds))

    def duration(self, field: str, value: Any) -> float | None:
        """Seconds from a number or a string such as "2s", "1.5s", "500ms", "5m" or "1h30m"."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str) and (parsed := _parse_duration(value)) is not None:
            seconds = parsed
        else:
            self.v.add(field, 'must be a number of seconds or a duration such as "30s", "5m" or "1h"')
            return None
        if not math.isfinite(seconds) or abs(seconds) > _INT32_MAX:
            self.v.add(field, "is out of range")
            return None
        return seconds

    def int32(self, field: str, value: int) -> int:
        if not -_INT32_MAX - 1 <= value <= _INT32_MAX:
            self.v.add(field, "is out of range")
            return 0
        return value


def _parse_duration(text: str) -> float | None:
    text = text.strip()
    try:
        return float(text) if text and text[-1].isdigit() else _units(text)
    except ValueError:
        return None


def _units(text: str) -> float | None:
    total, pos = 0.0, 0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    return total if text and pos == len(text) else None
