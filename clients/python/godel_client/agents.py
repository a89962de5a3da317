"""``client.agents``: spawn agents, control them, and read their history, sessions and logs
(AgentService)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import TypedDict, Unpack

from godel.v1 import agent_pb2, agent_service_pb2
from godel_client.enums import AgentStatusLike, agent_status, enum_numbers
from godel_client.methods import Mode, SubClient, by_id, paged, stream, unary


class CreateOptions(TypedDict, total=False):
    """What :meth:`Agents.create` takes besides the task (None or absent: the server's default)."""

    model: str | None
    label: str | None
    team_id: str | None
    repo: str | None
    runtime: str | None
    command: Iterable[str] | None
    max_retries: int | None
    budget_limit: float | None
    request_id: str | None
    env: Mapping[str, str] | None
    run_timeout: float | None
    keep_worktree: bool
    endpoint: str | None
    worker_selector: Mapping[str, str] | None
    # Where it may run in a federation (README "Federation"); see godel_client.clusters.placement.
    placement: agent_pb2.AgentPlacement | None


def create_request(task: str, **options: Unpack[CreateOptions]) -> agent_service_pb2.CreateAgentRequest:
    """Spawns an agent on ``task``; ``command`` is the argv of the ``command`` runtime.

    ``run_timeout`` is the wall-clock limit of one run in seconds; ``endpoint`` the base URL of
    the OpenAI-compatible server for the ``openai`` runtime; ``worker_selector`` the labels a
    worker must have to run it (e.g. ``{"language": "go"}``); ``request_id`` makes the call
    idempotent (a fresh one is sent when none is given).
    """
    command, env, selector = options.get("command"), options.get("env"), options.get("worker_selector")
    config = agent_pb2.AgentConfig(
        runtime=options.get("runtime") or "",
        command=list(command) if command else None,
        env=dict(env) if env else None,
        keep_worktree=options.get("keep_worktree", False),
        endpoint=options.get("endpoint") or "",
        worker_selector=dict(selector) if selector else None,
    )
    run_timeout = options.get("run_timeout")
    if run_timeout:
        config.timeout.FromTimedelta(timedelta(seconds=run_timeout))
    return agent_service_pb2.CreateAgentRequest(
        task=task,
        model=options.get("model") or "",
        label=options.get("label") or "",
        team_id=options.get("team_id") or "",
        repo=options.get("repo") or "",
        max_retries=options.get("max_retries"),
        budget_limit=options.get("budget_limit"),
        request_id=options.get("request_id") or "",
        config=config if config.ByteSize() else None,
        placement=options.get("placement"),
    )


def _list(
    *,
    status: AgentStatusLike | Iterable[AgentStatusLike] | None = None,
    team_id: str | None = None,
    model: str | None = None,
    label: str | None = None,
    page_size: int = 50,
) -> agent_service_pb2.ListAgentsRequest:
    """Agents, newest first, fetched page by page as the iterator is consumed."""
    return agent_service_pb2.ListAgentsRequest(
        page_size=page_size,
        status=enum_numbers(status, agent_status),
        team_id=team_id or "",
        model=model or "",
        label=label or "",
    )


def _delete(id: str) -> agent_service_pb2.DeleteAgentRequest:
    """Deletes an agent; a running one is killed first."""
    return agent_service_pb2.DeleteAgentRequest(id=id)


def _kill(id: str, reason: str | None = None) -> agent_service_pb2.KillAgentRequest:
    """Stops the agent's whole process tree; it ends ``killed``."""
    return agent_service_pb2.KillAgentRequest(id=id, reason=reason or "")


def _restart(id: str) -> agent_service_pb2.RestartAgentRequest:
    """Starts the agent again in a new session (retries reset)."""
    return agent_service_pb2.RestartAgentRequest(id=id)


def _transitions(id: str, page_size: int = 100) -> agent_service_pb2.ListAgentTransitionsRequest:
    """The agent's lifecycle transitions, oldest first."""
    return agent_service_pb2.ListAgentTransitionsRequest(id=id, page_size=page_size)


def _sessions(id: str, page_size: int = 100) -> agent_service_pb2.ListAgentSessionsRequest:
    """The agent's sessions (one per run attempt), oldest first."""
    return agent_service_pb2.ListAgentSessionsRequest(id=id, page_size=page_size)


def _get_session(id: str) -> agent_service_pb2.GetSessionRequest:
    """One session with its messages."""
    return agent_service_pb2.GetSessionRequest(id=id)


def _workers() -> agent_service_pb2.ListWorkersRequest:
    """The workers connected to the agent service, with their free slots."""
    return agent_service_pb2.ListWorkersRequest()


def _logs(
    id: str, *, session_id: str | None = None, page_size: int = 500
) -> agent_service_pb2.GetAgentLogsRequest:
    """The agent's stored log lines, oldest first (only ``session_id``'s when given)."""
    return agent_service_pb2.GetAgentLogsRequest(id=id, page_size=page_size, session_id=session_id or "")


def _follow_logs(id: str, after_sequence: int = 0) -> agent_service_pb2.StreamAgentLogsRequest:
    """Log lines after ``after_sequence``, then new ones as they are written.

    The iterator ends when the server ends the stream in-band (the agent ended or was deleted)
    and raises :class:`~godel_client.errors.GodelError` when that end carries an error. A stream
    cut by the network resumes after the last line seen. Closing it cancels the call.
    """
    return agent_service_pb2.StreamAgentLogsRequest(id=id, after_sequence=after_sequence)


def _entry(message: agent_service_pb2.StreamAgentLogsResponse) -> agent_pb2.LogEntry | None:
    return message.entry if message.WhichOneof("item") == "entry" else None


class LogCursor:
    """Where a followed log has got to: it resumes after the last line seen."""

    def __init__(self, request: agent_service_pb2.StreamAgentLogsRequest) -> None:
        self._request = request

    def seen(self, message: agent_service_pb2.StreamAgentLogsResponse) -> None:
        if message.WhichOneof("item") == "entry":
            self._request.after_sequence = max(self._request.after_sequence, message.entry.sequence)

    def request(self) -> agent_service_pb2.StreamAgentLogsRequest:
        return self._request


class Agents(SubClient[Mode]):
    """The agents of the mesh. Control calls return the agent in its new state and raise
    :class:`~godel_client.errors.FailedPreconditionError` when its state does not allow the action
    (e.g. pausing a completed agent)."""

    SERVICE = agent_service_pb2.DESCRIPTOR.services_by_name["AgentService"]

    create = unary("CreateAgent", create_request, agent_pb2.Agent)
    get = unary("GetAgent", by_id(agent_service_pb2.GetAgentRequest), agent_pb2.Agent)
    list = paged("ListAgents", _list, agent_service_pb2.ListAgentsResponse, lambda page: page.agents)
    delete = unary("DeleteAgent", _delete, agent_service_pb2.DeleteAgentResponse, lambda _: None)
    pause = unary("PauseAgent", by_id(agent_service_pb2.PauseAgentRequest), agent_pb2.Agent)
    resume = unary("ResumeAgent", by_id(agent_service_pb2.ResumeAgentRequest), agent_pb2.Agent)
    kill = unary("KillAgent", _kill, agent_pb2.Agent)
    restart = unary("RestartAgent", _restart, agent_pb2.Agent)
    transitions = paged(
        "ListAgentTransitions",
        _transitions,
        agent_service_pb2.ListAgentTransitionsResponse,
        lambda page: page.transitions,
    )
    sessions = paged(
        "ListAgentSessions",
        _sessions,
        agent_service_pb2.ListAgentSessionsResponse,
        lambda page: page.sessions,
    )
    get_session = unary("GetSession", _get_session, agent_pb2.Session)
    workers = unary("ListWorkers", _workers, agent_service_pb2.ListWorkersResponse)
    logs = paged("GetAgentLogs", _logs, agent_service_pb2.GetAgentLogsResponse, lambda page: page.entries)
    follow_logs = stream(
        "StreamAgentLogs", _follow_logs, agent_service_pb2.StreamAgentLogsResponse, _entry, LogCursor
    )
