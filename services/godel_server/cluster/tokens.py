"""Access tokens and refresh tokens of login sessions.

An access token is a JWT (PyJWT, HS256) that names its user (`sub`) and session (`sid`) and
expires after GODEL_ACCESS_TOKEN_SECONDS. Only the cluster service holds the signing secret, and
the other services verify tokens through it (AuthService.Authenticate, cached for
GODEL_AUTH_CACHE_SECONDS) exactly like API keys: one place checks the signature, the expiry, and
that the session has not ended and the user is not disabled, so a logout or a disabled user
takes effect everywhere within seconds. A refresh token is opaque (`godel_rt_<random>`), stored
only as a hash, and used once.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt

from godel_server.runtime.config import ConfigError, Settings
from godel_server.runtime.errors import AuthenticationError

ISSUER = "godel"
AUDIENCE = "godel-api"
ALGORITHM = "HS256"
REFRESH_PREFIX = "godel_rt_"
MIN_SECRET_LENGTH = 32
MAX_TOKEN_LENGTH = 4096


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    session_id: str
    expires_at: datetime


class TokenSigner:
    """Issues and checks access tokens with one HS256 secret."""

    def __init__(self, secret: str, lifetime_seconds: int) -> None:
        if len(secret) < MIN_SECRET_LENGTH:
            raise ConfigError(f"the JWT secret must be at least {MIN_SECRET_LENGTH} characters")
        self._secret = secret
        self.lifetime = timedelta(seconds=lifetime_seconds)

    def __repr__(self) -> str:
        return f"TokenSigner(lifetime={self.lifetime})"

    def issue(self, user_id: str, session_id: str, now: datetime) -> tuple[str, datetime]:
        expires = int((now + self.lifetime).timestamp())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": user_id,
            "sid": session_id,
            "iat": int(now.timestamp()),
            "exp": expires,
            "jti": secrets.token_urlsafe(12),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), datetime.fromtimestamp(expires, UTC)

    def verify(self, token: str) -> AccessClaims:
        """The claims of a valid token; AuthenticationError saying why otherwise."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthenticationError("invalid access token")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "sid", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError(
                "access token expired: get a new one with your refresh token "
                "(POST /api/v1/auth/refresh, or `godel login` again)"
            ) from None
        except jwt.InvalidTokenError:
            raise AuthenticationError("invalid access token") from None
        return AccessClaims(
            user_id=str(claims["sub"]),
            session_id=str(claims["sid"]),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        )


def looks_like_jwt(value: str) -> bool:
    return value.count(".") == 2 and value.startswith("eyJ")


def new_refresh_token() -> str:
    return REFRESH_PREFIX + secrets.token_urlsafe(32)


def load_secret(settings: Settings) -> str:
    """GODEL_JWT_SECRET, else the secret file (created with a random secret, mode 600, when
    missing). Several cluster-service replicas must share it."""
    if settings.jwt_secret:
        return settings.jwt_secret
    path = settings.jwt_secret_file or settings.home / "jwt.secret"
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return _create_secret(path)
    except OSError as exc:
        raise ConfigError(f"cannot read the JWT secret file {path}: {exc.strerror}") from exc


def _create_secret(path: Path) -> str:
    secret = secrets.token_urlsafe(48)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another replica wrote it first
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secret + "\n")
    return secret
