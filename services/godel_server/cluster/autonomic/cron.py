"""Five-field cron expressions (minute hour day-of-month month day-of-week, UTC) for schedule
triggers: each field `*`, a number, a range `a-b`, a list `a,b`, or a step `*/n` or `a-b/n`.
Day-of-week counts from 0 = Sunday (7 is Sunday too). As in cron, when both day fields are
restricted a day matches either."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# (low, high) of each field.
BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
NAMES = ("minute", "hour", "day of month", "month", "day of week")
# How far back a schedule looks for minutes it missed (a loop that was stopped).
MAX_CATCH_UP = timedelta(hours=1)


class CronError(ValueError):
    pass


def _field(text: str, index: int) -> frozenset[int]:
    low, high = BOUNDS[index]
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if body == "*":
                start, end = low, high
            elif "-" in body:
                a, b = body.split("-", 1)
                start, end = int(a), int(b)
            else:
                start = end = int(body)
                if step_text:
                    end = high
        except ValueError:
            raise CronError(f"{NAMES[index]}: {part!r} is not a number, range, list or step") from None
        if step < 1 or not low <= start <= end <= high:
            raise CronError(f"{NAMES[index]}: {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(v % 7 for v in values) if index == 4 else frozenset(values)


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        fields = text.split()
        if len(fields) != 5:
            raise CronError("needs five fields: minute hour day-of-month month day-of-week")
        m, h, d, mo, w = (_field(f, i) for i, f in enumerate(fields))
        return cls(m, h, d, mo, w, fields[2] == "*", fields[4] == "*")

    def matches(self, at: datetime) -> bool:
        weekday = (at.weekday() + 1) % 7  # Python's Monday=0 -> cron's Sunday=0
        day_ok = at.day in self.days
        weekday_ok = weekday in self.weekdays
        restricted_both = not (self.any_day or self.any_weekday)
        days = (day_ok or weekday_ok) if restricted_both else (day_ok and weekday_ok)
        return at.minute in self.minutes and at.hour in self.hours and at.month in self.months and days

    def fired(self, since: datetime, until: datetime) -> datetime | None:
        """The last minute in (since, until] the expression names, if any."""
        start = max(since, until - MAX_CATCH_UP)
        minute = until.replace(second=0, microsecond=0)
        while minute > start:
            if self.matches(minute):
                return minute
            minute -= timedelta(minutes=1)
        return None
