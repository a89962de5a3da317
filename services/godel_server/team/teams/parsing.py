"""Reading structured answers out of agents' free-text results: split inputs and subtasks."""

from __future__ import annotations

import json
import re

MAX_ITEMS = 1000
_SUBTASK = re.compile(r"^\s*SUBTASK:\s*(.+?)\s*$", re.MULTILINE)


def parse_items(result: str) -> list[str]:
    """Inputs from a splitter: a JSON array of strings, {"inputs": [...]}, or one per line."""
    text = result.strip()
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict):
        value = value.get("inputs") or value.get("items")
    if isinstance(value, list):
        return [str(v) for v in value if str(v).strip()][:MAX_ITEMS]
    return [line.strip() for line in text.splitlines() if line.strip()][:MAX_ITEMS]


def parse_subtasks(result: str) -> list[str]:
    """Subtasks from a tree node: {"subtasks": [...]} or lines `SUBTASK: ...`; [] = a leaf."""
    text = result.strip()
    try:
        value = json.loads(text) if text.startswith("{") else None
    except ValueError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("subtasks"), list):
        return [str(v) for v in value["subtasks"] if str(v).strip()][:MAX_ITEMS]
    return _SUBTASK.findall(text)[:MAX_ITEMS]
