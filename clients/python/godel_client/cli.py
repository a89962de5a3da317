"""The ``godel`` command line: spawn and inspect agents, follow events, check health, mint keys.

Teams, workflows, tasks, budgets and ``godel do`` live in the ``cli_*`` modules next to this one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import grpc
from google.protobuf import json_format

from godel.v1 import agent_pb2, agent_service_pb2, event_pb2, event_service_pb2, system_service_pb2
from godel_client import cli_budgets, cli_do, cli_tasks, cli_teams, cli_workflows, render
from godel_client.cli_common import MAX_PAGE_SIZE, RUNTIMES, Handler
from godel_client.cli_common import command_parser as _command_parser
from godel_client.cli_common import control as _control
from godel_client.cli_common import dump as _dump
from godel_client.cli_common import json_object as _json_object
from godel_client.cli_common import list_or_note as _list_or_note
from godel_client.cli_common import non_negative_int as _non_negative_int
from godel_client.cli_common import note as _note
from godel_client.cli_common import out as _out
from godel_client.cli_common import positive_float as _positive_float
from godel_client.cli_common import positive_int as _positive_int
from godel_client.cli_common import repo_path as _repo
from godel_client.cli_common import takes_argv as _takes_argv
from godel_client.cli_common import to_json as _to_json
from godel_client.cli_common import wait as _wait
from godel_client.client import AGENT_STATUS_NAMES, GodelClient, agent_ended
from godel_client.credentials import DEFAULT_ADDRESS
from godel_client.errors import (
    AuthError,
    GodelError,
    InvalidArgumentError,
    PermissionDeniedError,
)
from godel_client.table import one_line

ROLES = ("admin", "operator", "developer", "viewer")
WATCH_INTERVAL = 0.5  # seconds between two GetAgent polls of a watched agent
LIST_REFRESH = 1.0  # seconds between two redraws of `agent list --watch`
CLEAR_SCREEN = "\x1b[H\x1b[2J"

DESCRIPTION = "Run and watch fleets of AI agents on a Godel mesh."
EPILOG = f"""\
connection:
  --addr defaults to $GODEL_ADDR, else {DEFAULT_ADDRESS} (the gateway `make up` starts).
  The API key is --api-key, else $GODEL_API_KEY, else the file named by $GODEL_CREDENTIALS_FILE,
  else $GODEL_HOME/admin.key (`make up` writes the admin key to .data/admin.key).

examples:
  godel agent spawn "fix the flaky test in tests/test_api.py" --model gpt-4o --label flaky
  godel agent spawn "say hi" --watch -- /bin/echo hi {{task}}
  godel agent list --status running --watch
  godel agent logs 3f2a... -f
  godel agent pause|resume|restart 3f2a...   godel agent kill 3f2a... --reason "stuck"
  godel agent history 3f2a...
  godel events tail --type 'agent:*' [--agent ID] [--from-seq N] [--subscription NAME]
  godel events query --type 'workflow:step:*' --since 2026-01-01 --desc --limit 20
  godel events publish deploy:finished --payload '{{"ok": true}}'
  godel --json agent get 3f2a...
  godel team create reviewers --task "review the auth code" --size 3 --watch
  godel workflow run release.yaml --watch     godel task create "triage issue 42" --priority high
  godel budget set --team 7c1e... 25 --period monthly
  godel do "create a team of 3 agents to review the authentication code"
"""


# -- argument types -------------------------------------------------------------------------------


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _event_filters(parser: argparse.ArgumentParser, *, full: bool) -> None:
    parser.add_argument(
        "--type", metavar="PATTERN", action="append", help="event type pattern, e.g. 'agent:*' (repeatable)"
    )
    parser.add_argument("--agent", metavar="ID", help="only events of this agent")
    parser.add_argument("--team", metavar="ID", help="only events of this team")
    parser.add_argument("--workflow", metavar="ID", help="only events of this workflow")
    if full:
        parser.add_argument("--correlation", metavar="ID", help="only events with this correlation id")
        parser.add_argument("--trace", metavar="ID", help="only events with this trace id")
        parser.add_argument("--source", metavar="COMPONENT", help="only events from this component")


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


# -- commands -------------------------------------------------------------------------------------


def _watch_agent(client: GodelClient, agent: agent_pb2.Agent, *, as_json: bool) -> int:
    """Prints a line (NDJSON with --json) per change of the agent until it ends.

    Exits 0 when it completed, 1 when it failed or was killed.
    """
    seen: tuple[Any, ...] | None = None
    while True:
        state = (agent.version, agent.status, agent.lifecycle_state, agent.retry_count, agent.budget_consumed)
        if state != seen:
            _out(_to_json(agent, indent=None) if as_json else render.agent_state_line(agent))
            seen = state
        if agent_ended(agent):
            break
        _wait(WATCH_INTERVAL)
        agent = client.get_agent(agent.id)
    if agent.status == agent_pb2.AGENT_STATUS_COMPLETED:
        return 0
    if not as_json:
        error = f": {one_line(agent.last_error)}" if agent.last_error else ""
        _note(f"agent {agent.id} {render.agent_status(agent)}{error}")
    return 1


def _agent_spawn(client: GodelClient, args: argparse.Namespace) -> int:
    command: list[str] = args.command
    runtime: str | None = args.runtime or ("command" if command else None)
    agent = client.create_agent(
        args.task,
        model=args.model,
        label=args.label,
        team_id=args.team,
        repo=args.repo,
        runtime=runtime,
        command=command or None,
        max_retries=args.max_retries,
        budget_limit=args.budget,
        env=dict(args.env or ()),
        run_timeout=args.timeout,
        keep_worktree=args.keep_worktree,
        endpoint=args.endpoint,
    )
    if not args.watch:
        _out(_to_json(agent) if args.json else agent.id)
        return 0
    if not args.json:
        _out(agent.id)
    return _watch_agent(client, agent, as_json=args.json)


def _find_agents(client: GodelClient, args: argparse.Namespace) -> list[agent_pb2.Agent]:
    limit: int | None = args.limit
    page_size = min(limit, MAX_PAGE_SIZE) if limit else 50
    found = client.list_agents(
        status=args.status or None, team_id=args.team, model=args.model, label=args.label, page_size=page_size
    )
    return list(islice(found, limit) if limit else found)


def _agent_list(client: GodelClient, args: argparse.Namespace) -> int:
    if args.watch:
        return _watch_agent_list(client, args)
    agents = _find_agents(client, args)
    if args.json:
        document = json_format.MessageToDict(agent_service_pb2.ListAgentsResponse(agents=agents))
        document.setdefault("agents", [])
        _dump(document)
    elif agents:
        _out(render.agents_table(agents))
    else:
        _note("no agents found")
    return 0


def _watch_agent_list(client: GodelClient, args: argparse.Namespace) -> int:
    """Redraws the list every LIST_REFRESH seconds until Ctrl-C (--json: one NDJSON line per draw)."""
    clear = sys.stdout.isatty() and not args.json
    while True:
        agents = _find_agents(client, args)
        if args.json:
            response = agent_service_pb2.ListAgentsResponse(agents=agents)
            _out(json.dumps(json_format.MessageToDict(response), ensure_ascii=False))
        else:
            now = datetime.now(UTC)
            header = f"{now.astimezone():%H:%M:%S}  {len(agents)} agent(s), every {LIST_REFRESH:g}s (Ctrl-C to stop)"
            table = render.agents_table(agents, now) if agents else "no agents found"
            _out(f"{CLEAR_SCREEN if clear else ''}{header}\n\n{table}\n")
        _wait(LIST_REFRESH)


def _agent_get(client: GodelClient, args: argparse.Namespace) -> int:
    agent = client.get_agent(args.id)
    if not args.watch:
        _out(_to_json(agent) if args.json else render.agent_detail(agent))
        return 0
    if not args.json:
        _out(render.agent_detail(agent) + "\n")
    return _watch_agent(client, agent, as_json=args.json)


# Control verbs: the client call and the past tense used to report it.
_CONTROLS: dict[str, tuple[Callable[[GodelClient, argparse.Namespace], agent_pb2.Agent], str]] = {
    "pause": (lambda client, args: client.pause_agent(args.id), "paused"),
    "resume": (lambda client, args: client.resume_agent(args.id), "resumed"),
    "kill": (lambda client, args: client.kill_agent(args.id, reason=args.reason), "killed"),
    "restart": (lambda client, args: client.restart_agent(args.id), "restarted"),
}


def _agent_control(client: GodelClient, args: argparse.Namespace) -> int:
    call, done = _CONTROLS[args.action]
    return _control(
        args,
        "agent",
        done,
        lambda: call(client, args),
        lambda agent: f"{render.agent_status(agent)}/{render.lifecycle_state(agent)} (v{agent.version})",
    )


def _print_log(entry: agent_pb2.LogEntry, *, as_json: bool) -> None:
    if as_json:
        _out(_to_json(entry, indent=None))
    elif entry.stream == "stderr":
        _note(render.log_line(entry))
    else:
        _out(render.log_line(entry))


def _agent_logs(client: GodelClient, args: argparse.Namespace) -> int:
    session: str | None = args.session
    last = 0
    for entry in client.agent_logs(args.id, session_id=session):
        _print_log(entry, as_json=args.json)
        last = max(last, entry.sequence)
    if args.follow:
        # The stream has no session filter: lines of other sessions are skipped here.
        for entry in client.follow_agent_logs(args.id, after_sequence=last):
            if not session or entry.session_id == session:
                _print_log(entry, as_json=args.json)
    return 0


def _agent_history(client: GodelClient, args: argparse.Namespace) -> int:
    return _list_or_note(
        args,
        "transitions",
        client.agent_transitions(args.id),
        agent_service_pb2.ListAgentTransitionsResponse(),
        render.transitions_table,
    )


def _agent_sessions(client: GodelClient, args: argparse.Namespace) -> int:
    return _list_or_note(
        args,
        "sessions",
        client.agent_sessions(args.id),
        agent_service_pb2.ListAgentSessionsResponse(),
        render.sessions_table,
    )


def _agent_delete(client: GodelClient, args: argparse.Namespace) -> int:
    client.delete_agent(args.id)
    if args.json:
        _dump({"id": args.id, "deleted": True})
    else:
        _out(f"deleted agent {args.id}")
    return 0


def _events_tail(client: GodelClient, args: argparse.Namespace) -> int:
    request = event_service_pb2.SubscribeEventsRequest(
        pattern=args.type or [],
        agent_id=args.agent or "",
        team_id=args.team or "",
        workflow_id=args.workflow or "",
        from_sequence=args.from_seq,
        subscription_name=args.subscription or "",
    )
    # The client's public subscribe_events() takes fewer filters; its stream helper takes a request.
    events = client._subscription(request)
    try:
        for event in events:
            _out(_to_json(event, indent=None) if args.json else render.event_line(event))
    except KeyboardInterrupt:
        return 0
    return 0


def _events_query(client: GodelClient, args: argparse.Namespace) -> int:
    request = event_service_pb2.QueryEventsRequest(
        type=args.type or [],
        agent_id=args.agent or "",
        team_id=args.team or "",
        workflow_id=args.workflow or "",
        correlation_id=args.correlation or "",
        trace_id=args.trace or "",
        source_component=args.source or "",
        after_sequence=args.after_seq or 0,
        order=event_service_pb2.SORT_ORDER_DESCENDING
        if args.desc
        else event_service_pb2.SORT_ORDER_ASCENDING,
        page_size=min(args.limit, MAX_PAGE_SIZE),
    )
    if args.since:
        request.start_time.FromDatetime(args.since)
    if args.until:
        request.end_time.FromDatetime(args.until)
    events = list(islice(client._event_pages(request), args.limit))
    if args.json:
        _dump({"events": [json_format.MessageToDict(e) for e in events]})
    else:
        for event in events:
            _out(render.event_line(event))
        _note(f"{len(events)} event(s)")
    return 0


def _events_publish(client: GodelClient, args: argparse.Namespace) -> int:
    request = event_service_pb2.PublishEventRequest(
        type=args.type,
        metadata=event_pb2.EventMetadata(
            agent_id=args.agent or "",
            team_id=args.team or "",
            workflow_id=args.workflow or "",
            correlation_id=args.correlation or "",
        ),
        source=event_pb2.EventSource(component=args.source or "cli"),
        id=args.id or "",
    )
    request.payload.update(args.payload)
    try:
        reply = client._events.PublishEvent(request, timeout=client.timeout, metadata=client._metadata)
    except grpc.RpcError as exc:
        raise client._error(exc) from None
    if args.json:
        _dump({"id": reply.id, "type": args.type})
    else:
        _out(reply.id)
    return 0


def _health(client: GodelClient, args: argparse.Namespace) -> int:
    if client.api_key:
        try:
            detailed = client.detailed_health()
        except (AuthError, PermissionDeniedError) as exc:
            _note(f"note: detailed health needs a valid API key ({exc.code.lower()}); showing public health")
        else:
            _out(_to_json(detailed) if args.json else render.detailed_health(detailed))
            return 1 if detailed.status == system_service_pb2.HEALTH_STATUS_UNHEALTHY else 0
    public = client.health()
    _out(_to_json(public) if args.json else render.health(public))
    return 1 if public.status == system_service_pb2.HEALTH_STATUS_UNHEALTHY else 0


def _keys_create(client: GodelClient, args: argparse.Namespace) -> int:
    response = client.create_api_key(args.name, role=args.role, expires_in_days=args.expires_days)
    if args.json:
        _out(_to_json(response))
    else:
        _note(f"created API key:\n{render.api_key(response.api_key)}\n")
        _out(response.secret)
    _note("warning: store this secret now — it is not shown again")
    return 0


# -- parser ---------------------------------------------------------------------------------------


def _connection_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """--addr/--api-key/--json, accepted before the command and (suppress=True) after it too."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--addr", metavar="HOST:PORT", default=default(None), help="gateway address")
    parser.add_argument(
        "--api-key", metavar="KEY", default=default(None), help="API key to send as x-api-key"
    )
    parser.add_argument(
        "--json", action="store_true", default=default(False), help="print machine-readable JSON"
    )


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _connection_options(common, suppress=True)

    parser = argparse.ArgumentParser(
        prog="godel",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _connection_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="area", metavar="COMMAND", required=True)

    agent = commands.add_parser("agent", help="spawn, watch, control and inspect agents")
    agent_commands = agent.add_subparsers(dest="action", metavar="ACTION", required=True)

    spawn = _command_parser(
        agent_commands,
        "spawn",
        _agent_spawn,
        common,
        help="spawn an agent on a task and print its id",
        usage="godel agent spawn TASK [options] [-- ARGV...]",
        epilog="Anything after `--` is the argv of the command runtime ({task} and {worktree} are "
        "substituted); it implies --runtime command. With --watch the agent is followed until it "
        "ends: exit 0 when it completed, 1 when it failed or was killed.",
    )
    spawn.add_argument("task", help="what the agent should do")
    spawn.add_argument("--model", help="LLM model identifier (default: the server's)")
    spawn.add_argument("--label", help="human-readable label")
    spawn.add_argument("--team", metavar="ID", help="parent team id")
    spawn.add_argument(
        "--repo",
        metavar="PATH",
        type=_repo,
        help="git repository to work in (a relative path is made absolute)",
    )
    spawn.add_argument(
        "--runtime", choices=RUNTIMES, help="runtime (default: the server's; command when ARGV is given)"
    )
    spawn.add_argument("--budget", metavar="USD", type=float, help="spend limit in USD")
    spawn.add_argument(
        "--max-retries", metavar="N", type=_non_negative_int, help="retries after the first try"
    )
    spawn.add_argument(
        "--timeout", metavar="SECONDS", type=_positive_float, help="wall-clock limit of one run"
    )
    spawn.add_argument(
        "--keep-worktree", action="store_true", help="keep the git worktree after the agent ends"
    )
    spawn.add_argument("--endpoint", metavar="URL", help="OpenAI-compatible base URL (openai runtime)")
    spawn.add_argument(
        "--env", metavar="NAME=VALUE", type=_env_pair, action="append", help="agent environment (repeatable)"
    )
    spawn.add_argument("--watch", action="store_true", help="then follow the agent until it ends")
    _takes_argv(spawn)

    listing = _command_parser(agent_commands, "list", _agent_list, common, help="list agents, newest first")
    listing.add_argument(
        "--status",
        action="append",
        choices=AGENT_STATUS_NAMES,
        metavar="STATUS",
        help=f"only this status (repeatable): {', '.join(AGENT_STATUS_NAMES)}",
    )
    listing.add_argument("--team", metavar="ID", help="only agents of this team")
    listing.add_argument("--model", metavar="M", help="only agents of this model")
    listing.add_argument("--label", metavar="L", help="only agents with this label")
    listing.add_argument("--limit", metavar="N", type=_positive_int, help="show at most N agents")
    listing.add_argument("--watch", action="store_true", help=f"redraw every {LIST_REFRESH:g}s until Ctrl-C")

    get = _command_parser(agent_commands, "get", _agent_get, common, help="show one agent")
    get.add_argument("id", help="agent id")
    get.add_argument(
        "--watch",
        action="store_true",
        help="then print a line per state change until the agent ends (exit 0 if it completed, else 1)",
    )

    logs = _command_parser(
        agent_commands,
        "logs",
        _agent_logs,
        common,
        help="print an agent's log lines ([stream] message; stderr lines go to stderr)",
        epilog="With -f the lines are followed live until the agent ends; Ctrl-C stops (exit 130).",
    )
    logs.add_argument("id", help="agent id")
    logs.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines until the agent ends"
    )
    logs.add_argument("--session", metavar="S", help="only lines of this session")

    for verb, text in (
        ("pause", "pause a running agent"),
        ("resume", "resume a paused agent"),
        ("kill", "kill an agent (its whole process tree)"),
        ("restart", "restart an agent in a new session"),
    ):
        control = _command_parser(
            agent_commands, verb, _agent_control, common, help=f"{text} and print its new state"
        )
        control.add_argument("id", help="agent id")
        if verb == "kill":
            control.add_argument("--reason", metavar="R", help="why (recorded in its history)")

    history = _command_parser(
        agent_commands, "history", _agent_history, common, help="list an agent's state transitions"
    )
    history.add_argument("id", help="agent id")

    sessions = _command_parser(
        agent_commands, "sessions", _agent_sessions, common, help="list an agent's sessions (run attempts)"
    )
    sessions.add_argument("id", help="agent id")

    delete = _command_parser(
        agent_commands, "delete", _agent_delete, common, help="delete an agent (killing it if running)"
    )
    delete.add_argument("id", help="agent id")

    events = commands.add_parser("events", help="query, publish and follow events")
    event_commands = events.add_subparsers(dest="action", metavar="ACTION", required=True)
    tail = _command_parser(
        event_commands,
        "tail",
        _events_tail,
        common,
        help="print events as they happen (Ctrl-C to stop)",
        epilog="One line per event: time, sequence, type, agent id, payload. --json prints NDJSON. "
        "With --subscription NAME the server keeps the cursor: tailing the same name again "
        "resumes after the last event printed.",
    )
    _event_filters(tail, full=False)
    tail.add_argument(
        "--from-seq", metavar="N", type=_non_negative_int, help="first replay stored events after sequence N"
    )
    tail.add_argument("--subscription", metavar="NAME", help="durable subscription name (server-kept cursor)")

    query = _command_parser(
        event_commands,
        "query",
        _events_query,
        common,
        help="print stored events, oldest first (--desc: newest first)",
    )
    _event_filters(query, full=True)
    query.add_argument("--since", metavar="TIME", type=_when, help="events at or after this ISO-8601 time")
    query.add_argument("--until", metavar="TIME", type=_when, help="events before this ISO-8601 time")
    query.add_argument("--after-seq", metavar="N", type=_non_negative_int, help="events after sequence N")
    query.add_argument("--desc", action="store_true", help="newest first")
    query.add_argument("--limit", metavar="N", type=_positive_int, default=100, help="at most N events (100)")

    publish = _command_parser(
        event_commands,
        "publish",
        _events_publish,
        common,
        help="publish a client event (it travels through Kafka like internal ones); prints its id",
    )
    publish.add_argument("type", help="namespaced type, e.g. deploy:finished")
    publish.add_argument(
        "--payload",
        metavar="JSON",
        type=_json_object,
        default={},
        help="payload object, e.g. '{\"ok\": true}'",
    )
    publish.add_argument("--agent", metavar="ID", help="agent the event is about")
    publish.add_argument("--team", metavar="ID", help="team the event is about")
    publish.add_argument("--workflow", metavar="ID", help="workflow the event is about")
    publish.add_argument("--correlation", metavar="ID", help="correlation id")
    publish.add_argument("--source", metavar="COMPONENT", help="source component (default cli)")
    publish.add_argument("--id", metavar="UUID", help="event id, makes publishing idempotent")

    _command_parser(
        commands,
        "health",
        _health,
        common,
        help="show mesh health (per component when an API key is available)",
        epilog="Exits 1 when the mesh reports itself unhealthy.",
    )

    for area in (cli_teams, cli_workflows, cli_tasks, cli_budgets, cli_do):
        area.add_commands(commands, common)

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = _command_parser(
        key_commands, "create", _keys_create, common, help="create an API key and print its secret once"
    )
    create.add_argument("--name", required=True, help="what the key is for")
    create.add_argument("--role", choices=ROLES, default="developer", help="role (default: developer)")
    create.add_argument(
        "--expires-days", metavar="N", type=_non_negative_int, default=0, help="days until expiry (0 = never)"
    )
    return parser


# -- entry point ----------------------------------------------------------------------------------


def _split_command(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Splits ``argv`` at the first ``--``: options before it, a command argv after it."""
    items = list(argv)
    if "--" not in items:
        return items, []
    at = items.index("--")
    return items[:at], items[at + 1 :]


def _report(error: GodelError) -> None:
    _note(f"error: {one_line(error.message)}")
    if isinstance(error, InvalidArgumentError):
        for violation in error.violations:
            _note(f"  field: {violation.field} — {violation.description}")


def _discard_stdout() -> None:
    """Points stdout at /dev/null so that the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace | int:
    """The parsed arguments, or the exit code argparse chose (2 for usage errors, 0 for --help)."""
    options, command = _split_command(argv)
    try:
        args = parser.parse_args(options)
        if command and not getattr(args, "takes_argv", False):
            parser.error("arguments after `--` are only accepted by `agent spawn`, `team create` and `do`")
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    args.command = command
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parsed = _parse(parser, sys.argv[1:] if argv is None else argv)
    if isinstance(parsed, int):
        return parsed
    args = parsed
    handler: Handler = args.handler
    try:
        with GodelClient(address=args.addr, api_key=args.api_key) as client:
            return handler(client, args)
    except GodelError as exc:
        _report(exc)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`godel events tail | head`): stop quietly.
        _discard_stdout()
        return 0
    except Exception as exc:
        if os.environ.get("GODEL_DEBUG"):
            traceback.print_exc()
        _note(f"error: unexpected {type(exc).__name__}: {exc} (set GODEL_DEBUG=1 for a traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
