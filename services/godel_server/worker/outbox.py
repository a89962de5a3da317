"""Messages of one run on their way to the run's owner replica, and the journal that keeps the ones
the owner must acknowledge across the worker's restart.

Two kinds of message:
- Acknowledged (RunUpdate, RunUsage): numbered (`seq`), kept in memory and in the run's journal
  file until the owner acknowledges them (RunAck), sent again after a reconnect, an ADOPT, a long
  silence or the worker's restart, never dropped. While one has not left the worker yet, a newer
  usage of the same model is added into it and a newer state supersedes a non-final one, so a run
  that cannot reach its owner keeps a handful of them. At most WINDOW are in flight at once (later
  messages wait, and merge), so a replica that does not acknowledge cannot make them pile up.
- Best effort (log lines, session messages): sent once; while waiting, bounded (`limit`), the
  oldest log lines dropped first (session messages only when no log batch is left), the drop
  reported in a warning line.

Every message of a run gets the next number of one per-run counter (acknowledged ones carry it
as their `seq`), so the order in which they were produced survives requeues and resends."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.message import DecodeError

from godel.v1 import agent_pb2, worker_service_pb2
from godel_server.worker.messages import TERMINAL_STATES, log_line

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 10_000
ACK_SAVE_SECONDS = 0.2
WINDOW = 64
_DROP_ORDER = ("logs", "session_message")
_ACKED_KINDS = ("update", "usage")
_LENGTH = struct.Struct(">I")
# A journal record larger than this is not a message this worker wrote.
_MAX_RECORD = 16 * 1024 * 1024

Request = worker_service_pb2.ConnectRequest


def acknowledged(request: Request) -> bool:
    """True for the messages the owner acknowledges (RunUpdate, RunUsage)."""
    return request.WhichOneof("message") in _ACKED_KINDS


def seq_of(request: Request) -> int:
    kind = request.WhichOneof("message")
    if kind == "update":
        return request.update.seq
    if kind == "usage":
        return request.usage.seq
    return 0


def _set_seq(request: Request, seq: int) -> None:
    if request.WhichOneof("message") == "update":
        request.update.seq = seq
    else:
        request.usage.seq = seq


def _supersedable(request: Request) -> bool:
    return request.WhichOneof("message") == "update" and request.update.state not in TERMINAL_STATES


class Journal:
    """<state dir>/runs/<run id>: the unacknowledged messages of each run, length-prefixed.

    A file is rewritten whole (a few small messages) through a temporary file and a rename, so a
    worker killed at any moment leaves the old or the new version. Not fsynced: it survives the
    worker process's death, not the machine's.

    A new message is saved before it is sent; what an acknowledgement removes is saved within
    ACK_SAVE_SECONDS, all runs' at once (`save_later`): a worker killed in between sends those
    messages again, and the owner ignores what it applied already. A thousand agents coming up
    rewrote a file per acknowledgement, in the event loop."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._later: dict[str, RunOutbox] = {}
        self._timer: asyncio.TimerHandle | None = None

    def save_later(self, box: RunOutbox) -> None:
        """Saves the outbox's journal with the next batch (at once when no event loop runs)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            box.save()
            return
        self._later[box.run_id] = box
        if self._timer is None:
            self._timer = loop.call_later(ACK_SAVE_SECONDS, self.flush)

    def flush(self) -> None:
        """Saves every journal `save_later` left for the next batch."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        later, self._later = self._later, {}
        for box in later.values():
            box.save()

    def save(self, run_id: str, requests: list[Request]) -> None:
        self._later.pop(run_id, None)  # this is its newest version
        path = self.directory / run_id
        if not requests:
            path.unlink(missing_ok=True)
            return
        data = b"".join(_LENGTH.pack(len(b)) + b for b in (r.SerializeToString() for r in requests))
        tmp = path.with_name(f".{run_id}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    def load(self) -> dict[str, list[Request]]:
        """What a previous worker process left, by run id (unreadable files are dropped, logged)."""
        found: dict[str, list[Request]] = {}
        if not self.directory.is_dir():
            return found
        for path in sorted(self.directory.iterdir()):
            if path.name.startswith("."):
                path.unlink(missing_ok=True)
                continue
            try:
                found[path.name] = _records(path.read_bytes())
            except (OSError, ValueError) as exc:
                log.error("dropping an unreadable run journal", extra={"path": str(path), "error": str(exc)})
                path.unlink(missing_ok=True)
        return {run_id: requests for run_id, requests in found.items() if requests}


def _records(data: bytes) -> list[Request]:
    out: list[Request] = []
    pos = 0
    while pos < len(data):
        if pos + _LENGTH.size > len(data):
            raise ValueError("truncated record length")
        (size,) = _LENGTH.unpack_from(data, pos)
        pos += _LENGTH.size
        if size > _MAX_RECORD or pos + size > len(data):
            raise ValueError("truncated or oversized record")
        try:
            request = Request.FromString(data[pos : pos + size])
        except DecodeError as exc:
            raise ValueError(f"not a ConnectRequest: {exc}") from None
        if not acknowledged(request) or seq_of(request) <= 0:
            raise ValueError("a record that is not a numbered RunUpdate or RunUsage")
        out.append(request)
        pos += size
    return out


@dataclass(order=True)
class _Item:
    order: int
    request: Request = field(compare=False)
    # Given to a stream at least once: the owner may have applied it, so it never changes again.
    handed: bool = field(default=False, compare=False)
    sent_at: float = field(default=0.0, compare=False)

    @property
    def acked_kind(self) -> bool:
        return acknowledged(self.request)


class RunOutbox:
    def __init__(
        self, run_id: str, agent_id: str, journal: Journal | None = None, limit: int = DEFAULT_LIMIT
    ) -> None:
        self.run_id = run_id
        self.agent_id = agent_id
        self.limit = max(limit, 1)
        self._journal = journal
        self._next = 1
        # Not handed to a stream (or to be sent again), in order.
        self._waiting: list[_Item] = []
        # Acknowledged kinds handed to a stream and not yet acknowledged, by order.
        self._in_flight: dict[int, _Item] = {}
        self.dropped_lines = 0
        self.dropped_messages = 0
        self._unreported_lines = 0
        self._unreported_messages = 0

    def __len__(self) -> int:
        return len(self._waiting) + len(self._in_flight)

    @classmethod
    def restore(cls, run_id: str, agent_id: str, journal: Journal, requests: Iterable[Request]) -> RunOutbox:
        """The outbox of a run a previous worker process left unacknowledged: everything is sent
        again (and may have been applied already, so none of it changes)."""
        box = cls(run_id, agent_id, journal)
        for request in sorted(requests, key=seq_of):
            box._waiting.append(_Item(seq_of(request), request, handed=True))
        box._next = max((item.order for item in box._waiting), default=0) + 1
        return box

    # ----------------------------------------------------------------- adding
    def add(self, request: Request) -> None:
        if acknowledged(request):
            self._add_acknowledged(request)
        else:
            self._waiting.append(_Item(self._take_number(), request))
        self._bound()

    def _bound(self) -> None:
        while len(self._waiting) > self.limit and self._drop_one():
            pass

    def _take_number(self) -> int:
        number = self._next
        self._next += 1
        return number

    def _add_acknowledged(self, request: Request) -> None:
        kind = request.WhichOneof("message")
        fresh = [item for item in self._waiting if item.acked_kind and not item.handed]
        if kind == "usage":
            for item in reversed(fresh):
                queued = item.request
                if queued.WhichOneof("message") == "usage" and queued.usage.model == request.usage.model:
                    queued.usage.prompt_tokens += request.usage.prompt_tokens
                    queued.usage.completion_tokens += request.usage.completion_tokens
                    self.save()
                    return
        elif _supersedable(request):
            superseded = {id(item) for item in fresh if _supersedable(item.request)}
            self._waiting = [item for item in self._waiting if id(item) not in superseded]
        number = self._take_number()
        copy = Request()
        copy.CopyFrom(request)
        _set_seq(copy, number)
        self._waiting.append(_Item(number, copy))
        self.save()

    def _drop_one(self) -> bool:
        for kind in _DROP_ORDER:
            for i, item in enumerate(self._waiting):
                queued = item.request
                if queued.WhichOneof("message") == kind:
                    del self._waiting[i]
                    if kind == "logs":
                        self.dropped_lines += len(queued.logs.lines)
                        self._unreported_lines += len(queued.logs.lines)
                    else:
                        self.dropped_messages += 1
                        self._unreported_messages += 1
                    return True
        return False

    # ----------------------------------------------------------------- sending
    def take(self) -> list[tuple[int, Request]]:
        """What to write to the owner's stream now, oldest first, each with its order number (to
        give back through `requeue`); preceded by a warning line when log lines were dropped."""
        out: list[tuple[int, Request]] = []
        if self._unreported_lines or self._unreported_messages:
            warning = log_line(
                f"{self._unreported_lines} log lines and {self._unreported_messages} session messages "
                "were dropped while the worker could not reach this run's owner",
                stream="runtime",
                level=agent_pb2.LOG_LEVEL_WARN,
            )
            out.append(
                (
                    0,
                    Request(
                        logs=worker_service_pb2.RunLogs(
                            run_id=self.run_id, agent_id=self.agent_id, lines=[warning]
                        )
                    ),
                )
            )
            self._unreported_lines = self._unreported_messages = 0
        now = time.monotonic()
        taken = 0
        for item in self._waiting:
            if item.acked_kind:
                if len(self._in_flight) >= WINDOW:
                    break  # everything after it waits too, to keep the order
                item.handed, item.sent_at = True, now
                self._in_flight[item.order] = item
            out.append((item.order, item.request))
            taken += 1
        del self._waiting[:taken]
        return out

    def requeue(self, items: Iterable[tuple[int, Request]]) -> None:
        """Puts back what a broken stream did not write, in its place; what it did write and was
        not acknowledged goes back too (`rewind`)."""
        for order, request in items:
            if acknowledged(request):
                continue  # still in flight: rewind() puts it back
            bisect.insort(self._waiting, _Item(order, request))
        self.rewind()
        self._bound()

    def rewind(self) -> None:
        """The stream the in-flight messages went to is gone, or the run has a new owner: they are
        sent again (the owner ignores what it applied already)."""
        for item in self._in_flight.values():
            bisect.insort(self._waiting, item)
        self._in_flight.clear()

    def overdue(self, now: float, after: float) -> bool:
        """True when a message in flight has waited longer than `after` s for its acknowledgement."""
        return any(now - item.sent_at > after for item in self._in_flight.values())

    def ack(self, seq: int) -> bool:
        """Forgets the acknowledged messages up to `seq`; True when something was forgotten."""
        before = len(self)
        self._in_flight = {o: item for o, item in self._in_flight.items() if o > seq}
        self._waiting = [item for item in self._waiting if not (item.acked_kind and item.order <= seq)]
        if len(self) == before:
            return False
        if self._journal is not None:
            self._journal.save_later(self)
        return True

    @property
    def unacknowledged(self) -> int:
        return len(self._in_flight) + sum(1 for item in self._waiting if item.acked_kind)

    def save(self) -> None:
        """Rewrites the run's journal: its acknowledged kinds not acknowledged yet."""
        if self._journal is None:
            return
        items = sorted([*self._in_flight.values(), *(i for i in self._waiting if i.acked_kind)])
        try:
            self._journal.save(self.run_id, [item.request for item in items])
        except OSError as exc:
            # The messages are still sent from memory; only a restart of this worker would lose them.
            log.error("cannot write the run's journal", extra={"run_id": self.run_id, "error": str(exc)})

    def forget(self) -> None:
        """Drops the run's journal (the run left the worker)."""
        if self._journal is not None:
            with contextlib.suppress(OSError):
                self._journal.save(self.run_id, [])
