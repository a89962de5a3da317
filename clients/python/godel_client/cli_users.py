"""``godel login|logout|whoami`` and ``godel users``: log in with a password (the session is kept
beside the config file, per profile and address, see sessions.py), see who the credential is, and
(admins) manage users and user teams.

``login`` and ``logout`` are local commands: they open their own connection, and their calls carry
no credential of the client's (the password and the refresh token are the credentials)."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import sys
from typing import Any

from godel.v1 import auth_service_pb2
from godel_client import formatting as fmt
from godel_client.cli_common import (
    command_parser,
    connection_options,
    dump,
    list_or_note,
    local_parser,
    note,
    out,
    to_json,
)
from godel_client.client import GodelClient
from godel_client.credentials import Target, resolve
from godel_client.errors import AuthError, ConfigError, NotFoundError
from godel_client.sessions import SessionStore, StoredSession, endpoint
from godel_client.table import render_pairs, render_table

USER_ROLES = ("viewer", "developer", "operator", "admin")


def _password(args: argparse.Namespace, *, confirm: bool = False) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise ConfigError("no terminal to ask for the password: pass --password-stdin")
    password = getpass.getpass("password: ")
    if confirm and getpass.getpass("again: ") != password:
        raise ConfigError("the passwords differ")
    return password


def _where(target: Target) -> tuple[str, str]:
    """The profile and the session key (address) of a connection."""
    return target.profile, endpoint(target.address, target.tls is not None)


def _login(args: argparse.Namespace) -> int:
    username = args.username or input("username: ").strip()
    password = _password(args)
    store = SessionStore.default()
    with GodelClient(**connection_options(args)) as client:
        response = client.auth.login(username, password)
        profile, at = _where(client.connection.target)
        with store.locked():
            replaced = store.get(profile, at)
            store.put(profile, at, StoredSession.from_login(response))
        if replaced is not None:  # the session this one replaces ends on the server too
            with contextlib.suppress(AuthError):
                client.auth.logout(replaced.refresh_token)
    user = response.user
    if args.json:
        dump({"username": user.username, "role": user.role, "address": at, "profile": profile})
    else:
        out(
            f"logged in to {at} as {user.username} ({user.role}); "
            f"the session lasts until {fmt.timestamp(response.refresh_expires_at)}"
        )
        note(f"tokens kept in {store.path} for profile {profile} (mode 600); `godel logout` ends the session")
    used = resolve(**connection_options(args))
    if used.session is None:
        note(f"note: the credential of {used.credential_from} comes before this session")
    return 0


def _logout(args: argparse.Namespace) -> int:
    store = SessionStore.default()
    with GodelClient(**connection_options(args)) as client:
        profile, at = _where(client.connection.target)
        session = store.get(profile, at)
        if session is None:
            note(f"not logged in to {at} (profile {profile})")
            return 0
        # An ended session (expired, revoked) is refused: forgetting it is all that is left to do.
        with contextlib.suppress(AuthError):
            client.auth.logout(session.refresh_token)
    with store.locked():
        store.remove(profile, at)
    out(f"logged out of {at} ({session.username})")
    return 0


def _whoami(client: GodelClient, args: argparse.Namespace) -> int:
    me = client.auth.whoami()
    if args.json:
        out(to_json(me))
        return 0
    credential = f"API key {me.key_id}" if me.key_id else f"login session {me.session_id}"
    pairs = [
        ("user", me.username or me.user_id),
        ("user id", me.user_id),
        ("role", me.role),
        ("teams", ", ".join(me.team_ids) or fmt.EMPTY),
        ("credential", f"{credential} (from {client.connection.target.credential_from})"),
        ("expires", fmt.timestamp(me.expires_at) if me.HasField("expires_at") else "never"),
    ]
    out(render_pairs(pairs))
    return 0


def users_table(users: list[auth_service_pb2.User]) -> str:
    rows = [
        [
            u.id,
            u.username,
            u.role,
            "disabled" if u.disabled else "active",
            str(len(u.team_ids)),
            u.display_name,
        ]
        for u in users
    ]
    return render_table(["ID", "USERNAME", "ROLE", "STATE", "TEAMS", "NAME"], rows)


def teams_table(teams: list[auth_service_pb2.UserTeam]) -> str:
    return render_table(["ID", "NAME", "MEMBERS"], [[t.id, t.name, str(len(t.member_ids))] for t in teams])


def find_user(client: GodelClient, username: str) -> auth_service_pb2.User:
    """The user with this username (NOT_FOUND when there is none)."""
    for user in client.users.list(username=username, page_size=1):
        return user
    raise NotFoundError("NOT_FOUND", f"no user {username!r}")


def _find_team(client: GodelClient, name_or_id: str) -> auth_service_pb2.UserTeam:
    for team in client.users.list_teams(page_size=1000):
        if name_or_id in (team.id, team.name):
            return team
    raise NotFoundError("NOT_FOUND", f"no user team {name_or_id!r}")


def _user_create(client: GodelClient, args: argparse.Namespace) -> int:
    password = _password(args, confirm=True)
    user = client.users.create(args.username, password, role=args.role, display_name=args.display_name or "")
    out(to_json(user) if args.json else f"created user {user.username} ({user.role}): {user.id}")
    return 0


def _user_list(client: GodelClient, args: argparse.Namespace) -> int:
    return list_or_note(args, "users", client.users.list(), auth_service_pb2.ListUsersResponse(), users_table)


def _user_enable(client: GodelClient, args: argparse.Namespace) -> int:
    user = find_user(client, args.username)
    user.disabled = args.action == "disable"
    updated = client.users.update(user, "disabled")
    state = "disabled" if updated.disabled else "enabled"
    out(to_json(updated) if args.json else f"{state} user {updated.username}")
    return 0


def _team_create(client: GodelClient, args: argparse.Namespace) -> int:
    members = [find_user(client, name).id for name in args.member or ()]
    team = client.users.create_team(args.name, members)
    out(to_json(team) if args.json else f"created user team {team.name}: {team.id}")
    return 0


def _team_list(client: GodelClient, args: argparse.Namespace) -> int:
    return list_or_note(
        args, "teams", client.users.list_teams(), auth_service_pb2.ListUserTeamsResponse(), teams_table
    )


def _team_member(client: GodelClient, args: argparse.Namespace) -> int:
    team, user = _find_team(client, args.team), find_user(client, args.username)
    if args.member_action == "add":
        updated = client.users.add_member(team.id, user.id)
    else:
        updated = client.users.remove_member(team.id, user.id)
    done = "added" if args.member_action == "add" else "removed"
    out(
        to_json(updated)
        if args.json
        else f"{done} {user.username}: {team.name} has {len(updated.member_ids)} member(s)"
    )
    return 0


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    login = local_parser(
        commands,
        "login",
        _login,
        common,
        help="log in with a username and password; later commands use the session",
        epilog="The session (a short-lived access token, refreshed as needed, and a refresh token) is "
        "kept per profile and gateway address in sessions.json beside the config file (mode 600). An "
        "API key given with --api-key, GODEL_API_KEY or GODEL_CREDENTIALS_FILE still comes first.",
    )
    login.add_argument("username", nargs="?", help="who (asked when left out)")
    login.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    local_parser(
        commands, "logout", _logout, common, help="end the login session of this profile and address"
    )
    command_parser(commands, "whoami", _whoami, common, help="show the user, role and credential in use")

    users = commands.add_parser("users", help="manage users and user teams (admins)")
    actions = users.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = command_parser(
        actions, "create", _user_create, common, help="create a user (asks for a password)"
    )
    create.add_argument("username", help="lower-case letters, digits, '.', '_' or '-'")
    create.add_argument("--role", choices=USER_ROLES, default="developer", help="role (default: developer)")
    create.add_argument("--display-name", metavar="NAME", help="a human-readable name")
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    command_parser(actions, "list", _user_list, common, help="list users")
    for verb, text in (
        ("disable", "disable a user (ends their sessions; their keys stop working)"),
        ("enable", "enable a user again"),
    ):
        toggle = command_parser(actions, verb, _user_enable, common, help=text)
        toggle.add_argument("username")

    teams = actions.add_parser("teams", help="user teams: groups of users that share objects")
    team_actions = teams.add_subparsers(dest="team_action", metavar="ACTION", required=True)
    team_create = command_parser(team_actions, "create", _team_create, common, help="create a user team")
    team_create.add_argument("name")
    team_create.add_argument("--member", metavar="USERNAME", action="append", help="a member (repeatable)")
    command_parser(team_actions, "list", _team_list, common, help="list user teams")
    for verb in ("add", "remove"):
        member = command_parser(team_actions, verb, _team_member, common, help=f"{verb} a member")
        member.add_argument("team", help="team name or id")
        member.add_argument("username")
        member.set_defaults(member_action=verb)
