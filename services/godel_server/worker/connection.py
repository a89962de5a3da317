"""One WorkerService.Connect stream to one agent-service replica, reconnected forever with backoff.

On every (re)connect the worker sends WorkerHello first and waits for WorkerWelcome; then it sends
WorkerHeartbeat every heartbeat_interval_ms, reads assignments, controls and acknowledgements, and
writes the messages queued on this connection. Messages about runs that were still queued (or being
written) when the stream broke go back to their run's outbox, to be sent when the run's owner is
reachable again.

Contact: the replica acknowledges each heartbeat (HeartbeatAck). `silence(replica_id)` is how long
ago the newest heartbeat that replica acknowledged on this connection was written (the hello, until
one is): heartbeats go ahead of the run messages queued on the stream, and the replica puts their
acknowledgements ahead of its own (runtime/stream_queue.py), so a burst of run messages does not
pass for silence. Past the replica's run lease (WorkerWelcome.run_lease_ms) the worker stops the runs that
replica owns, because it may by then run them elsewhere. A replica restarted under a new id at the
same address is another replica: its acknowledgements renew nothing of the old one's.

Reconnects wait an exponential, jittered delay: at most BACKOFF_MAX while the replica is away (it
may be back any moment), at most KEY_REFUSED_BACKOFF_MAX while it refuses the worker's API key
(nothing changes until someone fixes the key); the refusal is logged once, as an error that says
what to do, and its end once."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import grpc

from godel.v1 import worker_service_pb2, worker_service_pb2_grpc
from godel_server.runtime.config import TlsSettings
from godel_server.runtime.stream_queue import StreamQueue
from godel_server.runtime.tls import open_channel

log = logging.getLogger(__name__)

BACKOFF_START = 0.2
BACKOFF_MAX = 2.0
KEY_REFUSED_BACKOFF_MAX = 60.0
# The replica's answer when the worker's key is unknown, revoked, expired or not of role worker.
KEY_REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
WELCOME_TIMEOUT = 10.0
DEFAULT_HEARTBEAT_MS = 5000


@dataclass
class Backoff:
    """Exponential backoff with jitter: the n-th delay (from 0) is drawn from [d/2, d] with
    d = min(cap, start * 2**n), so workers refused together do not come back together."""

    start: float
    cap: float
    rand: Callable[[], float] = random.random
    attempt: int = 0

    def next(self, cap: float | None = None) -> float:
        ceiling = min(cap if cap is not None else self.cap, self.start * 2.0 ** min(self.attempt, 32))
        self.attempt += 1
        return ceiling / 2 + self.rand() * ceiling / 2

    def reset(self) -> None:
        self.attempt = 0


class ProtocolError(Exception):
    """The replica did not follow the worker protocol."""


class ConnectionOwner(Protocol):
    """What a connection needs from the worker."""

    def hello(self) -> worker_service_pb2.WorkerHello: ...

    def heartbeat(self) -> worker_service_pb2.WorkerHeartbeat: ...

    def on_welcome(self, conn: Connection) -> None: ...

    def on_response(self, conn: Connection, response: worker_service_pb2.ConnectResponse) -> None: ...

    def requeue(self, run_id: str, items: list[tuple[int, worker_service_pb2.ConnectRequest]]) -> None: ...


# (run id or None, the message's order number in its run's outbox, the message)
_Item = tuple[str | None, int, worker_service_pb2.ConnectRequest]
# Heartbeats whose send time is remembered for their acknowledgement.
_HEARTBEATS_KEPT = 64
# Replica ids (one per restart of a replica with a generated id) whose last contact is remembered.
_REPLICAS_KEPT = 16


class Connection:
    def __init__(
        self,
        address: str,
        owner: ConnectionOwner,
        api_key: str | None = None,
        *,
        tls: TlsSettings | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.address = address
        self._tls = tls or TlsSettings()
        self._owner = owner
        self._metadata = (("x-api-key", api_key),) if api_key else ()
        self._sleep = sleep
        self._backoff = Backoff(BACKOFF_START, BACKOFF_MAX, rand)
        # The replica refuses this worker's key (logged once, until it is accepted again).
        self.key_refused = False
        self.replica_id: str | None = None
        self.heartbeat_interval = DEFAULT_HEARTBEAT_MS / 1000
        # The replica's run lease in seconds (0: none), and per replica id when the newest heartbeat
        # it acknowledged (or the hello it welcomed) was sent, monotonic.
        self.run_lease = 0.0
        self._contact: dict[str, float] = {}
        self._heartbeat_seq = 0
        self._heartbeats_sent: dict[int, float] = {}
        self.live = False
        self.connects = 0
        self._queue: StreamQueue[_Item] = StreamQueue()
        self._inflight: _Item | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def __repr__(self) -> str:
        return f"Connection({self.address!r}, replica={self.replica_id!r}, live={self.live})"

    def start(self) -> None:
        self._task = asyncio.create_task(self.run_forever(), name=f"worker-connection-{self.address}")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            await cancelled(self._task, f"the connection to {self.address}")

    def send(
        self, request: worker_service_pb2.ConnectRequest, run_id: str | None = None, order: int = 0
    ) -> bool:
        """Queues a message on the live stream; False (nothing queued) when the stream is down."""
        if not self.live:
            return False
        self._queue.put((run_id, order, request))
        return True

    def silence(self, replica_id: str | None, now: float) -> float:
        """Seconds since the newest heartbeat replica `replica_id` acknowledged here was sent."""
        contact = self._contact.get(replica_id or "")
        return now - contact if contact is not None else float("inf")

    def _contacted(self, sent: float) -> None:
        replica = self.replica_id or ""
        self._contact[replica] = max(self._contact.get(replica, sent), sent)
        while len(self._contact) > _REPLICAS_KEPT:
            del self._contact[next(iter(self._contact))]

    async def run_forever(self) -> None:
        while not self._stopping:
            welcomed = refused = False
            try:
                welcomed = await self._session()
                log.info("worker stream closed by the replica", extra={"address": self.address})
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                refused = exc.code() in KEY_REFUSED
                if refused:
                    self._refused(exc)
                else:
                    unavailable = exc.code() == grpc.StatusCode.UNAVAILABLE
                    log.log(
                        logging.INFO if unavailable else logging.WARNING,
                        "worker stream failed",
                        extra={"address": self.address, "code": str(exc.code()), "details": exc.details()},
                    )
            except (ProtocolError, TimeoutError, OSError, asyncio.InvalidStateError) as exc:
                # InvalidStateError: the stream ended while a message was being written to it.
                log.warning("worker stream failed", extra={"address": self.address, "error": repr(exc)})
            except Exception:
                # Whatever broke this stream, the worker must go on reconnecting: a connection that
                # stopped trying would strand every run it owns.
                log.exception("worker stream failed unexpectedly", extra={"address": self.address})
            finally:
                self._down()
            if welcomed:
                self._backoff.reset()
            await self._sleep(self._backoff.next(KEY_REFUSED_BACKOFF_MAX if refused else None))

    def _refused(self, exc: grpc.aio.AioRpcError) -> None:
        if self.key_refused:
            log.debug("worker key still refused", extra={"address": self.address, "details": exc.details()})
            return
        self.key_refused = True
        log.error(
            f"the agent service at {self.address} refuses this worker's API key "
            f"({exc.code().name}: {exc.details()}): no agent can run here until the worker has a "
            "valid key of role worker (GODEL_API_KEY; `make up` re-issues .data/worker.key). "
            f"Retrying with backoff, at most every {KEY_REFUSED_BACKOFF_MAX:g} s.",
            extra={"address": self.address, "code": exc.code().name},
        )

    async def _session(self) -> bool:
        """One stream, from hello to its end; True when the replica welcomed the worker."""
        async with open_channel(self.address, self._tls) as channel:
            stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
            call = stub.Connect(metadata=self._metadata)
            try:
                hello_sent = asyncio.get_running_loop().time()
                await call.write(worker_service_pb2.ConnectRequest(hello=self._owner.hello()))
                first = await asyncio.wait_for(call.read(), WELCOME_TIMEOUT)
                if first is grpc.aio.EOF:
                    return False
                if first.WhichOneof("message") != "welcome":
                    raise ProtocolError(f"expected WorkerWelcome first, got {first.WhichOneof('message')}")
                self.replica_id = first.welcome.replica_id
                interval_ms = first.welcome.heartbeat_interval_ms or DEFAULT_HEARTBEAT_MS
                self.heartbeat_interval = max(interval_ms, 10) / 1000
                self.run_lease = max(first.welcome.run_lease_ms, 0) / 1000
                self._contacted(hello_sent)
                self._heartbeats_sent.clear()
                self.live = True
                self.connects += 1
                if self.key_refused:
                    self.key_refused = False
                    log.info(
                        "the agent service accepts this worker's API key again",
                        extra={"address": self.address},
                    )
                log.info(
                    "worker connected",
                    extra={"address": self.address, "replica": self.replica_id, "heartbeat_ms": interval_ms},
                )
                self._owner.on_welcome(self)
                tasks = [
                    asyncio.create_task(self._read_loop(call)),
                    asyncio.create_task(self._write_loop(call)),
                    asyncio.create_task(self._heartbeat_loop()),
                ]
                try:
                    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                for task in done:
                    task.result()
                return True
            finally:
                self.live = False
                call.cancel()

    async def _read_loop(self, call: grpc.aio.StreamStreamCall) -> None:
        while True:
            response = await call.read()
            if response is grpc.aio.EOF:
                return
            if response.WhichOneof("message") == "heartbeat_ack":
                self._heartbeat_acked(response.heartbeat_ack.seq)
                continue
            try:
                self._owner.on_response(self, response)
            except Exception:
                log.exception("handling a message from the replica failed", extra={"address": self.address})

    def _heartbeat_acked(self, seq: int) -> None:
        sent = self._heartbeats_sent.get(seq)
        if sent is None:
            return
        self._contacted(sent)
        for old in [s for s in self._heartbeats_sent if s <= seq]:
            del self._heartbeats_sent[old]

    async def _write_loop(self, call: grpc.aio.StreamStreamCall) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await self._queue.get()
            request = item[2]
            if request.HasField("heartbeat"):
                # Contact is counted from the write: the time the heartbeat waited to be written
                # is no silence of the replica's.
                self._heartbeats_sent[request.heartbeat.seq] = loop.time()
                while len(self._heartbeats_sent) > _HEARTBEATS_KEPT:
                    del self._heartbeats_sent[min(self._heartbeats_sent)]
            self._inflight = item
            await call.write(request)
            self._inflight = None

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            self._heartbeat_seq += 1
            beat = self._owner.heartbeat()
            beat.seq = self._heartbeat_seq
            self._queue.put_urgent((None, 0, worker_service_pb2.ConnectRequest(heartbeat=beat)))

    def _down(self) -> None:
        """Gives the run messages that were not written back to their runs' outboxes."""
        self.live = False
        unsent: dict[str, list[tuple[int, worker_service_pb2.ConnectRequest]]] = {}
        items: list[_Item] = [self._inflight] if self._inflight is not None else []
        self._inflight = None
        items += self._queue.drain()
        for run_id, order, request in items:
            if run_id is not None:
                unsent.setdefault(run_id, []).append((order, request))
        for run_id, requests in unsent.items():
            self._owner.requeue(run_id, requests)


# How long a stopping worker waits for a task it cancelled. One that does not end (a stream call
# that swallows its cancel) must not keep the worker from exiting on SIGTERM: its runs' processes
# are stopped anyway, and the reaper kills what is left of them once the worker has exited.
CANCEL_WAIT_SECONDS = 5.0


async def cancelled(task: asyncio.Task[None], what: str, timeout: float | None = None) -> None:
    """Cancels `task` and waits for it to end, at most `timeout` seconds (CANCEL_WAIT_SECONDS by
    default; then says so and goes on)."""
    timeout = CANCEL_WAIT_SECONDS if timeout is None else timeout
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        log.warning("%s did not end within %.1fs of its cancel; going on without it", what, timeout)
    elif not task.cancelled() and task.exception() is not None:
        log.warning("%s ended with an error while stopping: %r", what, task.exception())
