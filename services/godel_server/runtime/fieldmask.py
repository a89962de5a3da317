"""The update_mask of Update RPCs (AIP-134), one way for every resource: which fields a request
changes (an unknown or read-only path named in the INVALID_ARGUMENT it gets), and those fields
copied from the request's resource to its row."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from google.protobuf import field_mask_pb2, json_format, struct_pb2
from google.protobuf.message import Message

from godel_server.runtime.events import struct_to_dict
from godel_server.runtime.validation import Violations

# Row attributes named differently from their field (`metadata` is taken on SQLAlchemy models).
COLUMNS = {"metadata": "meta"}


def update_paths(
    mask: field_mask_pb2.FieldMask,
    updatable: Sequence[str],
    *,
    default: Sequence[str],
    v: Violations,
    nested: Collection[str] = (),
    field: str = "update_mask",
) -> frozenset[str]:
    """The top-level fields an update changes: the mask's paths, or `default` for an empty mask.
    A path into a field of `nested` (`config.size`) updates that whole field; every other path
    must name an `updatable` field. Violations are added to `v`."""
    fields: set[str] = set()
    for path in mask.paths or default:
        top = path.split(".", 1)[0]
        if top not in updatable or (path != top and top not in nested):
            v.add(field, f"{path!r} cannot be updated (updatable: {', '.join(updatable)})")
        else:
            fields.add(top)
    return frozenset(fields)


def populated(resource: Message, updatable: Sequence[str]) -> list[str]:
    """AIP-134's implied mask of an update without one: the updatable fields the resource sets."""
    return [f.name for f, _ in resource.ListFields() if f.name in updatable]


def apply_update(row: object, resource: Message, fields: Collection[str]) -> None:
    """Copies `fields` (from update_paths) of `resource` onto `row`, as rows store them: a Struct
    as a dict, another message as its JSON mapping, an empty string as None."""
    for name in fields:
        value: Any = getattr(resource, name)
        if isinstance(value, struct_pb2.Struct):
            value = struct_to_dict(value)
        elif isinstance(value, Message):
            value = json_format.MessageToDict(value)
        elif value == "":
            value = None
        setattr(row, COLUMNS.get(name, name), value)
