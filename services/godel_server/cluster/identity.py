"""Who is calling: the cluster service resolves every credential itself (the other services ask
it through AuthService.Authenticate). API keys are looked up by hash; access tokens are JWTs whose
session and user are checked too; refresh tokens are not credentials."""

from __future__ import annotations

from godel_server.cluster.keys import verify_key
from godel_server.cluster.sessions import Sessions
from godel_server.cluster.tokens import REFRESH_PREFIX, looks_like_jwt
from godel_server.runtime.apikeys import KEY_PREFIX
from godel_server.runtime.context import Caller
from godel_server.runtime.db import Database
from godel_server.runtime.errors import AuthenticationError

MAX_CREDENTIAL_LENGTH = 4096


class LocalVerifier:
    def __init__(self, db: Database, sessions: Sessions) -> None:
        self._db = db
        self._sessions = sessions

    async def verify(self, credential: str) -> Caller:
        if len(credential) > MAX_CREDENTIAL_LENGTH:
            raise AuthenticationError("invalid credential")
        if credential.startswith(KEY_PREFIX):
            return await verify_key(self._db, credential)
        if credential.startswith(REFRESH_PREFIX):
            raise AuthenticationError(
                "a refresh token is not a credential: exchange it for an access token "
                "(POST /api/v1/auth/refresh)"
            )
        if looks_like_jwt(credential):
            return await self._sessions.verify_access(credential, credential)
        raise AuthenticationError("invalid credential: expected an API key (godel_sk_...) or an access token")
