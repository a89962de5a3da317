"""``godel dead-letters``: what the services quarantined, retried or discarded by an operator."""

from __future__ import annotations

import argparse
from typing import Any

from godel.v1 import dead_letter_pb2
from godel_client import render
from godel_client.cli_common import command_parser, list_or_note, out, page_size, positive_int
from godel_client.client import GodelClient
from godel_client.dead_letters import SERVICES


def _list(client: GodelClient, args: argparse.Namespace) -> int:
    services = [args.service] if args.service else list(SERVICES)
    letters = (
        letter
        for service in services
        for letter in client.dead_letters.of(service).list(
            source=args.source or "", page_size=page_size(args.limit)
        )
    )
    response = dead_letter_pb2.ListDeadLettersResponse()
    return list_or_note(args, "dead_letters", letters, response, render.dead_letters_table, limit=args.limit)


def _retry(client: GodelClient, args: argparse.Namespace) -> int:
    client.dead_letters.of(args.service).retry(args.id)
    out(f"dead letter {args.id} of the {args.service} service went through and is removed")
    return 0


def _delete(client: GodelClient, args: argparse.Namespace) -> int:
    client.dead_letters.of(args.service).delete(args.id)
    out(f"deleted dead letter {args.id} of the {args.service} service")
    return 0


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    area = commands.add_parser(
        "dead-letters", help="records the services quarantined: list, retry or delete them (operators)"
    )
    actions = area.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = command_parser(actions, "list", _list, common, help="list dead letters, oldest first")
    listing.add_argument("--service", choices=SERVICES, help="only this service's (default: every service)")
    listing.add_argument("--source", metavar="SOURCE", help='only "outbox" or this consumer group')
    listing.add_argument("--limit", metavar="N", type=positive_int, help="show at most N dead letters")

    for name, handler, text in (
        ("retry", _retry, "send or handle a dead letter again (removed when it goes through)"),
        ("delete", _delete, "discard a dead letter"),
    ):
        parser = command_parser(actions, name, handler, common, help=text)
        parser.add_argument("service", choices=SERVICES, help="the service that keeps it")
        parser.add_argument("id", type=positive_int, help="its id (godel dead-letters list)")
