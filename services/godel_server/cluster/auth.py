"""AuthService: logins and tokens, users and user teams, API keys (created by admins, stored
hashed), and credential verification for the other services. Handlers check the request and map;
the rules live in users.py, sessions.py and keys.py."""

from __future__ import annotations

import grpc

from godel.v1 import auth_service_pb2, auth_service_pb2_grpc
from godel_server.cluster import passwords
from godel_server.cluster.identity import LocalVerifier
from godel_server.cluster.keys import create_key, list_keys, revoke_key
from godel_server.cluster.models import ApiKeyRow, UserRow
from godel_server.cluster.sessions import Sessions, Tokens
from godel_server.cluster.users import (
    MAX_DISPLAY_NAME,
    MAX_TEAM_MEMBERS_AT_ONCE,
    MAX_TEAM_NAME,
    add_member,
    apply_update,
    check_user_role,
    check_username,
    create_team,
    create_user,
    get_user,
    key_role_allowed,
    list_teams,
    list_users,
    members_of,
    remove_member,
    team_ids_of,
    team_to_proto,
    user_to_proto,
)
from godel_server.runtime.apikeys import ROLES
from godel_server.runtime.context import current_caller
from godel_server.runtime.db import Database
from godel_server.runtime.errors import AuthenticationError, NotFoundError, ValidationError
from godel_server.runtime.events import set_times, utcnow
from godel_server.runtime.interceptors import MISSING_CREDENTIALS, credential_from, metadata_dict
from godel_server.runtime.validation import Violations, check_id

MAX_REQUESTS_PER_SECOND = 100_000
COOKIE = "godel_token"
UPDATABLE_USER_FIELDS = ("display_name", "role", "disabled", "password")


def key_to_proto(row: ApiKeyRow) -> auth_service_pb2.ApiKey:
    key = auth_service_pb2.ApiKey(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        role=row.role,
        permissions=ROLES.get(row.role, ()),
        user_id=row.user_id,
        revoked=row.revoked,
        requests_per_second=row.requests_per_second,
    )
    set_times(key, created_at=row.created_at, expires_at=row.expires_at, last_used_at=row.last_used_at)
    return key


def tokens_to_proto(tokens: Tokens) -> auth_service_pb2.LoginResponse:
    response = auth_service_pb2.LoginResponse(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        user=user_to_proto(tokens.user, tokens.team_ids),
    )
    set_times(response, expires_at=tokens.access_expires_at, refresh_expires_at=tokens.refresh_expires_at)
    return response


def _session_cookie(tokens: Tokens) -> str:
    """The access token as an HttpOnly cookie, for browsers' WebSocket (/events checks its Origin)."""
    max_age = max(0, int((tokens.access_expires_at - utcnow()).total_seconds()))
    return f"{COOKIE}={tokens.access_token}; Path=/events; Max-Age={max_age}; HttpOnly; SameSite=Strict"


def _require_token(field: str, value: str) -> None:
    v = Violations()
    v.require(field, value, max_len=4096)
    v.raise_if_any()


class AuthServicer(auth_service_pb2_grpc.AuthServiceServicer):
    def __init__(self, db: Database, verifier: LocalVerifier, sessions: Sessions) -> None:
        self._db = db
        self._verifier = verifier
        self._sessions = sessions

    # -- API keys -------------------------------------------------------------------------------

    async def CreateApiKey(
        self, request: auth_service_pb2.CreateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.CreateApiKeyResponse:
        v = Violations()
        v.require("name", request.name, max_len=255)
        if request.role and request.role not in ROLES:
            v.add("role", f"must be one of {', '.join(ROLES)}")
        if request.expires_in_days < 0:
            v.add("expires_in_days", "must not be negative")
        if not 0 <= request.requests_per_second <= MAX_REQUESTS_PER_SECOND:
            v.add("requests_per_second", f"must be between 0 and {MAX_REQUESTS_PER_SECOND}")
        v.max_len("user_id", request.user_id, 100)
        v.raise_if_any()
        caller = current_caller()
        user_id = request.user_id or (caller.user_id if caller else "")
        role = request.role or "developer"
        async with self._db.session() as session:
            user = await session.get(UserRow, user_id) if user_id else None
            if request.user_id and user is None:
                raise NotFoundError("user", request.user_id)
            if user is not None and not key_role_allowed(user.role, role):
                raise ValidationError.single(
                    "role", f"may not exceed the role of user {user.username!r} ({user.role})"
                )
            row, secret = await create_key(
                session,
                name=request.name,
                role=role,
                user_id=user_id,
                expires_in_days=request.expires_in_days,
                requests_per_second=request.requests_per_second,
            )
            key = key_to_proto(row)
        return auth_service_pb2.CreateApiKeyResponse(api_key=key, secret=secret)

    async def ListApiKeys(
        self, request: auth_service_pb2.ListApiKeysRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.ListApiKeysResponse:
        async with self._db.reader() as session:
            rows, token = await list_keys(session, page_size=request.page_size, page_token=request.page_token)
        return auth_service_pb2.ListApiKeysResponse(
            api_keys=[key_to_proto(r) for r in rows], next_page_token=token
        )

    async def RevokeApiKey(
        self, request: auth_service_pb2.RevokeApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.ApiKey:
        v = Violations()
        v.require("id", request.id)
        v.raise_if_any()
        async with self._db.session() as session:
            return key_to_proto(await revoke_key(session, request.id))

    async def Authenticate(
        self, request: auth_service_pb2.AuthenticateRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.AuthenticateResponse:
        credential = request.credential or credential_from(metadata_dict(context.invocation_metadata()))
        if not credential:
            raise AuthenticationError(MISSING_CREDENTIALS)
        caller = await self._verifier.verify(credential)
        response = auth_service_pb2.AuthenticateResponse(
            user_id=caller.user_id,
            key_id=caller.key_id,
            role=caller.role,
            permissions=list(caller.permissions),
            username=caller.username,
            team_ids=list(caller.teams),
            session_id=caller.session_id,
            requests_per_second=caller.requests_per_second,
        )
        set_times(response, expires_at=caller.expires_at)
        return response

    # -- logins and tokens ---------------------------------------------------------------------

    async def Login(
        self, request: auth_service_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.LoginResponse:
        v = Violations()
        v.require("username", request.username, max_len=64)
        v.require("password", request.password, max_len=passwords.MAX_LENGTH)
        v.raise_if_any()
        tokens = await self._sessions.login(request.username, request.password)
        await context.send_initial_metadata((("set-cookie", _session_cookie(tokens)),))
        return tokens_to_proto(tokens)

    async def RefreshToken(
        self, request: auth_service_pb2.RefreshTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.LoginResponse:
        _require_token("refresh_token", request.refresh_token)
        tokens = await self._sessions.refresh(request.refresh_token)
        await context.send_initial_metadata((("set-cookie", _session_cookie(tokens)),))
        return tokens_to_proto(tokens)

    async def Logout(
        self, request: auth_service_pb2.LogoutRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.LogoutResponse:
        _require_token("refresh_token", request.refresh_token)
        await self._sessions.logout(request.refresh_token)
        return auth_service_pb2.LogoutResponse()

    # -- users ---------------------------------------------------------------------------------

    async def CreateUser(
        self, request: auth_service_pb2.CreateUserRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.User:
        v = Violations()
        check_username(v, "username", request.username)
        passwords.check_password(v, "password", request.password)
        if request.role:
            check_user_role(v, "role", request.role)
        v.max_len("display_name", request.display_name, MAX_DISPLAY_NAME)
        v.raise_if_any()
        password_hash = await passwords.hash_password(request.password)
        async with self._db.session() as session:
            row = await create_user(
                session,
                username=request.username,
                password_hash=password_hash,
                role=request.role or "developer",
                display_name=request.display_name,
            )
            return user_to_proto(row)

    async def ListUsers(
        self, request: auth_service_pb2.ListUsersRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.ListUsersResponse:
        async with self._db.reader() as session:
            page, token = await list_users(
                session, page_size=request.page_size, page_token=request.page_token, username=request.username
            )
            teams = await team_ids_of(session, [r.id for r in page])
        return auth_service_pb2.ListUsersResponse(
            users=[user_to_proto(r, teams[r.id]) for r in page], next_page_token=token
        )

    async def UpdateUser(
        self, request: auth_service_pb2.UpdateUserRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.User:
        user = request.user
        check_id("user.id", user.id)
        paths = list(request.update_mask.paths) or _populated(user)
        v = Violations()
        if not paths:
            v.add("update_mask", f"name the fields to update ({', '.join(UPDATABLE_USER_FIELDS)})")
        for path in paths:
            if path not in UPDATABLE_USER_FIELDS:
                v.add(
                    "update_mask",
                    f"{path!r} cannot be updated (updatable: {', '.join(UPDATABLE_USER_FIELDS)})",
                )
        if "role" in paths:
            check_user_role(v, "user.role", user.role)
        if "password" in paths:
            passwords.check_password(v, "user.password", user.password)
        v.max_len("user.display_name", user.display_name, MAX_DISPLAY_NAME)
        v.raise_if_any()
        password_hash = await passwords.hash_password(user.password) if "password" in paths else ""
        async with self._db.session() as session:
            row = await get_user(session, user.id, for_update=True)
            await apply_update(session, row, paths, user, password_hash)
            teams = await team_ids_of(session, [row.id])
            return user_to_proto(row, teams[row.id])

    # -- user teams ----------------------------------------------------------------------------

    async def CreateUserTeam(
        self, request: auth_service_pb2.CreateUserTeamRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.UserTeam:
        v = Violations()
        v.require("name", request.name, max_len=MAX_TEAM_NAME)
        if len(request.member_ids) > MAX_TEAM_MEMBERS_AT_ONCE:
            v.add("member_ids", f"at most {MAX_TEAM_MEMBERS_AT_ONCE} at once")
        for i, member in enumerate(request.member_ids[:MAX_TEAM_MEMBERS_AT_ONCE]):
            v.require(f"member_ids[{i}]", member)
            v.uuid(f"member_ids[{i}]", member)
        v.raise_if_any()
        async with self._db.session() as session:
            row = await create_team(session, request.name, list(request.member_ids))
            return team_to_proto(row, (await members_of(session, [row.id]))[row.id])

    async def ListUserTeams(
        self, request: auth_service_pb2.ListUserTeamsRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.ListUserTeamsResponse:
        async with self._db.reader() as session:
            page, token = await list_teams(
                session, page_size=request.page_size, page_token=request.page_token
            )
            members = await members_of(session, [r.id for r in page])
        return auth_service_pb2.ListUserTeamsResponse(
            teams=[team_to_proto(r, members[r.id]) for r in page], next_page_token=token
        )

    async def AddUserTeamMember(
        self, request: auth_service_pb2.AddUserTeamMemberRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.UserTeam:
        _check_membership(request.team_id, request.user_id)
        async with self._db.session() as session:
            row = await add_member(session, request.team_id, request.user_id)
            return team_to_proto(row, (await members_of(session, [row.id]))[row.id])

    async def RemoveUserTeamMember(
        self, request: auth_service_pb2.RemoveUserTeamMemberRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.UserTeam:
        _check_membership(request.team_id, request.user_id)
        async with self._db.session() as session:
            row = await remove_member(session, request.team_id, request.user_id)
            return team_to_proto(row, (await members_of(session, [row.id]))[row.id])


def _check_membership(team_id: str, user_id: str) -> None:
    v = Violations()
    for field, value in (("team_id", team_id), ("user_id", user_id)):
        v.require(field, value)
        v.uuid(field, value)
    v.raise_if_any()


def _populated(user: auth_service_pb2.User) -> list[str]:
    """The updatable fields set to something other than their default (AIP-134, no mask)."""
    return [name for name in UPDATABLE_USER_FIELDS if getattr(user, name) not in ("", False)]
