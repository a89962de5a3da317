"""Helpers of the identity tests: users made through the API, logins, bearer headers, waiting for
a credential to be refused, and a raw worker connection (WorkerService.Connect)."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx

from godel.v1 import worker_service_pb2 as wpb
from godel.v1 import worker_service_pb2_grpc
from tests.conftest import RunningMesh

PASSWORD = "correct horse battery staple"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def create_user(godel: RunningMesh, role: str = "developer", *, password: str = PASSWORD) -> dict[str, Any]:
    """A new user (through the API, as an admin); returns the User as JSON."""
    username = f"{role}-{uuid.uuid4().hex[:8]}"
    with godel.http() as admin:
        made = admin.post(
            "/api/v1/auth/users", json={"username": username, "password": password, "role": role}
        )
    assert made.status_code == 200, made.text
    user: dict[str, Any] = made.json()
    return user


def login(godel: RunningMesh, username: str, password: str = PASSWORD) -> dict[str, Any]:
    with httpx.Client(base_url=godel.rest, timeout=15) as anon:
        answer = anon.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    tokens: dict[str, Any] = answer.json()
    return tokens


def user_key(godel: RunningMesh, user_id: str, role: str, **extra: Any) -> str:
    """An API key of a user (made by an admin); returns its secret."""
    with godel.http() as admin:
        made = admin.post(
            "/api/v1/auth/keys",
            json={"name": f"key-{uuid.uuid4().hex[:6]}", "role": role, "userId": user_id, **extra},
        )
    assert made.status_code == 200, made.text
    return str(made.json()["secret"])


def user_team(godel: RunningMesh, *user_ids: str) -> str:
    """A new user team of these users (made by an admin); returns its id."""
    with godel.http() as admin:
        made = admin.post(
            "/api/v1/auth/teams", json={"name": f"team-{uuid.uuid4().hex[:8]}", "memberIds": list(user_ids)}
        )
    assert made.status_code == 200, made.text
    return str(made.json()["id"])


@dataclass(frozen=True)
class Person:
    """A user (as JSON) and an API key of theirs."""

    user: dict[str, Any]
    key: str

    @property
    def id(self) -> str:
        return str(self.user["id"])


def person(godel: RunningMesh, role: str) -> Person:
    user = create_user(godel, role)
    return Person(user, user_key(godel, user["id"], role))


def team_of(godel: RunningMesh, *members: Person) -> str:
    """A new user team of these people; returns its id."""
    return user_team(godel, *(m.id for m in members))


def revoke(godel: RunningMesh, secret: str) -> None:
    """Revokes the key whose secret this is (as an admin)."""
    with godel.http() as admin:
        keys = admin.get("/api/v1/auth/keys", params={"pageSize": 1000}).json()["apiKeys"]
        (key,) = [k for k in keys if secret.startswith(k["prefix"]) and not k.get("revoked")]
        assert admin.post(f"/api/v1/auth/keys/{key['id']}/revoke", json={}).status_code == 200


def wait_refused(godel: RunningMesh, headers: dict[str, str], timeout: float = 10.0) -> httpx.Response:
    """Polls GET /api/v1/agents with `headers` until it answers 401 (the services cache verified
    credentials for GODEL_AUTH_CACHE_SECONDS); returns that answer."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=godel.rest, headers=headers, timeout=15) as http:
        while True:
            answer = http.get("/api/v1/agents", params={"pageSize": 1})
            if answer.status_code == 401:
                return answer
            assert answer.status_code == 200, answer.text
            assert time.monotonic() < deadline, "the credential is still accepted"
            time.sleep(0.2)


@dataclass
class RawWorker:
    """A worker's Connect stream driven by hand: send ConnectRequests, read what the replica sends."""

    address: str
    key: str
    worker_id: str = field(default_factory=lambda: f"raw-{uuid.uuid4().hex[:8]}")
    received: queue.Queue[Any] = field(default_factory=queue.Queue)
    _outgoing: queue.Queue[wpb.ConnectRequest | None] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        self._channel = grpc.insecure_channel(self.address)
        stub = worker_service_pb2_grpc.WorkerServiceStub(self._channel)
        self.send(
            wpb.ConnectRequest(hello=wpb.WorkerHello(worker_id=self.worker_id, capacity=1, runtimes=["raw"]))
        )
        self.call = stub.Connect(self._requests(), metadata=(("x-api-key", self.key),))
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _requests(self) -> Iterator[wpb.ConnectRequest]:
        while (message := self._outgoing.get()) is not None:
            yield message

    def _read(self) -> None:
        try:
            for message in self.call:
                self.received.put(message)
            self.received.put(("end", grpc.StatusCode.OK, ""))
        except grpc.RpcError as exc:
            self.received.put(("end", exc.code(), exc.details()))

    def send(self, message: wpb.ConnectRequest) -> None:
        self._outgoing.put(message)

    def next(self, timeout: float = 15.0) -> Any:
        return self.received.get(timeout=timeout)

    def until(self, predicate: Callable[[Any], bool], timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            item = self.next(max(0.01, deadline - time.monotonic()))
            if predicate(item):
                return item

    def close(self) -> None:
        self._outgoing.put(None)
        self.call.cancel()
        self._channel.close()


def is_end(item: Any) -> bool:
    return isinstance(item, tuple) and item[0] == "end"
