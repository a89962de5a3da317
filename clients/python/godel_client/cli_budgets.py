"""``godel budget``: spend limits for agents, teams, users and the organization."""

from __future__ import annotations

import argparse
from typing import Any

from godel.v1 import budget_service_pb2
from godel_client import formatting as fmt
from godel_client import render
from godel_client.cli_common import (
    command_parser,
    list_or_note,
    non_negative_float,
    out,
    page_size,
    positive_int,
    report_deleted,
    show,
    to_json,
)
from godel_client.client import GodelClient
from godel_client.enums import BUDGET_PERIOD_NAMES

# --option -> the budget entity type it names.
ENTITY_OPTIONS = (("agent", "ID"), ("team", "ID"), ("user", "ID"), ("org", "NAME"))


def _entity(args: argparse.Namespace) -> tuple[str, str] | tuple[None, None]:
    for option, _ in ENTITY_OPTIONS:
        value = getattr(args, option, None)
        if value:
            return option, value
    return None, None


def _set(client: GodelClient, args: argparse.Namespace) -> int:
    kind, entity_id = _entity(args)
    assert kind is not None and entity_id is not None  # the parser requires one
    budget = client.budgets.set(kind, entity_id, args.amount, currency=args.currency, period=args.period)
    if args.json:
        out(to_json(budget))
    else:
        total = fmt.money(budget.total_budget, budget.currency)
        out(
            f"budget {budget.id}: {render.budget_entity(budget)} may spend {total} ({render.budget_period(budget)})"
        )
    return 0


def _list(client: GodelClient, args: argparse.Namespace) -> int:
    kind, entity_id = _entity(args)
    budgets = client.budgets.list(entity_type=kind, entity_id=entity_id, page_size=page_size(args.limit))
    response = budget_service_pb2.ListBudgetsResponse()
    return list_or_note(args, "budgets", budgets, response, render.budgets_table, limit=args.limit)


def _get(client: GodelClient, args: argparse.Namespace) -> int:
    return show(args, client.budgets.get(args.id), render.budget_detail)


def _delete(client: GodelClient, args: argparse.Namespace) -> int:
    client.budgets.delete(args.id)
    return report_deleted(args, "budget")


def _entity_options(parser: argparse.ArgumentParser, *, required: bool, verb: str) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    for option, metavar in ENTITY_OPTIONS:
        what = (
            "the organization" if option == "org" else f"an {option}" if option == "agent" else f"a {option}"
        )
        group.add_argument(f"--{option}", metavar=metavar, help=f"{verb} {what}")


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    budget = commands.add_parser("budget", help="set and inspect spend limits")
    actions = budget.add_subparsers(dest="action", metavar="ACTION", required=True)

    setting = command_parser(
        actions,
        "set",
        _set,
        common,
        help="set (create or replace) the budget of one agent, team, user or the organization",
        usage="godel budget set (--agent ID | --team ID | --user ID | --org NAME) AMOUNT [options]",
    )
    _entity_options(setting, required=True, verb="the budget of")
    setting.add_argument("amount", metavar="AMOUNT", type=non_negative_float, help="the spend limit")
    setting.add_argument(
        "--period", choices=BUDGET_PERIOD_NAMES, help="how the budget renews (default: none)"
    )
    setting.add_argument("--currency", metavar="CODE", help="ISO 4217 code (default: USD)")

    listing = command_parser(actions, "list", _list, common, help="list budgets")
    _entity_options(listing, required=False, verb="only the budget of")
    listing.add_argument("--limit", metavar="N", type=positive_int, help="show at most N budgets")

    get = command_parser(actions, "get", _get, common, help="show one budget")
    get.add_argument("id", help="budget id")

    delete = command_parser(actions, "delete", _delete, common, help="delete a budget")
    delete.add_argument("id", help="budget id")
