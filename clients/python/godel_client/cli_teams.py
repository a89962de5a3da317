"""``godel team``: create teams of agents, start them and follow their progress, scale and inspect them."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from godel.v1 import team_pb2, team_service_pb2
from godel_client import formatting as fmt
from godel_client import render
from godel_client.cli_common import (
    RUNTIMES,
    command_parser,
    control,
    list_options,
    list_or_note,
    non_negative_float,
    non_negative_int,
    note,
    out,
    page_size,
    positive_int,
    repo_path,
    report_deleted,
    show,
    takes_argv,
    to_json,
)
from godel_client.client import GodelClient
from godel_client.enums import STRATEGY_NAMES, TEAM_STATUS_NAMES, team_ended
from godel_client.errors import GodelError
from godel_client.live import Live, bar, on_terminal
from godel_client.table import render_table

WATCH_HELP = "follow the team's progress until it ends (exit 0 if it completed, else 1)"


# -- following a started team ---------------------------------------------------------------------


def _close(updates: Iterator[Any]) -> None:
    close = getattr(updates, "close", None)
    if close is not None:
        close()


def progress_block(team: team_pb2.Team, members: Mapping[str, str]) -> str:
    """What a terminal shows below the update lines while a team runs: a bar of its progress, its
    spend, and a table of its member agents with the state the last update about each one said."""
    counts = Counter(members.values())
    states = "  ".join(f"{state} {count}" for state, count in sorted(counts.items()))
    head = (
        f"team {fmt.short_id(team.id)} {team.name}  {render.team_status(team)}  "
        f"{bar(team.progress, 100)}  spent {fmt.usd_precise(team.budget_consumed)}  {states}"
    ).rstrip()
    ids = [*team.agent_ids, *(agent_id for agent_id in members if agent_id not in team.agent_ids)]
    if not ids:
        return head
    rows = [[agent_id, fmt.or_empty(members.get(agent_id, ""))] for agent_id in ids]
    return f"{head}\n{render_table(['AGENT', 'STATE'], rows)}"


def follow_team(
    client: GodelClient,
    team_id: str,
    updates: Iterator[team_service_pb2.StartTeamResponse],
    *,
    as_json: bool,
) -> int:
    """Prints a line (NDJSON with --json) per update of the StartTeam stream, then a summary. On
    a terminal a progress bar and the live table of the members stay below the lines meanwhile.

    Exits 0 when the team completed, 1 when it failed (or the stream ended while it still ran).
    """
    team: team_pb2.Team | None = None
    members: dict[str, str] = {}  # member agent id -> its state, as the updates said
    try:
        with Live(on_terminal(as_json)) as live:
            for update in updates:
                team = update.team
                live.line(to_json(update, indent=None) if as_json else render.team_update_line(update))
                if (member := render.member_state(update)) is not None and member[1]:
                    members[member[0]] = member[1]  # an event that names no state keeps the last
                live.show(progress_block(team, members))
    finally:
        _close(updates)
    if team is None or not team_ended(team):
        team = client.teams.get(team_id)  # the stream ended without the final state: ask for it
    completed = team.status == team_pb2.TEAM_STATUS_COMPLETED
    if as_json:
        return 0 if completed else 1
    metrics: team_pb2.TeamMetrics | None
    try:
        metrics = client.teams.metrics(team.id)
    except GodelError:
        metrics = None  # the summary then comes from the team alone
    out(render.team_summary(team, metrics))
    if not team_ended(team):
        note(f"team {team.id} is still {render.team_status(team)}: its progress stream ended early")
    elif not completed and team.error:
        note(f"team {team.id} {render.team_status(team)}: {team.error}")
    return 0 if completed else 1


def start_team(client: GodelClient, team_id: str, *, watch: bool, as_json: bool) -> int:
    """Starts a team; with ``watch`` follows it to the end, else reports its first update."""
    updates = client.teams.start(team_id)
    if watch:
        return follow_team(client, team_id, updates, as_json=as_json)
    try:
        first = next(updates, None)
    finally:
        _close(updates)  # stop following; the team runs on
    team = first.team if first is not None else client.teams.get(team_id)
    if as_json:
        out(to_json(team))
    else:
        out(f"started team {team_id}: now {render.team_status(team)} ({team.progress}%)")
    return 0


# -- handlers -------------------------------------------------------------------------------------


def _create(client: GodelClient, args: argparse.Namespace) -> int:
    command: list[str] = args.command
    team = client.teams.create(
        args.name,
        args.task,
        strategy=args.strategy,
        size=args.size,
        inputs=args.input or (),
        stages=args.stage or (),
        max_depth=args.max_depth,
        max_agents=args.max_agents,
        runtime=args.runtime or ("command" if command else None),
        command=command or None,
        model=args.model,
        budget=args.budget,
        description=args.description,
        repo=args.repo,
    )
    if not (args.start or args.watch):
        out(to_json(team) if args.json else team.id)
        return 0
    if not args.json:
        out(team.id)
    return start_team(client, team.id, watch=args.watch, as_json=args.json)


def _list(client: GodelClient, args: argparse.Namespace) -> int:
    teams = client.teams.list(status=args.status, page_size=page_size(args.limit))
    response = team_service_pb2.ListTeamsResponse()
    return list_or_note(args, "teams", teams, response, render.teams_table, limit=args.limit)


def _get(client: GodelClient, args: argparse.Namespace) -> int:
    return show(args, client.teams.get(args.id), render.team_detail)


def _start(client: GodelClient, args: argparse.Namespace) -> int:
    return start_team(client, args.id, watch=args.watch, as_json=args.json)


def _team_state(team: team_pb2.Team) -> str:
    return f"{render.team_status(team)} ({team.progress}%)"


def _pause(client: GodelClient, args: argparse.Namespace) -> int:
    return control(args, "team", "paused", lambda: client.teams.pause(args.id), _team_state)


def _resume(client: GodelClient, args: argparse.Namespace) -> int:
    return control(args, "team", "resumed", lambda: client.teams.resume(args.id), _team_state)


def _scale(client: GodelClient, args: argparse.Namespace) -> int:
    return show(args, client.teams.scale(args.id, args.size), render.scale_summary)


def _agents(client: GodelClient, args: argparse.Namespace) -> int:
    return list_or_note(
        args,
        "agents",
        client.teams.agents(args.id),
        team_service_pb2.ListTeamAgentsResponse(),
        render.agents_table,
    )


def _metrics(client: GodelClient, args: argparse.Namespace) -> int:
    return show(args, client.teams.metrics(args.id), render.team_metrics)


def _delete(client: GodelClient, args: argparse.Namespace) -> int:
    client.teams.delete(args.id)
    return report_deleted(args, "team")


# -- parser ---------------------------------------------------------------------------------------


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    team = commands.add_parser("team", help="create, start, follow, scale and inspect teams of agents")
    actions = team.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = command_parser(
        actions,
        "create",
        _create,
        common,
        help="create a team and print its id (--start/--watch: then start it)",
        usage="godel team create NAME --task TASK [options] [-- ARGV...]",
        epilog="Anything after `--` is the argv template of the members' command runtime ({task} and "
        "{worktree} are substituted); it implies --runtime command. --watch starts the team and "
        "prints a line per progress update, then a summary: exit 0 when the team completed, 1 when "
        "it failed.",
    )
    create.add_argument("name", help="team name")
    create.add_argument("--task", required=True, help="what the team should do")
    create.add_argument("--strategy", choices=STRATEGY_NAMES, help="how the members work together")
    create.add_argument("--size", metavar="N", type=positive_int, help="number of agents to start with")
    create.add_argument(
        "--input",
        metavar="X",
        action="append",
        help="an input of the parallel/map-reduce strategies (repeatable)",
    )
    create.add_argument(
        "--stage",
        metavar="S",
        action="append",
        help="a stage task of the pipeline strategy, in order (repeatable)",
    )
    create.add_argument(
        "--max-depth", metavar="N", type=positive_int, help="decomposition depth (tree strategy)"
    )
    create.add_argument("--max-agents", metavar="N", type=positive_int, help="upper bound on the team's size")
    create.add_argument(
        "--budget", metavar="USD", type=non_negative_float, help="the team's spend limit in USD"
    )
    create.add_argument("--model", metavar="M", help="LLM model of the members (default: the server's)")
    create.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="members' runtime (default: the server's; command when ARGV is given)",
    )
    create.add_argument("--repo", metavar="PATH", type=repo_path, help="git repository the members work in")
    create.add_argument("--description", metavar="TEXT", help="what the team is for")
    create.add_argument("--start", action="store_true", help="start the team right away")
    create.add_argument("--watch", action="store_true", help=f"start the team and {WATCH_HELP}")
    takes_argv(create)

    listing = command_parser(actions, "list", _list, common, help="list teams")
    list_options(listing, "teams", TEAM_STATUS_NAMES)

    get = command_parser(actions, "get", _get, common, help="show one team")
    get.add_argument("id", help="team id")

    start = command_parser(
        actions, "start", _start, common, help="start a team (--watch: and follow it until it ends)"
    )
    start.add_argument("id", help="team id")
    start.add_argument("--watch", action="store_true", help=WATCH_HELP)

    for verb, handler, text in (
        ("pause", _pause, "pause a running team and print its new state"),
        ("resume", _resume, "resume a paused team and print its new state"),
    ):
        command_parser(actions, verb, handler, common, help=text).add_argument("id", help="team id")

    scale = command_parser(actions, "scale", _scale, common, help="grow or shrink a team to N agents")
    scale.add_argument("id", help="team id")
    scale.add_argument("size", metavar="N", type=non_negative_int, help="the number of agents wanted")

    agents = command_parser(actions, "agents", _agents, common, help="list a team's agents")
    agents.add_argument("id", help="team id")

    metrics = command_parser(
        actions, "metrics", _metrics, common, help="show a team's member counts, duration and cost"
    )
    metrics.add_argument("id", help="team id")

    delete = command_parser(actions, "delete", _delete, common, help="delete a team")
    delete.add_argument("id", help="team id")
