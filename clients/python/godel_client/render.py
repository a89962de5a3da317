"""Human-readable views of Godel resources, as text blocks for the CLI."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from godel.v1 import agent_pb2, auth_service_pb2, event_pb2, system_service_pb2
from godel_client import formatting as fmt
from godel_client.table import one_line, render_pairs, render_table

TASK_WIDTH = 50


def agent_status(agent: agent_pb2.Agent) -> str:
    return fmt.enum_short(agent_pb2.AgentStatus.DESCRIPTOR, agent.status)


def lifecycle_state(agent: agent_pb2.Agent) -> str:
    return fmt.enum_short(agent_pb2.LifecycleState.DESCRIPTOR, agent.lifecycle_state)


def agents_table(agents: Sequence[agent_pb2.Agent]) -> str:
    rows = [
        [
            agent.id,
            agent_status(agent),
            fmt.or_empty(agent.model),
            fmt.or_empty(agent.label),
            fmt.timestamp(agent.spawned_at),
            agent.task,
        ]
        for agent in agents
    ]
    return render_table(
        ["ID", "STATUS", "MODEL", "LABEL", "SPAWNED", "TASK"], rows, max_widths={3: 24, 5: TASK_WIDTH}
    )


def agent_detail(agent: agent_pb2.Agent) -> str:
    state = lifecycle_state(agent)
    status = agent_status(agent)
    if state not in ("unspecified", status):
        status = f"{status} ({state})"
    budget = fmt.usd(agent.budget_consumed)
    if agent.HasField("budget_limit"):
        budget = f"{budget} of {fmt.usd(agent.budget_limit)}"
    pairs: list[tuple[str, str]] = [
        ("id", agent.id),
        ("status", status),
        ("task", agent.task),
        ("model", fmt.or_empty(agent.model)),
        ("label", fmt.or_empty(agent.label)),
        ("team", fmt.or_empty(agent.team_id)),
        ("runtime", fmt.or_empty(agent.config.runtime)),
    ]
    if agent.config.command:
        pairs.append(("command", shlex.join(agent.config.command)))
    pairs += [
        ("repo", fmt.or_empty(agent.repo)),
        ("worktree", fmt.or_empty(agent.worktree)),
        ("session", fmt.or_empty(agent.session_id)),
        ("spawned", fmt.timestamp(agent.spawned_at)),
        ("completed", fmt.timestamp(agent.completed_at)),
        ("updated", fmt.timestamp(agent.updated_at)),
        ("ran for", fmt.duration(agent.runtime_seconds)),
        ("retries", f"{agent.retry_count} of {agent.max_retries}"),
        ("budget", budget),
    ]
    if agent.paused_by or agent.HasField("pause_time"):
        pairs.append(("paused", f"{fmt.timestamp(agent.pause_time)} by {fmt.or_empty(agent.paused_by)}"))
    if agent.commits:
        pairs.append(("commits", "\n".join(agent.commits)))
    if agent.last_error:
        pairs.append(("last error", agent.last_error))
    return render_pairs(pairs)


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
