"""``godel task``: queue tasks for agents, assign and complete them."""

from __future__ import annotations

import argparse
from typing import Any

from godel.v1 import task_pb2, task_service_pb2
from godel_client import render
from godel_client.cli_common import (
    command_parser,
    json_object,
    list_options,
    list_or_note,
    non_empty,
    out,
    page_size,
    show,
    to_json,
)
from godel_client.client import GodelClient
from godel_client.enums import TASK_PRIORITY_NAMES, TASK_STATUS_NAMES


def _create(client: GodelClient, args: argparse.Namespace) -> int:
    task = client.tasks.create(
        args.title, description=args.description, priority=args.priority, team_id=args.team
    )
    return show(args, task, lambda created: created.id)


def _list(client: GodelClient, args: argparse.Namespace) -> int:
    tasks = client.tasks.list(
        status=args.status, team_id=args.team, agent_id=args.agent, page_size=page_size(args.limit)
    )
    response = task_service_pb2.ListTasksResponse()
    return list_or_note(args, "tasks", tasks, response, render.tasks_table, limit=args.limit)


def _get(client: GodelClient, args: argparse.Namespace) -> int:
    return show(args, client.tasks.get(args.id), render.task_detail)


def _assign(client: GodelClient, args: argparse.Namespace) -> int:
    task = client.tasks.assign(args.id, agent_id=args.agent)
    if args.json:
        out(to_json(task))
    else:
        agent = task.agent_id or args.agent or "an idle agent of its team"
        out(f"assigned task {task.id} to agent {agent}: now {render.task_status(task)}")
    return 0


def _complete(client: GodelClient, args: argparse.Namespace) -> int:
    task = client.tasks.complete(args.id, result=args.result, error=args.error)
    if args.json:
        out(to_json(task))
    else:
        done = "failed" if task.status == task_pb2.TASK_STATUS_FAILED else "completed"
        out(f"{done} task {task.id}: now {render.task_status(task)}")
    return 0


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    task = commands.add_parser("task", help="queue tasks for agents, assign and complete them")
    actions = task.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = command_parser(actions, "create", _create, common, help="queue a task and print its id")
    create.add_argument("title", type=non_empty, help="what is to be done, in one line")
    create.add_argument("--description", metavar="TEXT", help="the details")
    create.add_argument("--priority", choices=TASK_PRIORITY_NAMES, help="higher runs first (default: medium)")
    create.add_argument("--team", metavar="ID", help="team whose agents take the task")

    listing = command_parser(actions, "list", _list, common, help="list tasks, highest priority first")
    list_options(listing, "tasks", TASK_STATUS_NAMES)
    listing.add_argument("--team", metavar="ID", help="only tasks of this team")
    listing.add_argument("--agent", metavar="ID", help="only tasks assigned to this agent")

    get = command_parser(actions, "get", _get, common, help="show one task")
    get.add_argument("id", help="task id")

    assign = command_parser(actions, "assign", _assign, common, help="assign a task to an agent")
    assign.add_argument("id", help="task id")
    assign.add_argument("--agent", metavar="ID", help="the agent (default: an idle agent of the task's team)")

    complete = command_parser(
        actions, "complete", _complete, common, help="complete a task (with --error: fail it)"
    )
    complete.add_argument("id", help="task id")
    outcome = complete.add_mutually_exclusive_group()
    outcome.add_argument("--result", metavar="JSON", type=json_object, help="the result (a JSON object)")
    outcome.add_argument("--error", metavar="MSG", help="fail the task with this error")
