"""Rule-based intent parsing (spec §4.4 IntentParser): keyword tables and regexes, no model, so the
same input always gives the same intent. Entity offsets index into the original input."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from godel.v1 import intent_pb2
from godel_server.runtime.errors import ValidationError
from godel_server.team.teams.mapping import STRATEGY

MAX_INPUT_LEN = 10_000
CUSTOM_CONFIDENCE = 0.3

NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
}
_NUM = r"(?:\d{1,4}|" + "|".join(sorted(NUMBER_WORDS, key=len, reverse=True)) + r")"
_AGENT_NOUN = (
    r"(?:agents?|workers?|members?|bots?|people|persons?|devs?|developers?|engineers?|coders?|reviewers?)"
)
_TEAM_NOUN = r"(?:team|swarm|group|squad|crew|fleet)"
_MODEL_NAME = (
    r"(?:gpt-?[\w.-]*|o[134](?:-[\w.-]+)?|claude[\w.-]*|kimi[\w.-]*|gemini[\w.-]*|llama[\w.-]*"
    r"|mistral[\w.-]*|mixtral[\w.-]*|deepseek[\w.-]*|qwen[\w.-]*|grok[\w.-]*)"
)
_ID = r"[\w.:/@#-]+"
_I = re.IGNORECASE

# Politeness and framing in front of the command ("Please", "can you", "I want you to").
_PREFIX = re.compile(
    r"\s*(?:(?:please|pls|hey|hi|ok(?:ay)?|now|godel)\b[\s,!]*)*"
    r"(?:(?:can|could|would|will)\s+you\s+(?:please\s+)?)?"
    r"(?:(?:i|we)\s+(?:want|need|would\s+like)\s+(?:you\s+)?to\s+)?"
    r"(?:(?:let's|lets|let\s+us|go\s+ahead\s+and|please)\s+)?",
    _I,
)

_STOP = re.compile(
    r"(?P<verb>stop|kill|cancel|terminate|abort|halt|shut\s+down)\b"
    r"(?:\s+(?P<all>all|every|everything)\b)?"
    r"(?:\s+(?:the|my|this|that|running|current|active|of))*"
    r"(?:\s+(?P<kind>agent|team|task|workflow|swarm|job|run|execution)s?\b(?![-_]))?"
    rf"(?:\s+(?P<id>(?!(?:now|please|immediately|right|asap)\b)[\"']?{_ID}))?",
    _I,
)
_SCALE = re.compile(
    r"(?P<verb>scale|resize|grow|shrink|expand|reduce)(?:\s+(?P<dir>up|down|out|in)\b)?"
    r"(?:\s+(?:the|my))?"
    rf"(?:\s+(?P<kind>{_TEAM_NOUN})\b)?"
    rf"(?:\s+(?P<id>(?!(?:to|by|up|down)\b)[\"']?{_ID}))?"
    rf"(?:\s+{_TEAM_NOUN}\b)?"
    rf"\s+(?:(?P<to>to)|(?P<by>by))\s+(?P<n>{_NUM})\b(?:\s+{_AGENT_NOUN}\b)?",
    _I,
)
_SCALE_ADD = re.compile(
    rf"(?P<verb>add|remove)\s+(?P<n>{_NUM})\s+(?:more\s+|new\s+|extra\s+)?{_AGENT_NOUN}\s+"
    rf"(?:to|from)\s+(?:the\s+)?(?:{_TEAM_NOUN}\s+)?(?P<id>[\"']?{_ID})",
    _I,
)
_SCALE_LOOSE = re.compile(
    r"(?:scale|resize)(?:\s+(?P<dir>up|down|out|in)\b)?(?:\s+(?:the|my))?"
    rf"(?:\s+{_TEAM_NOUN}\b)?(?:\s+(?P<id>(?!(?:to|by)\b)[\"']?{_ID}))?",
    _I,
)
_WORKFLOW = re.compile(
    r"(?:run|execute|start|trigger|launch|kick\s+off|invoke|fire\s+off)\s+(?:the\s+|my\s+)?"
    r"(?:(?P<kw>workflow)\b(?:\s+(?:named|called)\b)?"
    rf"(?:\s+(?P<a>(?!(?:to|for|with|on|in|now|please)\b)[\"']?{_ID}))?"
    rf"|(?P<b>[\"']?{_ID})\s+workflow\b"
    r"|(?P<c>[\w./-]+\.(?:ya?ml|json))\b)",
    _I,
)
_KEY_VALUE = re.compile(r"\b([A-Za-z_][\w.-]*)=(\"[^\"]*\"|'[^']*'|\S+)")

_TEAM_HEAD = re.compile(
    r"\b(?P<verb>create|form|assemble|build|make|set\s+up|setup|spin\s+up|start|launch|put\s+together"
    r"|organi[sz]e|get|need|want|give\s+me)\s+(?:me\s+|us\s+)?"
    rf"(?:(?:an?|the|new|small|large|big|\S+-(?:agent|person|member)|{_NUM}|{_AGENT_NOUN})\s+){{0,4}}?"
    rf"(?P<noun>{_TEAM_NOUN})s?\b"
    r"(?=\s*(?:$|[:,.!?\u2013\u2014-]|(?:of|with|to|that|for|which|who|in|using|and|on|so|called|named)\b))",
    _I,
)
_TEAM_BARE = re.compile(rf"(?:an?\s+)?(?P<noun>{_TEAM_NOUN})\s+(?:of|with)\s+{_NUM}\b", _I)
_SIZE = re.compile(
    rf"\b(?:{_TEAM_NOUN}\s+(?:of|with)\s+(?P<a>{_NUM})\b(?:\s+{_AGENT_NOUN}\b)?"
    rf"|(?:with\s+)?(?P<b>{_NUM})(?:\s*-\s*|\s+)(?:new\s+|more\s+)?{_AGENT_NOUN}\b)",
    _I,
)
_SPAWN = re.compile(
    r"\b(?P<verb>spawn|start|launch|create|run|deploy|spin\s+up|fire\s+up|boot|add|need|want|give\s+me|use)"
    rf"\s+(?:up\s+)?(?:(?P<n>an?|{_NUM})\s+)?(?:new\s+|more\s+|additional\s+|extra\s+|single\s+|separate\s+)?"
    rf"(?:(?P<model>{_MODEL_NAME})\s+)?(?P<noun>agents?|workers?|bots?|assistants?)\b"
    rf"|\bspawn\b(?:\s+(?P<n2>an?|{_NUM})\b)?",
    _I,
)
_CONNECTOR = re.compile(
    r"\s*(?::|\u2014|\u2013|\s-)\s*"
    r"|\s+(?:in\s+order\s+to|so\s+(?:that\s+)?(?:they|it)\s+can|(?:that|which|who)\s+(?:will|can|should|must)"
    r"|and\s+have\s+(?:them|it)|to|for|that|which|who)\s+",
    _I,
)

# The strategies' names (from the proto; "map-reduce" also as "map reduce" or "mapreduce").
_STRATEGY_WORDS = "|".join(
    re.escape(name).replace(r"\-", r"[\s-]?") for name in sorted(STRATEGY.names, key=len, reverse=True)
)
_STRATEGY_BY_WORD = {name.replace("-", ""): name for name in STRATEGY.names}
_STRATEGY = re.compile(
    r"\b(?P<pre>(?:in|as|using|with|via)\s+(?:an?\s+)?)?"
    rf"(?P<s>{_STRATEGY_WORDS}|hierarchical)"
    r"(?P<suf>\s+(?:strategy|mode|fashion|style|structure|execution))?\b"
    r"|\b(?P<w>concurrently|sequentially|in\s+stages|hierarchically)\b",
    _I,
)
_MODEL = re.compile(
    r"\b(?:using|with|via|powered\s+by|running|on)\s+(?:the\s+)?(?:model\s+)?"
    rf"(?P<m>{_MODEL_NAME})(?:\s+models?\b)?"
    r"|\b(?:using|with|via|on)\s+(?:the\s+)?model\s+(?P<m2>[\w./:-]+)",
    _I,
)
_BUDGET = re.compile(
    r"(?:\bwith\s+)?(?:\ban?\s+)?(?:\b(?:total|max(?:imum)?)\s+)?\bbudget(?:\s+limit)?\s*(?:of\s+|:\s*|=\s*|is\s+)?"
    r"(?:\$\s?)?(?P<a>\d+(?:\.\d+)?)(?:\s*(?:dollars|usd|bucks)\b)?"
    r"|(?:\b(?:with|for|under|within|at\s+most|up\s+to|max(?:imum)?|spending|costing)\s+)?(?:\ban?\s+)?"
    r"(?:\$\s?(?P<b>\d+(?:\.\d+)?)|\b(?P<c>\d+(?:\.\d+)?)\s*(?:dollars|usd|bucks)\b)"
    r"(?:\s+(?:budget|limit|cap)\b)?",
    _I,
)
_NAME = re.compile(r"\b(?:called|named)\s+[\"']?(?P<name>[\w.-]+)[\"']?", _I)

_STATUS_QUESTION = re.compile(
    r"(?:what(?:'s|\s+is|\s+are|\s+was)?|how(?:'s|\s+is|\s+are|\s+many)?|show(?:\s+me)?|list|get|check|display"
    r"|give\s+me|tell\s+me|report|where(?:'s|\s+is)?|is|are|which|who|status)\b"
    r"(?=.*\b(?:status|progress|state|health|doing|going|running|up\s+to|done|finished|stuck|alive)\b)",
    _I | re.DOTALL,
)
_STATUS_WORD = re.compile(r"(?:status|progress)\b", _I)
_LIST = re.compile(
    r"(?:show|list|display|get|what|which|how\s+many)(?:\s+me)?"
    r"(?:\s+(?:all|the|my|of|are|is|there|(?P<filter>running|active|idle|failed|completed|pending|paused|stopped)))*"
    r"\s+(?P<kind>agent|team|workflow|task|cluster|swarm)s\b",
    _I,
)
_TARGET_TOKEN = re.compile(r"\b(?P<id>(?P<kind>agent|team|task|workflow|cluster)[-_][\w-]+)", _I)
_TARGET = re.compile(
    r"\b(?P<kind>agent|team|workflow|task|cluster|swarm|job)s?\b(?:\s+(?:named|called|id))?\s+"
    r"(?P<id>(?!(?:is|are|was|were|status|doing|running|progress|state|health|of|in|on|for|and|the|that|now"
    r"|still|currently|please)\b)[\"']?[\w.:/@#-]+)",
    _I,
)

_WORD = re.compile(r"\S+")
_ARTICLES = frozenset({"the", "a", "an"})
_TRAILING_FILLER = frozenset({"please", "and", "then", "with", "thanks", "now"})
_KIND_ALIASES = {"swarm": "team", "job": "task", "run": "task", "execution": "task"}
# Words for a strategy besides its name.
_STRATEGY_SYNONYMS = {
    "concurrently": "parallel",
    "sequentially": "pipeline",
    "in stages": "pipeline",
    "hierarchical": "tree",
    "hierarchically": "tree",
}


@dataclass(frozen=True)
class _Entity:
    name: str
    value: str
    type: str
    confidence: float
    start: int
    end: int
    # The whole phrase the entity came from ("with a budget of $5"), cut out of a task.
    cut: tuple[int, int] = (0, 0)


@dataclass
class _Parsed:
    type: intent_pb2.IntentType.ValueType
    confidence: float
    entities: list[_Entity] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)


def parse_intent(text: str) -> intent_pb2.Intent:
    """Classifies `text` and extracts its entities and parameters."""
    if not text.strip():
        raise ValidationError.single("input", "is required")
    if len(text) > MAX_INPUT_LEN:
        raise ValidationError.single("input", f"must be at most {MAX_INPUT_LEN} characters")
    prefix = _PREFIX.match(text)
    pos = prefix.end() if prefix else 0
    rules: tuple[Callable[[str, int], _Parsed | None], ...] = (
        _stop,
        _scale,
        _workflow,
        _create_or_spawn,
        _status,
    )
    for rule in rules:
        parsed = rule(text, pos)
        if parsed is not None:
            return _to_proto(text, parsed)
    return _to_proto(
        text,
        _Parsed(intent_pb2.INTENT_TYPE_CUSTOM, CUSTOM_CONFIDENCE, parameters={"text": text.strip()}),
    )


def _to_proto(text: str, parsed: _Parsed) -> intent_pb2.Intent:
    intent = intent_pb2.Intent(type=parsed.type, confidence=round(parsed.confidence, 2), original=text)
    for e in parsed.entities:
        intent.entities.add(
            name=e.name, value=e.value, type=e.type, confidence=e.confidence, start=e.start, end=e.end
        )
    intent.parameters.update(parsed.parameters)
    return intent


def number_value(token: str) -> int:
    """The value of a number token: digits or a word from one to twenty."""
    return NUMBER_WORDS.get(token.lower()) or int(token)


def _number(m: re.Match[str], group: str, name: str) -> _Entity:
    token = m.group(group)
    return _Entity(
        name=name,
        value=str(number_value(token)),
        type="number",
        confidence=0.99 if token.isdigit() else 0.95,
        start=m.start(group),
        end=m.end(group),
        cut=(m.start(), m.end()),
    )


def _ident(m: re.Match[str], group: str = "id") -> tuple[str, int, int] | None:
    """An identifier group without surrounding quotes or trailing sentence punctuation."""
    if not m.group(group):
        return None
    start, end = m.span(group)
    while start < end and m.string[start] in "\"'":
        start += 1
    while end > start and m.string[end - 1] in "\"'.,:;!?":
        end -= 1
    return (m.string[start:end], start, end) if start < end else None


def _kind(raw: str | None) -> str | None:
    if not raw:
        return None
    kind = raw.lower().removesuffix("s")
    return _KIND_ALIASES.get(kind, kind)


def _stop(text: str, pos: int) -> _Parsed | None:
    m = _STOP.match(text, pos)
    if m is None:
        return None
    verb = " ".join(m.group("verb").lower().split())
    parsed = _Parsed(intent_pb2.INTENT_TYPE_STOP_TASK, 0.75, parameters={"action": verb})
    kind = _kind(m.group("kind"))
    kind_span = (m.start("kind"), m.end("kind"))
    ident = _ident(m)
    if ident is not None:
        token = _TARGET_TOKEN.fullmatch(ident[0])
        if kind is None and token is not None:
            kind = _kind(token.group("kind"))
            kind_span = (ident[1], ident[1] + token.end("kind"))
        parsed.entities.append(_Entity("id", ident[0], "id", 0.9, ident[1], ident[2]))
        parsed.parameters["id"] = ident[0]
        parsed.confidence = 0.95
    if m.group("all"):
        parsed.parameters["all"] = True
        parsed.confidence = max(parsed.confidence, 0.9)
    if kind is not None:
        parsed.entities.insert(0, _Entity("target", kind, "resource", 0.9, *kind_span))
        parsed.parameters["target"] = kind
    return parsed


def _scale(text: str, pos: int) -> _Parsed | None:
    parsed = _Parsed(intent_pb2.INTENT_TYPE_SCALE_TEAM, 0.95)
    m = _SCALE.match(text, pos)
    if m is not None:
        direction = (m.group("dir") or "").lower()
        down = m.group("verb").lower() in ("shrink", "reduce") or direction in ("down", "in")
        _add_team(parsed, m)
        size = _number(m, "n", "size" if m.group("to") else "delta")
        if m.group("by") and down:
            size = replace(size, value=f"-{size.value}")
        parsed.entities.append(size)
        parsed.parameters[size.name] = int(size.value)
        if "team" not in parsed.parameters:
            parsed.confidence = 0.8
        return parsed
    m = _SCALE_ADD.match(text, pos)
    if m is not None:
        delta = _number(m, "n", "delta")
        if m.group("verb").lower() == "remove":
            delta = replace(delta, value=f"-{delta.value}")
        _add_team(parsed, m)
        parsed.entities.append(delta)
        parsed.parameters["delta"] = int(delta.value)
        parsed.confidence = 0.9
        return parsed
    m = _SCALE_LOOSE.match(text, pos)
    if m is None:
        return None
    parsed.confidence = 0.6
    _add_team(parsed, m)
    if m.group("dir"):
        parsed.parameters["direction"] = "down" if m.group("dir").lower() in ("down", "in") else "up"
    return parsed


def _add_team(parsed: _Parsed, m: re.Match[str]) -> None:
    ident = _ident(m)
    if ident is not None:
        parsed.entities.append(_Entity("team", ident[0], "id", 0.9, ident[1], ident[2]))
        parsed.parameters["team"] = ident[0]


def _workflow(text: str, pos: int) -> _Parsed | None:
    m = _WORKFLOW.match(text, pos)
    if m is None:
        return None
    parsed = _Parsed(intent_pb2.INTENT_TYPE_EXECUTE_WORKFLOW, 0.7)
    group = next((g for g in ("a", "b", "c") if m.group(g)), None)
    ident = _ident(m, group) if group else None
    if ident is not None:
        parsed.entities.append(_Entity("workflow", ident[0], "workflow", 0.9, ident[1], ident[2]))
        parsed.parameters["workflow"] = ident[0]
        parsed.confidence = 0.95 if group != "b" else 0.9
    inputs = {k: v.strip("\"'") for k, v in _KEY_VALUE.findall(text, m.end())}
    if inputs:
        parsed.parameters["inputs"] = inputs
    return parsed


def _create_or_spawn(text: str, pos: int) -> _Parsed | None:
    team = _TEAM_HEAD.search(text, pos)
    bare = None if team is not None else _TEAM_BARE.match(text, pos)
    spawn = _SPAWN.search(text, pos)
    if spawn is not None and (team is None or spawn.start() < team.start()):
        return _spawn(text, spawn)
    if team is not None:
        return _create_team(text, team, 0.85)
    if bare is not None:
        return _create_team(text, bare, 0.75)
    return None


def _create_team(text: str, head: re.Match[str], base: float) -> _Parsed:
    parsed = _Parsed(intent_pb2.INTENT_TYPE_CREATE_TEAM, base)
    modifiers = _modifiers(text, head.start())
    scan = head.end()
    size = _SIZE.search(text, head.start())
    size_entity = None
    if size is not None:
        size_entity = _number(size, "a" if size.group("a") else "b", "size")
        modifiers.append(size_entity)
        if size.start() <= head.end() + 1:
            scan = max(scan, size.end())
    name = _NAME.search(text, head.end())
    if name is not None:
        modifiers.append(
            _Entity(
                "name",
                name.group("name"),
                "name",
                0.9,
                name.start("name"),
                name.end("name"),
                (name.start(), name.end()),
            )
        )
    task = _task(text, scan, modifiers)
    if size_entity is not None:
        parsed.entities.append(size_entity)
        parsed.parameters["size"] = int(size_entity.value)
        parsed.confidence += 0.05
    if task is not None:
        parsed.entities.append(task)
        parsed.parameters["task"] = task.value
        parsed.confidence += 0.05
    _add_modifiers(parsed, [m for m in modifiers if m.name != "size"])
    return parsed


def _spawn(text: str, head: re.Match[str]) -> _Parsed:
    parsed = _Parsed(intent_pb2.INTENT_TYPE_SPAWN_AGENT, 0.85 if head.group("noun") else 0.8)
    modifiers = _modifiers(text, head.start())
    group = "n" if head.group("n") else "n2"
    count = head.group(group)
    if count and count.lower() not in ("a", "an"):
        entity = _number(head, group, "count")
        parsed.entities.append(entity)
        parsed.parameters["count"] = int(entity.value)
        parsed.confidence += 0.05
    else:
        parsed.parameters["count"] = 1
    if head.group("model") and not any(m.name == "model" for m in modifiers):
        modifiers.append(
            _Entity("model", head.group("model"), "model", 0.95, head.start("model"), head.end("model"))
        )
    task = _task(text, head.end(), modifiers)
    if task is not None:
        parsed.entities.append(task)
        parsed.parameters["task"] = task.value
        parsed.confidence += 0.05
    _add_modifiers(parsed, modifiers)
    return parsed


def _add_modifiers(parsed: _Parsed, modifiers: list[_Entity]) -> None:
    for m in modifiers:
        parsed.entities.append(m)
        parsed.parameters[m.name] = float(m.value) if m.name == "budget" else m.value


def _modifiers(text: str, pos: int) -> list[_Entity]:
    """Strategy, model and budget phrases anywhere after `pos` (the first of each kind)."""
    strategy = _strategy(text, pos)
    found = [strategy] if strategy else []
    model = _MODEL.search(text, pos)
    if model is not None:
        group = "m" if model.group("m") else "m2"
        value = model.group(group).rstrip(".-")
        start = model.start(group)
        found.append(
            _Entity("model", value, "model", 0.95, start, start + len(value), (model.start(), model.end()))
        )
    budget = _BUDGET.search(text, pos)
    if budget is not None:
        group = next(g for g in ("a", "b", "c") if budget.group(g))
        found.append(
            _Entity(
                "budget",
                budget.group(group),
                "money",
                0.95,
                budget.start(group),
                budget.end(group),
                (budget.start(), budget.end()),
            )
        )
    return found


def strategy_mention(text: str) -> str | None:
    """The strategy a text asks for ("in parallel", "as a pipeline", "using map-reduce", "tree
    strategy"): parallel, map-reduce, pipeline or tree; None when it names none."""
    found = _strategy(text, 0)
    return found.value if found else None


def _strategy(text: str, pos: int) -> _Entity | None:
    for m in _STRATEGY.finditer(text, pos):
        if m.group("w"):
            value = _STRATEGY_SYNONYMS[" ".join(m.group("w").lower().split())]
            start, end = m.start("w"), m.end("w")
        else:
            word = m.group("s").lower()
            name = _STRATEGY_BY_WORD.get(re.sub(r"[\s-]", "", word))
            # A one-word name ("tree") is a strategy only with "in", "as", "strategy"...; a
            # compound one ("map-reduce") is one on its own.
            if not (m.group("pre") or m.group("suf") or (name and "-" in name)):
                continue
            value = name or _STRATEGY_SYNONYMS[word]
            start, end = m.start("s"), m.end("s")
        return _Entity("strategy", value, "strategy", 0.9, start, end, (m.start(), m.end()))
    return None


def _task(text: str, scan: int, cuts: list[_Entity]) -> _Entity | None:
    """The task phrase after the command head, without modifier phrases and articles."""
    start, confidence = None, 0.9
    for m in _CONNECTOR.finditer(text, scan):
        if not any(c.cut[0] < m.end() and m.start() < c.cut[1] for c in cuts):
            start = m.end()
            break
    if start is None:
        start, confidence = scan, 0.7
    kept: list[tuple[int, int]] = []
    cursor = start
    for c0, c1 in sorted(c.cut for c in cuts):
        if c1 <= cursor or c0 >= len(text):
            continue
        if c0 > cursor:
            kept.append((cursor, c0))
        cursor = max(cursor, c1)
    kept.append((cursor, len(text)))
    words = [
        (w.group(), w.start(), w.end())
        for a, b in kept
        for w in _WORD.finditer(text, a, b)
        if w.group().lower() not in _ARTICLES
    ]
    words = _strip_words(words)
    if not words:
        return None
    value = " ".join(w for w, _, _ in words)
    return _Entity("task", value, "task", confidence, words[0][1], words[-1][2])


def _strip_words(words: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Drops trailing filler ("please", "and") and sentence punctuation at the ends."""
    while words:
        word, start, end = words[-1]
        stripped = word.rstrip(",;.!?")
        if not stripped or stripped.lower() in _TRAILING_FILLER:
            words.pop()
            continue
        if stripped != word:
            words[-1] = (stripped, start, end - (len(word) - len(stripped)))
        break
    while words and not words[0][0].strip(",;:.!?-"):
        words.pop(0)
    return words


def _status(text: str, pos: int) -> _Parsed | None:
    listing = _LIST.match(text, pos)
    if listing is not None:
        parsed = _Parsed(intent_pb2.INTENT_TYPE_QUERY_STATUS, 0.85)
        kind = _kind(listing.group("kind")) or "agent"
        parsed.entities.append(
            _Entity("target", kind, "resource", 0.9, listing.start("kind"), listing.end("kind"))
        )
        parsed.parameters["target"] = kind
        if listing.group("filter"):
            value = listing.group("filter").lower()
            parsed.entities.append(
                _Entity("filter", value, "status", 0.9, listing.start("filter"), listing.end("filter"))
            )
            parsed.parameters["filter"] = value
        return parsed
    if _STATUS_QUESTION.match(text, pos) is None and _STATUS_WORD.match(text, pos) is None:
        return None
    parsed = _Parsed(intent_pb2.INTENT_TYPE_QUERY_STATUS, 0.8)
    token = _TARGET_TOKEN.search(text, pos)
    target = token or _TARGET.search(text, pos)
    if target is not None:
        kind = _kind(target.group("kind")) or "task"
        ident = _ident(target)
        parsed.entities.append(
            _Entity("target", kind, "resource", 0.9, target.start("kind"), target.end("kind"))
        )
        parsed.parameters["target"] = kind
        if ident is not None:
            parsed.entities.append(_Entity("id", ident[0], "id", 0.9, ident[1], ident[2]))
            parsed.parameters["id"] = ident[0]
            parsed.confidence = 0.9
    return parsed
