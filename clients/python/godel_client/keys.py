"""``client.keys``: API keys (AuthService)."""

from __future__ import annotations

from godel.v1 import auth_service_pb2
from godel_client.methods import Mode, SubClient, by_id, paged, unary


def _create(
    name: str,
    role: str = "developer",
    expires_in_days: int = 0,
    *,
    user_id: str = "",
    requests_per_second: int = 0,
) -> auth_service_pb2.CreateApiKeyRequest:
    """Creates an API key (of ``user_id``, default the caller's user; with its own rate limit when
    ``requests_per_second`` is set); the secret (``.secret``) is returned only this once."""
    return auth_service_pb2.CreateApiKeyRequest(
        name=name,
        role=role,
        expires_in_days=expires_in_days,
        user_id=user_id,
        requests_per_second=requests_per_second,
    )


def _list(page_size: int = 100) -> auth_service_pb2.ListApiKeysRequest:
    """Every API key (never a secret), fetched page by page."""
    return auth_service_pb2.ListApiKeysRequest(page_size=page_size)


class Keys(SubClient[Mode]):
    """The API keys of the mesh (an admin's business)."""

    SERVICE = auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"]

    create = unary("CreateApiKey", _create, auth_service_pb2.CreateApiKeyResponse)
    list = paged("ListApiKeys", _list, auth_service_pb2.ListApiKeysResponse, lambda page: page.api_keys)
    revoke = unary("RevokeApiKey", by_id(auth_service_pb2.RevokeApiKeyRequest), auth_service_pb2.ApiKey)
