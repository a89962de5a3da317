"""Team (swarm) configurations for a task (spec §4.4 SwarmConfigGenerator): size from complexity,
roles and strategy from keywords, all within the caller's constraints. Deterministic."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from godel.v1 import intent_pb2, team_pb2
from godel_server.team.intent.complexity import analyze_complexity
from godel_server.team.intent.parser import strategy_mention
from godel_server.team.teams.mapping import DEFAULT_STRATEGY, STRATEGY


@dataclass(frozen=True)
class RoleTemplate:
    role: str
    count: int
    model: str
    skills: tuple[str, ...]
    responsibilities: tuple[str, ...]


# Spec §4.4 Role Templates.
ROLE_TEMPLATES: dict[str, RoleTemplate] = {
    "worker": RoleTemplate(
        role="worker",
        count=1,
        model="kimi-k2.5",
        skills=("coding", "testing"),
        responsibilities=("Implement features", "Write tests"),
    ),
    "reviewer": RoleTemplate(
        role="reviewer",
        count=1,
        model="gpt-4o",
        skills=("code-review", "security"),
        responsibilities=("Review code", "Identify issues"),
    ),
    "architect": RoleTemplate(
        role="architect",
        count=1,
        model="claude-sonnet-4",
        skills=("architecture", "design"),
        responsibilities=("Design decisions", "Integration planning"),
    ),
}
ROLE_ORDER = ("architect", "worker", "reviewer")

# A large implementation team gets one reviewer of its own.
REVIEWER_FROM_SIZE = 5
# Mapping over items is only worth it with at least two agents.
MIN_MAP_REDUCE_SIZE = 2
MIN_TIMEOUT_MINUTES = 15
MAX_TIMEOUT_MINUTES = 24 * 60

_I = re.IGNORECASE
_REVIEW = re.compile(r"\b(?:review\w*|audit\w*|inspect\w*|assess\w*|analy[sz]\w*|critique)\b", _I)
_DESIGN = re.compile(r"\b(?:design\w*|architect\w*|re-?architect\w*|blueprint)\b", _I)
_BUILD = re.compile(
    r"\b(?:implement\w*|build\w*|fix\w*|write|writing|add|create|develop\w*|refactor\w*|migrat\w*|port"
    r"|rewrite|test\w*|deploy\w*|update|upgrade)\b",
    _I,
)
_MAP_REDUCE = re.compile(
    r"\b(?:process\w*|data(?:sets?)?|split\w*|each\s+(?:file|module|service|record|item)|every\s+file"
    r"|per[\s-]file|batch\w*|records|aggregat\w*|shard\w*)\b",
    _I,
)
_PIPELINE = re.compile(
    r"\b(?:pipelines?|stages?|staged|step[\s-]by[\s-]step|sequential\w*|then|build|deploy\w*|release|rollout|ci/cd)\b",
    _I,
)
_SLUG_STOP_WORDS = frozenset(
    {"the", "a", "an", "of", "in", "on", "to", "for", "and", "or", "with", "into", "from", "by", "at"}
    | {"our", "my", "your", "this", "that", "these", "those", "is", "are", "be", "please", "all", "some"}
)
_SLUG_WORD = re.compile(r"[a-z0-9]+")
MAX_SLUG_WORDS = 4
MAX_SLUG_LEN = 48


def generate_swarm_config(
    task: str, constraints: intent_pb2.SwarmConstraints | None = None
) -> intent_pb2.SwarmConfig:
    task = task.strip()
    report = analyze_complexity(task)
    size = report.recommended_team_size
    if constraints is not None and constraints.max_agents > 0:
        size = min(size, constraints.max_agents)
    if constraints is not None and constraints.strategy != team_pb2.EXECUTION_STRATEGY_UNSPECIFIED:
        strategy = constraints.strategy
    else:
        strategy = STRATEGY.to_proto(recommend_strategy(task, report.category))
    if strategy == team_pb2.EXECUTION_STRATEGY_MAP_REDUCE and size < MIN_MAP_REDUCE_SIZE:
        limit = constraints.max_agents if constraints is not None and constraints.max_agents > 0 else None
        size = min(MIN_MAP_REDUCE_SIZE, limit or MIN_MAP_REDUCE_SIZE)
    counts = role_counts(task, size, report.category)
    allowed = list(constraints.models) if constraints is not None else []

    agents: list[intent_pb2.AgentRoleConfig] = []
    models: list[str] = []
    skills: list[str] = []
    for role in ROLE_ORDER:
        if not counts.get(role):
            continue
        template = ROLE_TEMPLATES[role]
        model = template.model if not allowed or template.model in allowed else allowed[0]
        agents.append(
            intent_pb2.AgentRoleConfig(
                role=role,
                count=counts[role],
                model=model,
                skills=template.skills,
                responsibilities=template.responsibilities,
            )
        )
        if model not in models:
            models.append(model)
        skills.extend(s for s in template.skills if s not in skills)

    timeout = math.ceil(report.estimated_duration * 2 / 5) * 5
    config = intent_pb2.SwarmConfig(
        name=slug(task),
        description=(
            f"{size}-agent {STRATEGY.get(strategy) or DEFAULT_STRATEGY} team for a {report.category} task"
            f" (complexity {report.score:.1f}/10)"
        ),
        size=size,
        agents=agents,
        strategy=strategy,
        timeout=max(MIN_TIMEOUT_MINUTES, min(MAX_TIMEOUT_MINUTES, timeout)),
        requirements=intent_pb2.SwarmRequirements(models=models, skills=skills),
        task=task,
    )
    if constraints is not None and constraints.HasField("budget_limit"):
        config.budget_limit = constraints.budget_limit
    return config


def role_counts(task: str, size: int, category: str) -> dict[str, int]:
    """How many agents of each role a team of `size` gets for `task`; the counts add up to `size`."""
    review = bool(_REVIEW.search(task))
    design = bool(_DESIGN.search(task))
    build = bool(_BUILD.search(task))
    if review and not (build or design):
        return {"reviewer": size}
    architect = 1 if design or (category == "very-complex" and size >= 3) else 0
    rest = size - architect
    # Review-and-fix work splits evenly; other teams get one reviewer once they are large.
    reviewer = (max(1, rest // 2) if rest >= 2 else 0) if review else int(size >= REVIEWER_FROM_SIZE)
    return {"architect": architect, "worker": rest - reviewer, "reviewer": reviewer}


def recommend_strategy(task: str, category: str) -> str:
    """parallel, map-reduce, pipeline or tree. A strategy the task names wins; then review and
    analysis run in parallel, per-item data work maps and reduces, staged work (build, deploy) runs as
    a pipeline, and very complex work is decomposed as a tree."""
    named = strategy_mention(task)
    if named is not None:
        return named
    if _REVIEW.search(task):
        return "parallel"
    if _MAP_REDUCE.search(task):
        return "map-reduce"
    if _PIPELINE.search(task):
        return "pipeline"
    if category == "very-complex":
        return "tree"
    return "parallel"


def slug(task: str) -> str:
    """A short name from the task's first telling words: "review-authentication-code"."""
    words = [w for w in _SLUG_WORD.findall(task.lower()) if w not in _SLUG_STOP_WORDS][:MAX_SLUG_WORDS]
    name = ""
    for word in words:
        candidate = f"{name}-{word}" if name else word
        if len(candidate) > MAX_SLUG_LEN:
            name = name or word[:MAX_SLUG_LEN]
            break
        name = candidate
    return name or "team"
