"""Human-readable views of Godel resources, as text blocks for the CLI."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from datetime import UTC, datetime

from godel.v1 import agent_pb2, auth_service_pb2, event_pb2, system_service_pb2
from godel_client import formatting as fmt
from godel_client.table import one_line, render_pairs, render_table

TASK_WIDTH = 50


def agent_status(agent: agent_pb2.Agent) -> str:
    return fmt.enum_short(agent_pb2.AgentStatus.DESCRIPTOR, agent.status)


def lifecycle_state(agent: agent_pb2.Agent) -> str:
    return fmt.enum_short(agent_pb2.LifecycleState.DESCRIPTOR, agent.lifecycle_state)


def _lifecycle(state: agent_pb2.LifecycleState.ValueType) -> str:
    return fmt.enum_short(agent_pb2.LifecycleState.DESCRIPTOR, state)


def agents_table(agents: Sequence[agent_pb2.Agent], now: datetime | None = None) -> str:
    """One row per agent: id, status, lifecycle state, runtime, model, age and the task's start."""
    at = now or datetime.now(UTC)
    rows = [
        [
            agent.id,
            agent_status(agent),
            lifecycle_state(agent),
            fmt.or_empty(agent.config.runtime),
            fmt.or_empty(agent.model),
            fmt.age(agent.spawned_at, at),
            agent.task,
        ]
        for agent in agents
    ]
    return render_table(
        ["ID", "STATUS", "LIFECYCLE", "RUNTIME", "MODEL", "AGE", "TASK"], rows, max_widths={6: TASK_WIDTH}
    )


def agent_state_line(agent: agent_pb2.Agent, now: datetime | None = None) -> str:
    """``12:01:03  running/executing  v5  $0.0123  (retries 0)``: one line per observed change."""
    time = fmt.clock(agent.updated_at, now or datetime.now(UTC))
    state = f"{agent_status(agent)}/{lifecycle_state(agent)}"
    return f"{time}  {state}  v{agent.version}  {fmt.usd_precise(agent.budget_consumed)}  (retries {agent.retry_count})"


def agent_detail(agent: agent_pb2.Agent) -> str:
    state = lifecycle_state(agent)
    status = agent_status(agent)
    if state not in ("unspecified", status):
        status = f"{status} ({state})"
    budget = fmt.usd(agent.budget_consumed)
    if agent.HasField("budget_limit"):
        budget = f"{budget} of {fmt.usd(agent.budget_limit)}"
    config = agent.config
    pairs: list[tuple[str, str]] = [
        ("id", agent.id),
        ("status", status),
        ("version", str(agent.version)),
        ("task", agent.task),
        ("model", fmt.or_empty(agent.model)),
        ("label", fmt.or_empty(agent.label)),
        ("team", fmt.or_empty(agent.team_id)),
        ("runtime", fmt.or_empty(config.runtime)),
    ]
    if config.command:
        pairs.append(("command", shlex.join(config.command)))
    if config.endpoint:
        pairs.append(("endpoint", config.endpoint))
    if config.env:
        pairs.append(("env", "\n".join(f"{k}={v}" for k, v in sorted(config.env.items()))))
    if config.HasField("timeout"):
        pairs.append(("timeout", fmt.duration(int(config.timeout.ToTimedelta().total_seconds()))))
    pairs += [
        ("repo", fmt.or_empty(agent.repo)),
        ("worktree", fmt.or_empty(agent.worktree) + (" (kept)" if config.keep_worktree else "")),
        ("session", fmt.or_empty(agent.session_id)),
        ("worker", fmt.or_empty(agent.worker_id)),
        ("spawned", fmt.timestamp(agent.spawned_at)),
        ("completed", fmt.timestamp(agent.completed_at)),
        ("updated", fmt.timestamp(agent.updated_at)),
        ("ran for", fmt.duration(agent.runtime_seconds)),
        ("retries", f"{agent.retry_count} of {agent.max_retries}"),
        ("budget", budget),
        (
            "tokens",
            f"{fmt.count(agent.prompt_tokens)} prompt + {fmt.count(agent.completion_tokens)} completion",
        ),
    ]
    if agent.paused_by or agent.HasField("pause_time"):
        pairs.append(("paused", f"{fmt.timestamp(agent.pause_time)} by {fmt.or_empty(agent.paused_by)}"))
    pairs.append(("commits", "\n".join(agent.commits) or fmt.EMPTY))
    if agent.result:
        pairs.append(("result", agent.result))
    if agent.last_error:
        pairs.append(("last error", agent.last_error))
    return render_pairs(pairs)


def transitions_table(transitions: Sequence[agent_pb2.AgentTransition]) -> str:
    """Time, ``from → to`` (lifecycle states), trigger, reason and actor of each transition."""
    rows = [
        [
            fmt.timestamp(t.time),
            f"{fmt.or_empty(_lifecycle_or_empty(t.from_state))} → {_lifecycle(t.to_state)}",
            fmt.or_empty(t.trigger),
            fmt.or_empty(t.reason),
            fmt.or_empty(t.actor),
        ]
        for t in transitions
    ]
    return render_table(["TIME", "FROM → TO", "TRIGGER", "REASON", "ACTOR"], rows, max_widths={3: 60})


def _lifecycle_or_empty(state: agent_pb2.LifecycleState.ValueType) -> str:
    return "" if state == agent_pb2.LIFECYCLE_STATE_UNSPECIFIED else _lifecycle(state)


def sessions_table(sessions: Sequence[agent_pb2.Session]) -> str:
    rows = [
        [
            session.id,
            fmt.enum_short(agent_pb2.SessionStatus.DESCRIPTOR, session.status),
            str(session.depth),
            fmt.or_empty(session.parent_id),
            fmt.timestamp(session.created_at),
            fmt.timestamp(session.completed_at),
        ]
        for session in sessions
    ]
    return render_table(["ID", "STATUS", "DEPTH", "PARENT", "CREATED", "COMPLETED"], rows)


def log_line(entry: agent_pb2.LogEntry) -> str:
    """``[stdout] message`` (the message as written, without its line end)."""
    return f"[{entry.stream or 'log'}] {entry.message.rstrip(chr(10))}"


def event_line(event: event_pb2.Event) -> str:
    """``time  #sequence  type  agent  payload`` on one line."""
    agent = event.metadata.agent_id or fmt.EMPTY
    payload = fmt.compact_json(event.payload) if event.HasField("payload") else "{}"
    time = fmt.timestamp(event.timestamp)
    return f"{time}  #{event.sequence}  {event.type}  {agent}  {one_line(payload)}"


def _health_status(number: int) -> str:
    return fmt.enum_short(system_service_pb2.HealthStatus.DESCRIPTOR, number)


def health(response: system_service_pb2.GetHealthResponse) -> str:
    return render_pairs(
        [
            ("status", _health_status(response.status)),
            ("version", fmt.or_empty(response.version)),
            ("time", fmt.timestamp(response.time)),
        ]
    )


def detailed_health(response: system_service_pb2.GetDetailedHealthResponse) -> str:
    summary = render_pairs(
        [
            ("status", _health_status(response.status)),
            ("version", fmt.or_empty(response.version)),
            ("time", fmt.timestamp(response.time)),
        ]
    )
    if not response.components:
        return summary
    rows = [
        [
            component.name,
            _health_status(component.status),
            f"{component.latency_ms:.1f} ms" if component.latency_ms else fmt.EMPTY,
            fmt.or_empty(component.endpoint),
            fmt.or_empty(component.message),
        ]
        for component in response.components
    ]
    table = render_table(["COMPONENT", "STATUS", "LATENCY", "ENDPOINT", "MESSAGE"], rows, max_widths={4: 60})
    return f"{summary}\n\n{table}"


def api_key(key: auth_service_pb2.ApiKey) -> str:
    expires = fmt.timestamp(key.expires_at)
    return render_pairs(
        [
            ("id", key.id),
            ("name", key.name),
            ("role", fmt.or_empty(key.role)),
            ("prefix", fmt.or_empty(key.prefix)),
            ("expires", "never" if expires == fmt.EMPTY else expires),
        ]
    )
