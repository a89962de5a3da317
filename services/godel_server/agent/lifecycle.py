"""The agent state machine of spec §2.3: which trigger moves which lifecycle state where, the coarse
status each state shows, and the event each transition emits.

Beyond the spec's diagram (documented in README): `kill_command` stops an agent from any live
state, and `restart` starts a new session from any state but the first two."""

from __future__ import annotations

from dataclasses import dataclass

from godel_server.runtime.errors import FailedPreconditionError

TERMINAL = frozenset({"completed", "killed"})
LIVE = frozenset({"initializing", "spawning", "executing", "waiting", "paused", "completing", "cleaning_up"})

TRANSITIONS: dict[str, dict[str, str]] = {
    "worktree_created": {"initializing": "spawning"},
    "session_started": {"spawning": "executing"},
    "await_input": {"executing": "waiting"},
    "input_received": {"waiting": "executing"},
    "pause_command": {"executing": "paused", "waiting": "paused"},
    "resume_command": {"paused": "executing"},
    "task_complete": {"executing": "completing"},
    "cleanup_done": {"completing": "completed"},
    "cleanup_error": {"completing": "failed"},
    "error": {"executing": "failed", "waiting": "failed", "paused": "failed", "completing": "failed"},
    "spawn_error": {"initializing": "failed", "spawning": "failed"},
    "retry": {"failed": "executing"},
    "kill_command": {state: "killed" for state in (*LIVE, "failed")},
    "restart": {
        state: "initializing"
        for state in ("executing", "waiting", "paused", "completing", "completed", "failed", "killed")
    },
}

# Coarse status per lifecycle state (spec §2.1 AgentStatus).
STATUS: dict[str, str] = {
    "initializing": "pending",
    "spawning": "initializing",
    "executing": "running",
    "waiting": "running",
    "paused": "paused",
    "completing": "running",
    "cleaning_up": "running",
    "completed": "completed",
    "failed": "failed",
    "killed": "killed",
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
    from_state: str
    to_state: str

    @property
    def from_status(self) -> str:
        return STATUS[self.from_state]

    @property
    def to_status(self) -> str:
        return STATUS[self.to_state]

    @property
    def event_type(self) -> str | None:
        return EVENTS.get(self.trigger)


def can(trigger: str, state: str) -> bool:
    return state in TRANSITIONS.get(trigger, {})


def move(trigger: str, state: str, agent_id: str = "") -> Move:
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
