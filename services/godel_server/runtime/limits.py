"""Limits per caller, so that one client cannot starve the others: request rates per credential
(API key or login session) and per user, and caps on what one user holds open at once (streams,
live subscriptions). Every service process enforces them in its interceptor, after
authentication, so they apply to REST, gRPC through the gateway and direct calls alike, and
know who the caller is (the gateway only sees opaque headers).

Rates are counted with the `limits` library (a moving window in memory: exact, and the time a
slot frees is the retry delay). Counts are per process: N replicas of a service allow N times the
rate, as their separate connection pools would anyway.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from godel_server.runtime.context import Caller
from godel_server.runtime.errors import QuotaExceededError, RateLimitedError


class RateWindows:
    """Named moving windows over one in-memory store."""

    def __init__(self) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def hit(self, item: RateLimitItem, *identity: str) -> float:
        """Counts one request; 0 when allowed, else the seconds until a slot frees."""
        if self._limiter.hit(item, *identity):
            return 0.0
        stats = self._limiter.get_window_stats(item, *identity)
        return max(0.001, stats.reset_time - time.time())


class CallerLimits:
    """Requests per second per credential (the key's own limit, else `per_key`) and per user
    (`per_user`, over all of the user's keys and sessions); 0 turns a limit off."""

    def __init__(self, per_key: int, per_user: int) -> None:
        self._per_key = per_key
        self._per_user = per_user
        self._windows = RateWindows()

    def check(self, caller: Caller) -> None:
        """Counts the request; RateLimitedError (RESOURCE_EXHAUSTED, with the retry delay) when over."""
        per_key = caller.requests_per_second or self._per_key
        if per_key:
            wait = self._windows.hit(RateLimitItemPerSecond(per_key), "credential", caller.credential_id)
            if wait:
                raise RateLimitedError(
                    f"rate limit of this credential exceeded ({per_key} requests per second)", wait
                )
        if self._per_user and caller.user_id:
            wait = self._windows.hit(RateLimitItemPerSecond(self._per_user), "user", caller.user_id)
            if wait:
                raise RateLimitedError(
                    f"rate limit of user {caller.username or caller.user_id} exceeded "
                    f"({self._per_user} requests per second over all their credentials)",
                    wait,
                )


class LoginAttempts:
    """Logins per username and minute: password guessing is slow however many clients guess."""

    def __init__(self, per_minute: int) -> None:
        self._item = RateLimitItemPerMinute(per_minute)
        self._per_minute = per_minute
        self._windows = RateWindows()

    def check(self, username: str) -> None:
        wait = self._windows.hit(self._item, "login", username)
        if wait:
            raise RateLimitedError(
                f"too many logins for {username!r} ({self._per_minute} per minute); try again later", wait
            )


class UserSlots:
    """At most `cap` things (open streams, subscriptions) per user at once; 0 = no cap."""

    def __init__(self, cap: int, what: str) -> None:
        self._cap = cap
        self._what = what
        self._held: Counter[str] = Counter()

    def acquire(self, user: str) -> Callable[[], None]:
        """Takes a slot (QuotaExceededError when the user holds `cap`); returns its release."""
        if not self._cap:
            return _nothing
        if self._held[user] >= self._cap:
            raise QuotaExceededError(
                f"user {user} has {self._held[user]} {self._what} open, the most allowed at once "
                f"({self._cap}); close one first",
                metadata={"limit": str(self._cap), "what": self._what},
            )
        self._held[user] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._held[user] -= 1
                if self._held[user] <= 0:
                    del self._held[user]

        return release

    def held(self, user: str) -> int:
        return self._held[user]


def _nothing() -> None:
    return None


def retry_after_header(seconds: float) -> str:
    """The value of an HTTP `retry-after` header: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
