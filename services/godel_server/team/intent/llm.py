"""Intent parsing by an OpenAI-compatible chat model, for phrasings the rules miss. Any failure (no
connection, an error status, a reply that is not the requested JSON) falls back to the
deterministic parser, and the intent's parameters say which parser answered."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import httpx

from godel.v1 import intent_pb2
from godel_server.runtime.enums import ProtoEnum
from godel_server.runtime.errors import ValidationError
from godel_server.team.intent.parser import MAX_INPUT_LEN, parse_intent
from godel_server.team.teams.mapping import STRATEGY

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 30.0
INTENT_TYPE = ProtoEnum(intent_pb2.IntentType, str)

SYSTEM_PROMPT = f"""You turn a user's request to an AI-agent platform into a structured intent.
Answer with one JSON object and nothing else:
{{"type": one of {", ".join(INTENT_TYPE.names)},
 "confidence": a number from 0 to 1,
 "entities": [{{"name": str, "value": str, "type": str, "confidence": number 0-1, "position": [start, end]}}],
 "parameters": {{...}}}}
position holds character offsets of the entity in the request. Parameter names by type:
create_team: size, task, strategy ({"|".join(STRATEGY.names)}), model, budget (USD), name;
spawn_agent: count, task, model, budget; execute_workflow: workflow, inputs;
query_status: target (agent|team|workflow|task), id, filter; stop_task: action, target, id, all;
scale_team: team, size or delta; custom: text.
Drop articles (the, a, an) from task values.
Example: "Create a team of 3 agents to review the authentication code" ->
{{"type": "create_team", "confidence": 0.95,
 "entities": [{{"name": "size", "value": "3", "type": "number", "confidence": 0.99, "position": [17, 18]}},
  {{"name": "task", "value": "review authentication code", "type": "task", "confidence": 0.9,
    "position": [29, 59]}}],
 "parameters": {{"size": 3, "task": "review authentication code"}}}}"""

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL | re.IGNORECASE)


class BadReply(ValueError):
    """The model answered, but not with a usable intent."""


def chat_url(base_url: str) -> str:
    """<base>/v1/chat/completions, for a base URL given with or without a trailing /v1."""
    base = base_url.strip().rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    if not base.endswith("/v1"):
        base += "/v1"
    return base + "/chat/completions"


async def parse_with_llm(
    text: str,
    base_url: str,
    api_key: str,
    model: str,
    *,
    timeout: float = TIMEOUT_SECONDS,
) -> intent_pb2.Intent:
    if not text.strip():
        raise ValidationError.single("input", "is required")
    if len(text) > MAX_INPUT_LEN:
        raise ValidationError.single("input", f"must be at most {MAX_INPUT_LEN} characters")
    try:
        content = await _complete(text, base_url, api_key, model, timeout)
        intent = intent_from_reply(text, content)
    except (httpx.HTTPError, ValueError, KeyError, TypeError, IndexError) as exc:
        log.warning("llm intent parsing failed, using the deterministic parser: %s", _describe(exc, api_key))
        intent = parse_intent(text)
        intent.parameters["parser"] = "deterministic-fallback"
        return intent
    intent.parameters["parser"] = "llm"
    return intent


async def _complete(text: str, base_url: str, api_key: str, model: str, timeout: float) -> str:
    headers = {"content-type": "application/json"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    body = {
        "model": model,
        "temperature": 0,
        "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}],
    }
    async with httpx.AsyncClient(timeout=timeout) as client:
        response = await client.post(chat_url(base_url), json=body, headers=headers)
    response.raise_for_status()
    content = response.json()["choices"][0]["message"]["content"]
    if not isinstance(content, str) or not content.strip():
        raise BadReply("the reply has no text")
    return content


def intent_from_reply(text: str, content: str) -> intent_pb2.Intent:
    """Checks a model's JSON answer and turns it into an Intent; BadReply when it does not fit."""
    fenced = _FENCE.match(content)
    obj = json.loads(fenced.group(1) if fenced else content, parse_constant=_reject_constant)
    if not isinstance(obj, dict):
        raise BadReply("the reply is not a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise BadReply("type is missing")
    key = INTENT_TYPE.parse(kind.replace(" ", "_"))
    if key is None:
        raise BadReply(f"unknown intent type {kind[:40]!r}")
    confidence = _unit(obj.get("confidence"), "confidence")
    parameters = obj.get("parameters", {})
    entities = obj.get("entities", [])
    if not isinstance(parameters, dict) or not isinstance(entities, list):
        raise BadReply("parameters must be an object and entities a list")
    intent = intent_pb2.Intent(type=INTENT_TYPE.to_proto(key), confidence=confidence, original=text)
    for raw in entities:
        _add_entity(intent, text, raw, confidence)
    intent.parameters.update(parameters)
    return intent


def _add_entity(intent: intent_pb2.Intent, text: str, raw: Any, default_confidence: float) -> None:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise BadReply("every entity needs a name")
    value = raw.get("value", "")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise BadReply(f"entity {raw['name'][:40]!r} has no scalar value")
    value = str(value)
    confidence = _unit(raw["confidence"], "entity confidence") if "confidence" in raw else default_confidence
    start, end = _position(text, raw, value)
    intent.entities.add(
        name=raw["name"],
        value=value,
        type=str(raw.get("type") or "string"),
        confidence=confidence,
        start=start,
        end=end,
    )


def _position(text: str, raw: dict[str, Any], value: str) -> tuple[int, int]:
    """The entity's offsets when they are valid, else where its value occurs in the text, else 0, 0:
    models often miscount characters."""
    pos = raw.get("position")
    if isinstance(pos, list) and len(pos) == 2:
        start, end = pos
    else:
        start, end = raw.get("start"), raw.get("end")
    if (
        isinstance(start, int)
        and isinstance(end, int)
        and not isinstance(start, bool)
        and not isinstance(end, bool)
        and 0 <= start <= end <= len(text)
    ):
        return start, end
    found = text.lower().find(value.lower()) if value else -1
    return (found, found + len(value)) if found >= 0 else (0, 0)


def _unit(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise BadReply(f"{what} must be a number from 0 to 1")
    return float(value)


def _reject_constant(name: str) -> float:
    raise BadReply(f"{name} is not a number")


def _describe(exc: BaseException, api_key: str) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        message = f"HTTP {exc.response.status_code}"
    else:
        message = f"{type(exc).__name__}: {exc}"
    if api_key:
        message = message.replace(api_key, "***")
    return message[:300]
