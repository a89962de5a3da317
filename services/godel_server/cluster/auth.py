"""AuthService: API keys (created by admins, stored hashed) and credential verification for the
other services."""

from __future__ import annotations

import grpc
from sqlalchemy import select

from godel.v1 import auth_service_pb2, auth_service_pb2_grpc
from godel_server.cluster.keys import LocalKeyVerifier, create_key
from godel_server.cluster.models import ApiKeyRow
from godel_server.runtime.apikeys import ROLES
from godel_server.runtime.context import current_caller
from godel_server.runtime.db import Database
from godel_server.runtime.errors import AuthenticationError, NotFoundError, PermissionDeniedError
from godel_server.runtime.events import set_times
from godel_server.runtime.pagination import decode_token, page_size, query_fingerprint, split_page
from godel_server.runtime.validation import Violations


def key_to_proto(row: ApiKeyRow) -> auth_service_pb2.ApiKey:
    key = auth_service_pb2.ApiKey(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        role=row.role,
        permissions=ROLES.get(row.role, ()),
        user_id=row.user_id,
        revoked=row.revoked,
    )
    set_times(key, created_at=row.created_at, expires_at=row.expires_at, last_used_at=row.last_used_at)
    return key


def _require_admin() -> None:
    caller = current_caller()
    if caller is None or caller.role != "admin":
        raise PermissionDeniedError("managing API keys needs an admin key")


class AuthServicer(auth_service_pb2_grpc.AuthServiceServicer):
    def __init__(self, db: Database, verifier: LocalKeyVerifier) -> None:
        self._db = db
        self._verifier = verifier

    async def CreateApiKey(
        self, request: auth_service_pb2.CreateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.CreateApiKeyResponse:
        v = Violations()
        v.require("name", request.name, max_len=255)
        if request.role and request.role not in ROLES:
            v.add("role", f"must be one of {', '.join(ROLES)}")
        if request.expires_in_days < 0:
            v.add("expires_in_days", "must not be negative")
        v.raise_if_any()
        _require_admin()
        async with self._db.session() as session:
            row, secret = await create_key(
                session,
                name=request.name,
                role=request.role or "developer",
                user_id=request.user_id,
                expires_in_days=request.expires_in_days,
            )
            key = key_to_proto(row)
        return auth_service_pb2.CreateApiKeyResponse(api_key=key, secret=secret)

    async def ListApiKeys(
        self, request: auth_service_pb2.ListApiKeysRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.ListApiKeysResponse:
        _require_admin()
        size = page_size(request.page_size)
        fingerprint = query_fingerprint("api_keys")
        cursor = decode_token(request.page_token, fingerprint)
        stmt = select(ApiKeyRow).order_by(ApiKeyRow.id).limit(size + 1)
        if cursor:
            stmt = stmt.where(ApiKeyRow.id > str(cursor.get("id", "")))
        async with self._db.reader() as session:
            rows = list((await session.scalars(stmt)).all())
        page, token = split_page(rows, size, lambda r: {"id": r.id}, fingerprint)
        return auth_service_pb2.ListApiKeysResponse(
            api_keys=[key_to_proto(r) for r in page], next_page_token=token
        )

    async def RevokeApiKey(
        self, request: auth_service_pb2.RevokeApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.ApiKey:
        v = Violations()
        v.require("id", request.id)
        v.raise_if_any()
        _require_admin()
        async with self._db.session() as session:
            row = await session.get(ApiKeyRow, request.id)
            if row is None:
                raise NotFoundError("api key", request.id)
            row.revoked = True
            return key_to_proto(row)

    async def Authenticate(
        self, request: auth_service_pb2.AuthenticateRequest, context: grpc.aio.ServicerContext
    ) -> auth_service_pb2.AuthenticateResponse:
        caller = await self._verifier.verify(request.credential) if request.credential else current_caller()
        if caller is None:
            raise AuthenticationError("no credentials given")
        return auth_service_pb2.AuthenticateResponse(
            user_id=caller.user_id,
            key_id=caller.key_id,
            role=caller.role,
            permissions=list(caller.permissions),
        )
