"""AIP-158 pagination: page_size validation and opaque page tokens bound to the query they came from."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from godel_server.runtime.errors import ValidationError

T = TypeVar("T")


def page_size(requested: int, *, default: int = 50, maximum: int = 1000) -> int:
    if requested < 0:
        raise ValidationError.single("page_size", "must not be negative")
    if requested == 0:
        return default
    return min(requested, maximum)


def query_fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode_token(cursor: dict[str, Any], fingerprint: str) -> str:
    raw = json.dumps({"c": cursor, "q": fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def split_page(
    rows: Sequence[T], size: int, cursor_of: Callable[[T], dict[str, Any]], fingerprint: str
) -> tuple[Sequence[T], str]:
    """Rows were fetched with limit size+1: returns this page and the next page's token ("" at the end)."""
    if len(rows) > size:
        return rows[:size], encode_token(cursor_of(rows[size - 1]), fingerprint)
    return rows, ""


def decode_token(token: str, fingerprint: str) -> dict[str, Any] | None:
    """The cursor of a token from a previous call with the same filters; None for the first page."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        cursor = data["c"]
        same_query = data["q"] == fingerprint
    except (ValueError, KeyError, TypeError):
        raise ValidationError.single("page_token", "is not a token returned by this API") from None
    if not same_query:
        raise ValidationError.single("page_token", "was issued for a different query (filters changed)")
    if not isinstance(cursor, dict):
        raise ValidationError.single("page_token", "is not a token returned by this API")
    return cursor
