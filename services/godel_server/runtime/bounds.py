"""Bounds of every request field, read from the contract: `(godel.v1.limits)` on a field in the
protos (proto/godel/v1/limits.proto), else the defaults below. The interceptor checks each request
with `violations()` before the RPC runs, so no input is larger than its database column or than a
Kafka record once it is in an event, and none holds a NUL that PostgreSQL cannot store. The worker
protocol is cut to the same bounds with `clamp()`: what an agent prints is made storable, not refused.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf import struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from godel.v1 import limits_pb2
from godel_server.runtime.errors import FieldViolation, ValidationError
from godel_server.runtime.text import storable_text

DEFAULT_MAX_LEN = 1024
DEFAULT_MAX_ITEMS = 100
DEFAULT_MAX_KEY_LEN = 256
DEFAULT_STRUCT_BYTES = 65536
MAX_VIOLATIONS = 50
_STRUCT_TYPES = frozenset(
    d.full_name
    for d in (struct_pb2.Struct.DESCRIPTOR, struct_pb2.Value.DESCRIPTOR, struct_pb2.ListValue.DESCRIPTOR)
)
_NUL = "\x00"


@dataclass(frozen=True)
class Bounds:
    """The bounds of one field (its option, defaults filled in); max_bytes 0 = no cap of its own."""

    max_len: int
    max_items: int
    max_bytes: int
    max_key_len: int


@functools.cache
def bounds(field: FieldDescriptor) -> Bounds:
    option = limits_pb2.Limits()
    if field.GetOptions().HasExtension(limits_pb2.limits):
        option = field.GetOptions().Extensions[limits_pb2.limits]
    struct = field.message_type is not None and field.message_type.full_name in _STRUCT_TYPES
    return Bounds(
        max_len=option.max_len or DEFAULT_MAX_LEN,
        max_items=option.max_items or DEFAULT_MAX_ITEMS,
        max_bytes=option.max_bytes or (DEFAULT_STRUCT_BYTES if struct else 0),
        max_key_len=option.max_key_len or DEFAULT_MAX_KEY_LEN,
    )


def _message(field: FieldDescriptor) -> Descriptor:
    if field.message_type is None:
        raise TypeError(f"{field.full_name} is not a message field")
    return field.message_type


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _is_struct(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.full_name in _STRUCT_TYPES


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# ------------------------------------------------------------------------------------------ check


def violations(message: Message, prefix: str = "") -> list[FieldViolation]:
    """Every bound the message breaks, as field violations naming the field and the limit (at most
    MAX_VIOLATIONS of them)."""
    found: list[FieldViolation] = []
    for item in _check(message, prefix):
        found.append(item)
        if len(found) >= MAX_VIOLATIONS:
            break
    return found


def check(message: Message) -> None:
    """Raises INVALID_ARGUMENT listing the bounds the request breaks."""
    found = violations(message)
    if found:
        raise ValidationError(found)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _check(message: Message, prefix: str) -> Iterator[FieldViolation]:
    for field, value in message.ListFields():
        path = _join(prefix, field.name)
        b = bounds(field)
        if _is_map(field):
            yield from _check_map(field, value, path, b)
        elif field.is_repeated:
            if len(value) > b.max_items:
                yield FieldViolation(path, f"must have at most {b.max_items} entries (has {len(value)})")
            for i, element in enumerate(value[: b.max_items]):
                yield from _check_value(field, element, f"{path}[{i}]", b)
        else:
            yield from _check_value(field, value, path, b)


def _check_map(field: FieldDescriptor, value: Any, path: str, b: Bounds) -> Iterator[FieldViolation]:
    if len(value) > b.max_items:
        yield FieldViolation(path, f"must have at most {b.max_items} entries (has {len(value)})")
        return
    value_field = _message(field).fields_by_name["value"]
    for key in value:
        entry = f"{path}[{key!s:.40}]"
        if isinstance(key, str):
            yield from _check_text(key, f"{path} key {key[:40]!r}", b.max_key_len)
        yield from _check_value(value_field, value[key], entry, b)


def _check_value(field: FieldDescriptor, value: Any, path: str, b: Bounds) -> Iterator[FieldViolation]:
    if field.type == FieldDescriptor.TYPE_STRING:
        yield from _check_text(value, path, b.max_len)
    elif field.type == FieldDescriptor.TYPE_BYTES:
        if len(value) > b.max_len:
            yield FieldViolation(path, f"must be at most {b.max_len} bytes (has {len(value)})")
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        size = value.ByteSize() if b.max_bytes else 0
        if size > b.max_bytes:
            yield FieldViolation(path, f"must be at most {b.max_bytes} bytes as protobuf (has {size})")
        elif _is_struct(field):
            yield from _check_struct_text(value, path)
        else:
            yield from _check(value, path)


def _check_text(value: str, path: str, limit: int) -> Iterator[FieldViolation]:
    if len(value) > limit:
        yield FieldViolation(path, f"must be at most {_plural(limit, 'character')} (has {len(value)})")
    if _NUL in value:
        yield FieldViolation(path, "must not contain NUL characters (U+0000)")


def _check_struct_text(value: Message, path: str) -> Iterator[FieldViolation]:
    """A Struct, Value or ListValue: no NUL in any key or string."""
    for text in _struct_strings(value):
        if _NUL in text:
            yield FieldViolation(path, "must not contain NUL characters (U+0000) in keys or strings")
            return


def _struct_strings(value: Message) -> Iterator[str]:
    if isinstance(value, struct_pb2.Struct):
        for key, item in value.fields.items():
            yield key
            yield from _struct_strings(item)
    elif isinstance(value, struct_pb2.ListValue):
        for item in value.values:
            yield from _struct_strings(item)
    elif isinstance(value, struct_pb2.Value):
        kind = value.WhichOneof("kind")
        if kind == "string_value":
            yield value.string_value
        elif kind == "struct_value":
            yield from _struct_strings(value.struct_value)
        elif kind == "list_value":
            yield from _struct_strings(value.list_value)


# ------------------------------------------------------------------------------------------ size

# Bytes of a field's tag and length prefix, and of the largest scalar (a varint), at most.
_FIELD_OVERHEAD = 8
_SCALAR_BYTES = 11


def max_size(message: Descriptor) -> int:
    """The most bytes a message within its bounds serializes to (every string at its limit, in
    4-byte UTF-8 characters): what it can add to an event, to be held against Kafka's record limit."""
    return sum(max_field_size(field) for field in message.fields)


def max_field_size(field: FieldDescriptor) -> int:
    b = bounds(field)
    if _is_map(field):
        entry = _message(field)
        key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
        key_size = 4 * b.max_key_len if key.type == FieldDescriptor.TYPE_STRING else _SCALAR_BYTES
        return b.max_items * (_FIELD_OVERHEAD + key_size + _element_size(value, b))
    count = b.max_items if field.is_repeated else 1
    return count * (_FIELD_OVERHEAD + _element_size(field, b))


def _element_size(field: FieldDescriptor, b: Bounds) -> int:
    if field.type == FieldDescriptor.TYPE_STRING:
        return 4 * b.max_len
    if field.type == FieldDescriptor.TYPE_BYTES:
        return b.max_len
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return b.max_bytes or max_size(_message(field))
    return _SCALAR_BYTES


# ------------------------------------------------------------------------------------------ clamp

_TEXT, _BYTES, _MESSAGE, _STRUCT, _MAP = range(5)


@dataclass(frozen=True)
class _Step:
    """One field clamp() must look at: its name, what it holds, and its bounds."""

    name: str
    kind: int
    repeated: bool
    bounds: Bounds
    field: FieldDescriptor


def _kind(field: FieldDescriptor) -> int | None:
    if _is_map(field):
        return _MAP
    if field.type == FieldDescriptor.TYPE_STRING:
        return _TEXT
    if field.type == FieldDescriptor.TYPE_BYTES:
        return _BYTES
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _STRUCT if _is_struct(field) else _MESSAGE
    return None


_PLANNING: set[str] = set()


@functools.cache
def _plan(message: Descriptor) -> tuple[_Step, ...]:
    """The fields of a message type that clamp() may have to cut: repeated fields and maps (their
    entry count), text and bytes, and messages that are capped or hold such fields. A type with
    none (a Timestamp) is not walked at all: a worker's heartbeat lists thousands of runs, every
    second."""
    _PLANNING.add(message.full_name)
    try:
        steps = []
        for field in message.fields:
            kind = _kind(field)
            b = bounds(field)
            repeated = field.is_repeated and kind != _MAP
            if kind == _MESSAGE and not repeated and not b.max_bytes:
                nested = _message(field)
                if nested.full_name not in _PLANNING and not _plan(nested):
                    continue
            if kind is None and not repeated:
                continue
            steps.append(_Step(field.name, -1 if kind is None else kind, repeated, b, field))
        return tuple(steps)
    finally:
        _PLANNING.discard(message.full_name)


def clamp(message: Message, prefix: str = "") -> list[str]:
    """Cuts the message to its bounds in place (strings shortened, entries beyond the limit dropped,
    an oversized Struct cleared) and makes its text storable (NUL and lone surrogates replaced);
    returns the paths it cut, for a log line."""
    return [_join(prefix, path) for path in _clamp(message, _plan(message.DESCRIPTOR))]


def _clamp(message: Message, plan: tuple[_Step, ...]) -> list[str]:
    """clamp() with paths relative to the message; they are only built for what was cut."""
    cut: list[str] = []
    for step in plan:
        name, b = step.name, step.bounds
        if step.kind == _TEXT and not step.repeated:
            text = getattr(message, name)
            if len(text) <= b.max_len and text.isascii() and _NUL not in text:
                continue
            clean = _clamp_text(text, b.max_len)
            if clean is not text:
                setattr(message, name, clean)
                cut.append(name)
        elif step.kind == _MAP:
            _clamp_map(getattr(message, name), step, cut)
        elif step.repeated:
            value = getattr(message, name)
            if len(value) > b.max_items:
                del value[b.max_items :]
                cut.append(name)
            if step.kind == _TEXT:
                for i, element in enumerate(value):
                    clean = _clamp_text(element, b.max_len)
                    if clean is not element:
                        value[i] = clean
                        cut.append(f"{name}[{i}]")
            elif step.kind == _BYTES:
                for i, element in enumerate(value):
                    if len(element) > b.max_len:
                        value[i] = element[: b.max_len]
                        cut.append(f"{name}[{i}]")
            elif step.kind == _MESSAGE and not b.max_bytes:
                nested = _plan(_message(step.field))
                for i, element in enumerate(value):
                    inner = _clamp(element, nested)
                    if inner:
                        cut += [f"{name}[{i}].{path}" for path in inner]
            elif step.kind in (_MESSAGE, _STRUCT):
                for i, element in enumerate(value):
                    cut += _clamp_message(step, element, f"{name}[{i}]")
        elif step.kind == _BYTES:
            data = getattr(message, name)
            if len(data) > b.max_len:
                setattr(message, name, data[: b.max_len])
                cut.append(name)
        elif message.HasField(name):
            cut += _clamp_message(step, getattr(message, name), name)
    return cut


def _clamp_map(value: Any, step: _Step, cut: list[str]) -> None:
    b, name = step.bounds, step.name
    value_field = _message(step.field).fields_by_name["value"]
    keys = list(value)
    for key in keys[b.max_items :]:
        del value[key]
    if len(keys) > b.max_items:
        cut.append(name)
    for key in keys[: b.max_items]:
        if isinstance(key, str) and _clamp_text(key, b.max_key_len) is not key:
            del value[key]
            cut.append(name)
        elif value_field.type == FieldDescriptor.TYPE_STRING:
            clean = _clamp_text(value[key], b.max_len)
            if clean is not value[key]:
                value[key] = clean
                cut.append(f"{name}[{key}]")
        elif value_field.type == FieldDescriptor.TYPE_MESSAGE:
            entry = _Step(name, _kind(value_field) or _MESSAGE, False, b, value_field)
            cut += _clamp_message(entry, value[key], f"{name}[{key}]")


def _clamp_message(step: _Step, value: Message, path: str) -> list[str]:
    b = step.bounds
    if b.max_bytes and value.ByteSize() > b.max_bytes:
        value.Clear()
        return [path]
    if step.kind == _STRUCT:
        if any(_clamp_text(text, len(text)) is not text for text in _struct_strings(value)):
            value.Clear()
            return [path]
        return []
    return [f"{path}.{inner}" for inner in _clamp(value, _plan(value.DESCRIPTOR))]


def _clamp_text(value: str, limit: int) -> str:
    """The text cut to its limit and made storable: the very same object when it already is."""
    if len(value) <= limit and value.isascii() and _NUL not in value:
        return value
    clean = storable_text(value)
    clean = clean[:limit] if len(clean) > limit else clean
    return value if clean == value else clean
