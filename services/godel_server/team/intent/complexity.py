"""Task complexity (spec §4.4 ComplexityAnalyzer): factor scores from keyword lexicons and task
length, combined with the spec's weights. Deterministic: the same text always scores the same."""

from __future__ import annotations

import re

from godel.v1 import intent_pb2
from godel_server.runtime.pricing import DEFAULT_PRICES, FALLBACK_PRICE

# Spec §4.4 calculateComplexity, in ComplexityFactors order.
WEIGHTS = (0.25, 0.20, 0.25, 0.15, 0.15)
FACTOR_NAMES = ("code_complexity", "domain_complexity", "uncertainty", "dependencies", "scope_size")
# A plain task with no telling words lands at "simple" to "moderate".
_BASE = (2.5, 2.0, 2.5, 2.0, 2.0)

# Each term adds to (code, domain, uncertainty, dependencies, scope); negative terms mark small,
# mechanical work. Terms are regexes matched case-insensitively on word boundaries.
_TERMS: tuple[tuple[str, tuple[float, float, float, float, float]], ...] = (
    (r"distributed", (2.5, 2.0, 1.5, 3.0, 2.0)),
    (r"consensus", (3.0, 3.0, 2.0, 2.0, 1.5)),
    (r"byzantine", (2.0, 4.0, 3.0, 1.0, 1.0)),
    (r"fault[\s-]toleran\w*", (2.5, 2.0, 2.5, 1.5, 1.5)),
    (r"algorithm\w*", (2.0, 1.5, 1.0, 0.0, 0.5)),
    (
        r"concurren\w*|multi[\s-]?thread\w*|lock[\s-]free|race\s+conditions?|deadlocks?",
        (2.5, 1.5, 2.0, 0.5, 0.5),
    ),
    (r"compilers?|interpreters?|kernels?|virtual\s+machines?", (3.0, 3.0, 1.5, 0.5, 2.0)),
    (r"cryptograph\w*|encrypt\w*", (2.0, 3.0, 1.5, 1.0, 0.5)),
    (r"real[\s-]time|low[\s-]latency", (2.0, 1.0, 1.5, 1.0, 0.5)),
    (r"replicat\w*|shard\w*|partition\w*", (2.0, 1.5, 1.0, 2.0, 1.0)),
    (r"scal(?:e|able|ability|ing)", (1.5, 1.0, 1.0, 1.5, 1.0)),
    (r"performance|optimi[sz]\w*|latency|throughput", (1.5, 1.0, 1.5, 0.5, 0.5)),
    (r"machine\s+learning|ml|neural|training|embeddings?|llms?", (1.5, 3.0, 2.0, 1.0, 1.0)),
    (r"security|vulnerabilit\w*|auth\w*|oauth|sso|permissions?|exploits?", (1.0, 2.0, 1.0, 1.0, 0.5)),
    (r"payments?|billing|financ\w*|compliance|gdpr|hipaa|pci|legal", (0.5, 2.5, 1.0, 1.5, 0.5)),
    (r"migrat\w*", (1.5, 1.0, 1.5, 2.0, 1.5)),
    (r"databases?|schemas?|sql|postgres\w*|transactions?", (1.0, 0.5, 0.5, 1.5, 0.5)),
    (r"integrat\w*|third[\s-]party|external|apis?|webhooks?|sdks?", (1.0, 0.5, 1.0, 2.5, 0.5)),
    (
        r"microservices?|services|kafka|queues?|clusters?|network\w*|cloud|kubernetes|k8s",
        (1.0, 0.5, 0.5, 2.0, 1.0),
    ),
    (
        r"research\w*|investigat\w*|explor\w*|prototyp\w*|experiment\w*|novel|unknown|figure\s+out|evaluat\w*",
        (0.5, 1.0, 3.0, 0.5, 1.0),
    ),
    (r"debug\w*|flaky|intermittent\w*|root\s+cause|memory\s+leaks?|crash\w*", (1.5, 0.5, 2.5, 0.5, 0.5)),
    (r"architect\w*|design\w*", (1.5, 1.0, 1.5, 1.0, 1.5)),
    (r"refactor\w*|rewrite|overhaul\w*", (1.5, 0.5, 1.0, 1.0, 2.0)),
    (r"implement\w*|build|develop|create", (1.0, 0.0, 0.5, 0.0, 1.0)),
    (
        r"entire|whole|every|across|end[\s-]to[\s-]end|from\s+scratch|platform|system|framework|infrastructure",
        (0.5, 0.0, 0.5, 0.5, 2.0),
    ),
    (r"each|datasets?|batch\w*|files|records|bulk|aggregat\w*", (0.0, 0.0, 0.0, 0.5, 2.0)),
    (r"tests?|testing", (0.5, 0.0, 0.0, 0.0, 0.5)),
    (r"typos?|spelling|misspell\w*|wording|grammar", (-2.0, -2.0, -2.0, -2.0, -2.0)),
    (r"readme|docs?|documentation|comments?|changelog|docstrings?", (-1.0, -1.0, -1.0, -1.0, -0.5)),
    (r"rename|format\w*|lint\w*|whitespace|indent\w*|bump", (-1.0, -1.0, -1.0, -0.5, -1.0)),
    (r"simple|small|minor|quick|trivial|tiny|single|one[\s-]line", (-1.0, -0.5, -1.0, -0.5, -1.5)),
)
_COMPILED = tuple((re.compile(rf"\b(?:{p})\b", re.IGNORECASE), w) for p, w in _TERMS)
_CLAUSE = re.compile(r"\band\b|\bthen\b|[,;]", re.IGNORECASE)
_WORD = re.compile(r"[\w'-]+")

_SECURITY = re.compile(r"\b(?:security|vulnerab\w*|auth\w*|oauth|sso|crypt\w*|permissions?|secrets?)\b", re.I)
_DATA = re.compile(r"\b(?:migrat\w*|delete|drop|databases?|schemas?|production|prod|backfill\w*)\b", re.I)
_CONCURRENCY = re.compile(r"\b(?:concurren\w*|parallel\w*|thread\w*|distributed|race|locks?|async)\b", re.I)

MODELS_BY_CATEGORY = {
    "simple": ["kimi-k2.5"],
    "moderate": ["kimi-k2.5", "gpt-4o"],
    "complex": ["claude-sonnet-4", "kimi-k2.5", "gpt-4o"],
    "very-complex": ["claude-sonnet-4", "gpt-4o", "kimi-k2.5"],
}
# A rough agent-minute of work in tokens (prompt, completion), to turn effort into dollars.
TOKENS_PER_AGENT_MINUTE = (30_000, 3_000)


def category(score: float) -> str:
    if score < 3:
        return "simple"
    if score < 5:
        return "moderate"
    if score < 7.5:
        return "complex"
    return "very-complex"


def team_size(score: float) -> int:
    """1 for simple tasks, growing ever faster to 10 at the top score."""
    if score < 3:
        return 1
    grown: float = 9 * ((score - 1) / 9) ** 1.5
    return max(2, min(10, 1 + round(grown)))


def weighted_score(factors: intent_pb2.ComplexityFactors) -> float:
    """Spec §4.4 calculateComplexity: the weighted sum, clamped to 1..10."""
    total: float = sum(
        getattr(factors, name) * weight for name, weight in zip(FACTOR_NAMES, WEIGHTS, strict=True)
    )
    return min(10.0, max(1.0, total))


def analyze_complexity(task: str) -> intent_pb2.ComplexityReport:
    raw = list(_BASE)
    hits = 0
    for pattern, weights in _COMPILED:
        if pattern.search(task):
            hits += 1
            for i, w in enumerate(weights):
                raw[i] += w
    words = len(_WORD.findall(task))
    clauses = len(_CLAUSE.findall(task))
    raw[4] += min(3.0, max(0.0, (words - 8) / 8)) + min(2.0, 0.5 * clauses)
    raw[0] += min(1.5, max(0.0, (words - 12) / 16))
    factors = intent_pb2.ComplexityFactors(
        **{name: round(min(10.0, max(1.0, v)), 2) for name, v in zip(FACTOR_NAMES, raw, strict=True)}
    )
    score = round(weighted_score(factors), 2)
    cat = category(score)
    size = team_size(score)
    models = MODELS_BY_CATEGORY[cat]
    effort = effort_minutes(score)
    confidence = min(0.95, 0.55 + 0.08 * hits) - (0.15 if words < 3 else 0.0)
    return intent_pb2.ComplexityReport(
        score=score,
        category=cat,
        factors=factors,
        recommended_team_size=size,
        recommended_models=models,
        estimated_duration=round(effort / size**0.6, 1),
        estimated_cost=round(effort * sum(_minute_cost(m) for m in models) / len(models), 2),
        risks=_risks(task, factors),
        confidence=round(confidence, 2),
    )


def _minute_cost(model: str) -> float:
    prompt, completion = DEFAULT_PRICES.get(model, FALLBACK_PRICE)
    return (TOKENS_PER_AGENT_MINUTE[0] * prompt + TOKENS_PER_AGENT_MINUTE[1] * completion) / 1_000_000


def _severity(value: float) -> str:
    return "high" if value >= 8.5 else "medium" if value >= 7 else "low"


def _risks(task: str, f: intent_pb2.ComplexityFactors) -> list[intent_pb2.Risk]:
    risks: list[intent_pb2.Risk] = []

    def add(name: str, severity: str, description: str) -> None:
        risks.append(intent_pb2.Risk(name=name, severity=severity, description=description))

    if f.code_complexity >= 7:
        add(
            "implementation-complexity",
            _severity(f.code_complexity),
            "Intricate code; expect several iterations",
        )
    if f.domain_complexity >= 7:
        add(
            "domain-expertise",
            _severity(f.domain_complexity),
            "Needs specialist knowledge; have experts review",
        )
    if f.uncertainty >= 7:
        add("uncertainty", _severity(f.uncertainty), "Many unknowns; the plan may change as work proceeds")
    if f.dependencies >= 6:
        add("external-dependencies", _severity(max(f.dependencies, 7)), "Relies on other systems or services")
    if f.scope_size >= 7:
        add("scope-creep", _severity(f.scope_size), "Large scope; split it into milestones")
    if _SECURITY.search(task):
        add("security", "high", "Touches security-sensitive code; review every change")
    if _DATA.search(task):
        add("data-loss", "high", "Changes stored data; back up and test on a copy first")
    if _CONCURRENCY.search(task):
        add("race-conditions", "medium", "Concurrency bugs are hard to reproduce; test under load")
    return risks


def effort_minutes(score: float) -> float:
    """Agent-minutes of work a task of this score takes (a rough, monotonic estimate)."""
    effort: float = 10 * score**1.5
    return effort
