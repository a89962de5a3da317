"""Revocation that reaches open streams: a stream is authenticated when it opens, and a revoked or
expired key or token (or a disabled user) must not keep it open. The guard re-verifies the
credential of every open stream (gRPC server streams, SSE through the gateway, WebSocket sessions,
workers' Connect) every `interval` seconds, once per distinct credential, through the same
verifier as calls (whose cache lives GODEL_AUTH_CACHE_SECONDS), and ends the streams of a
credential that no longer verifies. A revocation therefore bites within cache + interval seconds.
When the verifier cannot answer (the cluster service is down), streams go on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from godel_server.runtime.context import Caller
from godel_server.runtime.errors import AuthenticationError

log = logging.getLogger(__name__)

OnRevoked = Callable[[AuthenticationError], None]


class Verifier(Protocol):
    async def verify(self, credential: str) -> Caller: ...


class StreamGuard:
    def __init__(self, verifier: Verifier, interval: float) -> None:
        self._verifier = verifier
        self.interval = interval
        self._watches: dict[str, dict[int, OnRevoked]] = {}
        self._next = 0
        self._task: asyncio.Task[None] | None = None

    def watch(self, credential: str, on_revoked: OnRevoked) -> Callable[[], None]:
        """Calls `on_revoked` (once) when `credential` stops verifying; returns the unwatch."""
        self._next += 1
        ident = self._next
        self._watches.setdefault(credential, {})[ident] = on_revoked

        def unwatch() -> None:
            watches = self._watches.get(credential)
            if watches is not None:
                watches.pop(ident, None)
                if not watches:
                    del self._watches[credential]

        return unwatch

    def open_streams(self) -> int:
        return sum(len(w) for w in self._watches.values())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="stream-guard")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:
                log.exception("re-verifying the credentials of open streams failed")

    async def check(self) -> None:
        """One pass: every credential with open streams is verified again (concurrently)."""
        credentials = list(self._watches)
        results = await asyncio.gather(
            *(self._verifier.verify(c) for c in credentials), return_exceptions=True
        )
        for credential, result in zip(credentials, results, strict=True):
            if isinstance(result, AuthenticationError):
                self._revoke(credential, result)

    def _revoke(self, credential: str, error: AuthenticationError) -> None:
        watches = self._watches.pop(credential, {})
        if watches:
            log.info(
                "closing streams of a credential that no longer verifies", extra={"streams": len(watches)}
            )
        for on_revoked in watches.values():
            try:
                on_revoked(error)
            except Exception:
                log.exception("ending a revoked stream failed")
