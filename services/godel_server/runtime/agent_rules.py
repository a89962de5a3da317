"""Rules of an AgentConfig's sandbox and tools, and of an AgentPlacement, that hold everywhere: the
agent service refuses a request that breaks them (INVALID_ARGUMENT naming the field), the team
service a team whose members would, and a worker refuses such a run again, whoever assigned it.
Also the reading of an agent's safety_boundaries (a JSON object) as the SafetyRules message of the
contract, which both the agent service and the workers use."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import json_format

from godel.v1 import agent_pb2
from godel_server.runtime.statuses import LOAD_BALANCE_STRATEGY

SANDBOX_KINDS = ("", "bubblewrap")
MAX_SANDBOX_PATHS = 32
MAX_PATH_LEN = 4096
# Worker labels (WorkerHello.labels) and the selectors that match them (AgentConfig.worker_selector).
MAX_LABELS = 32  # as the (godel.v1.limits) of AgentConfig.worker_selector and WorkerHello.labels
MAX_LABEL_LEN = 63
_LIMITS = ("max_memory_mb", "max_processes", "max_cpu_seconds", "max_cpu_cores")

# Runtimes a worker hosts ("" in an AgentConfig means "command"): the services accept these.
RUNTIMES = ("command", "openai", "openclaw")
KNOWN_RUNTIMES = ("", *RUNTIMES)

# Tools of the "openai" runtime; config.tools is an allow-list of these, or of the spec's groups.
OPENAI_TOOLS = ("shell", "read_file", "write_file", "git_commit")
TOOL_GROUPS: dict[str, tuple[str, ...]] = {
    "bash": ("shell",),
    "file": ("read_file", "write_file"),
    "git": ("git_commit",),
}
# What an agent whose config.tools is empty gets: everything but running commands.
DEFAULT_TOOLS = ("read_file", "write_file", "git_commit")


def granted_tools(config_tools: Iterable[str]) -> tuple[str, ...]:
    """The tools config.tools grants (names and groups expanded, unknown names ignored: the agent
    service refuses them), in OPENAI_TOOLS order; DEFAULT_TOOLS when it names none."""
    names: set[str] = set()
    for name in config_tools:
        names.update(TOOL_GROUPS.get(name, (name,)))
    return tuple(tool for tool in OPENAI_TOOLS if tool in names) or DEFAULT_TOOLS


def label_problems(labels: Mapping[str, str], name: str = "labels") -> list[tuple[str, str]]:
    """(field, what is wrong) for a map of labels: at most MAX_LABELS, keys not empty, keys and
    values at most MAX_LABEL_LEN characters."""
    if len(labels) > MAX_LABELS:
        return [(name, f"at most {MAX_LABELS} labels")]
    return [
        (
            f"{name}[{key[:100]!r}]",
            f"keys must be 1-{MAX_LABEL_LEN} characters, values at most {MAX_LABEL_LEN}",
        )
        for key, value in labels.items()
        if not 0 < len(key) <= MAX_LABEL_LEN or len(value) > MAX_LABEL_LEN
    ]


def config_problems(config: agent_pb2.AgentConfig) -> list[tuple[str, str]]:
    """(field, what is wrong) for every broken rule; fields are relative to the config ("sandbox.kind")."""
    problems: list[tuple[str, str]] = []
    sandbox = config.sandbox
    if sandbox.kind not in SANDBOX_KINDS:
        problems.append(("sandbox.kind", 'must be "" or "bubblewrap" (every agent runs sandboxed)'))
    for name in _LIMITS:
        if getattr(sandbox.limits, name) < 0:
            problems.append((f"sandbox.limits.{name}", "must not be negative"))
    for name in ("read_paths", "write_paths"):
        paths = list(getattr(sandbox, name))
        if len(paths) > MAX_SANDBOX_PATHS:
            problems.append((f"sandbox.{name}", f"must list at most {MAX_SANDBOX_PATHS} paths"))
        for path in paths:
            if not path.startswith("/") or len(path) > MAX_PATH_LEN:
                problems.append((f"sandbox.{name}", f"{path[:100]!r} must be an absolute path"))
    problems.extend(label_problems(config.worker_selector, "worker_selector"))
    known = (*OPENAI_TOOLS, *TOOL_GROUPS)
    for tool in config.tools:
        if tool not in known:
            problems.append(("tools", f"unknown tool {tool[:100]!r} (tools: {', '.join(known)})"))
    return problems


_ACTIONS = {"fail": "SAFETY_ACTION_FAIL", "pause": "SAFETY_ACTION_PAUSE"}
# The rules a safety:block names.
SAFETY_RULES = (
    "config.tools",
    "config.sandbox",
    "safetyBoundaries.forbiddenPaths",
    "safetyBoundaries.forbiddenCommands",
    "safetyBoundaries.maxFilesChanged",
    "safetyBoundaries.maxDiffLines",
)


def safety_rules(boundaries: Mapping[str, Any] | None) -> agent_pb2.SafetyRules:
    """An agent's safety_boundaries as SafetyRules; ValueError saying what does not fit the shape.
    onViolation may also be "fail" or "pause"."""
    data = dict(boundaries or {})
    for key in ("onViolation", "on_violation"):
        action = data.get(key)
        if isinstance(action, str) and action.lower() in _ACTIONS:
            data[key] = _ACTIONS[action.lower()]
    try:
        rules = json_format.ParseDict(data, agent_pb2.SafetyRules())
    except json_format.ParseError as exc:
        raise ValueError(str(exc)) from None
    for name in ("max_files_changed", "max_diff_lines"):
        if getattr(rules, name) < 0:
            raise ValueError(f"{name} must not be negative")
    return rules


MAX_PLACEMENT_NAMES = 64  # agent.proto's (godel.v1.limits) of AgentPlacement.features


def placement_problems(placement: agent_pb2.AgentPlacement) -> list[tuple[str, str]]:
    """(field, what is wrong) for every broken rule; fields are relative to the placement."""
    problems: list[tuple[str, str]] = []
    if len(placement.region) > 100:
        problems.append(("region", "must be at most 100 characters"))
    if not 0 <= placement.min_capacity <= 1_000_000:
        problems.append(("min_capacity", "must be between 0 and 1000000"))
    features = list(placement.features)
    if len(features) > MAX_PLACEMENT_NAMES or any(not f.strip() or len(f) > 255 for f in features):
        problems.append(("features", f"at most {MAX_PLACEMENT_NAMES} names, each 1-255 characters"))
    if placement.strategy and LOAD_BALANCE_STRATEGY.get(placement.strategy) is None:
        problems.append(("strategy", f"must be {LOAD_BALANCE_STRATEGY.choices()}"))
    return problems
