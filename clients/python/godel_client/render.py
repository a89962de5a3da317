"""Human-readable views of Godel resources, as text blocks for the CLI."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, struct_pb2
from google.protobuf.message import Message

from godel.v1 import (
    agent_events_pb2,
    agent_pb2,
    alert_pb2,
    auth_service_pb2,
    autonomic_pb2,
    autonomic_service_pb2,
    budget_pb2,
    cluster_pb2,
    dead_letter_pb2,
    event_pb2,
    intent_pb2,
    system_service_pb2,
    task_pb2,
    team_events_pb2,
    team_pb2,
    team_service_pb2,
    workflow_pb2,
)
from godel_client import formatting as fmt
from godel_client.table import one_line, render_pairs, render_table, truncate

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
    """``12:01:03  running/executing  v5  $0.0123  (retries 0)``: one line per observed change,
    ending in ``  waiting: <why>`` while no worker can take the agent."""
    time = fmt.clock(agent.updated_at, now or datetime.now(UTC))
    state = f"{agent_status(agent)}/{lifecycle_state(agent)}"
    line = f"{time}  {state}  v{agent.version}  {fmt.usd_precise(agent.budget_consumed)}  (retries {agent.retry_count})"
    if agent.pending_reason:
        line += f"  waiting: {pending(agent)}"
    return line


def pending(agent: agent_pb2.Agent) -> str:
    """Why the agent waits for a worker, in words (the server's message, else the reason's name)."""
    reason = fmt.enum_short(agent_pb2.PendingReason.DESCRIPTOR, agent.pending_reason).replace("_", " ")
    return agent.pending_message or reason


def still_waiting(agent: agent_pb2.Agent, seconds: float) -> str:
    return f"still waiting for a worker after {fmt.duration(int(seconds))}: {pending(agent)}"


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
        *([("waiting", pending(agent))] if agent.pending_reason else []),
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


def event_data(event: event_pb2.Event) -> Message | None:
    """The typed payload of an event of a Godel service (the message in the `data` oneof that its
    type names, e.g. AgentSpawned for `agent:spawn`); None for a client event."""
    field = event.WhichOneof("data")
    data: Message | None = getattr(event, field) if field else None
    return data


def event_line(event: event_pb2.Event) -> str:
    """``time  #sequence  type  agent  payload`` on one line (the typed payload, else the client's)."""
    agent = event.metadata.agent_id or fmt.EMPTY
    data = event_data(event)
    if data is not None:
        payload = fmt.compact_json(data)
    else:
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
    if not response.workers:
        return f"{summary}\n\n{table}"
    return f"{summary}\n\n{table}\n\n{workers_table(response.workers)}"


def workers_table(workers: Sequence[agent_pb2.Worker]) -> str:
    """One row per connected worker: id, free of all slots, active runs, runtimes, host, replica."""
    rows = [
        [
            w.id,
            f"{w.free_slots}/{w.capacity}",
            str(w.active_runs),
            ",".join(w.runtimes) or fmt.EMPTY,
            fmt.or_empty(w.hostname),
            fmt.or_empty(w.replica_id),
        ]
        for w in workers
    ]
    return render_table(["WORKER", "FREE", "RUNS", "RUNTIMES", "HOST", "REPLICA"], rows)


def _expires(key: auth_service_pb2.ApiKey) -> str:
    expires = fmt.timestamp(key.expires_at)
    return "never" if expires == fmt.EMPTY else expires


def api_key(key: auth_service_pb2.ApiKey) -> str:
    return render_pairs(
        [
            ("id", key.id),
            ("name", key.name),
            ("role", fmt.or_empty(key.role)),
            ("prefix", fmt.or_empty(key.prefix)),
            ("expires", _expires(key)),
        ]
    )


def api_keys_table(keys: Sequence[auth_service_pb2.ApiKey]) -> str:
    rows = [
        [
            key.id,
            key.name,
            fmt.or_empty(key.role),
            fmt.or_empty(key.prefix),
            fmt.timestamp(key.created_at),
            fmt.timestamp(key.last_used_at),
            _expires(key),
            "revoked" if key.revoked else "active",
        ]
        for key in keys
    ]
    return render_table(["ID", "NAME", "ROLE", "PREFIX", "CREATED", "LAST USED", "EXPIRES", "STATE"], rows)


# -- clusters -------------------------------------------------------------------------------------


def cluster_status(cluster: cluster_pb2.Cluster) -> str:
    return fmt.enum_short(cluster_pb2.ClusterStatus.DESCRIPTOR, cluster.status)


def clusters_table(clusters: Sequence[cluster_pb2.Cluster], now: datetime | None = None) -> str:
    moment = now or datetime.now(UTC)
    rows = [
        [
            cluster.id,
            cluster.name,
            fmt.or_empty(cluster.region),
            cluster_status(cluster),
            str(cluster.health_score),
            f"{cluster.current_agents}/{cluster.max_agents or '-'}",
            fmt.age(cluster.last_heartbeat, moment),
            cluster.endpoint,
        ]
        for cluster in clusters
    ]
    return render_table(["ID", "NAME", "REGION", "STATUS", "HEALTH", "AGENTS", "HEARTBEAT", "ENDPOINT"], rows)


def _health(cluster: cluster_pb2.Cluster) -> str:
    """The score and what the registry computed it from."""
    h = cluster.health
    if not cluster.HasField("health"):
        return str(cluster.health_score)
    return (
        f"{cluster.health_score} (connectivity {h.connectivity:.0%}, latency {h.latency_ms:.0f} ms, "
        f"errors {h.error_rate:.0%}, free {h.capacity:.0%}, freshness {h.freshness:.0%}; {h.probes} probes)"
    )


def cluster_detail(cluster: cluster_pb2.Cluster) -> str:
    return render_pairs(
        [
            ("id", cluster.id),
            ("name", cluster.name),
            ("region", fmt.or_empty(cluster.region)),
            ("endpoint", cluster.endpoint),
            ("status", cluster_status(cluster)),
            ("health", _health(cluster)),
            ("agents", f"{cluster.current_agents} of {cluster.max_agents} slots"),
            ("features", ", ".join(cluster.features) or fmt.EMPTY),
            ("models", ", ".join(cluster.supported_models) or fmt.EMPTY),
            ("heartbeat", fmt.timestamp(cluster.last_heartbeat)),
            ("registered", fmt.timestamp(cluster.created_at)),
        ]
    )


def _struct_dict(value: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(value)


def _compact_or_empty(value: struct_pb2.Struct) -> str:
    return fmt.compact_json(value) if value.fields else fmt.EMPTY


def _lines_or_empty(items: Sequence[str]) -> str:
    return "\n".join(items) or fmt.EMPTY


# -- teams ----------------------------------------------------------------------------------------


def team_status(team: team_pb2.Team) -> str:
    return fmt.enum_short(team_pb2.TeamStatus.DESCRIPTOR, team.status)


def strategy(number: int) -> str:
    """``map-reduce``: the strategy as the CLI spells it."""
    return fmt.enum_short(team_pb2.ExecutionStrategy.DESCRIPTOR, number).replace("_", "-")


def _team_size(team: team_pb2.Team) -> int:
    return len(team.agent_ids) or team.config.size


def _team_spend(team: team_pb2.Team) -> str:
    spent = fmt.usd_precise(team.budget_consumed)
    if team.HasField("budget_allocated"):
        return f"{spent} of {fmt.usd(team.budget_allocated)}"
    return spent


def teams_table(teams: Sequence[team_pb2.Team], now: datetime | None = None) -> str:
    at = now or datetime.now(UTC)
    rows = [
        [
            team.id,
            team_status(team),
            strategy(team.execution_strategy),
            str(_team_size(team)),
            f"{team.progress}%",
            _team_spend(team),
            fmt.age(team.created_at, at),
            team.name,
        ]
        for team in teams
    ]
    return render_table(
        ["ID", "STATUS", "STRATEGY", "AGENTS", "PROGRESS", "SPENT", "AGE", "NAME"],
        rows,
        max_widths={7: TASK_WIDTH},
    )


def team_detail(team: team_pb2.Team) -> str:
    config = team.config
    chosen = strategy(team.execution_strategy)
    ran = strategy(team.effective_strategy)
    if team.effective_strategy and ran != chosen:
        chosen = f"{chosen} (ran as {ran})"
    pairs: list[tuple[str, str]] = [
        ("id", team.id),
        ("name", team.name),
        ("status", team_status(team)),
        ("strategy", chosen),
        ("task", fmt.or_empty(team.task)),
        ("progress", f"{team.progress}%"),
        ("agents", _lines_or_empty(team.agent_ids)),
        ("size", str(config.size) if config.size else fmt.EMPTY),
    ]
    if team.description:
        pairs.insert(2, ("description", team.description))
    optional: list[tuple[str, str]] = [
        ("max agents", str(config.max_agents) if config.max_agents else ""),
        ("model", config.model),
        ("runtime", config.runtime),
        ("command", shlex.join(config.command)),
        ("inputs", "\n".join(config.inputs)),
        ("stages", "\n".join(config.stages)),
        ("max depth", str(config.max_depth) if config.max_depth else ""),
        ("repo", config.repo),
    ]
    pairs += [(key, value) for key, value in optional if value]
    pairs += [
        ("budget", _team_spend(team)),
        ("created", fmt.timestamp(team.created_at)),
        ("started", fmt.timestamp(team.started_at)),
        ("completed", fmt.timestamp(team.completed_at)),
    ]
    if team.results.fields:
        pairs.append(("results", fmt.compact_json(team.results)))
    if team.error:
        pairs.append(("error", team.error))
    return render_pairs(pairs)


# Past tense of the verb that ends an event type (`agent:complete` -> completed).
_EVENT_STATES = {
    "spawn": "spawned",
    "create": "created",
    "start": "started",
    "complete": "completed",
    "error": "failed",
    "fail": "failed",
    "pause": "paused",
    "resume": "resumed",
    "kill": "killed",
    "restart": "restarted",
    "scale": "scaled",
    "cancel": "cancelled",
}


@dataclass(frozen=True)
class _EventFacts:
    """What a team update line shows of an event's typed payload."""

    status: str = ""
    done: int | None = None
    total: int | None = None
    note: str = ""


def _event_facts(event: event_pb2.Event) -> _EventFacts:
    match event_data(event):
        case agent_events_pb2.AgentSpawned(agent=agent):
            return _EventFacts(status=_agent_status(agent.status))
        case agent_events_pb2.AgentDeleted(status=status):
            return _EventFacts(status=_agent_status(status))
        case (
            agent_events_pb2.AgentStarted()
            | agent_events_pb2.AgentPaused()
            | agent_events_pb2.AgentResumed()
            | agent_events_pb2.AgentCompleted()
            | agent_events_pb2.AgentFailed()
            | agent_events_pb2.AgentKilled()
            | agent_events_pb2.AgentRestarted()
        ) as moved:
            t = moved.transition
            return _EventFacts(
                status=_agent_status(t.to_status), note=t.reason if t.to_status in _ENDED else ""
            )
        case team_events_pb2.TeamProgress() as progress:
            return _EventFacts(done=progress.completed, total=progress.total)
        case team_events_pb2.TeamCompleted() | team_events_pb2.TeamFailed() as end:
            done = round(end.completion_rate * end.members)
            word = fmt.enum_short(team_pb2.TeamStatus.DESCRIPTOR, end.status)
            return _EventFacts(status=word, done=done, total=end.members, note=end.error)
        case team_events_pb2.TeamFallback(reason=reason):
            return _EventFacts(note=reason)
    return _EventFacts()


_ENDED = frozenset({agent_pb2.AGENT_STATUS_FAILED, agent_pb2.AGENT_STATUS_KILLED})


def _agent_status(number: int) -> str:
    return fmt.enum_short(agent_pb2.AgentStatus.DESCRIPTOR, number)


def _team_counts(team: team_pb2.Team, facts: _EventFacts) -> str:
    """``(2/5)``: members done of all members, as the event says, else as the team's per-member
    results show; ``(5 agents)`` when neither tells."""
    total = facts.total or _team_size(team)
    done = facts.done
    if done is None and team.results.fields:
        done = sum(1 for agent_id in team.agent_ids if agent_id in team.results.fields)
    if not total:
        return ""
    return f" ({done}/{total})" if done is not None else f" ({total} agents)"


def _update_state(event: event_pb2.Event, facts: _EventFacts) -> str:
    """The state an event puts its subject in, as its payload says, else as its verb says."""
    return facts.status or _EVENT_STATES.get(event.type.rsplit(":", 1)[-1], "")


def member_state(update: team_service_pb2.StartTeamResponse) -> tuple[str, str] | None:
    """(agent id, state) when a StartTeam update is about one member agent, else None; the state
    is "" when the event names none (e.g. a usage report)."""
    event = update.event
    if not update.HasField("event") or not event.metadata.agent_id:
        return None
    return event.metadata.agent_id, _update_state(event, _event_facts(event))


def team_update_line(update: team_service_pb2.StartTeamResponse) -> str:
    """``[ 40%] agent:complete  agent 3f2a1b2c… completed (2/5)``: one line per StartTeam update."""
    team = update.team
    head = f"[{team.progress:3d}%]"
    if not update.HasField("event"):
        return f"{head} team  {team_status(team)}{_team_counts(team, _EventFacts())}"
    event = update.event
    facts = _event_facts(event)
    agent_id = event.metadata.agent_id
    state = _update_state(event, facts) or ("" if agent_id else team_status(team))
    subject = f"agent {fmt.short_id(agent_id)}" if agent_id else "team"
    tail = f" — {one_line(facts.note)}" if facts.note else ""
    return f"{head} {event.type}  {f'{subject} {state}'.rstrip()}{_team_counts(team, facts)}{tail}"


def team_summary(
    team: team_pb2.Team, metrics: team_pb2.TeamMetrics | None = None, now: datetime | None = None
) -> str:
    """``team 1c9e… completed: 5/5 agents completed (100%), took 1m02s, cost $0.0123``."""
    if metrics is not None and metrics.total_agents:
        total, done, failed = metrics.total_agents, metrics.completed_agents, metrics.failed_agents
        rate = metrics.completion_rate
        seconds, cost = metrics.duration_seconds, metrics.cost_usd
    else:
        total = _team_size(team)
        done = sum(1 for agent_id in team.agent_ids if agent_id in team.results.fields)
        failed = 0
        rate = done / total if total else 0.0
        seconds = float(fmt.seconds_between(team.started_at, team.completed_at, now or datetime.now(UTC)))
        cost = team.budget_consumed
    failures = f", {failed} failed" if failed else ""
    took = f"{seconds:.1f}s" if seconds < 60 else fmt.duration(round(seconds))
    return (
        f"team {team.id} {team_status(team)}: {done}/{total} agents completed "
        f"({fmt.percent(rate * 100)}){failures}, took {took}, cost {fmt.usd_precise(cost)}"
    )


def team_metrics(metrics: team_pb2.TeamMetrics) -> str:
    return render_pairs(
        [
            ("team", metrics.team_id),
            ("agents", str(metrics.total_agents)),
            ("running", str(metrics.running_agents)),
            ("completed", str(metrics.completed_agents)),
            ("failed", str(metrics.failed_agents)),
            ("completion", fmt.percent(metrics.completion_rate * 100)),
            ("progress", f"{metrics.progress}%"),
            ("duration", fmt.duration(round(metrics.duration_seconds))),
            ("cost", fmt.usd_precise(metrics.cost_usd)),
        ]
    )


def scale_summary(response: team_service_pb2.ScaleTeamResponse) -> str:
    """``scaled team 1c9e… from 3 to 5 agents (added 2)``."""
    changes = []
    if response.added_agent_ids:
        changes.append(f"added {len(response.added_agent_ids)}")
    if response.removed_agent_ids:
        changes.append(f"removed {len(response.removed_agent_ids)}")
    detail = f" ({', '.join(changes)})" if changes else ""
    return (
        f"scaled team {response.team.id} from {response.previous_size} to {response.current_size} "
        f"agents{detail}"
    )


# -- workflows ------------------------------------------------------------------------------------


def workflow_status(workflow: workflow_pb2.Workflow) -> str:
    return fmt.enum_short(workflow_pb2.WorkflowStatus.DESCRIPTOR, workflow.status)


def step_status(step: workflow_pb2.WorkflowStep) -> str:
    return fmt.enum_short(workflow_pb2.StepStatus.DESCRIPTOR, step.status)


def step_label(step: workflow_pb2.WorkflowStep) -> str:
    return step.step_id or step.name or step.id


def workflows_table(workflows: Sequence[workflow_pb2.Workflow], now: datetime | None = None) -> str:
    at = now or datetime.now(UTC)
    rows = [
        [
            workflow.id,
            workflow_status(workflow),
            f"{workflow.progress}%",
            str(len(workflow.definition.steps)),
            fmt.or_empty(workflow.team_id),
            fmt.age(workflow.created_at, at),
            workflow.name,
        ]
        for workflow in workflows
    ]
    return render_table(
        ["ID", "STATUS", "PROGRESS", "STEPS", "TEAM", "AGE", "NAME"], rows, max_widths={6: TASK_WIDTH}
    )


def workflow_detail(workflow: workflow_pb2.Workflow) -> str:
    steps = [f"{step.id}  {step.task}".rstrip() for step in workflow.definition.steps]
    pairs: list[tuple[str, str]] = [
        ("id", workflow.id),
        ("name", workflow.name),
        ("status", workflow_status(workflow)),
        ("progress", f"{workflow.progress}%"),
        ("description", fmt.or_empty(workflow.description)),
        ("team", fmt.or_empty(workflow.team_id)),
        ("current step", fmt.or_empty(workflow.current_step_id)),
        ("steps", _lines_or_empty(steps)),
        ("created by", fmt.or_empty(workflow.created_by)),
        ("created", fmt.timestamp(workflow.created_at)),
        ("started", fmt.timestamp(workflow.started_at)),
        ("completed", fmt.timestamp(workflow.completed_at)),
        ("context", _compact_or_empty(workflow.context)),
        ("results", _compact_or_empty(workflow.results)),
    ]
    return render_pairs(pairs)


OUTPUT_WIDTH = 40
_OUTPUT_KEYS = ("output", "stdout", "result", "text", "summary")


def step_output(step: workflow_pb2.WorkflowStep) -> str:
    """The head of a step's output (its error when it failed), on one line."""
    if step.error:
        return one_line(f"error: {step.error}")
    if not step.result.fields:
        return fmt.EMPTY
    result = _struct_dict(step.result)
    for key in _OUTPUT_KEYS:
        if isinstance(result.get(key), str) and result[key].strip():
            return one_line(result[key])
    return one_line(fmt.compact_json(step.result))


def step_line(step: workflow_pb2.WorkflowStep, width: int = 0) -> str:
    """``step build        running    agent 3f2a1b2c…``: one line per step state change."""
    line = f"step {step_label(step).ljust(width)}  {step_status(step).ljust(9)}"
    if step.agent_id:
        line += f"  agent {fmt.short_id(step.agent_id)}"
    if step.error:
        line += f"  {truncate(one_line(step.error), 80)}"
    return line.rstrip()


def steps_table(steps: Sequence[workflow_pb2.WorkflowStep], now: datetime | None = None) -> str:
    at = now or datetime.now(UTC)
    rows = [
        [
            step_label(step),
            step_status(step),
            fmt.duration(fmt.seconds_between(step.started_at, step.completed_at, at)),
            str(step.retry_count),
            fmt.short_id(step.agent_id),
            step_output(step),
        ]
        for step in steps
    ]
    return render_table(
        ["STEP", "STATUS", "DURATION", "RETRIES", "AGENT", "OUTPUT"], rows, max_widths={5: OUTPUT_WIDTH}
    )


def workflow_summary(workflow: workflow_pb2.Workflow, now: datetime | None = None) -> str:
    """``workflow 5e1f… completed, took 42s``."""
    seconds = fmt.seconds_between(workflow.started_at, workflow.completed_at, now or datetime.now(UTC))
    took = f", took {fmt.duration(seconds)}" if seconds else ""
    return f"workflow {workflow.id} {workflow_status(workflow)}{took}"


# -- tasks ----------------------------------------------------------------------------------------


def task_status(task: task_pb2.Task) -> str:
    return fmt.enum_short(task_pb2.TaskStatus.DESCRIPTOR, task.status)


def task_priority(task: task_pb2.Task) -> str:
    return fmt.enum_short(task_pb2.TaskPriority.DESCRIPTOR, task.priority)


def tasks_table(tasks: Sequence[task_pb2.Task], now: datetime | None = None) -> str:
    at = now or datetime.now(UTC)
    rows = [
        [
            task.id,
            task_status(task),
            task_priority(task),
            fmt.or_empty(task.team_id),
            fmt.short_id(task.agent_id),
            fmt.age(task.created_at, at),
            task.title,
        ]
        for task in tasks
    ]
    return render_table(
        ["ID", "STATUS", "PRIORITY", "TEAM", "AGENT", "AGE", "TITLE"], rows, max_widths={6: TASK_WIDTH}
    )


def task_detail(task: task_pb2.Task) -> str:
    pairs: list[tuple[str, str]] = [
        ("id", task.id),
        ("title", task.title),
        ("status", task_status(task)),
        ("priority", task_priority(task)),
        ("description", fmt.or_empty(task.description)),
        ("team", fmt.or_empty(task.team_id)),
        ("agent", fmt.or_empty(task.agent_id)),
        ("created", fmt.timestamp(task.created_at)),
        ("assigned", fmt.timestamp(task.assigned_at)),
        ("completed", fmt.timestamp(task.completed_at)),
        ("updated", fmt.timestamp(task.updated_at)),
        ("result", _compact_or_empty(task.result)),
    ]
    if task.error:
        pairs.append(("error", task.error))
    return render_pairs(pairs)


# -- budgets --------------------------------------------------------------------------------------


def budget_entity(budget: budget_pb2.Budget) -> str:
    """``team:7c1e…``: what the budget applies to."""
    kind = fmt.enum_short(budget_pb2.BudgetEntityType.DESCRIPTOR, budget.entity_type)
    return f"{kind}:{budget.entity_id}"


def budget_period(budget: budget_pb2.Budget) -> str:
    return fmt.enum_short(budget_pb2.BudgetPeriod.DESCRIPTOR, budget.period)


def budgets_table(budgets: Sequence[budget_pb2.Budget]) -> str:
    rows = [
        [
            budget.id,
            budget_entity(budget),
            fmt.money(budget.used_budget, budget.currency),
            fmt.money(budget.total_budget, budget.currency),
            fmt.percent(budget.percentage),
            budget_period(budget),
        ]
        for budget in budgets
    ]
    return render_table(["ID", "ENTITY", "USED", "TOTAL", "USED%", "PERIOD"], rows)


def budget_detail(budget: budget_pb2.Budget) -> str:
    return render_pairs(
        [
            ("id", budget.id),
            ("entity", budget_entity(budget)),
            ("total", fmt.money(budget.total_budget, budget.currency)),
            ("used", f"{fmt.money(budget.used_budget, budget.currency)} ({fmt.percent(budget.percentage)})"),
            ("currency", fmt.or_empty(budget.currency)),
            ("period", budget_period(budget)),
            ("from", fmt.timestamp(budget.period_start)),
            ("until", fmt.timestamp(budget.period_end)),
            ("updated", fmt.timestamp(budget.updated_at)),
        ]
    )


# -- intent ---------------------------------------------------------------------------------------


def intent_type(intent: intent_pb2.Intent) -> str:
    return fmt.enum_short(intent_pb2.IntentType.DESCRIPTOR, intent.type)


def intent_line(intent: intent_pb2.Intent) -> str:
    """``Understood: create_team (95%) size=3 task="review authentication code"``."""
    parameters = _struct_dict(intent.parameters) if intent.HasField("parameters") else {}
    if not parameters:
        parameters = {entity.name: entity.value for entity in intent.entities if entity.name}
    pairs = [fmt.assignment(name, value) for name, value in sorted(parameters.items())]
    confidence = fmt.percent(round(intent.confidence * 100))
    return " ".join([f"Understood: {intent_type(intent)} ({confidence})", *pairs])


def _role(role: intent_pb2.AgentRoleConfig) -> str:
    model = f" ({role.model})" if role.model else ""
    return f"{role.count} {role.role}{model}"


def swarm_roles(config: intent_pb2.SwarmConfig) -> list[str]:
    """``2 worker (gpt-4o)``: one line per role of a generated team."""
    return [_role(role) for role in config.agents]


def plan(steps: Mapping[str, Any]) -> str:
    """What ``godel do --dry-run`` would do, as aligned pairs (unset values left out)."""
    pairs: list[tuple[str, str]] = []
    for key, value in steps.items():
        if value is None or value == [] or value == "":
            continue
        if key == "command" and isinstance(value, list):
            text = shlex.join(value)
        elif key == "budget" and isinstance(value, int | float):
            text = fmt.usd(value)
        elif isinstance(value, list):
            text = "\n".join(str(item) for item in value)
        else:
            text = str(value)
        pairs.append((key, text))
    return render_pairs(pairs)


def dead_letters_table(letters: Sequence[dead_letter_pb2.DeadLetter], now: datetime | None = None) -> str:
    at = now or datetime.now(UTC)
    rows = [
        [
            letter.service,
            str(letter.id),
            letter.source,
            fmt.or_empty(letter.event_type),
            fmt.or_empty(letter.event_id),
            str(letter.attempts),
            fmt.age(letter.create_time, at),
            letter.error,
        ]
        for letter in letters
    ]
    return render_table(
        ["SERVICE", "ID", "SOURCE", "TYPE", "EVENT", "ATTEMPTS", "AGE", "ERROR"], rows, max_widths={7: 80}
    )


# -- alerts and the autonomic loop ----------------------------------------------------------------


def _labels(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or fmt.EMPTY


def _operator(operator: alert_pb2.ComparisonOperator.ValueType) -> str:
    return fmt.enum_short(alert_pb2.ComparisonOperator.DESCRIPTOR, operator)


def _action(action: autonomic_pb2.AutonomicAction) -> str:
    return (
        f"{fmt.enum_short(autonomic_pb2.AutonomicActionType.DESCRIPTOR, action.type)} {action.target}".strip()
    )


def alert_rules_table(rules: Sequence[alert_pb2.AlertRule]) -> str:
    rows = [
        [
            rule.id,
            rule.name,
            fmt.enum_short(alert_pb2.AlertSeverity.DESCRIPTOR, rule.severity),
            f"{rule.condition.metric}{{{_labels(rule.condition.labels)}}} "
            f"{_operator(rule.condition.operator)} {rule.condition.threshold:g}",
            f"{rule.for_duration.ToTimedelta().total_seconds():g}s",
            "yes" if rule.enabled else "no",
        ]
        for rule in rules
    ]
    return render_table(["ID", "NAME", "SEVERITY", "CONDITION", "FOR", "ENABLED"], rows)


def alerts_table(alerts: Sequence[alert_pb2.Alert]) -> str:
    rows = [
        [
            alert.id,
            alert.rule_name,
            fmt.enum_short(alert_pb2.AlertState.DESCRIPTOR, alert.state),
            fmt.enum_short(alert_pb2.AlertSeverity.DESCRIPTOR, alert.severity),
            fmt.timestamp(alert.fired_at),
            fmt.timestamp(alert.resolved_at),
            "yes" if alert.silenced else "no",
            alert.summary,
        ]
        for alert in alerts
    ]
    return render_table(["ID", "RULE", "STATE", "SEVERITY", "FIRED", "RESOLVED", "SILENCED", "SUMMARY"], rows)


def silences_table(silences: Sequence[alert_pb2.Silence]) -> str:
    rows = [
        [
            silence.id,
            _labels(silence.matchers),
            fmt.timestamp(silence.starts_at),
            fmt.timestamp(silence.ends_at),
            "yes" if silence.active else "no",
            fmt.or_empty(silence.comment),
        ]
        for silence in silences
    ]
    return render_table(["ID", "MATCHERS", "STARTS", "ENDS", "ACTIVE", "COMMENT"], rows)


def channels_table(channels: Sequence[alert_pb2.NotificationChannel]) -> str:
    rows = [
        [
            channel.id,
            channel.name,
            fmt.enum_short(alert_pb2.ChannelType.DESCRIPTOR, channel.type),
            fmt.or_empty(channel.url),
        ]
        for channel in channels
    ]
    return render_table(["ID", "NAME", "TYPE", "URL"], rows)


def _trigger(trigger: autonomic_pb2.PolicyTrigger) -> str:
    kind = trigger.WhichOneof("kind")
    if kind == "metric":
        m = trigger.metric
        return f"{m.metric}{{{_labels(m.labels)}}} {_operator(m.operator)} {m.threshold:g}"
    if kind == "alert":
        return f"alert {trigger.alert.rule}"
    if kind == "schedule":
        return f"cron {trigger.schedule.cron}"
    return fmt.EMPTY


def policies_table(policies: Sequence[autonomic_pb2.AutonomicPolicy]) -> str:
    rows = [
        [
            policy.id,
            policy.name,
            _trigger(policy.trigger),
            _action(policy.action),
            f"{policy.cooldown.ToTimedelta().total_seconds():g}s",
            "yes" if policy.enabled else "no",
        ]
        for policy in policies
    ]
    return render_table(["ID", "NAME", "TRIGGER", "ACTION", "COOLDOWN", "ENABLED"], rows)


def recommendations_table(response: autonomic_service_pb2.GetRecommendationsResponse) -> str:
    rows = [
        [
            rec.policy_name,
            _action(rec.action),
            fmt.enum_short(autonomic_pb2.RecommendationState.DESCRIPTOR, rec.state),
            rec.reason,
            fmt.or_empty(rec.note),
        ]
        for rec in response.recommendations
    ]
    table = render_table(["POLICY", "ACTION", "STATE", "REASON", "NOTE"], rows)
    return table + ("\n(dry run: the loop takes none of these actions)" if response.dry_run else "")
