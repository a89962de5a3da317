"""``godel alerts`` and ``godel autonomic``: the AlertManager (rules, alerts and their history,
silences, notification channels) and the autonomic loop (policies, recommendations)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from google.protobuf.message import Message

from godel.v1 import alert_pb2, alert_service_pb2, autonomic_service_pb2
from godel_client import render
from godel_client.cli_common import (
    command_parser,
    list_or_note,
    note,
    out,
    positive_float,
    positive_int,
    report_deleted,
    to_json,
)
from godel_client.client import GodelClient

ALERT_STATES = {"firing": alert_pb2.ALERT_STATE_FIRING, "resolved": alert_pb2.ALERT_STATE_RESOLVED}


def _matcher(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("must be LABEL=VALUE, e.g. alertname=QueueBacklog")
    return key, value


def _lister(
    key: str,
    items: Callable[[GodelClient, argparse.Namespace], Iterable[Message]],
    document: type[Message],
    table: Callable[[Any], str],
) -> Callable[[GodelClient, argparse.Namespace], int]:
    """A handler that prints a listing (``--limit``, ``--json``)."""

    def handler(client: GodelClient, args: argparse.Namespace) -> int:
        return list_or_note(args, key, items(client, args), document(), table, limit=args.limit)

    return handler


_rules = _lister(
    "rules", lambda c, _: c.alerts.rules(), alert_service_pb2.ListAlertRulesResponse, render.alert_rules_table
)
_list = _lister(
    "alerts",
    lambda c, a: c.alerts.list(states=[ALERT_STATES[s] for s in a.state or ()], rule_id=a.rule or ""),
    alert_service_pb2.ListAlertsResponse,
    render.alerts_table,
)
_silences = _lister(
    "silences",
    lambda c, a: c.alerts.silences(include_expired=a.all),
    alert_service_pb2.ListSilencesResponse,
    render.silences_table,
)
_channels = _lister(
    "channels",
    lambda c, _: c.alerts.channels(),
    alert_service_pb2.ListNotificationChannelsResponse,
    render.channels_table,
)
_policies = _lister(
    "policies",
    lambda c, _: c.autonomic.policies(),
    autonomic_service_pb2.ListPoliciesResponse,
    render.policies_table,
)


def _silence(client: GodelClient, args: argparse.Namespace) -> int:
    silence = client.alerts.silence(
        dict(args.matcher), timedelta(minutes=args.minutes), comment=args.comment or ""
    )
    out(to_json(silence) if args.json else silence.id)
    return 0


def _unsilence(client: GodelClient, args: argparse.Namespace) -> int:
    client.alerts.unsilence(args.id)
    if args.json:
        out(to_json(alert_service_pb2.DeleteSilenceResponse()))
    else:
        note(f"ended silence {args.id}")
    return 0


def _delete_rule(client: GodelClient, args: argparse.Namespace) -> int:
    client.alerts.delete_rule(args.id)
    return report_deleted(args, "alert rule")


def _recommendations(client: GodelClient, args: argparse.Namespace) -> int:
    response = client.autonomic.recommendations()
    if args.json:
        out(to_json(response))
    elif response.recommendations:
        out(render.recommendations_table(response))
    else:
        note("no recommendations: no enabled policy would act now")
    return 0


def _limit(parser: argparse.ArgumentParser, kind: str) -> None:
    parser.add_argument("--limit", metavar="N", type=positive_int, help=f"show at most N {kind}")


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    alerts = commands.add_parser("alerts", help="alert rules, alerts, silences and notification channels")
    actions = alerts.add_subparsers(dest="action", metavar="ACTION", required=True)
    _limit(command_parser(actions, "rules", _rules, common, help="list the alert rules"), "rules")
    listing = command_parser(actions, "list", _list, common, help="list alerts, newest first")
    listing.add_argument("--state", action="append", choices=sorted(ALERT_STATES), help="only these states")
    listing.add_argument("--rule", metavar="ID", help="only the alerts of this rule")
    _limit(listing, "alerts")
    delete = command_parser(actions, "delete-rule", _delete_rule, common, help="delete an alert rule")
    delete.add_argument("id", help="rule id or name")
    silences = command_parser(actions, "silences", _silences, common, help="list the silences")
    silences.add_argument("--all", action="store_true", help="also the silences that ended")
    _limit(silences, "silences")
    silence = command_parser(
        actions, "silence", _silence, common, help="silence the alerts whose labels match; prints its id"
    )
    silence.add_argument(
        "matcher",
        nargs="+",
        type=_matcher,
        help="LABEL=VALUE the alerts must have, e.g. alertname=QueueBacklog",
    )
    silence.add_argument("--minutes", type=positive_float, default=60.0, help="how long (default: 60)")
    silence.add_argument("--comment", help="why")
    unsilence = command_parser(actions, "unsilence", _unsilence, common, help="end a silence now")
    unsilence.add_argument("id", help="silence id")
    _limit(
        command_parser(actions, "channels", _channels, common, help="list the notification channels"),
        "channels",
    )

    autonomic = commands.add_parser("autonomic", help="the autonomic loop: policies and recommendations")
    loop = autonomic.add_subparsers(dest="action", metavar="ACTION", required=True)
    _limit(
        command_parser(loop, "policies", _policies, common, help="list the autonomic policies"), "policies"
    )
    command_parser(
        loop, "recommendations", _recommendations, common, help="what the policies would do now (dry run)"
    )
