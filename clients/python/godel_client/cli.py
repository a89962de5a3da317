"""The ``godel`` command line: spawn and inspect agents, follow events, check health, mint keys."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from godel.v1 import agent_service_pb2, system_service_pb2
from godel_client import render
from godel_client.client import AGENT_STATUS_NAMES, GodelClient
from godel_client.credentials import DEFAULT_ADDRESS
from godel_client.errors import AuthError, GodelError, InvalidArgumentError, PermissionDeniedError
from godel_client.table import one_line

Handler = Callable[[GodelClient, argparse.Namespace], int]

ROLES = ("admin", "operator", "developer", "viewer")
MAX_PAGE_SIZE = 1000

DESCRIPTION = "Run and watch fleets of AI agents on a Godel mesh."
EPILOG = f"""\
connection:
  --addr defaults to $GODEL_ADDR, else {DEFAULT_ADDRESS} (the gateway `make up` starts).
  The API key is --api-key, else $GODEL_API_KEY, else the file named by $GODEL_CREDENTIALS_FILE,
  else $GODEL_HOME/admin.key (`make up` writes the admin key to .data/admin.key).

examples:
  godel agent spawn "fix the flaky test in tests/test_api.py" --model gpt-4o --label flaky
  godel agent spawn "say hi" -- /bin/echo hi {{task}}
  godel agent list --status running
  godel events tail --type 'agent:*'
  godel --json agent get 3f2a...
"""


# -- output ---------------------------------------------------------------------------------------


def _out(text: str = "") -> None:
    print(text, flush=True)


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _to_json(message: Message, *, indent: int | None = 2) -> str:
    return json_format.MessageToJson(message, indent=indent, ensure_ascii=False)


def _dump(document: dict[str, Any]) -> None:
    _out(json.dumps(document, indent=2, ensure_ascii=False))


# -- argument types -------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _repo(text: str) -> str:
    """A local path is made absolute (the services resolve paths from their own directory)."""
    path = Path(text).expanduser()
    return str(path.resolve()) if path.exists() else text


# -- commands -------------------------------------------------------------------------------------


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
    )
    _out(_to_json(agent) if args.json else agent.id)
    return 0


def _agent_list(client: GodelClient, args: argparse.Namespace) -> int:
    limit: int | None = args.limit
    page_size = min(limit, MAX_PAGE_SIZE) if limit else 50
    found = client.list_agents(
        status=args.status or None, team_id=args.team, model=args.model, label=args.label, page_size=page_size
    )
    agents = list(islice(found, limit) if limit else found)
    if args.json:
        document = json_format.MessageToDict(agent_service_pb2.ListAgentsResponse(agents=agents))
        document.setdefault("agents", [])
        _dump(document)
    elif agents:
        _out(render.agents_table(agents))
    else:
        _note("no agents found")
    return 0


def _agent_get(client: GodelClient, args: argparse.Namespace) -> int:
    agent = client.get_agent(args.id)
    _out(_to_json(agent) if args.json else render.agent_detail(agent))
    return 0


def _agent_delete(client: GodelClient, args: argparse.Namespace) -> int:
    client.delete_agent(args.id)
    if args.json:
        _dump({"id": args.id, "deleted": True})
    else:
        _out(f"deleted agent {args.id}")
    return 0


def _events_tail(client: GodelClient, args: argparse.Namespace) -> int:
    events = client.subscribe_events(args.type or [], agent_id=args.agent, from_sequence=args.from_seq)
    try:
        for event in events:
            _out(_to_json(event, indent=None) if args.json else render.event_line(event))
    except KeyboardInterrupt:
        return 0
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


def _command_parser(
    group: Any, name: str, handler: Handler, common: argparse.ArgumentParser, **kwargs: Any
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(name, parents=[common], **kwargs)
    parser.set_defaults(handler=handler)
    return parser


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

    agent = commands.add_parser("agent", help="spawn, list, inspect and delete agents")
    agent_commands = agent.add_subparsers(dest="action", metavar="ACTION", required=True)

    spawn = _command_parser(
        agent_commands,
        "spawn",
        _agent_spawn,
        common,
        help="spawn an agent on a task and print its id",
        usage="godel agent spawn TASK [options] [-- ARGV...]",
        epilog="Anything after `--` is the argv of the command runtime ({task} and {worktree} are "
        "substituted); it implies --runtime command.",
    )
    spawn.add_argument("task", help="what the agent should do")
    spawn.add_argument("--model", help="LLM model identifier (default: the server's)")
    spawn.add_argument("--label", help="human-readable label")
    spawn.add_argument("--team", metavar="ID", help="parent team id")
    spawn.add_argument(
        "--repo", metavar="PATH", type=_repo, help="git repository to work in (a local path is made absolute)"
    )
    spawn.add_argument("--runtime", metavar="R", help='runtime: "command" or "openai"')
    spawn.add_argument("--budget", metavar="USD", type=float, help="spend limit in USD")
    spawn.add_argument(
        "--max-retries", metavar="N", type=_non_negative_int, help="retries after the first try"
    )
    spawn.set_defaults(command=[])

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

    get = _command_parser(agent_commands, "get", _agent_get, common, help="show one agent")
    get.add_argument("id", help="agent id")

    delete = _command_parser(
        agent_commands, "delete", _agent_delete, common, help="delete an agent (killing it if running)"
    )
    delete.add_argument("id", help="agent id")

    events = commands.add_parser("events", help="follow the event stream")
    event_commands = events.add_subparsers(dest="action", metavar="ACTION", required=True)
    tail = _command_parser(
        event_commands,
        "tail",
        _events_tail,
        common,
        help="print events as they happen (Ctrl-C to stop)",
        epilog="One line per event: time, sequence, type, agent id, payload. --json prints NDJSON.",
    )
    tail.add_argument(
        "--type", metavar="PATTERN", action="append", help="event type pattern, e.g. 'agent:*' (repeatable)"
    )
    tail.add_argument("--agent", metavar="ID", help="only events of this agent")
    tail.add_argument(
        "--from-seq", metavar="N", type=_non_negative_int, help="first replay stored events after sequence N"
    )

    _command_parser(
        commands,
        "health",
        _health,
        common,
        help="show mesh health (per component when an API key is available)",
        epilog="Exits 1 when the mesh reports itself unhealthy.",
    )

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
        if command and args.handler is not _agent_spawn:
            parser.error("arguments after `--` are only accepted by `agent spawn`")
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
