"""``godel keys``: create, list and revoke API keys (an admin's business)."""

from __future__ import annotations

import argparse
from typing import Any

from godel.v1 import auth_service_pb2
from godel_client import render
from godel_client.cli_common import (
    command_parser,
    list_or_note,
    non_negative_int,
    note,
    out,
    positive_int,
    to_json,
)
from godel_client.cli_users import find_user
from godel_client.client import GodelClient

ROLES = ("admin", "operator", "developer", "viewer")


def _create(client: GodelClient, args: argparse.Namespace) -> int:
    response = client.keys.create(
        args.name,
        role=args.role,
        expires_in_days=args.expires_days,
        user_id=find_user(client, args.user).id if args.user else "",
        requests_per_second=args.requests_per_second,
    )
    if args.json:
        out(to_json(response))
    else:
        note(f"created API key:\n{render.api_key(response.api_key)}\n")
        out(response.secret)
    note("warning: store this secret now — it is not shown again")
    return 0


def _list(client: GodelClient, args: argparse.Namespace) -> int:
    return list_or_note(
        args,
        "api_keys",
        client.keys.list(),
        auth_service_pb2.ListApiKeysResponse(),
        render.api_keys_table,
        limit=args.limit,
    )


def _revoke(client: GodelClient, args: argparse.Namespace) -> int:
    key = client.keys.revoke(args.id)
    out(to_json(key) if args.json else f"revoked API key {key.id} ({key.name})")
    return 0


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    keys = commands.add_parser("keys", help="manage API keys")
    actions = keys.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = command_parser(
        actions, "create", _create, common, help="create an API key and print its secret once"
    )
    create.add_argument("--name", required=True, help="what the key is for")
    create.add_argument("--role", choices=ROLES, default="developer", help="role (default: developer)")
    create.add_argument(
        "--expires-days", metavar="N", type=non_negative_int, default=0, help="days until expiry (0 = never)"
    )
    create.add_argument("--user", metavar="USERNAME", help="the user the key belongs to (default: you)")
    create.add_argument(
        "--requests-per-second",
        metavar="N",
        type=non_negative_int,
        default=0,
        help="the key's own rate limit (0 = the server's default)",
    )
    listing = command_parser(actions, "list", _list, common, help="list API keys (never their secrets)")
    listing.add_argument("--limit", metavar="N", type=positive_int, help="show at most N keys")
    revoke = command_parser(
        actions, "revoke", _revoke, common, help="revoke an API key: it stops working at once"
    )
    revoke.add_argument("id", help="key id (see `godel keys list`)")
