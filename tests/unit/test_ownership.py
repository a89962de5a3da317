"""Ownership scopes (spec §3.4, §6.2): every RPC of the contract, every role and the caller's
relation to the object (its own, its user team's, another team's) is allowed or refused as the
RPC's access option and the role's permissions say, through the same code the services run
(rbac.authorize, then ownership.check on an object with an owner). Lists are filtered by the
same reach, in SQL."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import TypeVar

import pytest
from sqlalchemy import Column, MetaData, String, Table, create_engine, insert, select

from godel.v1 import access_pb2
from godel_server.runtime.apikeys import ROLES
from godel_server.runtime.context import Caller, caller_var, method_var
from godel_server.runtime.errors import NotFoundError, PermissionDeniedError
from godel_server.runtime.ownership import Owner, Reach, check, creator
from godel_server.runtime.rbac import authorize, rule_for
from tests.contract import contract_methods

T = TypeVar("T")

ALICE, BOB, CAROL = "alice", "bob", "carol"
RED, BLUE = "team-red", "team-blue"
# The object under test is Alice's, shared with team red. Its caller is Alice herself, Bob (in
# team red) or Carol (in team blue): one per relation.
OBJECT = Owner(ALICE, RED)
CALLERS = {"own": (ALICE, (RED,)), "same team": (BOB, (RED,)), "other team": (CAROL, (BLUE,))}
# Which permission scopes reach an object of each relation (spec §6.2).
REACHING = {"own": {"own", "team", "all"}, "same team": {"team", "all"}, "other team": {"all"}}
SCOPE_ORDER = ("own", "team", "all")
SCOPE_NAME = {
    access_pb2.ACCESS_SCOPE_OWN: "own",
    access_pb2.ACCESS_SCOPE_TEAM: "team",
    access_pb2.ACCESS_SCOPE_ALL: "all",
}


def in_rpc(method: str, caller: Caller | None, fn: Callable[[], T]) -> T:
    """Runs `fn` as the services do while serving `method` for `caller`."""

    def run() -> T:
        method_var.set(method)
        caller_var.set(caller)
        return fn()

    return contextvars.copy_context().run(run)


def caller_of(role: str, relation: str) -> Caller:
    user, teams = CALLERS[relation]
    return Caller(key_id=f"key-{user}", user_id=user, role=role, permissions=ROLES[role], teams=teams)


def expected(role: str, option: access_pb2.Access, relation: str) -> bool:
    """Allowed by the contract: a permission of the role names the RPC's resource and action (or
    `*`), its scope is at least the RPC's, and, for an RPC on owned objects, reaches the object."""
    for permission in ROLES[role]:
        resource, action, scope = permission.split(":")
        if resource not in ("*", option.resource) or action not in ("*", option.action):
            continue
        if SCOPE_ORDER.index(scope) < SCOPE_ORDER.index(SCOPE_NAME[option.scope]):
            continue
        if option.scope != access_pb2.ACCESS_SCOPE_OWN or scope in REACHING[relation]:
            return True
    return False


def outcome(method: str, caller: Caller, owned: bool) -> str:
    """What the server does: "allow", "denied" (PERMISSION_DENIED) or "not found"."""

    def call() -> str:
        try:
            authorize(caller, method)
            if owned:
                check(OBJECT, NotFoundError("object", "x"))
        except PermissionDeniedError:
            return "denied"
        except NotFoundError:
            return "not found"
        return "allow"

    return in_rpc(method, caller, call)


MATRIX = [
    (path, role, relation) for path, _ in contract_methods() for role in sorted(ROLES) for relation in CALLERS
]


@pytest.mark.parametrize(("path", "role", "relation"), MATRIX)
def test_every_rpc_role_and_relation_is_decided_by_the_contract(path: str, role: str, relation: str) -> None:
    method = dict(contract_methods())[path]
    assert method.options.HasExtension(access_pb2.access), f"{path} declares no access rule"
    option = method.options.Extensions[access_pb2.access]
    assert rule_for(path) is not None, f"{path} is in the contract but the services load no rule for it"
    caller = caller_of(role, relation)
    if option.public:
        assert outcome(path, caller, owned=False) == "allow"
        return
    owned = option.scope == access_pb2.ACCESS_SCOPE_OWN
    got = outcome(path, caller, owned)
    assert (got == "allow") == expected(role, option, relation), (path, role, relation, got)


def test_the_matrix_covers_every_rpc_of_the_contract() -> None:
    assert len({path for path, _, _ in MATRIX}) == len(contract_methods()) > 60


def test_a_method_without_a_rule_is_refused_to_every_role_and_relation() -> None:
    for role in ROLES:
        for relation in CALLERS:
            assert (
                outcome("/godel.v1.AgentService/Unruled", caller_of(role, relation), owned=True) == "denied"
            )


AGENT_ACTIONS = ("KillAgent", "PauseAgent", "DeleteAgent", "RestartAgent", "StreamAgentLogs", "GetAgentLogs")


@pytest.mark.parametrize("rpc", AGENT_ACTIONS)
def test_a_developer_cannot_touch_another_teams_agent_and_does_not_even_see_it(rpc: str) -> None:
    assert outcome(f"/godel.v1.AgentService/{rpc}", caller_of("developer", "other team"), True) == "not found"
    assert outcome(f"/godel.v1.AgentService/{rpc}", caller_of("developer", "own"), True) == "allow"


def test_a_viewer_reads_its_teams_agents_but_cannot_act_on_them() -> None:
    viewer = caller_of("viewer", "same team")
    assert outcome("/godel.v1.AgentService/GetAgent", viewer, True) == "allow"
    assert outcome("/godel.v1.AgentService/GetAgentLogs", viewer, True) == "allow"
    assert outcome("/godel.v1.AgentService/KillAgent", viewer, True) == "denied"
    assert outcome("/godel.v1.AgentService/GetAgent", caller_of("viewer", "other team"), True) == "not found"


def test_an_operator_acts_on_its_teams_agents_only() -> None:
    assert outcome("/godel.v1.AgentService/KillAgent", caller_of("operator", "same team"), True) == "allow"
    assert (
        outcome("/godel.v1.AgentService/KillAgent", caller_of("operator", "other team"), True) == "not found"
    )


def test_who_may_read_but_not_act_gets_permission_denied_naming_the_scope() -> None:
    # A developer of team red reads team red's agents only with a team-scoped read permission.
    reader = Caller(
        key_id="k",
        user_id=BOB,
        role="custom",
        permissions=("agent:read:team", "agent:update:own"),
        teams=(RED,),
    )
    with pytest.raises(PermissionDeniedError, match="has scope own"):
        in_rpc(
            "/godel.v1.AgentService/KillAgent", reader, lambda: check(OBJECT, NotFoundError("agent", "a1"))
        )


def test_an_admin_reaches_everything_even_objects_without_an_owner() -> None:
    admin = caller_of("admin", "other team")
    for path, method in contract_methods():
        owned = not method.options.Extensions[access_pb2.access].public
        assert outcome(path, admin, owned=owned) == "allow", path
    assert Reach.of(admin, "agent", "read").covers(Owner(None))
    assert not Reach.of(caller_of("operator", "own"), "agent", "read").covers(Owner(None))


def test_the_owner_of_what_a_caller_makes() -> None:
    assert Owner.of(caller_of("developer", "own")) == Owner(ALICE, RED)
    assert Owner.of(Caller(key_id="k", user_id="u", role="developer")) == Owner("u", None)
    assert Owner.of(None) == Owner(None, None)


def test_no_caller_reaches_nothing() -> None:
    assert not Reach.of(None, "agent", "read").covers(OBJECT)
    assert in_rpc(
        "/godel.v1.AgentService/GetAgent",
        None,
        lambda: _raises(lambda: check(OBJECT, NotFoundError("a", "1"))),
    )


def _raises(fn: Callable[[], None]) -> bool:
    try:
        fn()
    except NotFoundError:
        return True
    return False


def test_lists_are_filtered_in_sql_by_the_same_reach() -> None:
    metadata = MetaData()
    objects = Table(
        "objects",
        metadata,
        Column("id", String, primary_key=True),
        Column("user_id", String),
        Column("team_id", String),
    )
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    rows = [
        ("a1", ALICE, RED),
        ("b1", BOB, RED),
        ("c1", CAROL, BLUE),
        ("c2", CAROL, None),
        ("old", None, None),
    ]
    with engine.begin() as conn:
        conn.execute(insert(objects), [{"id": i, "user_id": u, "team_id": t} for i, u, t in rows])

    def visible(caller: Caller) -> set[str]:
        reach = Reach.of(caller, "agent", "read")
        with engine.connect() as conn:
            found = {
                r.id
                for r in conn.execute(
                    select(objects.c.id).where(reach.where(objects.c.user_id, objects.c.team_id))
                )
            }
        # the SQL filter and the per-object check agree
        assert found == {i for i, u, t in rows if reach.covers(Owner(u, t))}
        return found

    assert visible(caller_of("developer", "own")) == {"a1"}
    assert visible(caller_of("viewer", "same team")) == {"a1", "b1"}
    assert visible(caller_of("operator", "other team")) == {"c1", "c2"}
    assert visible(caller_of("admin", "own")) == {"a1", "b1", "c1", "c2", "old"}
    assert visible(Caller(key_id="k", user_id="w", role="worker", permissions=ROLES["worker"])) == set()


def test_only_scope_all_creates_for_another_user() -> None:
    create = "/godel.v1.AgentService/CreateAgent"
    service = Caller(key_id="k", user_id="team-service", role="service", permissions=ROLES["service"])
    assert in_rpc(create, service, lambda: creator(ALICE, RED)) == Owner(ALICE, RED)
    assert in_rpc(create, service, lambda: creator("", "")) == Owner("team-service", None)
    developer = caller_of("developer", "own")
    assert in_rpc(create, developer, lambda: creator("", "")) == OBJECT
    for role in ("developer", "operator"):
        with pytest.raises(PermissionDeniedError, match="owner_user_id"):
            in_rpc(create, caller_of(role, "own"), lambda: creator(BOB, ""))


def test_the_service_role_drives_agents_and_nothing_else() -> None:
    service = Caller(key_id="k", user_id="team-service", role="service", permissions=ROLES["service"])
    for path, method in contract_methods():
        option = method.options.Extensions[access_pb2.access]
        if not option.public:
            assert (outcome(path, service, owned=False) == "allow") == (option.resource == "agent"), path
