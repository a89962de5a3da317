"""``godel do "TEXT"``: say what you want in plain words; Godel parses the intent and does it.

The request goes to IntentService.ParseIntent; the parsed intent picks the action: a team (sized and
shaped by GenerateSwarmConfig) that is started and followed, agents, a scale, a kill, a status view
or a workflow run. ``--dry-run`` shows the plan and touches nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from godel.v1 import agent_pb2, intent_pb2, team_pb2
from godel_client import cli_common, render
from godel_client import formatting as fmt
from godel_client.cli_common import command_parser, dump_line, non_empty, note, out, takes_argv, to_json
from godel_client.cli_teams import start_team
from godel_client.cli_workflows import report_started, run_workflow
from godel_client.client import GodelClient
from godel_client.enums import (
    AGENT_STATUS_NAMES,
    TASK_STATUS_NAMES,
    TEAM_STATUS_NAMES,
    WORKFLOW_STATUS_NAMES,
    agent_ended,
    execution_strategy,
)
from godel_client.live import Live, bar, on_terminal

WORKFLOW_SUFFIXES = (".yaml", ".yml", ".json")  # a reference with one of these names a file, not an id
AGENT_POLL = 0.5  # seconds between two looks at the agents `do` spawned
STATUS_LIMIT = 20  # teams and agents shown for a status question
NEEDS_MORE = 2  # exit code when the request cannot be acted upon as understood

EXAMPLES = (
    '"create a team of 3 agents to review the auth code", "spawn an agent to fix the flaky test", '
    '"scale team ID to 5", "stop agent ID", "run workflow release.yaml" or "what is running"'
)
HINT = f"try e.g. {EXAMPLES}, or use `godel team create`, `godel agent spawn`, `godel workflow run` directly"

# Parameter names an intent may use for each value (the parser's own, then common synonyms).
TASK = ("task", "description", "goal")
SIZE = ("size", "count", "team_size", "agents", "num_agents")
STRATEGY = ("strategy", "execution_strategy")
BUDGET = ("budget", "budget_limit", "budget_usd", "max_cost")
MODEL = ("model",)
TEAM = ("team_id", "team", "teamId")
AGENT = ("agent_id", "agent", "agentId", "id")
WORKFLOW = ("workflow", "file", "path", "workflow_file", "workflow_id", "workflowId")

Action = Callable[[GodelClient, argparse.Namespace, intent_pb2.Intent, dict[str, Any]], int]


# -- reading the intent ---------------------------------------------------------------------------


def _parameters(intent: intent_pb2.Intent) -> dict[str, Any]:
    """The intent's parameters; its named entities fill in what the parameters leave out."""
    found: dict[str, Any] = (
        json_format.MessageToDict(intent.parameters) if intent.HasField("parameters") else {}
    )
    for entity in intent.entities:
        if entity.name and entity.value:
            found.setdefault(entity.name, entity.value)
    return found


def _text(params: dict[str, Any], names: Sequence[str]) -> str | None:
    for name in names:
        value = params.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int | float) and not isinstance(value, bool):
            return f"{value:g}"
    return None


def _number(params: dict[str, Any], names: Sequence[str]) -> float | None:
    for name in names:
        value = params.get(name)
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip().lstrip("$"))
            except ValueError:
                continue
    return None


def _whole(params: dict[str, Any], names: Sequence[str]) -> int | None:
    value = _number(params, names)
    return int(value) if value is not None and value >= 0 else None


def _strategy(params: dict[str, Any]) -> team_pb2.ExecutionStrategy.ValueType | None:
    name = _text(params, STRATEGY)
    if name is None:
        return None
    try:
        return execution_strategy(name)
    except ValueError:
        return None  # a strategy the server does not know: the generated config decides


def _show_plan(args: argparse.Namespace, steps: dict[str, Any]) -> int:
    """Prints what would be done (--dry-run) and does nothing."""
    if args.json:
        dump_line({"plan": steps})
    else:
        out("Plan (dry run, nothing done):")
        out(render.plan(steps))
    return 0


def _missing(what: str, example: str) -> int:
    note(f"error: the request names no {what} (say e.g. {example!r})")
    return NEEDS_MORE


# -- actions --------------------------------------------------------------------------------------


def _create_team(
    client: GodelClient, args: argparse.Namespace, intent: intent_pb2.Intent, params: dict[str, Any]
) -> int:
    named_task = _text(params, TASK)
    task = named_task or intent.original or args.text
    size = _whole(params, SIZE) or None
    wanted_strategy = _strategy(params)
    budget = _number(params, BUDGET)
    swarm = client.intent.swarm_config(task, strategy=wanted_strategy, budget_limit=budget)
    strategy = wanted_strategy or swarm.strategy or None
    command: list[str] = args.command
    team: dict[str, Any] = {
        "name": swarm.name or "team",
        "task": named_task or swarm.task or task,
        "strategy": render.strategy(strategy) if strategy else None,
        "size": size or swarm.size or None,
        "budget": budget,
        "model": _text(params, MODEL),
        "runtime": "command" if command else None,
        "command": command,
    }
    if args.dry_run:
        return _show_plan(args, {"action": "create_team", **team, "roles": render.swarm_roles(swarm)})
    created = client.teams.create(
        team["name"],
        team["task"],
        strategy=strategy,
        size=team["size"],
        budget=budget,
        model=team["model"],
        runtime=team["runtime"],
        command=command or None,
        description=swarm.description or None,
    )
    if not args.json:
        shape = ", ".join(f"{key} {team[key]}" for key in ("strategy", "size") if team[key])
        out(f"created team {created.id} ({created.name}{': ' + shape if shape else ''})")
    return start_team(client, created.id, watch=args.watch, as_json=args.json)


def agents_block(agents: Sequence[agent_pb2.Agent]) -> str:
    """What a terminal shows below the state lines while agents run: a bar of those that ended,
    their spend, and the live table of the agents."""
    ended = sum(1 for agent in agents if agent_ended(agent))
    spent = fmt.usd_precise(sum(agent.budget_consumed for agent in agents))
    head = f"agents  {bar(ended, len(agents))}  {ended}/{len(agents)} ended  spent {spent}"
    return f"{head}\n{render.agents_table(agents)}"


def _watch_agents(client: GodelClient, agents: list[agent_pb2.Agent], *, as_json: bool) -> int:
    """A line per state change of any of the agents until all have ended; 0 if all completed. On a
    terminal a progress bar and the live table of the agents stay below the lines meanwhile."""
    seen: dict[str, tuple[int, int, int]] = {}
    current = {agent.id: agent for agent in agents}
    with Live(on_terminal(as_json)) as live:
        while True:
            for agent in current.values():
                state = (agent.version, agent.status, agent.lifecycle_state)
                if seen.get(agent.id) != state:
                    seen[agent.id] = state
                    line = render.agent_state_line(agent)
                    live.line(
                        to_json(agent, indent=None) if as_json else f"agent {fmt.short_id(agent.id)}  {line}"
                    )
            live.show(agents_block(list(current.values())))
            if all(agent_ended(agent) for agent in current.values()):
                break
            cli_common.wait(AGENT_POLL)
            current = {id_: a if agent_ended(a) else client.agents.get(id_) for id_, a in current.items()}
    failed = [agent for agent in current.values() if agent.status != agent_pb2.AGENT_STATUS_COMPLETED]
    if failed and not as_json:
        note(f"{len(failed)} of {len(current)} agent(s) did not complete")
    return 1 if failed else 0


def _spawn_agent(
    client: GodelClient, args: argparse.Namespace, intent: intent_pb2.Intent, params: dict[str, Any]
) -> int:
    command: list[str] = args.command
    spawn: dict[str, Any] = {
        "task": _text(params, TASK) or intent.original or args.text,
        "count": _whole(params, SIZE) or 1,
        "model": _text(params, MODEL),
        "budget": _number(params, BUDGET),
        "runtime": "command" if command else None,
        "command": command,
    }
    if args.dry_run:
        return _show_plan(args, {"action": "spawn_agent", **spawn})
    agents = [
        client.agents.create(
            spawn["task"],
            model=spawn["model"],
            budget_limit=spawn["budget"],
            runtime=spawn["runtime"],
            command=command or None,
        )
        for _ in range(spawn["count"])
    ]
    if not args.watch:
        for agent in agents:
            out(to_json(agent, indent=None) if args.json else agent.id)
        return 0
    if not args.json:
        out("\n".join(agent.id for agent in agents))
    return _watch_agents(client, agents, as_json=args.json)


def _scale_team(
    client: GodelClient, args: argparse.Namespace, intent: intent_pb2.Intent, params: dict[str, Any]
) -> int:
    team_id = _text(params, TEAM)
    size = _whole(params, ("target_size", "targetSize", *SIZE))
    delta = _number(params, ("delta",))
    if team_id is None or (size is None and delta is None):
        return _missing("team id and size", "scale team 3f2a1b2c to 5")
    if args.dry_run:
        change = {"size": size} if size is not None else {"by": f"{int(delta or 0):+d} agents"}
        return _show_plan(args, {"action": "scale_team", "team": team_id, **change})
    if size is None:  # "add 2 agents to team X": relative to its size now
        size = max(0, len(client.teams.get(team_id).agent_ids) + int(delta or 0))
    response = client.teams.scale(team_id, size)
    out(to_json(response, indent=None) if args.json else render.scale_summary(response))
    return 0


def _stop_task(
    client: GodelClient, args: argparse.Namespace, intent: intent_pb2.Intent, params: dict[str, Any]
) -> int:
    target = _text(params, ("target",)) or "agent"
    if target not in ("agent", "workflow"):
        note(f"error: `godel do` stops agents and workflows, not a {target}; see `godel {target} --help`")
        return NEEDS_MORE
    found = _text(params, AGENT if target == "agent" else ("workflow_id", "workflowId", "workflow", "id"))
    if found is None:
        return _missing(f"{target} id", f"stop {target} 3f2a1b2c")
    if args.dry_run:
        verb = "kill" if target == "agent" else "cancel"
        return _show_plan(args, {"action": "stop_task", f"{verb} {target}": found})
    reason = f"godel do: {args.text}"
    if target == "workflow":
        workflow = client.workflows.cancel(found, reason=reason)
        out(to_json(workflow, indent=None) if args.json else f"cancelled workflow {workflow.id}")
        return 0
    agent = client.agents.kill(found, reason=reason)
    if args.json:
        out(to_json(agent, indent=None))
    else:
        out(f"killed agent {agent.id}: now {render.agent_status(agent)}/{render.lifecycle_state(agent)}")
    return 0


# What a status question can be about: the sub-client of that kind (its ``get`` and ``list``), its
# statuses, and how to show one of them and a list of them.
_KINDS: dict[
    str, tuple[Callable[[GodelClient], Any], Sequence[str], Callable[[Any], str], Callable[[Any], str]]
] = {
    "agent": (lambda client: client.agents, AGENT_STATUS_NAMES, render.agent_detail, render.agents_table),
    "team": (lambda client: client.teams, TEAM_STATUS_NAMES, render.team_detail, render.teams_table),
    "workflow": (
        lambda client: client.workflows,
        WORKFLOW_STATUS_NAMES,
        render.workflow_detail,
        render.workflows_table,
    ),
    "task": (lambda client: client.tasks, TASK_STATUS_NAMES, render.task_detail, render.tasks_table),
}


def _listing(client: GodelClient, kind: str, status: str | None) -> list[Message]:
    """Up to STATUS_LIMIT of a kind of resource (of ``status`` when it is one of that kind's)."""
    resources, statuses, _, _ = _KINDS[kind]
    chosen = status if status in statuses else None
    return cli_common.take(resources(client).list(status=chosen, page_size=STATUS_LIMIT), STATUS_LIMIT)


def _query_status(
    client: GodelClient, args: argparse.Namespace, intent: intent_pb2.Intent, params: dict[str, Any]
) -> int:
    """One resource when the question names it (``status of team X``), a list of one kind when it
    names a kind (``list running agents``), else the newest teams and agents."""
    target: str | None = _text(params, ("target",))
    found: str | None = _text(params, TEAM) if target in (None, "team") else None
    if found:
        target = "team"
    else:
        found = _text(params, ("id", *AGENT)) if target in (None, "agent") else _text(params, ("id",))
        target = target or ("agent" if found else None)
    status = _text(params, ("filter", "status"))
    kinds = [target] if target in _KINDS else ["team", "agent"]
    if args.dry_run:
        subject = f"{target} {found}" if found else " and ".join(f"{kind}s" for kind in kinds)
        return _show_plan(args, {"action": "query_status", "show": subject, "status": status})
    if found and target in _KINDS:
        resources, _, detail, _ = _KINDS[target]
        resource = resources(client).get(found)
        out(to_json(resource, indent=None) if args.json else detail(resource))
        return 0
    found_lists = {kind: _listing(client, kind, status) for kind in kinds}
    if args.json:
        dump_line(
            {
                f"{kind}s": [json_format.MessageToDict(item) for item in items]
                for kind, items in found_lists.items()
            }
        )
        return 0
    views = [_KINDS[kind][3](items) if items else f"no {kind}s" for kind, items in found_lists.items()]
    out("\n\n".join(views))
    return 0


def _execute_workflow(
    client: GodelClient, args: argparse.Namespace, intent: intent_pb2.Intent, params: dict[str, Any]
) -> int:
    reference = _text(params, WORKFLOW)
    if reference is None:
        return _missing("workflow file or id", "run workflow release.yaml")
    inputs = params.get("inputs")
    context = inputs if isinstance(inputs, dict) else None
    path = Path(reference).expanduser()
    if path.suffix.lower() in WORKFLOW_SUFFIXES and not path.is_file():
        note(f"error: no workflow file {path}")
        return NEEDS_MORE
    if path.is_file():
        if args.dry_run:
            return _show_plan(args, {"action": "execute_workflow", "run file": str(path), "context": context})
        definition = path.read_text(encoding="utf-8")
        team_id = _text(params, TEAM)
        return run_workflow(
            client, definition, team_id=team_id, context=context, watch=args.watch, as_json=args.json
        )
    if args.dry_run:
        return _show_plan(args, {"action": "execute_workflow", "start workflow": reference})
    return report_started(client, client.workflows.start(reference), watch=args.watch, as_json=args.json)


def _custom(
    client: GodelClient, args: argparse.Namespace, intent: intent_pb2.Intent, params: dict[str, Any]
) -> int:
    note(f"don't know how to act on a {render.intent_type(intent)} request; {HINT}")
    return NEEDS_MORE


ACTIONS: dict[int, Action] = {
    intent_pb2.INTENT_TYPE_CREATE_TEAM: _create_team,
    intent_pb2.INTENT_TYPE_SPAWN_AGENT: _spawn_agent,
    intent_pb2.INTENT_TYPE_SCALE_TEAM: _scale_team,
    intent_pb2.INTENT_TYPE_STOP_TASK: _stop_task,
    intent_pb2.INTENT_TYPE_QUERY_STATUS: _query_status,
    intent_pb2.INTENT_TYPE_EXECUTE_WORKFLOW: _execute_workflow,
}


def _do(client: GodelClient, args: argparse.Namespace) -> int:
    intent = client.intent.parse(args.text, parser=args.parser)
    if args.json:
        dump_line({"intent": json_format.MessageToDict(intent)})
    else:
        out(render.intent_line(intent))
    action = ACTIONS.get(intent.type, _custom)
    return action(client, args, intent, _parameters(intent))


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    do = command_parser(
        commands,
        "do",
        _do,
        common,
        help="say what you want in plain words (e.g. create a team of 3 agents to review the auth code)",
        usage='godel do "TEXT" [--watch | --no-watch] [--dry-run] [-- ARGV...]',
        epilog="The first line says what was understood. Teams and agents it starts are followed "
        "live unless --no-watch: exit 0 when they completed, 1 when not; 2 when the request could "
        "not be acted upon as understood. Anything after `--` is the argv of the command runtime "
        f"for the agents it creates. With --json each line is one JSON document, the intent first. "
        f"Requests it acts on: {EXAMPLES}.",
    )
    do.add_argument("text", type=non_empty, help="the request, in plain words")
    do.add_argument(
        "--watch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="follow what it starts until it ends (default: yes)",
    )
    do.add_argument("--dry-run", action="store_true", help="show what would be done, and do nothing")
    do.add_argument(
        "--parser", choices=("deterministic", "llm"), help="intent parser (default: the server's)"
    )
    takes_argv(do)
