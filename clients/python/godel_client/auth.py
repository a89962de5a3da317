"""``client.auth``: log in and out, refresh a login's tokens, and who the caller is (AuthService).

The CLI keeps what ``login`` returns (``godel login``, see :mod:`godel_client.sessions`), and a
client that uses the kept session refreshes it by itself; these methods are the calls as they are,
for a program that handles its tokens itself (``GodelClient(token=response.access_token)``).
Users and user teams are ``client.users``, API keys ``client.keys``.
"""

from __future__ import annotations

from godel.v1 import auth_service_pb2
from godel_client.methods import Mode, SubClient, unary


def _login(username: str, password: str) -> auth_service_pb2.LoginRequest:
    """Exchanges a username and password for an access token (a JWT, minutes) and a refresh token
    (days); sent without the client's credential."""
    return auth_service_pb2.LoginRequest(username=username, password=password)


def _refresh(refresh_token: str) -> auth_service_pb2.RefreshTokenRequest:
    """Exchanges a refresh token for a new pair; the old refresh token stops working (presenting it
    again ends the session)."""
    return auth_service_pb2.RefreshTokenRequest(refresh_token=refresh_token)


def _logout(refresh_token: str) -> auth_service_pb2.LogoutRequest:
    """Ends the session of a refresh token: it and the access tokens issued with it stop working."""
    return auth_service_pb2.LogoutRequest(refresh_token=refresh_token)


def _whoami() -> auth_service_pb2.AuthenticateRequest:
    """The identity behind this client's credential: user, role, teams, the key or session."""
    return auth_service_pb2.AuthenticateRequest()


class Auth(SubClient[Mode]):
    """Logins and the caller's identity."""

    SERVICE = auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"]

    login = unary("Login", _login, auth_service_pb2.LoginResponse, anonymous=True)
    refresh = unary("RefreshToken", _refresh, auth_service_pb2.LoginResponse, anonymous=True)
    logout = unary("Logout", _logout, auth_service_pb2.LogoutResponse, anonymous=True)
    whoami = unary("Authenticate", _whoami, auth_service_pb2.AuthenticateResponse)
