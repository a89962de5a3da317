"""``godel workflow``: run DAG workflows from YAML/JSON files, follow their steps, control them."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from google.protobuf import json_format

from godel.v1 import workflow_pb2, workflow_service_pb2
from godel_client import formatting as fmt
from godel_client import render
from godel_client.cli_common import (
    command_parser,
    control,
    dump_line,
    file_text,
    json_object,
    list_options,
    list_or_note,
    out,
    page_size,
    report_deleted,
    to_json,
)
from godel_client.client import GodelClient
from godel_client.enums import WORKFLOW_STATUS_NAMES, step_ended
from godel_client.live import Live, bar, on_terminal
from godel_client.workflows import WorkflowProgress

POLL_INTERVAL = 0.5  # seconds between two looks at a watched workflow when no event stream is had
WATCH_HELP = "follow the steps until the workflow ends (exit 0 if it completed, else 1)"
_PENDING: tuple[int, str] = (workflow_pb2.STEP_STATUS_PENDING, "")


# -- following a workflow -------------------------------------------------------------------------


def _label_width(progress: WorkflowProgress) -> int:
    labels = [step.id for step in progress.workflow.definition.steps]
    labels += [render.step_label(step) for step in progress.steps]
    return max(map(len, labels), default=0)


def _json_progress(progress: WorkflowProgress) -> dict[str, Any]:
    return {
        "workflow": json_format.MessageToDict(progress.workflow),
        "steps": [json_format.MessageToDict(step) for step in progress.steps],
    }


def _all_steps(progress: WorkflowProgress) -> list[workflow_pb2.WorkflowStep]:
    """The steps that have run or run now, then the definition's steps not reached yet (pending)."""
    steps = list(progress.steps)
    reached = {step.step_id for step in steps}
    waiting = [step.id for step in progress.workflow.definition.steps if step.id not in reached]
    return steps + [
        workflow_pb2.WorkflowStep(step_id=step_id, status=workflow_pb2.STEP_STATUS_PENDING)
        for step_id in waiting
    ]


def progress_block(progress: WorkflowProgress, now: datetime | None = None) -> str:
    """What a terminal shows below the step lines while a workflow runs: a bar of the steps that
    ended, and the table of every step (pending ones too) with its status and duration."""
    steps = _all_steps(progress)
    ended = sum(1 for step in steps if step_ended(step))
    workflow = progress.workflow
    head = (
        f"workflow {fmt.short_id(workflow.id)} {workflow.name}  {render.workflow_status(workflow)}  "
        f"{bar(ended, len(steps))}  {ended}/{len(steps)} steps ended"
    )
    return f"{head}\n{render.steps_table(steps, now)}" if steps else head


def follow_workflow(client: GodelClient, workflow_id: str, *, as_json: bool) -> int:
    """Prints a line per step state change (NDJSON of each new look with --json) until the workflow
    ends, then a table of its steps. Exits 0 when it completed, else 1. On a terminal a progress
    bar and the live table of the steps stay below the lines while it runs."""
    seen: dict[str, tuple[int, str]] = {}
    last: WorkflowProgress | None = None
    with Live(on_terminal(as_json)) as live:
        for progress in client.workflows.watch(workflow_id, poll_interval=POLL_INTERVAL):
            last = progress
            if as_json:
                dump_line(_json_progress(progress))
                continue
            width = _label_width(progress)
            for step in progress.steps:
                key = step.id or step.step_id
                state = (int(step.status), step.agent_id)
                if state != seen.get(key, _PENDING):
                    live.line(render.step_line(step, width))
                seen[key] = state
            live.show(progress_block(progress))
    if last is None:  # the iterator always yields the first look; kept for the type checker
        return 1
    workflow = last.workflow
    if not as_json:
        out(render.workflow_summary(workflow))
        if last.steps:
            out(render.steps_table(last.steps))
    return 0 if workflow.status == workflow_pb2.WORKFLOW_STATUS_COMPLETED else 1


def run_workflow(
    client: GodelClient,
    definition_text: str,
    *,
    team_id: str | None,
    context: Mapping[str, Any] | None,
    watch: bool,
    as_json: bool,
) -> int:
    """Creates and starts a workflow from its YAML/JSON text; prints its id (or follows it)."""
    workflow = client.workflows.create(definition_text, team_id=team_id, context=context, start=True)
    return report_started(client, workflow, watch=watch, as_json=as_json)


def report_started(
    client: GodelClient, workflow: workflow_pb2.Workflow, *, watch: bool, as_json: bool
) -> int:
    """Prints a started workflow's id (JSON: the workflow), or with ``watch`` follows it."""
    if not watch:
        out(to_json(workflow) if as_json else workflow.id)
        return 0
    if not as_json:
        out(workflow.id)
    return follow_workflow(client, workflow.id, as_json=as_json)


# -- handlers -------------------------------------------------------------------------------------


def _run(client: GodelClient, args: argparse.Namespace) -> int:
    return run_workflow(
        client, args.definition, team_id=args.team, context=args.context, watch=args.watch, as_json=args.json
    )


def _start(client: GodelClient, args: argparse.Namespace) -> int:
    return report_started(client, client.workflows.start(args.id), watch=args.watch, as_json=args.json)


def _list(client: GodelClient, args: argparse.Namespace) -> int:
    workflows = client.workflows.list(status=args.status, team_id=args.team, page_size=page_size(args.limit))
    response = workflow_service_pb2.ListWorkflowsResponse()
    return list_or_note(args, "workflows", workflows, response, render.workflows_table, limit=args.limit)


def _get(client: GodelClient, args: argparse.Namespace) -> int:
    workflow = client.workflows.get(args.id)
    if not args.watch:
        out(to_json(workflow) if args.json else render.workflow_detail(workflow))
        return 0
    if not args.json:
        out(render.workflow_detail(workflow) + "\n")
    return follow_workflow(client, workflow.id, as_json=args.json)


def _steps(client: GodelClient, args: argparse.Namespace) -> int:
    return list_or_note(
        args,
        "steps",
        client.workflows.steps(args.id),
        workflow_service_pb2.ListWorkflowStepsResponse(),
        render.steps_table,
    )


def _workflow_state(workflow: workflow_pb2.Workflow) -> str:
    return f"{render.workflow_status(workflow)} ({workflow.progress}%)"


def _cancel(client: GodelClient, args: argparse.Namespace) -> int:
    return control(
        args,
        "workflow",
        "cancelled",
        lambda: client.workflows.cancel(args.id, reason=args.reason),
        _workflow_state,
    )


def _pause(client: GodelClient, args: argparse.Namespace) -> int:
    return control(args, "workflow", "paused", lambda: client.workflows.pause(args.id), _workflow_state)


def _resume(client: GodelClient, args: argparse.Namespace) -> int:
    return control(args, "workflow", "resumed", lambda: client.workflows.resume(args.id), _workflow_state)


def _delete(client: GodelClient, args: argparse.Namespace) -> int:
    client.workflows.delete(args.id)
    return report_deleted(args, "workflow")


# -- parser ---------------------------------------------------------------------------------------


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    workflow = commands.add_parser("workflow", help="run DAG workflows and follow or control their steps")
    actions = workflow.add_subparsers(dest="action", metavar="ACTION", required=True)

    run = command_parser(
        actions,
        "run",
        _run,
        common,
        help="create and start a workflow from a YAML or JSON file and print its id",
        epilog="With --watch a line is printed per step state change, then a table of the steps with "
        "their status, duration and the head of their output: exit 0 when the workflow completed, "
        "1 when it failed or was cancelled. FILE `-` reads standard input.",
    )
    run.add_argument("definition", metavar="FILE", type=file_text, help="workflow definition (YAML or JSON)")
    run.add_argument("--team", metavar="ID", help="team whose agents run the steps")
    run.add_argument(
        "--context", metavar="JSON", type=json_object, help="input document of the workflow (a JSON object)"
    )
    run.add_argument("--watch", action="store_true", help=f"then {WATCH_HELP}")

    listing = command_parser(actions, "list", _list, common, help="list workflows")
    list_options(listing, "workflows", WORKFLOW_STATUS_NAMES)
    listing.add_argument("--team", metavar="ID", help="only workflows of this team")

    get = command_parser(actions, "get", _get, common, help="show one workflow")
    get.add_argument("id", help="workflow id")
    get.add_argument("--watch", action="store_true", help=f"then {WATCH_HELP}")

    start = command_parser(actions, "start", _start, common, help="start a created workflow")
    start.add_argument("id", help="workflow id")
    start.add_argument("--watch", action="store_true", help=f"then {WATCH_HELP}")

    steps = command_parser(actions, "steps", _steps, common, help="list the state of a workflow's steps")
    steps.add_argument("id", help="workflow id")

    cancel = command_parser(
        actions, "cancel", _cancel, common, help="cancel a workflow (its running steps' agents are stopped)"
    )
    cancel.add_argument("id", help="workflow id")
    cancel.add_argument("--reason", metavar="R", help="why")

    for verb, handler, text in (
        ("pause", _pause, "pause a running workflow"),
        ("resume", _resume, "resume a paused workflow"),
    ):
        command_parser(actions, verb, handler, common, help=text).add_argument("id", help="workflow id")

    delete = command_parser(actions, "delete", _delete, common, help="delete a workflow")
    delete.add_argument("id", help="workflow id")
