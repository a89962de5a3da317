"""Text a database can store. PostgreSQL refuses U+0000 in text and JSONB (and a Python string with
a lone surrogate cannot be encoded at all), so one NUL an agent prints, or one a Kafka producer puts
in a payload, would make every retry of the write fail. What comes from agents and from Kafka goes
through here before it is written: NUL and lone surrogates become U+FFFD."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

REPLACEMENT = "\ufffd"
# A JSON \u0000 escape: preceded by an even number of backslashes (each pair is an escaped "\").
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def storable_text(value: str) -> str:
    """The text with NUL and lone surrogates replaced by U+FFFD (the same string when clean)."""
    if "\x00" in value:
        value = value.replace("\x00", REPLACEMENT)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = _SURROGATE.sub(REPLACEMENT, value)
    return value


def map_json_strings(value: Any, change: Callable[[str], str]) -> Any:
    """A JSON-like value (dicts, lists, tuples) with ``change`` applied to every key and string."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {change(str(k)): map_json_strings(v, change) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [map_json_strings(v, change) for v in value]
    return value


def storable_json(value: Any) -> Any:
    """A JSON-like value with every key and string made storable."""
    return map_json_strings(value, storable_text)


def loads_json(text: str) -> Any:
    """json.loads for JSON columns (the engine's json_deserializer), with the empty object and list
    and JSON's null (a None stored in a JSON column; most of an agent's JSON columns, and a page of
    agents has hundreds) made without the parser. Each object or list is a new one, as json.loads
    gives."""
    if text == "{}":
        return {}
    if text == "[]":
        return []
    if text == "null":
        return None
    return json.loads(text)


def dumps_storable(value: Any) -> str:
    """json.dumps for JSON columns (the engine's json_serializer): a \\u0000 escape becomes U+FFFD's
    (PostgreSQL's JSONB refuses it), and lone surrogates are replaced."""
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(storable_json(value), ensure_ascii=False)
    if "\\u0000" in text:
        text = _JSON_NUL.sub(lambda m: m.group(1) + "\\ufffd", text)
    return text
