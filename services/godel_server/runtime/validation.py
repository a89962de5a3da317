"""Small reusable field checks that collect violations instead of failing on the first one."""

from __future__ import annotations

import uuid

from godel_server.runtime.errors import FieldViolation, ValidationError


class Violations:
    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def require(self, field: str, value: str, *, max_len: int | None = None) -> None:
        if not value.strip():
            self.add(field, "is required")
        elif max_len is not None and len(value) > max_len:
            self.add(field, f"must be at most {max_len} characters")

    def max_len(self, field: str, value: str, limit: int) -> None:
        if len(value) > limit:
            self.add(field, f"must be at most {limit} characters")

    def uuid(self, field: str, value: str) -> None:
        if value and not is_uuid(value):
            self.add(field, "must be a UUID")

    def raise_if_any(self) -> None:
        if self.items:
            raise ValidationError(self.items)


def check_id(field: str, value: str) -> None:
    """A required UUID field (a resource id in a request)."""
    v = Violations()
    v.require(field, value)
    v.uuid(field, value)
    v.raise_if_any()


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
