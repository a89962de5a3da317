"""A worker whose API key the agent service refuses: one clear error, then exponential, jittered
and capped reconnects (a fake sleep records the delays), and the same again after it was accepted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from godel.v1 import worker_service_pb2, worker_service_pb2_grpc
from godel_server.runtime.context import Caller
from godel_server.runtime.errors import AuthenticationError
from godel_server.runtime.interceptors import GodelServerInterceptor
from godel_server.worker.connection import (
    BACKOFF_MAX,
    BACKOFF_START,
    KEY_REFUSED_BACKOFF_MAX,
    Backoff,
    Connection,
)

pytestmark = pytest.mark.timeout(60)


class RefusingVerifier:
    async def verify(self, credential: str) -> Caller:
        raise AuthenticationError("invalid API key")


class Owner:
    """The worker side a connection reports to; nothing reaches it while the key is refused."""

    def hello(self) -> worker_service_pb2.WorkerHello:
        return worker_service_pb2.WorkerHello(worker_id="w", runtimes=["command"], capacity=1)

    def heartbeat(self) -> worker_service_pb2.WorkerHeartbeat:
        return worker_service_pb2.WorkerHeartbeat()

    def on_welcome(self, conn: Connection) -> None:
        raise AssertionError("a refused worker is never welcomed")

    def on_response(self, conn: Connection, response: worker_service_pb2.ConnectResponse) -> None:
        raise AssertionError("a refused worker gets no messages")

    def requeue(self, run_id: str, items: list[tuple[int, worker_service_pb2.ConnectRequest]]) -> None:
        pass


@pytest.fixture
async def refusing_replica() -> AsyncIterator[str]:
    """An agent-service stand-in whose interceptor (the real one) refuses every key."""
    server = grpc.aio.server(interceptors=[GodelServerInterceptor(RefusingVerifier())])
    worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(
        worker_service_pb2_grpc.WorkerServiceServicer(),  # type: ignore[abstract]
        server,
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


def _draws() -> Iterator[float]:
    while True:
        yield from (0.0, 1.0, 0.5)


class Outcomes(logging.Handler):
    """Whether the attempt that ended last failed otherwise than by a refusal of the key (on a
    loaded machine the welcome may time out first: that is not a refusal, and backs off with the
    short cap)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.failed_otherwise = False

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "worker stream failed":
            self.failed_otherwise = True


async def test_a_refused_key_logs_one_error_and_backs_off_up_to_the_cap(
    refusing_replica: str, caplog: pytest.LogCaptureFixture
) -> None:
    draws = _draws()
    delays: list[float] = []
    refused: list[bool] = []  # per delay: whether the attempt before it was refused
    attempts = 20
    outcomes = Outcomes()

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        refused.append(not outcomes.failed_otherwise)
        outcomes.failed_otherwise = False
        if len(delays) == attempts:
            conn._stopping = True

    conn = Connection(refusing_replica, Owner(), "godel_sk_revoked", sleep=sleep, rand=lambda: next(draws))
    logger = logging.getLogger("godel_server.worker.connection")
    logger.addHandler(outcomes)
    try:
        with caplog.at_level(logging.DEBUG, logger="godel_server.worker.connection"):
            await conn.run_forever()
    finally:
        logger.removeHandler(outcomes)

    # One error for the refused key, however many attempts it took.
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    others = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert set(others) <= {"worker stream failed"}, others
    message = errors[0].getMessage()
    assert refusing_replica in message and "API key" in message and "UNAUTHENTICATED" in message
    assert conn.key_refused and conn.connects == 0
    assert sum(refused) >= attempts - 3, refused  # the other failures are rare, not the rule

    # Exponential from BACKOFF_START, capped (long while the key is refused), each drawn from
    # [ceiling/2, ceiling] by the jitter.
    caps = [KEY_REFUSED_BACKOFF_MAX if r else BACKOFF_MAX for r in refused]
    ceilings = [min(cap, BACKOFF_START * 2**n) for n, cap in enumerate(caps)]
    jitter = _draws()
    expected = [c / 2 + next(jitter) * c / 2 for c in ceilings]
    assert delays == pytest.approx(expected)
    # Refused attempts 10, 13, 16 and 19 draw 1.0 at the cap (only the rare other failure skips one).
    assert any(
        r and d == pytest.approx(KEY_REFUSED_BACKOFF_MAX) for d, r in zip(delays, refused, strict=True)
    )
    assert max(delays) == pytest.approx(KEY_REFUSED_BACKOFF_MAX)


def test_backoff_resets_after_a_welcome_and_keeps_the_short_cap_for_an_absent_replica() -> None:
    backoff = Backoff(0.2, 2.0, rand=lambda: 1.0)
    assert [backoff.next() for _ in range(6)] == pytest.approx([0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
    assert backoff.next(cap=60.0) == pytest.approx(12.8)  # the refused-key cap lets it grow further
    backoff.reset()
    assert backoff.next() == pytest.approx(0.2)
    many = Backoff(0.2, 60.0, rand=lambda: 0.0)
    for _ in range(1000):  # no overflow however long it is refused
        last = many.next()
    assert last == pytest.approx(30.0)


async def test_a_stream_that_breaks_in_an_unexpected_way_is_opened_again() -> None:
    """A stream ending while a message is written to it raises asyncio.InvalidStateError (seen when
    an agent service was killed during a burst): the connection must go on reconnecting, or every
    run it owns is stranded."""
    failures: list[BaseException] = [asyncio.InvalidStateError("RPC already finished."), RuntimeError("odd")]
    sessions = 0

    class Breaking(Connection):
        async def _session(self) -> bool:
            nonlocal sessions
            sessions += 1
            if failures:
                raise failures.pop(0)
            self._stopping = True
            return True

    async def sleep(delay: float) -> None:
        return None

    conn = Breaking("127.0.0.1:1", Owner(), sleep=sleep)
    await asyncio.wait_for(conn.run_forever(), 5)
    assert sessions == 3 and not failures
