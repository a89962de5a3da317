"""Which of a stream's waiting run messages a later one makes redundant.

A worker reports a new run three times in quick succession: STARTING, WORKTREE_READY (the worktree
is checked out) and RUNNING (the runtime started). Each update is a transaction on the agent's row;
when the agent service is busy (a burst of agents coming up) the three wait in the stream's backlog
together. Applying RUNNING does all the other two do: it takes an INITIALIZING agent through
`worktree_created` to SPAWNING before `session_started` (agent/runner.py `_on_running`), and an
update carries the run's commits and worktree as of when it was sent. So an update whose next
message of the same run is such an update is not applied on its own; the acknowledgement of the
later one covers it (a RunAck is for every message of the run up to its seq), and the events and
transitions recorded are the same.
"""

from __future__ import annotations

from collections.abc import Sequence

from godel.v1 import worker_service_pb2 as wpb

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


def superseded(messages: Sequence[wpb.ConnectRequest]) -> set[int]:
    """Indexes of the updates in `messages` (in the order they came) that the next message of the
    same run makes redundant: it is an update, later in the run's sequence, of a state that does all
    theirs does."""
    redundant: set[int] = set()
    latest: dict[str, int] = {}
    for i, message in enumerate(messages):
        run_id = run_of(message)
        if not run_id:
            continue
        before = latest.get(run_id)
        latest[run_id] = i
        if before is None or not message.HasField("update") or not messages[before].HasField("update"):
            continue
        earlier, later = messages[before].update, message.update
        if (
            later.state in _COVERED_BY.get(earlier.state, ())
            and later.agent_id == earlier.agent_id
            and later.seq > earlier.seq
        ):
            redundant.add(before)
    return redundant
