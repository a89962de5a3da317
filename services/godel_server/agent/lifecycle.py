"""The agent state machine of spec §2.3: which trigger moves which lifecycle state where, the coarse
status each state shows, and the event each transition emits.

Beyond the spec's diagram (documented in README): `kill_command` stops an agent from any live
state, and `restart` starts a new session from any state but the first two."""

from __future__ import annotations

from dataclasses import dataclass

from godel_server.runtime.errors import FailedPreconditionError
from godel_server.runtime.statuses import AgentStatus, LifecycleState

L = LifecycleState

TERMINAL = frozenset({L.COMPLETED, L.KILLED})
LIVE = frozenset({L.INITIALIZING, L.SPAWNING, L.EXECUTING, L.WAITING, L.PAUSED, L.COMPLETING, L.CLEANING_UP})

TRANSITIONS: dict[str, dict[LifecycleState, LifecycleState]] = {
    "worktree_created": {L.INITIALIZING: L.SPAWNING},
    "session_started": {L.SPAWNING: L.EXECUTING},
    "await_input": {L.EXECUTING: L.WAITING},
    "input_received": {L.WAITING: L.EXECUTING},
    "pause_command": {L.EXECUTING: L.PAUSED, L.WAITING: L.PAUSED},
    "resume_command": {L.PAUSED: L.EXECUTING},
    "task_complete": {L.EXECUTING: L.COMPLETING},
    "cleanup_done": {L.COMPLETING: L.COMPLETED},
    "cleanup_error": {L.COMPLETING: L.FAILED},
    "error": {L.EXECUTING: L.FAILED, L.WAITING: L.FAILED, L.PAUSED: L.FAILED, L.COMPLETING: L.FAILED},
    "spawn_error": {L.INITIALIZING: L.FAILED, L.SPAWNING: L.FAILED},
    "retry": {L.FAILED: L.EXECUTING},
    "kill_command": {state: L.KILLED for state in (*LIVE, L.FAILED)},
    "restart": {
        state: L.INITIALIZING
        for state in (L.EXECUTING, L.WAITING, L.PAUSED, L.COMPLETING, L.COMPLETED, L.FAILED, L.KILLED)
    },
}

# Coarse status per lifecycle state (spec §2.1 AgentStatus).
STATUS: dict[LifecycleState, AgentStatus] = {
    L.INITIALIZING: AgentStatus.PENDING,
    L.SPAWNING: AgentStatus.INITIALIZING,
    L.EXECUTING: AgentStatus.RUNNING,
    L.WAITING: AgentStatus.RUNNING,
    L.PAUSED: AgentStatus.PAUSED,
    L.COMPLETING: AgentStatus.RUNNING,
    L.CLEANING_UP: AgentStatus.RUNNING,
    L.COMPLETED: AgentStatus.COMPLETED,
    L.FAILED: AgentStatus.FAILED,
    L.KILLED: AgentStatus.KILLED,
}

EVENTS: dict[str, str] = {
    "session_started": "agent:start",
    "retry": "agent:start",
    "pause_command": "agent:pause",
    "resume_command": "agent:resume",
    "cleanup_done": "agent:complete",
    "error": "agent:error",
    "spawn_error": "agent:error",
    "cleanup_error": "agent:error",
    "kill_command": "agent:kill",
    "restart": "agent:restart",
}

# What the control verbs of the API are called in error messages.
VERBS: dict[str, str] = {
    "pause_command": "pause",
    "resume_command": "resume",
    "kill_command": "kill",
    "restart": "restart",
}


@dataclass(frozen=True)
class Move:
    trigger: str
    from_state: LifecycleState
    to_state: LifecycleState

    @property
    def from_status(self) -> AgentStatus:
        return STATUS[self.from_state]

    @property
    def to_status(self) -> AgentStatus:
        return STATUS[self.to_state]

    @property
    def event_type(self) -> str | None:
        return EVENTS.get(self.trigger)


def can(trigger: str, state: LifecycleState) -> bool:
    return state in TRANSITIONS.get(trigger, {})


def move(trigger: str, state: LifecycleState, agent_id: str = "") -> Move:
    """The transition `trigger` makes from `state`; FAILED_PRECONDITION naming the state if none."""
    targets = TRANSITIONS.get(trigger)
    if targets is None:
        raise ValueError(f"unknown trigger {trigger!r}")
    target = targets.get(state)
    if target is None:
        verb = VERBS.get(trigger, trigger)
        allowed = ", ".join(sorted(targets))
        raise FailedPreconditionError(
            f"cannot {verb} agent {agent_id}: it is {state} (allowed from: {allowed})",
            metadata={"agentId": agent_id, "currentState": state, "action": verb},
        )
    return Move(trigger, state, target)
