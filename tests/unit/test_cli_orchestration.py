"""The ``godel`` team, workflow, task, budget and ``do`` commands against an in-process fake mesh.

The fakes implement TeamService, WorkflowService, TaskService, BudgetService, IntentService and the
parts of AgentService and EventService these commands use, on the generated servicer base classes,
with canned but consistent behaviour: a started team reports one update per member then ends, a
workflow moves its steps one state per look, the intent parser knows a handful of phrasings.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import struct_pb2, timestamp_pb2

from godel.v1 import (
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    budget_pb2,
    budget_service_pb2,
    budget_service_pb2_grpc,
    event_pb2,
    event_service_pb2,
    event_service_pb2_grpc,
    intent_pb2,
    intent_service_pb2,
    intent_service_pb2_grpc,
    task_pb2,
    task_service_pb2,
    task_service_pb2_grpc,
    team_pb2,
    team_service_pb2,
    team_service_pb2_grpc,
    workflow_pb2,
    workflow_service_pb2,
    workflow_service_pb2_grpc,
)
from godel_client import cli_common, cli_workflows, render
from godel_client.cli import main
from godel_client.client import execution_strategy, task_priority

API_KEY = "godel_sk_test_orchestration"
T0 = 1795635002  # 2026-11-25 19:30:02Z
ACTIVE = team_pb2.TEAM_STATUS_ACTIVE
STEP_RUNNING = workflow_pb2.STEP_STATUS_RUNNING
STEP_COMPLETED = workflow_pb2.STEP_STATUS_COMPLETED
STEP_FAILED = workflow_pb2.STEP_STATUS_FAILED


def _ts(offset: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=T0 + offset)


def _struct(**values: Any) -> struct_pb2.Struct:
    document = struct_pb2.Struct()
    document.update(values)
    return document


def _new_id() -> str:
    return str(uuid.uuid4())


def _require_key(context: grpc.ServicerContext) -> None:
    if dict(context.invocation_metadata()).get("x-api-key") != API_KEY:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid API key")


# -- the fake mesh ---------------------------------------------------------------------------------


@dataclass
class World:
    """Shared state of the fake services, for the tests to arrange and inspect."""

    teams: dict[str, team_pb2.Team] = field(default_factory=dict)
    agents: dict[str, agent_pb2.Agent] = field(default_factory=dict)
    workflows: dict[str, workflow_pb2.Workflow] = field(default_factory=dict)
    steps: dict[str, list[workflow_pb2.WorkflowStep]] = field(default_factory=dict)
    # States a workflow moves through, one per GetWorkflow (ListWorkflowSteps shows the current one).
    scripts: dict[str, list[tuple[workflow_pb2.Workflow, list[workflow_pb2.WorkflowStep]]]] = field(
        default_factory=dict
    )
    tasks: dict[str, task_pb2.Task] = field(default_factory=dict)
    budgets: dict[str, budget_pb2.Budget] = field(default_factory=dict)
    requests: list[Any] = field(default_factory=list)
    events_available: bool = True

    def add_team(self, name: str, status: int = ACTIVE, **kwargs: Any) -> team_pb2.Team:
        team = team_pb2.Team(id=_new_id(), name=name, status=status, created_at=_ts(0), **kwargs)  # type: ignore[arg-type]
        self.teams[team.id] = team
        return team

    def add_agent(
        self, task: str, status: int = agent_pb2.AGENT_STATUS_RUNNING, **kwargs: Any
    ) -> agent_pb2.Agent:
        agent = agent_pb2.Agent(id=_new_id(), task=task, status=status, spawned_at=_ts(0), **kwargs)  # type: ignore[arg-type]
        self.agents[agent.id] = agent
        return agent


def _not_found(context: grpc.ServicerContext, kind: str, id_: str) -> None:
    context.abort(grpc.StatusCode.NOT_FOUND, f"{kind} {id_!r} not found")


class FakeTeams(team_service_pb2_grpc.TeamServiceServicer):
    def __init__(self, world: World) -> None:
        self.world = world

    def _team(self, id_: str, context: grpc.ServicerContext) -> team_pb2.Team:
        _require_key(context)
        if id_ not in self.world.teams:
            _not_found(context, "team", id_)
        return self.world.teams[id_]

    def CreateTeam(
        self, request: team_service_pb2.CreateTeamRequest, context: grpc.ServicerContext
    ) -> team_pb2.Team:
        _require_key(context)
        self.world.requests.append(request)
        if not request.name.strip():
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid request: name: must not be empty")
        team = self.world.add_team(
            request.name,
            status=team_pb2.TEAM_STATUS_CREATING,
            task=request.task,
            config=request.config,
            execution_strategy=request.execution_strategy or team_pb2.EXECUTION_STRATEGY_PARALLEL,
        )
        if request.HasField("budget_allocated"):
            team.budget_allocated = request.budget_allocated
        return team

    def GetTeam(
        self, request: team_service_pb2.GetTeamRequest, context: grpc.ServicerContext
    ) -> team_pb2.Team:
        return self._team(request.id, context)

    def ListTeams(
        self, request: team_service_pb2.ListTeamsRequest, context: grpc.ServicerContext
    ) -> team_service_pb2.ListTeamsResponse:
        _require_key(context)
        found = [t for t in self.world.teams.values() if not request.status or t.status in request.status]
        return team_service_pb2.ListTeamsResponse(teams=found)

    def DeleteTeam(
        self, request: team_service_pb2.DeleteTeamRequest, context: grpc.ServicerContext
    ) -> team_service_pb2.DeleteTeamResponse:
        self._team(request.id, context)
        del self.world.teams[request.id]
        return team_service_pb2.DeleteTeamResponse()

    def StartTeam(
        self, request: team_service_pb2.StartTeamRequest, context: grpc.ServicerContext
    ) -> Iterator[team_service_pb2.StartTeamResponse]:
        """One update per member (the last one fails when the task says "fail"), then the end."""
        team = self._team(request.id, context)
        self.world.requests.append(request)
        size = team.config.size or 3
        members = [self.world.add_agent(team.task, team_id=team.id).id for _ in range(size)]
        team.agent_ids[:] = members
        team.status = ACTIVE
        team.started_at.CopyFrom(_ts(0))
        failing = "fail" in team.task
        for i, member in enumerate(members, start=1):
            failed = failing and i == size
            if not failed:
                team.results.fields[member].string_value = f"done {i}"
            team.progress = i * 100 // size
            team.budget_consumed += 0.01
            event = event_pb2.Event(
                id=_new_id(),
                type="team:progress",
                payload=_struct(status="failed" if failed else "completed"),
                metadata=event_pb2.EventMetadata(team_id=team.id, agent_id=member),
            )
            yield team_service_pb2.StartTeamResponse(team=team, event=event)
        team.status = team_pb2.TEAM_STATUS_FAILED if failing else team_pb2.TEAM_STATUS_COMPLETED
        team.completed_at.CopyFrom(_ts(62))
        if failing:
            team.error = f"agent {members[-1]} failed: exit status 1"
        kind = "team:error" if failing else "team:complete"
        end = event_pb2.Event(id=_new_id(), type=kind, metadata=event_pb2.EventMetadata(team_id=team.id))
        yield team_service_pb2.StartTeamResponse(team=team, event=end)

    def PauseTeam(
        self, request: team_service_pb2.PauseTeamRequest, context: grpc.ServicerContext
    ) -> team_pb2.Team:
        team = self._team(request.id, context)
        if team.status != ACTIVE:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the team is not active")
        team.status = team_pb2.TEAM_STATUS_PAUSED
        return team

    def ResumeTeam(
        self, request: team_service_pb2.ResumeTeamRequest, context: grpc.ServicerContext
    ) -> team_pb2.Team:
        team = self._team(request.id, context)
        team.status = ACTIVE
        return team

    def ScaleTeam(
        self, request: team_service_pb2.ScaleTeamRequest, context: grpc.ServicerContext
    ) -> team_service_pb2.ScaleTeamResponse:
        team = self._team(request.id, context)
        previous = len(team.agent_ids)
        added = [
            self.world.add_agent(team.task, team_id=team.id).id for _ in range(request.target_size - previous)
        ]
        removed = list(team.agent_ids[request.target_size :])
        team.agent_ids[:] = [*team.agent_ids[: request.target_size], *added]
        return team_service_pb2.ScaleTeamResponse(
            team=team,
            previous_size=previous,
            current_size=len(team.agent_ids),
            added_agent_ids=added,
            removed_agent_ids=removed,
        )

    def ListTeamAgents(
        self, request: team_service_pb2.ListTeamAgentsRequest, context: grpc.ServicerContext
    ) -> team_service_pb2.ListTeamAgentsResponse:
        team = self._team(request.id, context)
        return team_service_pb2.ListTeamAgentsResponse(agents=[self.world.agents[a] for a in team.agent_ids])

    def GetTeamMetrics(
        self, request: team_service_pb2.GetTeamMetricsRequest, context: grpc.ServicerContext
    ) -> team_pb2.TeamMetrics:
        team = self._team(request.id, context)
        total = len(team.agent_ids)
        completed = sum(1 for a in team.agent_ids if a in team.results.fields)
        return team_pb2.TeamMetrics(
            team_id=team.id,
            total_agents=total,
            completed_agents=completed,
            failed_agents=total - completed if team.status == team_pb2.TEAM_STATUS_FAILED else 0,
            completion_rate=completed / total if total else 0.0,
            duration_seconds=62.0,
            cost_usd=team.budget_consumed,
            progress=team.progress,
        )


def _workflow_script(
    workflow: workflow_pb2.Workflow,
) -> list[tuple[workflow_pb2.Workflow, list[workflow_pb2.WorkflowStep]]]:
    """Created, then each step running and then done (a step whose task says "fail" fails), then the end."""
    steps = [
        workflow_pb2.WorkflowStep(
            id=_new_id(),
            workflow_id=workflow.id,
            step_id=d.id,
            name=d.name,
            task=d.task,
            dependencies=d.depends_on,
            status=workflow_pb2.STEP_STATUS_PENDING,
        )
        for d in workflow.definition.steps
    ]
    states = []

    def snapshot() -> None:
        copy = workflow_pb2.Workflow()
        copy.CopyFrom(workflow)
        states.append((copy, [workflow_pb2.WorkflowStep.FromString(s.SerializeToString()) for s in steps]))

    snapshot()
    failed = False
    for i, step in enumerate(steps):
        step.status, step.agent_id = STEP_RUNNING, f"{i + 1:x}a2b3c4d-0000-4000-8000-000000000000"
        step.started_at.CopyFrom(_ts(i * 10))
        workflow.current_step_id = step.step_id
        snapshot()
        step.completed_at.CopyFrom(_ts(i * 10 + 7))
        if "fail" in step.task:
            step.status, step.error, failed = STEP_FAILED, "exit status 1\nstack...", True
            break
        step.status, step.result.fields["output"].string_value = STEP_COMPLETED, f"{step.step_id} done\nmore"
        workflow.progress = (i + 1) * 100 // len(steps)
        snapshot()
    workflow.status = (
        workflow_pb2.WORKFLOW_STATUS_FAILED if failed else workflow_pb2.WORKFLOW_STATUS_COMPLETED
    )
    workflow.completed_at.CopyFrom(_ts(42))
    snapshot()
    return states


class FakeWorkflows(workflow_service_pb2_grpc.WorkflowServiceServicer):
    def __init__(self, world: World) -> None:
        self.world = world

    def _workflow(self, id_: str, context: grpc.ServicerContext) -> workflow_pb2.Workflow:
        _require_key(context)
        if id_ not in self.world.workflows:
            _not_found(context, "workflow", id_)
        return self.world.workflows[id_]

    def _start(self, workflow: workflow_pb2.Workflow) -> None:
        workflow.status = workflow_pb2.WORKFLOW_STATUS_RUNNING
        workflow.started_at.CopyFrom(_ts(0))
        script = _workflow_script(workflow_pb2.Workflow.FromString(workflow.SerializeToString()))
        self.world.scripts[workflow.id] = script[1:]
        self.world.steps[workflow.id] = script[0][1]

    def CreateWorkflow(
        self, request: workflow_service_pb2.CreateWorkflowRequest, context: grpc.ServicerContext
    ) -> workflow_pb2.Workflow:
        _require_key(context)
        self.world.requests.append(request)
        try:
            document = yaml.safe_load(request.definition_text)
        except yaml.YAMLError:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid request: definition_text: not YAML")
        definition = workflow_pb2.WorkflowDefinition(
            name=document["name"],
            steps=[
                workflow_pb2.StepDefinition(id=s["id"], task=s["task"], depends_on=s.get("depends_on", []))
                for s in document["steps"]
            ],
        )
        workflow = workflow_pb2.Workflow(
            id=_new_id(),
            name=definition.name,
            definition=definition,
            status=workflow_pb2.WORKFLOW_STATUS_PENDING,
            team_id=request.team_id,
            context=request.context,
            created_at=_ts(0),
        )
        self.world.workflows[workflow.id] = workflow
        self.world.steps[workflow.id] = []
        if request.start:
            self._start(workflow)
        return workflow

    def GetWorkflow(
        self, request: workflow_service_pb2.GetWorkflowRequest, context: grpc.ServicerContext
    ) -> workflow_pb2.Workflow:
        self._workflow(request.id, context)
        script = self.world.scripts.get(request.id)
        if script:
            workflow, steps = script.pop(0)
            self.world.workflows[request.id], self.world.steps[request.id] = workflow, steps
        return self.world.workflows[request.id]

    def ListWorkflows(
        self, request: workflow_service_pb2.ListWorkflowsRequest, context: grpc.ServicerContext
    ) -> workflow_service_pb2.ListWorkflowsResponse:
        _require_key(context)
        found = [
            w
            for w in self.world.workflows.values()
            if (not request.status or w.status in request.status)
            and (not request.team_id or w.team_id == request.team_id)
        ]
        return workflow_service_pb2.ListWorkflowsResponse(workflows=found)

    def ListWorkflowSteps(
        self, request: workflow_service_pb2.ListWorkflowStepsRequest, context: grpc.ServicerContext
    ) -> workflow_service_pb2.ListWorkflowStepsResponse:
        self._workflow(request.id, context)
        return workflow_service_pb2.ListWorkflowStepsResponse(steps=self.world.steps[request.id])

    def StartWorkflow(
        self, request: workflow_service_pb2.StartWorkflowRequest, context: grpc.ServicerContext
    ) -> workflow_pb2.Workflow:
        workflow = self._workflow(request.id, context)
        self._start(workflow)
        return workflow

    def _set(self, request: Any, context: grpc.ServicerContext, status: int) -> workflow_pb2.Workflow:
        workflow = self._workflow(request.id, context)
        self.world.requests.append(request)
        if workflow.status in (
            workflow_pb2.WORKFLOW_STATUS_COMPLETED,
            workflow_pb2.WORKFLOW_STATUS_CANCELLED,
        ):
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the workflow has ended")
        workflow.status = status  # type: ignore[assignment]
        return workflow

    def CancelWorkflow(
        self, request: workflow_service_pb2.CancelWorkflowRequest, context: grpc.ServicerContext
    ) -> workflow_pb2.Workflow:
        return self._set(request, context, workflow_pb2.WORKFLOW_STATUS_CANCELLED)

    def PauseWorkflow(
        self, request: workflow_service_pb2.PauseWorkflowRequest, context: grpc.ServicerContext
    ) -> workflow_pb2.Workflow:
        return self._set(request, context, workflow_pb2.WORKFLOW_STATUS_PAUSED)

    def ResumeWorkflow(
        self, request: workflow_service_pb2.ResumeWorkflowRequest, context: grpc.ServicerContext
    ) -> workflow_pb2.Workflow:
        return self._set(request, context, workflow_pb2.WORKFLOW_STATUS_RUNNING)

    def DeleteWorkflow(
        self, request: workflow_service_pb2.DeleteWorkflowRequest, context: grpc.ServicerContext
    ) -> workflow_service_pb2.DeleteWorkflowResponse:
        self._workflow(request.id, context)
        del self.world.workflows[request.id]
        return workflow_service_pb2.DeleteWorkflowResponse()


class FakeEvents(event_service_pb2_grpc.EventServiceServicer):
    """A workflow subscription gets one event per state the workflow has still to go through, then
    heartbeats until the client hangs up."""

    def __init__(self, world: World) -> None:
        self.world = world

    def SubscribeEvents(
        self, request: event_service_pb2.SubscribeEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[event_service_pb2.SubscribeEventsResponse]:
        _require_key(context)
        self.world.requests.append(request)
        if not self.world.events_available:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "no events here")
        pending = len(self.world.scripts.get(request.workflow_id, []))
        for sequence in range(1, pending + 1):
            event = event_pb2.Event(
                id=_new_id(),
                type="workflow:step:start",
                sequence=sequence,
                metadata=event_pb2.EventMetadata(workflow_id=request.workflow_id),
            )
            yield event_service_pb2.SubscribeEventsResponse(event=event)
        while context.is_active():
            time.sleep(0.05)
            yield event_service_pb2.SubscribeEventsResponse(heartbeat=event_service_pb2.Heartbeat())


class FakeTasks(task_service_pb2_grpc.TaskServiceServicer):
    def __init__(self, world: World) -> None:
        self.world = world

    def _task(self, id_: str, context: grpc.ServicerContext) -> task_pb2.Task:
        _require_key(context)
        if id_ not in self.world.tasks:
            _not_found(context, "task", id_)
        return self.world.tasks[id_]

    def CreateTask(
        self, request: task_service_pb2.CreateTaskRequest, context: grpc.ServicerContext
    ) -> task_pb2.Task:
        _require_key(context)
        self.world.requests.append(request)
        task = task_pb2.Task(
            id=_new_id(),
            title=request.title,
            description=request.description,
            priority=request.priority or task_pb2.TASK_PRIORITY_MEDIUM,
            team_id=request.team_id,
            status=task_pb2.TASK_STATUS_PENDING,
            created_at=_ts(0),
        )
        self.world.tasks[task.id] = task
        return task

    def GetTask(
        self, request: task_service_pb2.GetTaskRequest, context: grpc.ServicerContext
    ) -> task_pb2.Task:
        return self._task(request.id, context)

    def ListTasks(
        self, request: task_service_pb2.ListTasksRequest, context: grpc.ServicerContext
    ) -> task_service_pb2.ListTasksResponse:
        _require_key(context)
        found = [
            t
            for t in self.world.tasks.values()
            if (not request.status or t.status in request.status)
            and (not request.team_id or t.team_id == request.team_id)
        ]
        return task_service_pb2.ListTasksResponse(tasks=found)

    def AssignTask(
        self, request: task_service_pb2.AssignTaskRequest, context: grpc.ServicerContext
    ) -> task_pb2.Task:
        task = self._task(request.id, context)
        task.agent_id = request.agent_id or "idle-agent-1"
        task.status = task_pb2.TASK_STATUS_ASSIGNED
        return task

    def CompleteTask(
        self, request: task_service_pb2.CompleteTaskRequest, context: grpc.ServicerContext
    ) -> task_pb2.Task:
        task = self._task(request.id, context)
        self.world.requests.append(request)
        task.status = task_pb2.TASK_STATUS_FAILED if request.error else task_pb2.TASK_STATUS_COMPLETED
        task.error = request.error
        task.result.CopyFrom(request.result)
        return task


class FakeBudgets(budget_service_pb2_grpc.BudgetServiceServicer):
    def __init__(self, world: World) -> None:
        self.world = world

    def SetBudget(
        self, request: budget_service_pb2.SetBudgetRequest, context: grpc.ServicerContext
    ) -> budget_pb2.Budget:
        _require_key(context)
        self.world.requests.append(request)
        for budget in self.world.budgets.values():  # one budget per entity: replaced
            if (budget.entity_type, budget.entity_id) == (request.entity_type, request.entity_id):
                budget.total_budget = request.total_budget
                return budget
        budget = budget_pb2.Budget(
            id=_new_id(),
            entity_type=request.entity_type,
            entity_id=request.entity_id,
            total_budget=request.total_budget,
            used_budget=request.total_budget / 4,
            percentage=25.0,
            currency=request.currency or "USD",
            period=request.period or budget_pb2.BUDGET_PERIOD_NONE,
        )
        self.world.budgets[budget.id] = budget
        return budget

    def GetBudget(
        self, request: budget_service_pb2.GetBudgetRequest, context: grpc.ServicerContext
    ) -> budget_pb2.Budget:
        _require_key(context)
        if request.id not in self.world.budgets:
            _not_found(context, "budget", request.id)
        return self.world.budgets[request.id]

    def ListBudgets(
        self, request: budget_service_pb2.ListBudgetsRequest, context: grpc.ServicerContext
    ) -> budget_service_pb2.ListBudgetsResponse:
        _require_key(context)
        found = [
            b
            for b in self.world.budgets.values()
            if (not request.entity_type or b.entity_type == request.entity_type)
            and (not request.entity_id or b.entity_id == request.entity_id)
        ]
        return budget_service_pb2.ListBudgetsResponse(budgets=found)

    def DeleteBudget(
        self, request: budget_service_pb2.DeleteBudgetRequest, context: grpc.ServicerContext
    ) -> budget_service_pb2.DeleteBudgetResponse:
        _require_key(context)
        if self.world.budgets.pop(request.id, None) is None:
            _not_found(context, "budget", request.id)
        return budget_service_pb2.DeleteBudgetResponse()


# Phrasings the fake parser knows: pattern, intent type, confidence, parameter names of the groups,
# fixed parameters. The names are those of the deterministic parser of the team-service.
STOP, STATUS, SCALE = (
    intent_pb2.INTENT_TYPE_STOP_TASK,
    intent_pb2.INTENT_TYPE_QUERY_STATUS,
    intent_pb2.INTENT_TYPE_SCALE_TEAM,
)
PHRASES: list[tuple[str, int, float, tuple[str, ...], dict[str, Any]]] = [
    (
        r"create a team of (\d+) agents to (.+)",
        intent_pb2.INTENT_TYPE_CREATE_TEAM,
        0.95,
        ("size", "task"),
        {},
    ),
    (r"spawn (\d+) agents? to (.+)", intent_pb2.INTENT_TYPE_SPAWN_AGENT, 0.9, ("count", "task"), {}),
    (r"scale team (\S+) to (\d+)", SCALE, 0.95, ("team", "size"), {}),
    (r"add (\d+) agents to team (\S+)", SCALE, 0.9, ("delta", "team"), {}),
    (r"stop (agent|workflow|team) (\S+)", STOP, 0.95, ("target", "id"), {"action": "stop"}),
    (
        r"run workflow (\S+) on main",
        intent_pb2.INTENT_TYPE_EXECUTE_WORKFLOW,
        0.95,
        ("workflow",),
        {"inputs": {"branch": "main"}},
    ),
    (r"run workflow (\S+)", intent_pb2.INTENT_TYPE_EXECUTE_WORKFLOW, 0.9, ("workflow",), {}),
    (r"list (\w+) (agent|team|workflow|task)s", STATUS, 0.85, ("filter", "target"), {}),
    (r"status of (agent|team|workflow|task) (\S+)", STATUS, 0.9, ("target", "id"), {}),
    (r"what is running", STATUS, 0.8, (), {}),
]


class FakeIntents(intent_service_pb2_grpc.IntentServiceServicer):
    def __init__(self, world: World) -> None:
        self.world = world

    def ParseIntent(
        self, request: intent_service_pb2.ParseIntentRequest, context: grpc.ServicerContext
    ) -> intent_pb2.Intent:
        _require_key(context)
        self.world.requests.append(request)
        for pattern, kind, confidence, names, fixed in PHRASES:
            match = re.fullmatch(pattern, request.input.strip(), flags=re.IGNORECASE)
            if match is None:
                continue
            values: dict[str, Any] = {
                name: int(value) if value.isdigit() else value
                for name, value in zip(names, match.groups(), strict=True)
            }
            values.update(fixed)
            entities = [
                intent_pb2.Entity(
                    name=name, value=str(value), type="number" if isinstance(value, int) else "text"
                )
                for name, value in values.items()
                if name not in fixed
            ]
            return intent_pb2.Intent(
                type=kind,  # type: ignore[arg-type]
                confidence=confidence,
                entities=entities,
                parameters=_struct(**values),
                original=request.input,
            )
        return intent_pb2.Intent(type=intent_pb2.INTENT_TYPE_CUSTOM, confidence=0.2, original=request.input)

    def GenerateSwarmConfig(
        self, request: intent_service_pb2.GenerateSwarmConfigRequest, context: grpc.ServicerContext
    ) -> intent_pb2.SwarmConfig:
        _require_key(context)
        self.world.requests.append(request)
        return intent_pb2.SwarmConfig(
            name="-".join(request.task.split()[:2]),
            size=2,
            strategy=request.constraints.strategy or team_pb2.EXECUTION_STRATEGY_PARALLEL,
            agents=[
                intent_pb2.AgentRoleConfig(role="worker", count=1, model="gpt-4o"),
                intent_pb2.AgentRoleConfig(role="reviewer", count=1, model="gpt-4o"),
            ],
            task=request.task,
        )


class FakeAgents(agent_service_pb2_grpc.AgentServiceServicer):
    """Created agents run on the first look and complete on the second."""

    def __init__(self, world: World) -> None:
        self.world = world

    def CreateAgent(
        self, request: agent_service_pb2.CreateAgentRequest, context: grpc.ServicerContext
    ) -> agent_pb2.Agent:
        _require_key(context)
        self.world.requests.append(request)
        return self.world.add_agent(
            request.task, status=agent_pb2.AGENT_STATUS_PENDING, config=request.config
        )

    def GetAgent(
        self, request: agent_service_pb2.GetAgentRequest, context: grpc.ServicerContext
    ) -> agent_pb2.Agent:
        _require_key(context)
        if request.id not in self.world.agents:
            _not_found(context, "agent", request.id)
        agent = self.world.agents[request.id]
        if agent.status == agent_pb2.AGENT_STATUS_PENDING:
            agent.status, agent.version = agent_pb2.AGENT_STATUS_RUNNING, agent.version + 1
        elif agent.status == agent_pb2.AGENT_STATUS_RUNNING:
            agent.status, agent.version = agent_pb2.AGENT_STATUS_COMPLETED, agent.version + 1
            agent.lifecycle_state = agent_pb2.LIFECYCLE_STATE_COMPLETED
            agent.completed_at.CopyFrom(_ts(5))
        return agent

    def KillAgent(
        self, request: agent_service_pb2.KillAgentRequest, context: grpc.ServicerContext
    ) -> agent_pb2.Agent:
        _require_key(context)
        self.world.requests.append(request)
        if request.id not in self.world.agents:
            _not_found(context, "agent", request.id)
        agent = self.world.agents[request.id]
        agent.status, agent.lifecycle_state = agent_pb2.AGENT_STATUS_KILLED, agent_pb2.LIFECYCLE_STATE_KILLED
        return agent

    def ListAgents(
        self, request: agent_service_pb2.ListAgentsRequest, context: grpc.ServicerContext
    ) -> agent_service_pb2.ListAgentsResponse:
        _require_key(context)
        self.world.requests.append(request)
        found = [a for a in self.world.agents.values() if not request.status or a.status in request.status]
        return agent_service_pb2.ListAgentsResponse(agents=found)


@pytest.fixture
def mesh() -> Iterator[tuple[World, str]]:
    world = World()
    # The fakes implement only the methods the CLI calls; the rest answer UNIMPLEMENTED.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    team_service_pb2_grpc.add_TeamServiceServicer_to_server(FakeTeams(world), server)  # type: ignore[abstract]
    workflow_service_pb2_grpc.add_WorkflowServiceServicer_to_server(FakeWorkflows(world), server)  # type: ignore[abstract]
    event_service_pb2_grpc.add_EventServiceServicer_to_server(FakeEvents(world), server)  # type: ignore[abstract]
    task_service_pb2_grpc.add_TaskServiceServicer_to_server(FakeTasks(world), server)
    budget_service_pb2_grpc.add_BudgetServiceServicer_to_server(FakeBudgets(world), server)
    intent_service_pb2_grpc.add_IntentServiceServicer_to_server(FakeIntents(world), server)  # type: ignore[abstract]
    agent_service_pb2_grpc.add_AgentServiceServicer_to_server(FakeAgents(world), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield world, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials leak in from the developer's shell or the checkout's .data/admin.key; no real sleeps."""
    for name in ("GODEL_ADDR", "GODEL_API_KEY", "GODEL_CREDENTIALS_FILE", "GODEL_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GODEL_HOME", str(tmp_path / "godel-home"))
    monkeypatch.setattr(cli_common, "wait", lambda seconds: None)
    monkeypatch.setattr(cli_workflows, "POLL_INTERVAL", 0.01)


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    code = main(list(argv))
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def godel(capsys: pytest.CaptureFixture[str], address: str, *argv: str) -> Run:
    return run(capsys, "--addr", address, "--api-key", API_KEY, *argv)


def _requests(world: World, kind: type) -> list[Any]:
    return [r for r in world.requests if isinstance(r, kind)]


PROGRESS_LINE = re.compile(r"^\[\s*(\d+)%\] (\S+)  (agent [0-9a-f]{8}… \w+|team \w+) \((\d+)/(\d+)\)$")


# -- teams -----------------------------------------------------------------------------------------


def test_team_create_watch_streams_progress_then_a_summary(
    mesh: tuple[World, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, address = mesh
    options = ["--task", "review the auth code", "--size", "3", "--strategy", "map-reduce", "--budget", "5"]
    inputs = ["--input", "auth.py", "--input", "session.py", "--model", "gpt-4o"]
    result = godel(
        capsys,
        address,
        "team",
        "create",
        "reviewers",
        *options,
        *inputs,
        "--watch",
        "--",
        "/bin/echo",
        "{task}",
    )
    assert result.code == 0, result.err
    team_id = result.lines[0]
    team = world.teams[team_id]
    progress = result.lines[1:5]
    assert [PROGRESS_LINE.match(line) is not None for line in progress] == [True] * 4, progress
    assert progress[0] == f"[ 33%] team:progress  agent {team.agent_ids[0][:8]}… completed (1/3)"
    assert progress[2] == f"[100%] team:progress  agent {team.agent_ids[2][:8]}… completed (3/3)"
    assert progress[3] == "[100%] team:complete  team completed (3/3)"
    assert result.lines[5] == (
        f"team {team_id} completed: 3/3 agents completed (100%), took 1m02s, cost $0.0300"
    )
    assert result.err == ""
    create = _requests(world, team_service_pb2.CreateTeamRequest)[-1]
    assert (create.name, create.task) == ("reviewers", "review the auth code")
    assert create.execution_strategy == team_pb2.EXECUTION_STRATEGY_MAP_REDUCE
    assert (create.config.size, list(create.config.inputs), create.config.model) == (
        3,
        ["auth.py", "session.py"],
        "gpt-4o",
    )
    assert (create.config.runtime, list(create.config.command)) == ("command", ["/bin/echo", "{task}"])
    assert create.HasField("budget_allocated") and create.budget_allocated == 5.0


def test_team_watch_of_a_failing_team_exits_1_with_its_error(
    mesh: tuple[World, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, address = mesh
    team = world.add_team("doomed", task="this will fail", config=team_pb2.TeamConfig(size=2))
    result = godel(capsys, address, "team", "start", team.id, "--watch")
    assert result.code == 1
    assert result.lines[1] == f"[100%] team:progress  agent {team.agent_ids[1][:8]}… failed (1/2)"
    assert result.lines[2] == "[100%] team:error  team failed (1/2)"
    assert result.lines[3].startswith(
        f"team {team.id} failed: 1/2 agents completed (50%), 1 failed, took 1m02s"
    )
    assert f"team {team.id} failed: agent {team.agent_ids[1]} failed: exit status 1" in result.err


def test_team_create_without_start_prints_the_id_and_json_prints_the_team(
    mesh: tuple[World, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, address = mesh
    plain = godel(
        capsys, address, "team", "create", "t1", "--task", "x", "--stage", "plan", "--stage", "build"
    )
    assert plain.code == 0 and plain.out.strip() in world.teams
    assert list(world.teams[plain.out.strip()].config.stages) == ["plan", "build"]
    assert not _requests(world, team_service_pb2.StartTeamRequest)
    as_json = godel(
        capsys,
        address,
        "--json",
        "team",
        "create",
        "t2",
        "--task",
        "y",
        "--strategy",
        "tree",
        "--max-depth",
        "2",
    )
    document = json.loads(as_json.out)
    assert document["name"] == "t2" and document["executionStrategy"] == "EXECUTION_STRATEGY_TREE"
    assert document["config"]["maxDepth"] == 2


def test_team_start_without_watch_reports_the_first_update(
    mesh: tuple[World, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, address = mesh
    team = world.add_team("starter", task="go", config=team_pb2.TeamConfig(size=4))
    result = godel(capsys, address, "team", "start", team.id)
    assert (result.code, result.out) == (0, f"started team {team.id}: now active (25%)\n")
    created = godel(capsys, address, "team", "create", "both", "--task", "go", "--start")
    new_id = created.lines[0]
    assert created.code == 0 and created.lines[1].startswith(f"started team {new_id}: now active")


def test_team_start_watch_json_is_one_update_per_line(
    mesh: tuple[World, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, address = mesh
    team = world.add_team("j", task="go", config=team_pb2.TeamConfig(size=2))
    result = godel(capsys, address, "--json", "team", "start", team.id, "--watch")
    assert result.code == 0
    updates = [json.loads(line) for line in result.lines]
    assert [u["event"]["type"] for u in updates] == ["team:progress", "team:progress", "team:complete"]
    assert updates[-1]["team"]["status"] == "TEAM_STATUS_COMPLETED"


def test_team_list_get_agents_metrics_scale_delete(
    mesh: tuple[World, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, address = mesh
    team = world.add_team("squad", task="review", config=team_pb2.TeamConfig(size=2, model="gpt-4o"))
    world.add_team("old", status=team_pb2.TEAM_STATUS_COMPLETED)
    assert godel(capsys, address, "team", "start", team.id, "--watch").code == 0

    listing = godel(capsys, address, "team", "list", "--status", "completed")
    assert listing.lines[0].split() == [
        "ID",
        "STATUS",
        "STRATEGY",
        "AGENTS",
        "PROGRESS",
        "SPENT",
        "AGE",
        "NAME",
    ]
    assert len(listing.lines) == 3 and all("completed" in line for line in listing.lines[1:])
    assert len(godel(capsys, address, "team", "list", "--limit", "1").lines) == 2
    assert json.loads(godel(capsys, address, "--json", "team", "list", "--status", "paused").out) == {
        "teams": []
    }

    detail = godel(capsys, address, "team", "get", team.id).out
    assert re.search(r"^status +completed$", detail, re.MULTILINE)
    assert re.search(r"^model +gpt-4o$", detail, re.MULTILINE)

    agents = godel(capsys, address, "team", "agents", team.id)
    assert agents.code == 0 and all(a in agents.out for a in world.teams[team.id].agent_ids)

    metrics = godel(capsys, address, "team", "metrics", team.id).out
    assert re.search(r"^completion +100%$", metrics, re.MULTILINE)
    assert re.search(r"^cost +\$0\.0200$", metrics, re.MULTILINE)

    scaled = godel(capsys, address, "team", "scale", team.id, "5")
    assert scaled.out == f"scaled team {team.id} from 2 to 5 agents (added 3)\n"
    assert json.loads(godel(capsys, address, "--json", "team", "scale", team.id, "1").out)["currentSize"] == 1

    deleted = godel(capsys, address, "team", "delete", team.id)
    assert deleted.out == f"deleted team {team.id}\n" and team.id not in world.teams
    missing = godel(capsys, address, "team", "get", team.id)
    assert missing.code == 1 and "not found" in missing.err


def test_team_pause_and_resume(mesh: tuple[World, str], capsys: pytest.CaptureFixture[str]) -> None:
    world, address = mesh
    team = world.add_team("busy")
    assert godel(capsys, address, "team", "pause", team.id).out == f"paused team {team.id}: now paused (0%)\n"
    refused = godel(capsys, address, "team", "pause", team.id)
    assert (
        refused.code == 1 and refused.err == f"error: cannot pause team {team.id}: the team is not active\n"
    )
    resumed = godel(capsys, address, "--json", "team", "resume", team.id)
    assert json.loads(resumed.out)["status"] == "TEAM_STATUS_ACTIVE"


# -- workflows -------------------------------------------------------------------------------------

PIPELINE = """\
name: release
steps:
  - id: build
    task: build the wheel
  - id: test
    task: run the tests
    depends_on: [build]
"""


def _write(tmp_path: Path, text: str, name: str = "release.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_workflow_run_watch_prints_step_changes_then_a_table(
    mesh: tuple[World, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    world, address = mesh
    path = _write(tmp_path, PIPELINE)
    result = godel(
        capsys,
        address,
        "workflow",
        "run",
        str(path),
        "--team",
        "t-1",
        "--context",
        '{"branch": "main"}',
        "--watch",
    )
    assert result.code == 0, result.err
    workflow_id = result.lines[0]
    assert result.lines[1:5] == [
        "step build  running    agent 1a2b3c4d…",
        "step build  completed  agent 1a2b3c4d…",
        "step test   running    agent 2a2b3c4d…",
        "step test   completed  agent 2a2b3c4d…",
    ]
    assert result.lines[5] == f"workflow {workflow_id} completed, took 42s"
    assert result.lines[6].split() == ["STEP", "STATUS", "DURATION", "RETRIES", "AGENT", "OUTPUT"]
    assert result.lines[7].split() == ["build", "completed", "7s", "0", "1a2b3c4d…", "build", "done", "more"]
    create = _requests(world, workflow_service_pb2.CreateWorkflowRequest)[-1]
    assert (create.definition_text, create.start, create.team_id) == (PIPELINE, True, "t-1")
    assert dict(create.context) == {"branch": "main"}
    subscribe = _requests(world, event_service_pb2.SubscribeEventsRequest)[-1]
    assert (list(subscribe.pattern), subscribe.workflow_id) == (["workflow:*"], workflow_id)


def test_workflow_with_a_failing_step_exits_1(
    mesh: tuple[World, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, address = mesh
    path = _write(tmp_path, PIPELINE.replace("run the tests", "fail the tests"))
    result = godel(capsys, address, "workflow", "run", str(path), "--watch")
    assert result.code == 1
    assert "step test   failed     agent 2a2b3c4d…  exit status 1 stack..." in result.lines
    assert result.lines[-1].split()[:3] == ["test", "failed", "7s"]
    assert "error: exit status 1 stack..." in result.lines[-1]


def test_workflow_watch_polls_when_there_is_no_event_stream(
    mesh: tuple[World, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    world, address = mesh
    world.events_available = False
    result = godel(capsys, address, "workflow", "run", str(_write(tmp_path, PIPELINE)), "--watch")
    assert result.code == 0, result.err
    assert [line.split()[:3] for line in result.lines[1:5]] == [
        ["step", "build", "running"],
        ["step", "build", "completed"],
        ["step", "test", "running"],
        ["step", "test", "completed"],
    ]


def test_workflow_run_watch_json_is_one_look_per_line(
    mesh: tuple[World, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, address = mesh
    result = godel(capsys, address, "--json", "workflow", "run", str(_write(tmp_path, PIPELINE)), "--watch")
    assert result.code == 0
    looks = [json.loads(line) for line in result.lines]
    assert looks[0]["workflow"]["status"] == "WORKFLOW_STATUS_RUNNING"
    assert looks[-1]["workflow"]["status"] == "WORKFLOW_STATUS_COMPLETED"
    assert [s["status"] for s in looks[-1]["steps"]] == ["STEP_STATUS_COMPLETED"] * 2


def test_workflow_list_get_steps_control_delete(
    mesh: tuple[World, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    world, address = mesh
    run_ = godel(capsys, address, "workflow", "run", str(_write(tmp_path, PIPELINE)))
    workflow_id = run_.out.strip()
    assert run_.code == 0 and workflow_id in world.workflows

    listing = godel(capsys, address, "workflow", "list", "--status", "running")
    assert listing.lines[0].split() == ["ID", "STATUS", "PROGRESS", "STEPS", "TEAM", "AGE", "NAME"]
    assert listing.lines[1].split()[:4] == [workflow_id, "running", "0%", "2"]
    assert "no workflows found" in godel(capsys, address, "workflow", "list", "--team", "nobody").err

    detail = godel(capsys, address, "workflow", "get", workflow_id).out
    assert re.search(r"^steps +build  build the wheel$", detail, re.MULTILINE)

    steps = godel(capsys, address, "workflow", "steps", workflow_id)
    assert [line.split()[:2] for line in steps.lines[1:]] == [["build", "running"], ["test", "pending"]]

    paused = godel(capsys, address, "workflow", "pause", workflow_id)
    assert paused.out == f"paused workflow {workflow_id}: now paused (0%)\n"
    assert godel(capsys, address, "workflow", "resume", workflow_id).code == 0
    cancelled = godel(capsys, address, "workflow", "cancel", workflow_id, "--reason", "wrong branch")
    assert cancelled.out == f"cancelled workflow {workflow_id}: now cancelled (0%)\n"
    assert _requests(world, workflow_service_pb2.CancelWorkflowRequest)[-1].reason == "wrong branch"
    again = godel(capsys, address, "workflow", "cancel", workflow_id)
    assert again.code == 1 and f"cannot cancel workflow {workflow_id}: the workflow has ended" in again.err

    assert godel(capsys, address, "--json", "workflow", "delete", workflow_id).out == (
        json.dumps({"id": workflow_id, "deleted": True}, indent=2) + "\n"
    )


# -- tasks -----------------------------------------------------------------------------------------


def test_task_create_list_get_assign_complete(
    mesh: tuple[World, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, address = mesh
    created = godel(
        capsys, address, "task", "create", "triage issue 42", "--priority", "high", "--team", "t-1",
        "--description", "label and route it",
    )  # fmt: skip
    task_id = created.out.strip()
    assert created.code == 0 and world.tasks[task_id].priority == task_pb2.TASK_PRIORITY_HIGH
    godel(capsys, address, "task", "create", "other")

    listing = godel(capsys, address, "task", "list", "--team", "t-1")
    assert listing.lines[0].split() == ["ID", "STATUS", "PRIORITY", "TEAM", "AGENT", "AGE", "TITLE"]
    assert len(listing.lines) == 2 and listing.lines[1].split()[:4] == [task_id, "pending", "high", "t-1"]

    detail = godel(capsys, address, "task", "get", task_id).out
    assert re.search(r"^description +label and route it$", detail, re.MULTILINE)

    assigned = godel(capsys, address, "task", "assign", task_id)
    assert assigned.out == f"assigned task {task_id} to agent idle-agent-1: now assigned\n"
    assert godel(capsys, address, "task", "assign", task_id, "--agent", "a-9").out.endswith(
        "agent a-9: now assigned\n"
    )

    completed = godel(capsys, address, "task", "complete", task_id, "--result", '{"labels": ["bug"]}')
    assert completed.out == f"completed task {task_id}: now completed\n"
    assert dict(_requests(world, task_service_pb2.CompleteTaskRequest)[-1].result)["labels"] == ["bug"]
    failed = godel(capsys, address, "--json", "task", "complete", task_id, "--error", "cannot reproduce")
    assert json.loads(failed.out)["status"] == "TASK_STATUS_FAILED"


# -- budgets ---------------------------------------------------------------------------------------


def test_budget_set_list_get_delete(mesh: tuple[World, str], capsys: pytest.CaptureFixture[str]) -> None:
    world, address = mesh
    result = godel(capsys, address, "budget", "set", "--team", "t-1", "25", "--period", "monthly")
    budget_id = result.out.split()[1].rstrip(":")
    assert result.out == f"budget {budget_id}: team:t-1 may spend $25.00 (monthly)\n"
    request = _requests(world, budget_service_pb2.SetBudgetRequest)[-1]
    assert (request.entity_type, request.total_budget) == (budget_pb2.BUDGET_ENTITY_TYPE_TEAM, 25.0)
    assert request.period == budget_pb2.BUDGET_PERIOD_MONTHLY
    org = godel(capsys, address, "budget", "set", "--org", "acme", "100", "--currency", "EUR")
    assert org.out.endswith("organization:acme may spend 100.00 EUR (none)\n")

    listing = godel(capsys, address, "budget", "list")
    assert listing.lines[0].split() == ["ID", "ENTITY", "USED", "TOTAL", "USED%", "PERIOD"]
    assert listing.lines[1].split()[1:] == ["team:t-1", "$6.25", "$25.00", "25%", "monthly"]
    only_org = godel(capsys, address, "--json", "budget", "list", "--org", "acme")
    assert [b["entityId"] for b in json.loads(only_org.out)["budgets"]] == ["acme"]

    detail = godel(capsys, address, "budget", "get", budget_id).out
    assert re.search(r"^used +\$6\.25 \(25%\)$", detail, re.MULTILINE)
    assert godel(capsys, address, "budget", "delete", budget_id).out == f"deleted budget {budget_id}\n"
    assert budget_id not in world.budgets


# -- godel do --------------------------------------------------------------------------------------


def test_do_create_team_understands_creates_starts_and_follows(
    mesh: tuple[World, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, address = mesh
    text = "create a team of 3 agents to review authentication code"
    result = godel(capsys, address, "do", text, "--", "claude", "-p", "{task}")
    assert result.code == 0, result.err
    assert result.lines[0] == 'Understood: create_team (95%) size=3 task="review authentication code"'
    (team_id,) = world.teams
    assert result.lines[1] == f"created team {team_id} (review-authentication: strategy parallel, size 3)"
    assert [PROGRESS_LINE.match(line) is not None for line in result.lines[2:6]] == [True] * 4
    assert result.lines[6].startswith(f"team {team_id} completed: 3/3 agents completed (100%)")
    swarm = _requests(world, intent_service_pb2.GenerateSwarmConfigRequest)[-1]
    assert swarm.task == "review authentication code"
    create = _requests(world, team_service_pb2.CreateTeamRequest)[-1]
    assert (create.name, create.task, create.config.size) == (
        "review-authentication",
        "review authentication code",
        3,
    )
    assert create.execution_strategy == team_pb2.EXECUTION_STRATEGY_PARALLEL
    assert list(create.config.command) == ["claude", "-p", "{task}"] and create.config.runtime == "command"


def test_do_dry_run_shows_the_plan_and_creates_nothing(
    mesh: tuple[World, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, address = mesh
    result = godel(capsys, address, "do", "create a team of 4 agents to port the parser", "--dry-run")
    assert result.code == 0
    assert result.lines[:2] == [
        'Understood: create_team (95%) size=4 task="port the parser"',
        "Plan (dry run, nothing done):",
    ]
    plan = "\n".join(result.lines[2:])
    for expected in (
        r"^action +create_team$",
        r"^name +port-the$",
        r"^size +4$",
        r"^strategy +parallel$",
        r"^roles +1 worker \(gpt-4o\)$",
    ):
        assert re.search(expected, plan, re.MULTILINE), (expected, plan)
    assert not world.teams and not _requests(world, team_service_pb2.CreateTeamRequest)
    as_json = godel(capsys, address, "--json", "do", "scale team t-9 to 2", "--dry-run")
    intent, plan_doc = (json.loads(line) for line in as_json.lines)
    assert intent["intent"]["type"] == "INTENT_TYPE_SCALE_TEAM"
    assert plan_doc == {"plan": {"action": "scale_team", "team": "t-9", "size": 2}}


def test_do_scale_stop_and_status(mesh: tuple[World, str], capsys: pytest.CaptureFixture[str]) -> None:
    world, address = mesh
    team = world.add_team("crew", task="x")
    scaled = godel(capsys, address, "do", f"scale team {team.id} to 2")
    assert scaled.code == 0 and scaled.lines[1] == f"scaled team {team.id} from 0 to 2 agents (added 2)"

    agent = world.add_agent("stuck")
    stopped = godel(capsys, address, "do", f"stop agent {agent.id}")
    assert stopped.lines[1] == f"killed agent {agent.id}: now killed/killed"
    kill = _requests(world, agent_service_pb2.KillAgentRequest)[-1]
    assert (kill.id, kill.reason) == (agent.id, f"godel do: stop agent {agent.id}")

    status = godel(capsys, address, "do", "what is running")
    assert status.lines[0] == "Understood: query_status (80%)"
    assert (
        status.lines[1].split()[:2] == ["ID", "STATUS"] and team.id in status.out and agent.id in status.out
    )


def test_do_follows_the_parameters_of_the_real_parser(
    mesh: tuple[World, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """target/id for stop and status, delta for scale, inputs for a workflow's context."""
    world, address = mesh
    team = world.add_team("crew", task="x", agent_ids=["a1", "a2"])
    plan = godel(capsys, address, "--json", "do", f"add 2 agents to team {team.id}", "--dry-run")
    assert json.loads(plan.lines[1]) == {"plan": {"action": "scale_team", "team": team.id, "by": "+2 agents"}}
    grown = godel(capsys, address, "do", f"add 2 agents to team {team.id}")
    assert grown.lines[1] == f"scaled team {team.id} from 2 to 4 agents (added 2)"

    refused = godel(capsys, address, "do", f"stop team {team.id}")
    assert refused.code == 2 and "stops agents and workflows, not a team" in refused.err

    path = _write(tmp_path, PIPELINE)
    started = godel(capsys, address, "do", f"run workflow {path} on main", "--no-watch")
    workflow_id = started.lines[1]
    assert dict(_requests(world, workflow_service_pb2.CreateWorkflowRequest)[-1].context) == {
        "branch": "main"
    }
    shown = godel(capsys, address, "do", f"status of workflow {workflow_id}")
    assert re.search(rf"^id +{workflow_id}$", shown.out, re.MULTILINE)
    stopped = godel(capsys, address, "do", f"stop workflow {workflow_id}")
    assert stopped.lines[1] == f"cancelled workflow {workflow_id}"
    assert _requests(world, workflow_service_pb2.CancelWorkflowRequest)[-1].reason.startswith(
        "godel do: stop"
    )

    world.add_agent("busy")
    world.add_agent("idle", status=agent_pb2.AGENT_STATUS_COMPLETED)
    running = godel(capsys, address, "do", "list running agents")
    assert running.lines[0] == "Understood: query_status (85%) filter=running target=agent"
    assert running.lines[1].split()[:2] == ["ID", "STATUS"]
    assert "busy" in running.out and "idle" not in running.out
    assert _requests(world, agent_service_pb2.ListAgentsRequest)[-1].status == [
        agent_pb2.AGENT_STATUS_RUNNING
    ]


def test_do_spawn_agents_and_follow_them(mesh: tuple[World, str], capsys: pytest.CaptureFixture[str]) -> None:
    world, address = mesh
    result = godel(capsys, address, "do", "spawn 2 agents to fix the flaky test", "--", "/bin/true")
    assert result.code == 0, result.err
    created = _requests(world, agent_service_pb2.CreateAgentRequest)
    assert [r.task for r in created] == ["fix the flaky test"] * 2 and list(created[0].config.command) == [
        "/bin/true"
    ]
    ids = result.lines[1:3]
    assert set(ids) == set(world.agents)
    finished = [line for line in result.lines if "completed/completed" in line]
    assert {line.split()[1] for line in finished} == {f"{i[:8]}…" for i in ids}

    no_watch = godel(capsys, address, "do", "spawn 1 agent to say hi", "--no-watch")
    assert no_watch.code == 0 and len(no_watch.lines) == 2 and no_watch.lines[1] in world.agents


def test_do_execute_workflow_runs_the_named_file(
    mesh: tuple[World, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, address = mesh
    path = _write(tmp_path, PIPELINE)
    result = godel(capsys, address, "do", f"run workflow {path}")
    assert result.code == 0, result.err
    assert result.lines[0] == f"Understood: execute_workflow (90%) workflow={path}"
    assert "step test   completed  agent 2a2b3c4d…" in result.lines


def test_do_custom_request_prints_the_intent_and_a_hint(
    mesh: tuple[World, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, address = mesh
    result = godel(capsys, address, "do", "sing me a song")
    assert result.code == 2
    assert result.out == "Understood: custom (20%)\n"
    assert "don't know how to act on a custom request; try e.g." in result.err
    unknown = godel(capsys, address, "do", "run workflow 5e1f0000")
    assert unknown.code == 1 and "workflow '5e1f0000' not found" in unknown.err  # no file: taken as an id
    missing = godel(capsys, address, "do", "run workflow nope.yaml")
    assert missing.code == 2 and missing.err == "error: no workflow file nope.yaml\n"
    assert not world.teams


# -- parser errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["team", "create", "reviewers"], "the following arguments are required: --task"),
        (["team", "create", "r", "--task", "t", "--strategy", "swarm"], "invalid choice: 'swarm'"),
        (["team", "create", "r", "--task", "t", "--size", "0"], "must be greater than 0: '0'"),
        (["team", "scale", "t-1", "many"], "not a whole number: 'many'"),
        (["team", "list", "--status", "sleeping"], "invalid choice: 'sleeping'"),
        (["team", "start"], "the following arguments are required: id"),
        (["team", "list", "--", "echo"], "only accepted by `agent spawn`, `team create` and `do`"),
        (["workflow", "run", "/no/such/workflow.yaml"], "cannot read /no/such/workflow.yaml: No such file"),
        (["workflow", "run", "/dev/null", "--context", "[1, 2]"], "must be a JSON object"),
        (["task", "create", "t", "--priority", "urgent"], "invalid choice: 'urgent'"),
        (["task", "create", "  "], "must not be empty"),
        (["task", "complete", "t-1", "--result", "{}", "--error", "x"], "not allowed with argument --result"),
        (["budget", "set", "25"], "one of the arguments --agent --team --user --org is required"),
        (["budget", "set", "--agent", "a", "--team", "b", "25"], "not allowed with argument --agent"),
        (["budget", "set", "--team", "b", "-5"], "must not be negative: '-5'"),
        (["budget", "set", "--team", "b", "25", "--period", "hourly"], "invalid choice: 'hourly'"),
        (["do"], "the following arguments are required: text"),
    ],
)
def test_argument_errors_exit_2_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    result = run(capsys, *argv)
    assert result.code == 2
    assert message in result.err, result.err


def test_do_dry_run_plan_shows_the_argv_after_double_dash(
    mesh: tuple[World, str], capsys: pytest.CaptureFixture[str]
) -> None:
    world, address = mesh
    text = "spawn 2 agents to say hi"
    result = godel(capsys, address, "do", text, "--dry-run", "--", "/bin/echo", "hi there", "{task}")
    assert result.code == 0
    assert re.search(r"^command +/bin/echo 'hi there' '\{task\}'$", result.out, re.MULTILINE), result.out
    assert re.search(r"^runtime +command$", result.out, re.MULTILINE)
    assert not world.agents


# -- client and rendering ----------------------------------------------------------------------------


def test_enum_helpers_accept_cli_spellings_and_name_the_choices() -> None:
    assert execution_strategy("map-reduce") == team_pb2.EXECUTION_STRATEGY_MAP_REDUCE
    assert execution_strategy("EXECUTION_STRATEGY_TREE") == team_pb2.EXECUTION_STRATEGY_TREE
    assert task_priority(task_pb2.TaskPriority.ValueType(3)) == task_pb2.TASK_PRIORITY_HIGH
    with pytest.raises(
        ValueError, match=r"unknown task priority 'urgent' \(choose from low, medium, high, critical\)"
    ):
        task_priority("urgent")


def test_team_update_line_prefers_the_counts_the_event_carries() -> None:
    team = team_pb2.Team(id="t", status=ACTIVE, progress=40, agent_ids=["a" * 36, "b" * 36])
    event = event_pb2.Event(
        type="agent:complete",
        payload=_struct(completed=2, total=5, message="wrote\nthe report"),
        metadata=event_pb2.EventMetadata(agent_id="3f2a1b2c-0000-4000-8000-000000000000"),
    )
    line = render.team_update_line(team_service_pb2.StartTeamResponse(team=team, event=event))
    assert line == "[ 40%] agent:complete  agent 3f2a1b2c… completed (2/5) — wrote the report"
    bare = render.team_update_line(team_service_pb2.StartTeamResponse(team=team))
    assert bare == "[ 40%] team  active (2 agents)"
    team.status, team.progress = team_pb2.TEAM_STATUS_COMPLETED, 100
    end = event_pb2.Event(
        type="team:complete", payload=_struct(status="completed", completionRate=0.75, members=4)
    )
    line = render.team_update_line(team_service_pb2.StartTeamResponse(team=team, event=end))
    assert line == "[100%] team:complete  team completed (3/4)"
