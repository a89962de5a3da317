"""Input checks for AgentService requests; every violation is reported at once."""

from __future__ import annotations

from godel.v1 import agent_service_pb2
from godel_server.runtime.agent_rules import KNOWN_RUNTIMES, config_problems, placement_problems, safety_rules
from godel_server.runtime.events import struct_to_dict
from godel_server.runtime.validation import Violations

MAX_TASK_LEN = 100_000


def check_create(request: agent_service_pb2.CreateAgentRequest) -> None:
    v = Violations()
    v.require("task", request.task, max_len=MAX_TASK_LEN)
    v.max_len("model", request.model, 255)
    v.max_len("label", request.label, 255)
    v.max_len("request_id", request.request_id, 100)
    v.uuid("team_id", request.team_id)
    v.uuid("parent_session_id", request.parent_session_id)
    v.max_len("owner_user_id", request.owner_user_id, 100)
    v.uuid("owner_team_id", request.owner_team_id)
    if request.owner_team_id and not request.owner_user_id:
        v.add("owner_team_id", "needs owner_user_id")
    if request.HasField("max_retries") and not 0 <= request.max_retries <= 100:
        v.add("max_retries", "must be between 0 and 100")
    if request.HasField("budget_limit") and not request.budget_limit > 0:
        v.add("budget_limit", "must be greater than 0")
    config = request.config
    if config.runtime not in KNOWN_RUNTIMES:
        v.add("config.runtime", f"must be one of {', '.join(r for r in KNOWN_RUNTIMES if r)}")
    if config.HasField("temperature") and not 0 <= config.temperature <= 2:
        v.add("config.temperature", "must be between 0 and 2")
    if config.HasField("max_tokens") and config.max_tokens <= 0:
        v.add("config.max_tokens", "must be greater than 0")
    if config.runtime == "command" and not config.command:
        v.add("config.command", "is required for the command runtime")
    for name, problem in config_problems(config):
        v.add(f"config.{name}", problem)
    try:
        safety_rules(struct_to_dict(request.safety_boundaries))
    except ValueError as exc:
        v.add("safety_boundaries", f"must have the shape of godel.v1.SafetyRules: {exc}")
    for name, problem in placement_problems(request.placement):
        v.add(f"placement.{name}", problem)
    v.raise_if_any()
