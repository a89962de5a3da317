"""``client.users``: users and user teams, an admin's business (AuthService).

A user team is a group of people (permissions of scope ``team`` reach the objects of one's team
mates), not an agent team (``client.teams``).
"""

from __future__ import annotations

from google.protobuf import field_mask_pb2

from godel.v1 import auth_service_pb2
from godel_client.methods import Mode, SubClient, paged, unary


def _create(
    username: str, password: str, *, role: str = "developer", display_name: str = ""
) -> auth_service_pb2.CreateUserRequest:
    """Creates a user who logs in with ``password`` (stored as an argon2id hash)."""
    return auth_service_pb2.CreateUserRequest(
        username=username, password=password, role=role, display_name=display_name
    )


def _list(*, username: str = "", page_size: int = 100) -> auth_service_pb2.ListUsersRequest:
    """Every user (only ``username`` when given), fetched page by page."""
    return auth_service_pb2.ListUsersRequest(username=username, page_size=page_size)


def _update(user: auth_service_pb2.User, *fields: str) -> auth_service_pb2.UpdateUserRequest:
    """Sets ``fields`` (``display_name``, ``role``, ``disabled``, ``password``) of ``user`` (by its
    id); disabling a user ends their sessions and stops their keys."""
    return auth_service_pb2.UpdateUserRequest(user=user, update_mask=field_mask_pb2.FieldMask(paths=fields))


def _create_team(name: str, member_ids: list[str] | None = None) -> auth_service_pb2.CreateUserTeamRequest:
    """Creates a user team (of the users ``member_ids``)."""
    return auth_service_pb2.CreateUserTeamRequest(name=name, member_ids=member_ids or [])


def _list_teams(*, page_size: int = 100) -> auth_service_pb2.ListUserTeamsRequest:
    """Every user team, fetched page by page."""
    return auth_service_pb2.ListUserTeamsRequest(page_size=page_size)


def _add_member(team_id: str, user_id: str) -> auth_service_pb2.AddUserTeamMemberRequest:
    """Adds a user to a user team."""
    return auth_service_pb2.AddUserTeamMemberRequest(team_id=team_id, user_id=user_id)


def _remove_member(team_id: str, user_id: str) -> auth_service_pb2.RemoveUserTeamMemberRequest:
    """Removes a user from a user team."""
    return auth_service_pb2.RemoveUserTeamMemberRequest(team_id=team_id, user_id=user_id)


class Users(SubClient[Mode]):
    """The users of the mesh and their teams."""

    SERVICE = auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"]

    create = unary("CreateUser", _create, auth_service_pb2.User)
    list = paged("ListUsers", _list, auth_service_pb2.ListUsersResponse, lambda page: page.users)
    update = unary("UpdateUser", _update, auth_service_pb2.User)
    create_team = unary("CreateUserTeam", _create_team, auth_service_pb2.UserTeam)
    list_teams = paged(
        "ListUserTeams", _list_teams, auth_service_pb2.ListUserTeamsResponse, lambda page: page.teams
    )
    add_member = unary("AddUserTeamMember", _add_member, auth_service_pb2.UserTeam)
    remove_member = unary("RemoveUserTeamMember", _remove_member, auth_service_pb2.UserTeam)
