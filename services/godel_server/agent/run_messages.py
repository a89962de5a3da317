"""Run updates a later one of the same run makes redundant, and the short wait that lets the later
one come.

A worker reports a new run three times in quick succession: STARTING, WORKTREE_READY (the worktree
is checked out) and RUNNING (the runtime started, a few milliseconds later). Each update is a
transaction on the agent's row. Applying RUNNING does all the other two do: it takes an
INITIALIZING agent through `worktree_created` to SPAWNING before `session_started`
(agent/runner.py `_on_running`), and an update carries the run's commits and worktree as of when
it was sent. So an update of those states is held for at most LINGER_SECONDS: when the run's next
message is an update that does all it does, the held one is not applied on its own (the later
one's acknowledgement covers it: a RunAck is for every message of the run up to its seq, and the
transitions and events recorded are the same); otherwise it is applied before that message, in
the order they came. Messages of other runs do not wait for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from godel.v1 import worker_service_pb2 as wpb

LINGER_SECONDS = 0.1

# An update in the key state is redundant when the run's next message is an update in one of these.
_COVERED_BY: dict[int, frozenset[int]] = {
    wpb.RUN_STATE_STARTING: frozenset({wpb.RUN_STATE_WORKTREE_READY, wpb.RUN_STATE_RUNNING}),
    wpb.RUN_STATE_WORKTREE_READY: frozenset({wpb.RUN_STATE_RUNNING}),
}


def run_of(message: wpb.ConnectRequest) -> str:
    """The run a run message is about ("" for any other message)."""
    kind = message.WhichOneof("message")
    if kind in ("update", "logs", "usage", "session_message", "safety_block"):
        return str(getattr(message, kind).run_id)
    return ""


def _covers(later: wpb.ConnectRequest, earlier: wpb.ConnectRequest) -> bool:
    if not later.HasField("update"):
        return False
    after, before = later.update, earlier.update
    return (
        after.state in _COVERED_BY.get(before.state, ())
        and after.agent_id == before.agent_id
        and after.seq > before.seq
    )


@dataclass
class Applied:
    """What to do with the messages taken: apply `ready` in this order; `redundant` were covered."""

    ready: list[wpb.ConnectRequest] = field(default_factory=list)
    redundant: list[wpb.ConnectRequest] = field(default_factory=list)


class Coalescer:
    """Holds each run's update that its next message may make redundant (module docstring)."""

    def __init__(self, linger: float = LINGER_SECONDS) -> None:
        self._linger = linger
        self._held: dict[str, tuple[wpb.ConnectRequest, float]] = {}

    def deadline(self) -> float | None:
        """When the earliest held update must be applied; None when none is held."""
        return min((due for _, due in self._held.values()), default=None)

    def take(self, messages: Sequence[wpb.ConnectRequest], now: float) -> Applied:
        """The messages that came (in order) and the clock: what to apply now."""
        out = Applied()
        for run_id, (held, due) in list(self._held.items()):
            if due <= now:
                out.ready.append(held)
                del self._held[run_id]
        for message in messages:
            run_id = run_of(message)
            before = self._held.pop(run_id, None) if run_id else None
            if before is not None:
                (out.redundant if _covers(message, before[0]) else out.ready).append(before[0])
            if message.HasField("update") and message.update.state in _COVERED_BY:
                self._held[run_id] = (message, now + self._linger)
            else:
                out.ready.append(message)
        return out
