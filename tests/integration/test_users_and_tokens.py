"""Users and tokens through the gateway: admins manage users and user teams; a user logs in
(argon2id password) and gets a JWT access token and a one-use refresh token; expired, revoked and
replayed tokens are refused with a clear 401; a disabled user's tokens and keys stop working; API
keys belong to users and may not exceed their role."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import jwt
import pytest

from godel.v1 import agent_service_pb2, agent_service_pb2_grpc
from tests.conftest import RunningMesh
from tests.integration.auth_helpers import PASSWORD, bearer, create_user, login, user_key, wait_refused


def whoami(godel: RunningMesh, headers: dict[str, str]) -> httpx.Response:
    with httpx.Client(base_url=godel.rest, headers=headers, timeout=15) as http:
        return http.get("/api/v1/auth/whoami")


def test_admins_create_users_and_bad_input_changes_nothing(godel: RunningMesh) -> None:
    name = f"carol-{uuid.uuid4().hex[:6]}"
    with godel.http() as admin:
        bad = admin.post(
            "/api/v1/auth/users", json={"username": "Carol Smith", "password": "short", "role": "boss"}
        )
        assert bad.status_code == 400
        fields = {v["field"] for d in bad.json()["details"] for v in d.get("fieldViolations", [])}
        assert fields == {"username", "password", "role"}
        made = admin.post(
            "/api/v1/auth/users", json={"username": name, "password": PASSWORD, "displayName": "Carol"}
        )
        assert made.status_code == 200, made.text
        user = made.json()
        assert user["role"] == "developer" and user["displayName"] == "Carol"
        assert "password" not in user and PASSWORD not in made.text
        again = admin.post("/api/v1/auth/users", json={"username": name, "password": PASSWORD})
        assert again.status_code == 409
        listed = admin.get("/api/v1/auth/users", params={"username": name}).json()["users"]
        assert [u["id"] for u in listed] == [user["id"]]
    dev = user_key(godel, user["id"], "developer")
    with godel.http(dev) as http:
        denied = http.post("/api/v1/auth/users", json={"username": "x" + name, "password": PASSWORD})
        assert denied.status_code == 403
        assert http.get("/api/v1/auth/users").status_code == 403


def test_login_then_the_access_token_works_everywhere(godel: RunningMesh) -> None:
    user = create_user(godel, "viewer")
    with httpx.Client(base_url=godel.rest, timeout=15) as anon:
        wrong = anon.post(
            "/api/v1/auth/login", json={"username": user["username"], "password": "not it at all!"}
        )
        assert wrong.status_code == 401 and wrong.json()["message"] == "wrong username or password"
        nobody = anon.post("/api/v1/auth/login", json={"username": "no-such-user", "password": PASSWORD})
        assert nobody.status_code == 401 and nobody.json()["message"] == "wrong username or password"
        answer = anon.post("/api/v1/auth/login", json={"username": user["username"], "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    assert tokens["refreshToken"].startswith("godel_rt_")
    assert tokens["user"]["username"] == user["username"]
    expires = datetime.fromisoformat(tokens["expiresAt"].replace("Z", "+00:00"))
    assert timedelta(minutes=1) < expires - datetime.now(UTC) <= timedelta(minutes=16)
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"godel_token={tokens['accessToken']};") and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie

    access = bearer(tokens["accessToken"])
    me = whoami(godel, access).json()
    assert (me["username"], me["role"], me["userId"]) == (user["username"], "viewer", user["id"])
    assert me["sessionId"] and "keyId" not in me
    with httpx.Client(base_url=godel.rest, headers=access, timeout=15) as http:
        assert http.get("/api/v1/agents").status_code == 200  # agent service
        assert http.get("/api/v1/events", params={"pageSize": 1}).status_code == 200  # event service
        assert http.get("/api/v1/teams").status_code == 200  # team service
        assert http.post("/api/v1/agents", json={"task": "no"}).status_code == 403  # a viewer
    # Native gRPC through the gateway takes the same token.
    with godel.channel() as channel:
        stub = agent_service_pb2_grpc.AgentServiceStub(channel)
        stub.ListAgents(
            agent_service_pb2.ListAgentsRequest(page_size=1), metadata=list(access.items()), timeout=15
        )


def _forge(godel: RunningMesh, access_token: str, **claims: Any) -> str:
    """A token signed like the cluster service signs, with some claims changed."""
    secret = (godel.mesh.home / "jwt.secret").read_text().strip()
    payload = jwt.decode(access_token, options={"verify_signature": False})
    return jwt.encode({**payload, **claims}, secret, algorithm="HS256")


def test_an_expired_access_token_gets_401_with_a_clear_message(godel: RunningMesh) -> None:
    user = create_user(godel, "developer")
    tokens = login(godel, user["username"])
    past = int((datetime.now(UTC) - timedelta(seconds=30)).timestamp())
    expired = _forge(godel, tokens["accessToken"], exp=past, iat=past - 900)
    answer = whoami(godel, bearer(expired))
    assert answer.status_code == 401
    with httpx.Client(base_url=godel.rest, headers=bearer(expired), timeout=15) as http:
        refused = http.get("/api/v1/agents")
    assert refused.status_code == 401
    assert refused.json()["message"].startswith("access token expired: get a new one with your refresh token")
    with godel.channel() as channel, pytest.raises(grpc.RpcError) as failed:
        agent_service_pb2_grpc.AgentServiceStub(channel).ListAgents(
            agent_service_pb2.ListAgentsRequest(),
            metadata=[("authorization", f"Bearer {expired}")],
            timeout=15,
        )
    assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "access token expired" in (failed.value.details() or "")
    # A token signed with another secret, or tampered with, is refused too.
    other = jwt.encode(jwt.decode(tokens["accessToken"], options={"verify_signature": False}), "x" * 64)
    assert whoami(godel, bearer(other)).status_code == 401
    assert whoami(godel, bearer(tokens["accessToken"])).status_code == 200


def test_refresh_rotates_and_a_replayed_refresh_token_ends_the_session(godel: RunningMesh) -> None:
    user = create_user(godel, "developer")
    first = login(godel, user["username"])
    with httpx.Client(base_url=godel.rest, timeout=15) as anon:
        renewed = anon.post("/api/v1/auth/refresh", json={"refreshToken": first["refreshToken"]})
        assert renewed.status_code == 200, renewed.text
        second = renewed.json()
        assert second["refreshToken"] != first["refreshToken"]
        assert second["accessToken"] != first["accessToken"]
        assert whoami(godel, bearer(second["accessToken"])).json()["username"] == user["username"]
        # The first refresh token was used: presenting it again is a replay.
        replay = anon.post("/api/v1/auth/refresh", json={"refreshToken": first["refreshToken"]})
        assert replay.status_code == 401
        assert "already used" in replay.json()["message"]
        # ... which ended the session: the newer tokens stop working too.
        assert (
            anon.post("/api/v1/auth/refresh", json={"refreshToken": second["refreshToken"]}).status_code
            == 401
        )
    refused = wait_refused(godel, bearer(second["accessToken"]))
    assert "session was ended" in refused.json()["message"]
    with httpx.Client(base_url=godel.rest, timeout=15) as anon:
        bad = anon.post("/api/v1/auth/refresh", json={})
        assert bad.status_code == 400 and "refresh_token" in bad.text
        access_as_refresh = anon.post("/api/v1/auth/refresh", json={"refreshToken": second["accessToken"]})
        assert access_as_refresh.status_code == 401
    # A refresh token is not a credential.
    refresh_as_access = whoami(godel, bearer(second["refreshToken"]))
    assert refresh_as_access.status_code == 401 and "not a credential" in refresh_as_access.json()["message"]


def test_logout_revokes_the_refresh_token_and_its_access_tokens(godel: RunningMesh) -> None:
    user = create_user(godel, "developer")
    tokens = login(godel, user["username"])
    other = login(godel, user["username"])  # another session of the same user
    with httpx.Client(base_url=godel.rest, timeout=15) as anon:
        assert (
            anon.post("/api/v1/auth/logout", json={"refreshToken": tokens["refreshToken"]}).status_code == 200
        )
        again = anon.post("/api/v1/auth/logout", json={"refreshToken": tokens["refreshToken"]})
        assert again.status_code == 200  # ending an ended session changes nothing
        refused = anon.post("/api/v1/auth/refresh", json={"refreshToken": tokens["refreshToken"]})
    assert refused.status_code == 401
    assert refused.json()["message"].startswith("refresh token revoked")
    wait_refused(godel, bearer(tokens["accessToken"]))
    assert whoami(godel, bearer(other["accessToken"])).status_code == 200  # the other session lives


def test_a_disabled_user_loses_tokens_and_keys(godel: RunningMesh) -> None:
    user = create_user(godel, "developer")
    tokens = login(godel, user["username"])
    key = user_key(godel, user["id"], "viewer")
    assert whoami(godel, {"x-api-key": key}).json()["username"] == user["username"]
    with godel.http() as admin:
        disabled = admin.patch(
            f"/api/v1/auth/users/{user['id']}", params={"updateMask": "disabled"}, json={"disabled": True}
        )
        assert disabled.status_code == 200, disabled.text
        assert disabled.json()["disabled"] is True
        bad = admin.patch(f"/api/v1/auth/users/{user['id']}", params={"updateMask": "username"}, json={})
        assert bad.status_code == 400 and "update_mask" in bad.text
    wait_refused(godel, bearer(tokens["accessToken"]))
    refused = wait_refused(godel, {"x-api-key": key})
    assert "disabled" in refused.json()["message"]
    with httpx.Client(base_url=godel.rest, timeout=15) as anon:
        login_refused = anon.post(
            "/api/v1/auth/login", json={"username": user["username"], "password": PASSWORD}
        )
    assert login_refused.status_code == 401 and "disabled" in login_refused.json()["message"]
    with godel.http() as admin:
        enabled = admin.patch(
            f"/api/v1/auth/users/{user['id']}", params={"updateMask": "disabled"}, json={"disabled": False}
        )
        assert enabled.status_code == 200
    login(godel, user["username"])


def test_keys_belong_to_users_and_may_not_exceed_their_role(godel: RunningMesh) -> None:
    user = create_user(godel, "developer")
    with godel.http() as admin:
        too_much = admin.post("/api/v1/auth/keys", json={"name": "up", "role": "admin", "userId": user["id"]})
        assert too_much.status_code == 400 and "may not exceed the role" in too_much.text
        nobody = admin.post(
            "/api/v1/auth/keys", json={"name": "x", "role": "viewer", "userId": str(uuid.uuid4())}
        )
        assert nobody.status_code == 404
    key = user_key(godel, user["id"], "developer")
    me = whoami(godel, {"x-api-key": key}).json()
    assert (me["userId"], me["username"], me["role"]) == (user["id"], user["username"], "developer")


def test_user_teams_and_membership(godel: RunningMesh) -> None:
    ann, bob = create_user(godel, "developer"), create_user(godel, "viewer")
    name = f"platform-{uuid.uuid4().hex[:6]}"
    with godel.http() as admin:
        made = admin.post("/api/v1/auth/teams", json={"name": name, "memberIds": [ann["id"]]})
        assert made.status_code == 200, made.text
        team = made.json()
        assert team["memberIds"] == [ann["id"]]
        assert admin.post("/api/v1/auth/teams", json={"name": name}).status_code == 409
        missing = admin.post(
            "/api/v1/auth/teams", json={"name": name + "x", "memberIds": [str(uuid.uuid4())]}
        )
        assert missing.status_code == 404
        added = admin.post(f"/api/v1/auth/teams/{team['id']}/members", json={"userId": bob["id"]})
        assert sorted(added.json()["memberIds"]) == sorted([ann["id"], bob["id"]])
        listed = admin.get("/api/v1/auth/teams", params={"pageSize": 1000}).json()["teams"]
        assert any(t["id"] == team["id"] for t in listed)
        users = admin.get("/api/v1/auth/users", params={"username": bob["username"]}).json()["users"]
        assert users[0]["teamIds"] == [team["id"]]
    tokens = login(godel, bob["username"])
    assert whoami(godel, bearer(tokens["accessToken"])).json()["teamIds"] == [team["id"]]
    with godel.http() as admin:
        removed = admin.delete(f"/api/v1/auth/teams/{team['id']}/members/{bob['id']}")
        assert removed.status_code == 200 and removed.json()["memberIds"] == [ann["id"]]
        assert admin.delete(f"/api/v1/auth/teams/{team['id']}/members/{bob['id']}").status_code == 404
    deadline = time.monotonic() + 10
    while whoami(godel, bearer(tokens["accessToken"])).json().get("teamIds"):
        assert time.monotonic() < deadline, "membership change not seen"
        time.sleep(0.2)


def test_logins_per_username_are_limited(godel: RunningMesh) -> None:
    user = create_user(godel, "viewer")
    answers: list[httpx.Response] = []
    with httpx.Client(base_url=godel.rest, timeout=15) as anon:
        for _ in range(12):
            answers.append(
                anon.post(
                    "/api/v1/auth/login", json={"username": user["username"], "password": "guess guess guess"}
                )
            )
    codes = [a.status_code for a in answers]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429], codes
    limited = answers[-1]
    assert int(limited.headers["retry-after"]) >= 1
    assert "too many logins" in limited.json()["message"]
    assert any(d.get("@type", "").endswith("google.rpc.RetryInfo") for d in limited.json()["details"])
