"""The ``godel`` command line: spawn and inspect agents, follow events, check health.

Teams, workflows, tasks, budgets, ``godel do``, ``godel top``, logins and users, API keys, clusters, profiles
(``godel config``) and shell completion live in the ``cli_*`` modules next to this one; each adds its commands in
``add_commands``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from google.protobuf import json_format

from godel.v1 import agent_pb2, agent_service_pb2, system_service_pb2
from godel_client import (
    __version__,
    cli_alerts,
    cli_budgets,
    cli_clusters,
    cli_config,
    cli_dead_letters,
    cli_do,
    cli_keys,
    cli_tasks,
    cli_teams,
    cli_top,
    cli_users,
    cli_workflows,
    render,
)
from godel_client.cli_common import MAX_PAGE_SIZE, RUNTIMES, Handler, LocalHandler, connection_options
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
from godel_client.client import GodelClient
from godel_client.credentials import DEFAULT_ADDRESS
from godel_client.enums import AGENT_STATUS_NAMES, agent_ended
from godel_client.errors import (
    AuthError,
    GodelError,
    InvalidArgumentError,
    PermissionDeniedError,
)
from godel_client.events import Filters
from godel_client.table import one_line

WATCH_INTERVAL = 0.5  # seconds between two GetAgent polls of a watched agent
LIST_REFRESH = 1.0  # seconds between two redraws of `agent list --watch`
WAIT_REMINDER = 15.0  # seconds between two "still waiting" lines of an agent no worker can take
CLEAR_SCREEN = "\x1b[H\x1b[2J"
_clock = time.monotonic  # replaced in tests, like _wait

DESCRIPTION = "Run and watch fleets of AI agents on a Godel mesh."
EPILOG = f"""\
connection:
  The address is --addr, else $GODEL_ADDR, else the profile's endpoint, else {DEFAULT_ADDRESS}
  (the gateway `make up` starts). The credential is the API key --api-key, else $GODEL_API_KEY,
  else the file named by $GODEL_CREDENTIALS_FILE, else the session `godel login` keeps for the
  profile and address (refreshed as it expires), else the profile's token or api_key, else
  $GODEL_HOME/admin.key (in a checkout, .data/admin.key: `make up` writes the admin key there).
  Profiles live in the user's config file: `godel config set endpoint HOST:PORT`,
  `godel config set api_key KEY`, `godel --profile NAME ...`, `godel config show`.
  --addr https://HOST:PORT speaks TLS, verified with --tls-ca FILE (else $GODEL_TLS_CA, else the
  profile's tls_ca, else the system's CAs); --tls-cert/--tls-key ($GODEL_TLS_CERT/$GODEL_TLS_KEY,
  the profile's tls_cert/tls_key) present a client certificate.

examples:
  godel login alice          godel whoami          godel logout
  godel agent spawn "fix the flaky test in tests/test_api.py" --model gpt-4o --label flaky
  godel agent spawn "say hi" --watch -- /bin/echo hi {{task}}
  godel agent list --status running --watch
  godel agent logs 3f2a... -f
  godel agent pause|resume|restart 3f2a...   godel agent kill 3f2a... --reason "stuck"
  godel agent history 3f2a...
  godel events tail --type 'agent:*' [--agent ID] [--from-seq N] [--subscription NAME]
  godel events query --type 'workflow:step:*' --since 2026-01-01 --desc --limit 20
  godel events publish deploy:finished --payload '{{"ok": true}}'
  godel --json agent get 3f2a...                 godel workers
  godel top                  godel top --once      godel --json top --iterations 3 --interval 1
  godel team create reviewers --task "review the auth code" --size 3 --watch
  godel workflow run release.yaml --watch     godel task create "triage issue 42" --priority high
  godel budget set --team 7c1e... 25 --period monthly
  godel do "create a team of 3 agents to review the authentication code"
  godel keys list     godel keys revoke KEY_ID     godel cluster list
  godel --profile prod config set endpoint godel.example.com:7373
  godel completion bash > ~/.local/share/bash-completion/completions/godel
"""


# -- argument types -------------------------------------------------------------------------------


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _event_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--type", metavar="PATTERN", action="append", help="event type pattern, e.g. 'agent:*' (repeatable)"
    )
    parser.add_argument("--agent", metavar="ID", help="only events of this agent")
    parser.add_argument("--team", metavar="ID", help="only events of this team")
    parser.add_argument("--workflow", metavar="ID", help="only events of this workflow")
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
    """Prints a line (NDJSON with --json) per change of the agent until it ends; while no worker can
    take the agent, the line says why and (in text) a reminder follows every WAIT_REMINDER seconds.

    Exits 0 when it completed, 1 when it failed or was killed.
    """
    seen: tuple[Any, ...] | None = None
    waiting_since = last_line = _clock()
    while True:
        state = (
            agent.version,
            agent.status,
            agent.lifecycle_state,
            agent.retry_count,
            agent.budget_consumed,
            agent.pending_reason,
            agent.pending_message,
        )
        now = _clock()
        if state != seen:
            _out(_to_json(agent, indent=None) if as_json else render.agent_state_line(agent))
            if seen is None or agent.pending_reason != seen[5]:
                waiting_since = now
            seen, last_line = state, now
        elif agent.pending_reason and not as_json and now - last_line >= WAIT_REMINDER:
            _out(render.still_waiting(agent, now - waiting_since))
            last_line = now
        if agent_ended(agent):
            break
        _wait(WATCH_INTERVAL)
        agent = client.agents.get(agent.id)
    if agent.status == agent_pb2.AGENT_STATUS_COMPLETED:
        return 0
    if not as_json:
        error = f": {one_line(agent.last_error)}" if agent.last_error else ""
        _note(f"agent {agent.id} {render.agent_status(agent)}{error}")
    return 1


def _agent_spawn(client: GodelClient, args: argparse.Namespace) -> int:
    command: list[str] = args.command
    runtime: str | None = args.runtime or ("command" if command else None)
    agent = client.agents.create(
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
        worker_selector=dict(args.worker or ()),
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
    found = client.agents.list(
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
    agent = client.agents.get(args.id)
    if not args.watch:
        _out(_to_json(agent) if args.json else render.agent_detail(agent))
        return 0
    if not args.json:
        _out(render.agent_detail(agent) + "\n")
    return _watch_agent(client, agent, as_json=args.json)


# Control verbs: the client call and the past tense used to report it.
_CONTROLS: dict[str, tuple[Callable[[GodelClient, argparse.Namespace], agent_pb2.Agent], str]] = {
    "pause": (lambda client, args: client.agents.pause(args.id), "paused"),
    "resume": (lambda client, args: client.agents.resume(args.id), "resumed"),
    "kill": (lambda client, args: client.agents.kill(args.id, reason=args.reason), "killed"),
    "restart": (lambda client, args: client.agents.restart(args.id), "restarted"),
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
    for entry in client.agents.logs(args.id, session_id=session):
        _print_log(entry, as_json=args.json)
        last = max(last, entry.sequence)
    if args.follow:
        # The stream has no session filter: lines of other sessions are skipped here.
        for entry in client.agents.follow_logs(args.id, after_sequence=last):
            if not session or entry.session_id == session:
                _print_log(entry, as_json=args.json)
    return 0


def _agent_history(client: GodelClient, args: argparse.Namespace) -> int:
    return _list_or_note(
        args,
        "transitions",
        client.agents.transitions(args.id),
        agent_service_pb2.ListAgentTransitionsResponse(),
        render.transitions_table,
    )


def _agent_sessions(client: GodelClient, args: argparse.Namespace) -> int:
    return _list_or_note(
        args,
        "sessions",
        client.agents.sessions(args.id),
        agent_service_pb2.ListAgentSessionsResponse(),
        render.sessions_table,
    )


def _agent_delete(client: GodelClient, args: argparse.Namespace) -> int:
    client.agents.delete(args.id)
    if args.json:
        _dump({"id": args.id, "deleted": True})
    else:
        _out(f"deleted agent {args.id}")
    return 0


def _filters(args: argparse.Namespace) -> Filters:
    """The event filters of ``events tail|query``."""
    return Filters(
        agent_id=args.agent,
        team_id=args.team,
        workflow_id=args.workflow,
        correlation_id=args.correlation,
        trace_id=args.trace,
        source=args.source,
    )


def _events_tail(client: GodelClient, args: argparse.Namespace) -> int:
    events = client.events.subscribe(
        args.type or (), from_sequence=args.from_seq, subscription=args.subscription, **_filters(args)
    )
    try:
        for event in events:
            _out(_to_json(event, indent=None) if args.json else render.event_line(event))
    except KeyboardInterrupt:
        return 0
    return 0


def _events_query(client: GodelClient, args: argparse.Namespace) -> int:
    found = client.events.query(
        args.type or (),
        after_sequence=args.after_seq,
        since=args.since,
        until=args.until,
        descending=args.desc,
        page_size=min(args.limit, MAX_PAGE_SIZE),
        **_filters(args),
    )
    events = list(islice(found, args.limit))
    if args.json:
        _dump({"events": [json_format.MessageToDict(e) for e in events]})
    else:
        for event in events:
            _out(render.event_line(event))
        _note(f"{len(events)} event(s)")
    return 0


def _events_publish(client: GodelClient, args: argparse.Namespace) -> int:
    event_id = client.events.publish(
        args.type,
        args.payload,
        agent_id=args.agent,
        team_id=args.team,
        workflow_id=args.workflow,
        correlation_id=args.correlation,
        source=args.source or "cli",
        id=args.id,
    )
    if args.json:
        _dump({"id": event_id, "type": args.type})
    else:
        _out(event_id)
    return 0


def _health(client: GodelClient, args: argparse.Namespace) -> int:
    if client.api_key or client.token:
        try:
            detailed = client.system.detailed_health()
        except (AuthError, PermissionDeniedError) as exc:
            _note(
                f"note: detailed health needs a valid credential ({exc.code.lower()}); showing public health"
            )
        else:
            _out(_to_json(detailed) if args.json else render.detailed_health(detailed))
            return 1 if detailed.status == system_service_pb2.HEALTH_STATUS_UNHEALTHY else 0
    public = client.system.health()
    _out(_to_json(public) if args.json else render.health(public))
    return 1 if public.status == system_service_pb2.HEALTH_STATUS_UNHEALTHY else 0


def _workers(client: GodelClient, args: argparse.Namespace) -> int:
    response = client.agents.workers()
    if args.json:
        _out(_to_json(response))
    elif response.workers:
        _out(render.workers_table(response.workers))
    else:
        _note(f"no worker is connected to {response.replica_id}: agents wait pending until one connects")
    return 0


# -- parser ---------------------------------------------------------------------------------------


def _connection_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """--addr/--tls-*/--api-key/--profile/--json, accepted before the command and (suppress=True)
    after it too."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--addr", metavar="HOST:PORT", default=default(None), help="gateway address (https://HOST:PORT: TLS)"
    )
    parser.add_argument(
        "--tls-ca",
        metavar="FILE",
        default=default(None),
        help="CA (PEM) that signed the gateway's certificate (default: the system's)",
    )
    parser.add_argument("--tls-cert", metavar="FILE", default=default(None), help="client certificate (PEM)")
    parser.add_argument("--tls-key", metavar="FILE", default=default(None), help="its private key (PEM)")
    parser.add_argument(
        "--api-key", metavar="KEY", default=default(None), help="API key to send as x-api-key"
    )
    parser.add_argument(
        "--profile", metavar="NAME", default=default(None), help="the profile of the config file to use"
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
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__} (godel-client)")
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
    spawn.add_argument(
        "--endpoint",
        metavar="URL",
        help="OpenAI-compatible base URL (openai runtime) or OpenClaw Gateway ws(s):// URL (openclaw runtime)",
    )
    spawn.add_argument(
        "--env", metavar="NAME=VALUE", type=_env_pair, action="append", help="agent environment (repeatable)"
    )
    spawn.add_argument(
        "--worker",
        metavar="LABEL=VALUE",
        type=_env_pair,
        action="append",
        help="run only on a worker with this label, e.g. language=go (repeatable)",
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
    _event_filters(tail)
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
    _event_filters(query)
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
        help="show mesh health (per component when a credential is available)",
        epilog="Exits 1 when the mesh reports itself unhealthy.",
    )

    _command_parser(
        commands,
        "workers",
        _workers,
        common,
        help="list the workers connected to the agent service, with their free slots",
    )

    for area in (cli_teams, cli_workflows, cli_tasks, cli_budgets, cli_do, cli_dead_letters, cli_top):
        area.add_commands(commands, common)

    for area in (cli_users, cli_keys, cli_clusters, cli_alerts):
        area.add_commands(commands, common)
    cli_config.add_commands(commands, common, parser)
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
    try:
        local: LocalHandler | None = getattr(args, "local", None)
        if local is not None:
            return local(args)
        handler: Handler = args.handler
        with GodelClient(**connection_options(args)) as client:
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
