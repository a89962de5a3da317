"""The one mapping between a protobuf enum (the API edge) and the short names the services store and
print, derived from the enum's descriptor: `AGENT_STATUS_RUNNING` <-> "running",
`EXECUTION_STRATEGY_MAP_REDUCE` <-> "map-reduce". No service keeps a table of its own, so a value
added to a proto enum is mapped everywhere at once; where a `StrEnum` names the values in code, the
mapper checks when it is built that the two hold the same names, so they cannot drift apart."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper

V = TypeVar("V", bound=int)
S = TypeVar("S", bound=str)

UNSPECIFIED = "UNSPECIFIED"


def lower(suffix: str) -> str:
    """RUNNING -> running, IN_PROGRESS -> in_progress (the spelling of most stored names)."""
    return suffix.lower()


def kebab(suffix: str) -> str:
    """MAP_REDUCE -> map-reduce."""
    return suffix.lower().replace("_", "-")


def upper(suffix: str) -> str:
    """WARN -> WARN (log levels are stored as their upper-case names)."""
    return suffix


class ProtoEnum(Generic[V, S]):
    """A proto enum's values by their short names. The prefix is what the enum's zero value
    (`<PREFIX>UNSPECIFIED`, required by buf lint) has before UNSPECIFIED; the zero value has no name.

    `names` is the `StrEnum` the code uses for the values, or `str` for plain strings."""

    def __init__(
        self,
        enum: _EnumTypeWrapper[V],
        names: Callable[[str], S],
        *,
        spelling: Callable[[str], str] = lower,
    ) -> None:
        descriptor = enum.DESCRIPTOR
        zero = descriptor.values_by_number.get(0)
        if zero is None or not zero.name.endswith(UNSPECIFIED):
            raise ValueError(f"{descriptor.full_name} has no *_{UNSPECIFIED} zero value")
        self.prefix = zero.name.removesuffix(UNSPECIFIED)
        self.full_name = descriptor.full_name
        spelled = {
            spelling(name.removeprefix(self.prefix)): number for name, number in enum.items() if number
        }
        if isinstance(names, type) and issubclass(names, StrEnum):
            declared = {str(member) for member in names}
            if declared != set(spelled):
                raise ValueError(
                    f"{names.__name__} does not match {self.full_name}: "
                    f"only in the code {sorted(declared - set(spelled))}, "
                    f"only in the proto {sorted(set(spelled) - declared)}"
                )
        self._to_proto: dict[str, V] = {}
        self._from_proto: dict[int, S] = {}
        for text, number in spelled.items():
            short = names(text)
            self._to_proto[short] = number
            self._from_proto[number] = short
        self._by_suffix = {name.removeprefix(self.prefix): number for name, number in enum.items() if number}

    @property
    def names(self) -> tuple[S, ...]:
        """The short names in the proto's order (the zero value left out)."""
        return tuple(self._from_proto.values())

    @property
    def numbers(self) -> tuple[V, ...]:
        return tuple(self._to_proto.values())

    def to_proto(self, name: str) -> V:
        """The enum value of a stored name (KeyError for a name the proto does not have)."""
        return self._to_proto[name]

    def to_proto_or(self, name: str | None, default: V) -> V:
        """The enum value of a stored name; `default` for None or a name the proto does not have."""
        return self._to_proto.get(name, default) if name is not None else default

    def known(self, number: int, default: V) -> V:
        """`number` as the enum's value when the proto has it (zero excepted), else `default`."""
        name = self._from_proto.get(number)
        return default if name is None else self._to_proto[name]

    def name(self, number: int) -> S:
        """The short name of an enum value (KeyError for the zero value or an unknown number)."""
        return self._from_proto[number]

    def get(self, number: int) -> S | None:
        """The short name of an enum value; None for the zero value or an unknown number."""
        return self._from_proto.get(number)

    def parse(self, text: str) -> S | None:
        """`running`, `RUNNING` or `AGENT_STATUS_RUNNING` -> "running"; None when it names no value."""
        key = text.strip().upper().replace("-", "_").removeprefix(self.prefix)
        number = self._by_suffix.get(key)
        return None if number is None else self._from_proto[number]

    def choices(self) -> str:
        """`parallel, map-reduce, pipeline or tree`, for error messages."""
        return one_of(self.names)


def one_of(names: Iterable[str]) -> str:
    """`a, b or c`, for error messages."""
    items = list(names)
    return f"{', '.join(items[:-1])} or {items[-1]}" if len(items) > 1 else "".join(items)
