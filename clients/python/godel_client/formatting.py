"""Human renderings of protobuf values: short enum names, UTC timestamps, compact JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, timestamp_pb2
from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.message import Message

EMPTY = "-"


def enum_short(descriptor: EnumDescriptor, number: int) -> str:
    """``AGENT_STATUS_RUNNING`` -> ``running``: the enum's prefix dropped, lower-cased.

    The prefix is taken from the zero value (``AGENT_STATUS_UNSPECIFIED``); unknown numbers print
    as themselves.
    """
    value = descriptor.values_by_number.get(number)
    if value is None:
        return str(number)
    zero = descriptor.values_by_number.get(0)
    prefix = zero.name.removesuffix("UNSPECIFIED") if zero is not None else ""
    name = str(value.name)
    if prefix and name.startswith(prefix) and name != prefix:
        name = name[len(prefix) :]
    return name.lower()


def timestamp(ts: timestamp_pb2.Timestamp | None) -> str:
    """``2026-11-25 19:30:02Z`` (UTC, second precision); ``-`` when unset."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return EMPTY
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _whole_numbers(value: Any) -> Any:
    """Struct numbers are doubles: ``42.0`` reads better as ``42``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value


def compact_json(value: Message) -> str:
    """A message (a Struct, a typed event payload) as one line of JSON with sorted keys (``{}`` when
    empty)."""
    document = _whole_numbers(json_format.MessageToDict(value))
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def duration(seconds: int) -> str:
    """``3725`` -> ``1h02m05s``; ``-`` for zero."""
    if seconds <= 0:
        return EMPTY
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def age(ts: timestamp_pb2.Timestamp, now: datetime) -> str:
    """How long ago ``ts`` was, in its largest unit: ``42s``, ``5m``, ``3h``, ``2d``; ``-`` when unset."""
    if ts.seconds == 0 and ts.nanos == 0:
        return EMPTY
    seconds = max(0, int((now - ts.ToDatetime(tzinfo=UTC)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def clock(ts: timestamp_pb2.Timestamp, now: datetime) -> str:
    """``12:01:03``: the local wall-clock time of ``ts`` (``now`` when unset)."""
    moment = now if ts.seconds == 0 and ts.nanos == 0 else ts.ToDatetime(tzinfo=UTC)
    return moment.astimezone().strftime("%H:%M:%S")


def usd(amount: float) -> str:
    return f"${amount:,.2f}"


def usd_precise(amount: float) -> str:
    """Four decimals, for spend that moves by fractions of a cent."""
    return f"${amount:,.4f}"


def count(number: int) -> str:
    return f"{number:,}"


def or_empty(text: str) -> str:
    return text if text else EMPTY


def short_id(identifier: str, width: int = 8) -> str:
    """``3f2a1b2c…``: the head of a long id, enough to tell ids apart on screen."""
    if len(identifier) <= width + 1:
        return identifier or EMPTY
    return identifier[:width] + "…"


def money(amount: float, currency: str = "") -> str:
    """``$12.50`` in USD (or no currency), else ``12.50 EUR``."""
    if currency in ("", "USD"):
        return usd(amount)
    return f"{amount:,.2f} {currency}"


def percent(value: float) -> str:
    """``42.5`` -> ``42.5%``; whole numbers without decimals."""
    return f"{value:.0f}%" if float(value).is_integer() else f"{value:.1f}%"


def seconds_between(
    start: timestamp_pb2.Timestamp, end: timestamp_pb2.Timestamp, now: datetime | None = None
) -> int:
    """Whole seconds from ``start`` to ``end`` (to ``now`` while ``end`` is unset); 0 without a start."""
    if start.seconds == 0 and start.nanos == 0:
        return 0
    if end.seconds == 0 and end.nanos == 0:
        if now is None:
            return 0
        finish = now
    else:
        finish = end.ToDatetime(tzinfo=UTC)
    return max(0, int((finish - start.ToDatetime(tzinfo=UTC)).total_seconds()))


def assignment(name: str, value: Any) -> str:
    """``size=3``, ``task="review the code"``: strings are quoted when they hold spaces or quotes."""
    value = _whole_numbers(value)
    if isinstance(value, str):
        plain = value and not any(ch.isspace() or ch in "\"'=" for ch in value)
        return f"{name}={value}" if plain else f"{name}={json.dumps(value, ensure_ascii=False)}"
    return f"{name}={json.dumps(value, ensure_ascii=False, separators=(',', ':'))}"
