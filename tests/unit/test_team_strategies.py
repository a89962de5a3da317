"""The team strategies (team/teams/strategies.py) without a database: a fake of the agent service
(tests/fakes/team.py) plays the members each strategy launches."""

from __future__ import annotations

import json

import pytest

from godel.v1 import team_pb2, team_service_pb2
from godel_server.runtime.statuses import TeamStatus
from godel_server.runtime.validation import Violations
from godel_server.team.members import ENDED
from godel_server.team.models import MemberRow, MemberStatus
from godel_server.team.teams.strategies import STRATEGIES, Parallel
from tests.fakes.team import AgentFailed, PlayedTeam, new_team


def echo(member: MemberRow) -> str:
    return f"{member.role}:{member.input or member.task}"


def test_parallel_runs_one_worker_per_input_within_max_agents() -> None:
    team = PlayedTeam(
        new_team("parallel", "check {{input}}", inputs=["a", "b", "c", "d", "e"], maxAgents=2), echo
    )
    team.start()
    outcome = team.play()
    assert outcome is not None and outcome.status == TeamStatus.COMPLETED
    assert [m.task for m in team.launched] == [f"check {x}" for x in "abcde"]
    assert team.peak == 2
    assert team.run.strategy.progress(team.run) == 100
    results = team.run.strategy.results(team.run)
    assert sorted(results.values()) == [f"worker:{x}" for x in "abcde"]


def test_parallel_without_inputs_runs_size_workers_on_the_team_task() -> None:
    team = PlayedTeam(new_team("parallel", "lint", size=3), echo)
    team.start()
    assert team.play() == team.run.strategy.outcome(team.run)
    assert [(m.role, m.task, m.position) for m in team.launched] == [("worker", "lint", i) for i in range(3)]


def test_a_failed_member_is_retried_once_then_the_team_fails() -> None:
    attempts: dict[int, int] = {}

    def flaky(member: MemberRow) -> str:
        attempts[member.position] = attempts.get(member.position, 0) + 1
        if member.position == 1 and member.attempt == 0:
            raise AgentFailed("crashed")  # the retry (attempt 1) succeeds
        if member.position == 2:
            raise AgentFailed("always broken")
        return "ok"

    team = PlayedTeam(new_team("parallel", "t", size=3), flaky)
    team.start()
    outcome = team.play()
    assert outcome is not None and outcome.status == TeamStatus.FAILED
    assert outcome.error == "1 of 3 members did not complete"
    assert attempts == {0: 1, 1: 2, 2: 2}
    # A replaced member no longer counts; its replacement took its place.
    assert sum(1 for m in team.run.members if m.superseded) == 2
    assert len(team.run.live) == 3


def test_the_retry_policy_can_turn_retries_off() -> None:
    def first_fails(member: MemberRow) -> str:
        if member.position == 0:
            raise AgentFailed("no")
        return "ok"

    team = PlayedTeam(new_team("parallel", "t", size=2, retryPolicy={"maxRetries": 0}), first_fails)
    team.start()
    outcome = team.play()
    assert outcome is not None and outcome.status == TeamStatus.FAILED
    assert len(team.launched) == 2


def test_map_reduce_splits_maps_and_reduces() -> None:
    def agent(member: MemberRow) -> str:
        if member.role == "splitter":
            return json.dumps(["x", "y", "z"])
        if member.role == "mapper":
            return member.input.upper() if member.input else ""
        return "reduced"

    team = PlayedTeam(new_team("map-reduce", "count {{input}}"), agent)
    team.start()
    outcome = team.play()
    assert outcome is not None and outcome.status == TeamStatus.COMPLETED
    assert [m.role for m in team.launched] == ["splitter", "mapper", "mapper", "mapper", "reducer"]
    reducer = team.launched[-1]
    assert json.loads(reducer.task.split("Results of the mappers (JSON):\n", 1)[1]) == [
        {"input": "x", "result": "X"},
        {"input": "y", "result": "Y"},
        {"input": "z", "result": "Z"},
    ]
    assert team.run.strategy.results(team.run)["reduce"] == "reduced"
    assert team.run.strategy.progress(team.run) == 100


def test_map_reduce_falls_back_to_parallel_when_the_splitter_fails() -> None:
    def agent(member: MemberRow) -> str:
        if member.role == "splitter":
            raise AgentFailed("cannot split")
        return "done"

    team = PlayedTeam(new_team("map-reduce", "t", size=2, retryPolicy={"maxRetries": 0}), agent)
    team.start()
    outcome = team.play()
    assert outcome is not None and outcome.status == TeamStatus.COMPLETED
    assert team.team.effective_strategy == Parallel.name
    assert team.run.notes == ["splitter failed: falling back to parallel"]
    assert [m.role for m in team.launched] == ["splitter", "worker", "worker"]


def test_map_reduce_fails_when_every_mapper_fails() -> None:
    def agent(member: MemberRow) -> str:
        if member.role == "mapper":
            raise AgentFailed("bad input")
        return ""

    team = PlayedTeam(new_team("map-reduce", "t", inputs=["a", "b"], retryPolicy={"maxRetries": 0}), agent)
    team.start()
    assert team.play() is not None
    outcome = team.run.strategy.outcome(team.run)
    assert outcome is not None and (outcome.status, outcome.error) == (
        TeamStatus.FAILED,
        "every mapper failed",
    )


def test_a_pipeline_hands_each_stage_the_previous_result() -> None:
    team = PlayedTeam(
        new_team("pipeline", "", stages=["draft", "review {{previous}}", "publish"]),
        lambda m: f"out{m.position}",
    )
    team.start()
    outcome = team.play()
    assert outcome is not None and outcome.status == TeamStatus.COMPLETED
    assert [m.task for m in team.launched] == ["draft", "review out0", "publish\n\nPrevious result:\nout1"]
    assert team.run.strategy.results(team.run)["final"] == "out2"


def test_a_failed_stage_fails_the_pipeline_and_nothing_follows_it() -> None:
    def agent(member: MemberRow) -> str:
        if member.position == 1:
            raise AgentFailed("tests red")
        return "ok"

    team = PlayedTeam(new_team("pipeline", "", stages=["a", "b", "c"], retryPolicy={"maxRetries": 0}), agent)
    team.start()
    outcome = team.play()
    assert outcome is not None
    assert (outcome.status, outcome.error) == (TeamStatus.FAILED, "stage 2 failed: tests red")
    assert len(team.launched) == 2


def test_a_tree_decomposes_down_to_max_depth_and_aggregates_upwards() -> None:
    def agent(member: MemberRow) -> str:
        return json.dumps({"subtasks": [f"{member.task}.{i}" for i in range(2)]})

    team = PlayedTeam(new_team("tree", "root", maxDepth=2), agent)
    team.start()
    outcome = team.play()
    assert outcome is not None and outcome.status == TeamStatus.COMPLETED
    assert sorted((m.depth, m.task) for m in team.launched)[:3] == [(0, "root"), (1, "root.0"), (1, "root.1")]
    assert len(team.launched) == 1 + 2 + 4  # depth 2 nodes decompose no further
    tree = team.run.strategy.results(team.run)["tree"]
    assert tree["task"] == "root" and [c["task"] for c in tree["children"]] == ["root.0", "root.1"]
    assert [g["task"] for g in tree["children"][1]["children"]] == ["root.1.0", "root.1.1"]


def test_parallel_teams_scale_up_and_down() -> None:
    played = PlayedTeam(new_team("parallel", "t", size=3), echo)
    played.start()
    run = played.run
    strategy = run.strategy
    played.member(run.effects.launch[0]).status = MemberStatus.COMPLETED  # one finished already
    scaled = strategy.scale(run, 5)
    assert (scaled.previous, len(scaled.added), scaled.removed) == (3, 2, [])
    assert run.team.config["size"] == 5
    scaled = strategy.scale(run, 2)
    # Finished members keep their results; the newest unfinished ones are stopped.
    assert scaled.previous == 5 and [m.position for m in scaled.removed] == [4, 3, 2]
    assert all(m.superseded for m in scaled.removed)


def test_map_reduce_scales_how_many_mappers_run_at_once() -> None:
    played = PlayedTeam(new_team("map-reduce", "t", inputs=["a", "b", "c"]), echo)
    played.start()
    scaled = played.run.strategy.scale(played.run, 7)
    assert (scaled.previous, scaled.added, scaled.removed) == (3, [], [])
    assert played.team.config["maxAgents"] == 7


def test_only_scalable_strategies_scale() -> None:
    scalable = {s.name for s in STRATEGIES.values() if s.scalable}
    assert {"parallel", "map-reduce"} <= scalable and not {"pipeline", "tree"} & scalable
    played = PlayedTeam(new_team("pipeline", "t"), echo)
    played.start()
    with pytest.raises(NotImplementedError):
        played.run.strategy.scale(played.run, 3)


@pytest.mark.parametrize(
    ("strategy", "task", "stages", "field"),
    [
        (team_pb2.EXECUTION_STRATEGY_PARALLEL, "", [], "task"),
        (team_pb2.EXECUTION_STRATEGY_TREE, " ", [], "task"),
        (team_pb2.EXECUTION_STRATEGY_PIPELINE, "", [], "config.stages"),
        (team_pb2.EXECUTION_STRATEGY_PIPELINE, "", ["a"], None),
        (team_pb2.EXECUTION_STRATEGY_MAP_REDUCE, "t", [], None),
    ],
)
def test_each_strategy_checks_what_a_create_request_must_give(
    strategy: team_pb2.ExecutionStrategy.ValueType, task: str, stages: list[str], field: str | None
) -> None:
    request = team_service_pb2.CreateTeamRequest(
        name="n", task=task, execution_strategy=strategy, config=team_pb2.TeamConfig(stages=stages)
    )
    v = Violations()
    next(s for s in STRATEGIES.values() if s.kind == strategy).check_create(request, v)
    assert [f.field for f in v.items] == ([field] if field else [])


def test_a_team_that_is_not_active_launches_nothing() -> None:
    played = PlayedTeam(new_team("parallel", "t", size=2), echo)
    played.team.status = TeamStatus.PAUSED
    played.run.start()
    assert played.run.effects.launch == []
    assert all(m.status == MemberStatus.QUEUED for m in played.run.members)
    played.team.status = TeamStatus.ACTIVE
    played.run.fill()
    assert len(played.run.effects.launch) == 2
    assert not any(m.status in ENDED for m in played.run.members)
