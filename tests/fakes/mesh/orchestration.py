"""The fake mesh's TeamService, WorkflowService, TaskService, BudgetService and IntentService.

Intents and team configurations come from the real deterministic parser and generator, workflow
definitions from the real definition parser. The rest is canned but consistent: a started team
reports one update per member then ends, a started workflow moves its steps one state per look.
A task (of a team, a workflow step) that says "fail" fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf import struct_pb2

from godel.v1 import (
    agent_events_pb2,
    agent_pb2,
    budget_pb2,
    budget_service_pb2,
    budget_service_pb2_grpc,
    event_pb2,
    event_service_pb2,
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
from godel_server.runtime.errors import FailedPreconditionError, NotFoundError, ValidationError
from godel_server.team.intent.parser import parse_intent
from godel_server.team.intent.swarm import generate_swarm_config
from godel_server.team.workflows.definition import parse_and_validate
from tests.fakes.mesh.state import FakeMesh, fail, find, new_id, page, require_key, ts

ACTIVE = team_pb2.TEAM_STATUS_ACTIVE
WorkflowState = tuple[workflow_pb2.Workflow, list[workflow_pb2.WorkflowStep]]


def _struct(**values: Any) -> struct_pb2.Struct:
    document = struct_pb2.Struct()
    document.update(values)
    return document


class FakeTeams(team_service_pb2_grpc.TeamServiceServicer):
    def __init__(self, mesh: FakeMesh) -> None:
        self.mesh = mesh

    def _team(self, id_: str, context: grpc.ServicerContext) -> team_pb2.Team:
        return find(context, self.mesh.teams, id_, NotFoundError("team", id_))

    def CreateTeam(
        self, request: team_service_pb2.CreateTeamRequest, context: grpc.ServicerContext
    ) -> team_pb2.Team:
        require_key(context)
        self.mesh.requests.append(request)
        if not request.name.strip():
            fail(context, ValidationError.single("name", "must not be empty"))
        team = self.mesh.add_team(
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
        require_key(context)
        found = [t for t in self.mesh.teams.values() if not request.status or t.status in request.status]
        teams, token = page(found, request)
        return team_service_pb2.ListTeamsResponse(teams=teams, next_page_token=token)

    def DeleteTeam(
        self, request: team_service_pb2.DeleteTeamRequest, context: grpc.ServicerContext
    ) -> team_service_pb2.DeleteTeamResponse:
        self._team(request.id, context)
        del self.mesh.teams[request.id]
        return team_service_pb2.DeleteTeamResponse()

    def StartTeam(
        self, request: team_service_pb2.StartTeamRequest, context: grpc.ServicerContext
    ) -> Iterator[team_service_pb2.StartTeamResponse]:
        """One update per member (the last one fails when the task says "fail"), then the end."""
        team = self._team(request.id, context)
        self.mesh.requests.append(request)
        size = team.config.size or 3
        members = [self.mesh.add_agent(team.task, team_id=team.id).id for _ in range(size)]
        team.agent_ids[:] = members
        team.status = ACTIVE
        team.started_at.CopyFrom(ts())
        failing = "fail" in team.task
        for i, member in enumerate(members, start=1):
            failed = failing and i == size
            if not failed:
                team.results.fields[member].string_value = f"done {i}"
            team.progress = i * 100 // size
            team.budget_consumed += 0.01
            # The agent event that moved the team on, as the team service streams it.
            status = agent_pb2.AGENT_STATUS_FAILED if failed else agent_pb2.AGENT_STATUS_COMPLETED
            transition = agent_pb2.AgentTransition(agent_id=member, to_status=status)
            event = event_pb2.Event(
                id=new_id(),
                type="agent:error" if failed else "agent:complete",
                metadata=event_pb2.EventMetadata(team_id=team.id, agent_id=member),
            )
            if failed:
                event.agent_failed.CopyFrom(agent_events_pb2.AgentFailed(transition=transition, final=True))
            else:
                event.agent_completed.CopyFrom(agent_events_pb2.AgentCompleted(transition=transition))
            yield team_service_pb2.StartTeamResponse(team=team, event=event)
        team.status = team_pb2.TEAM_STATUS_FAILED if failing else team_pb2.TEAM_STATUS_COMPLETED
        team.completed_at.CopyFrom(ts(62))
        if failing:
            team.error = f"agent {members[-1]} failed: exit status 1"
        kind = "team:error" if failing else "team:complete"
        end = event_pb2.Event(id=new_id(), type=kind, metadata=event_pb2.EventMetadata(team_id=team.id))
        yield team_service_pb2.StartTeamResponse(team=team, event=end)

    def PauseTeam(
        self, request: team_service_pb2.PauseTeamRequest, context: grpc.ServicerContext
    ) -> team_pb2.Team:
        team = self._team(request.id, context)
        if team.status != ACTIVE:
            fail(context, FailedPreconditionError("the team is not active"))
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
            self.mesh.add_agent(team.task, team_id=team.id).id for _ in range(request.target_size - previous)
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
        agents, token = page([self.mesh.agents[a] for a in team.agent_ids], request)
        return team_service_pb2.ListTeamAgentsResponse(agents=agents, next_page_token=token)

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


def _copy(state: WorkflowState) -> WorkflowState:
    workflow, steps = state
    return workflow_pb2.Workflow.FromString(workflow.SerializeToString()), [
        workflow_pb2.WorkflowStep.FromString(s.SerializeToString()) for s in steps
    ]


def workflow_script(workflow: workflow_pb2.Workflow) -> list[WorkflowState]:
    """The states of a started workflow: its steps pending, then each step (in definition order)
    running and then done, its agent `<n>a2b3c4d-...` (a step whose task says "fail" fails and
    ends the workflow), then the workflow ended."""
    steps = [
        workflow_pb2.WorkflowStep(
            id=new_id(),
            workflow_id=workflow.id,
            step_id=d.id,
            name=d.name,
            task=d.task,
            dependencies=d.depends_on,
            status=workflow_pb2.STEP_STATUS_PENDING,
        )
        for d in workflow.definition.steps
    ]
    states = [_copy((workflow, steps))]
    failed = False
    for i, step in enumerate(steps):
        step.status, step.agent_id = (
            workflow_pb2.STEP_STATUS_RUNNING,
            f"{i + 1:x}a2b3c4d-0000-4000-8000-000000000000",
        )
        step.started_at.CopyFrom(ts(i * 10))
        workflow.current_step_id = step.step_id
        states.append(_copy((workflow, steps)))
        step.completed_at.CopyFrom(ts(i * 10 + 7))
        if "fail" in step.task:
            step.status, step.error, failed = workflow_pb2.STEP_STATUS_FAILED, "exit status 1\nstack...", True
            break
        step.status = workflow_pb2.STEP_STATUS_COMPLETED
        step.result.fields["output"].string_value = f"{step.step_id} done\nmore"
        workflow.progress = (i + 1) * 100 // len(steps)
        states.append(_copy((workflow, steps)))
    workflow.status = (
        workflow_pb2.WORKFLOW_STATUS_FAILED if failed else workflow_pb2.WORKFLOW_STATUS_COMPLETED
    )
    workflow.completed_at.CopyFrom(ts(42))
    states.append(_copy((workflow, steps)))
    return states


class FakeWorkflows(workflow_service_pb2_grpc.WorkflowServiceServicer):
    """A started workflow goes through :func:`workflow_script`, one state per GetWorkflow; each
    state still to come is announced by a ``workflow:step:start`` event in ``mesh.stream``."""

    def __init__(self, mesh: FakeMesh) -> None:
        self.mesh = mesh

    def _workflow(self, id_: str, context: grpc.ServicerContext) -> workflow_pb2.Workflow:
        return find(context, self.mesh.workflows, id_, NotFoundError("workflow", id_))

    def _start(self, workflow: workflow_pb2.Workflow) -> None:
        workflow.status = workflow_pb2.WORKFLOW_STATUS_RUNNING
        workflow.started_at.CopyFrom(ts())
        first, *coming = workflow_script(workflow_pb2.Workflow.FromString(workflow.SerializeToString()))
        self.mesh.steps[workflow.id] = first[1]
        self.mesh.scripts[workflow.id] = coming
        for _ in coming:
            event = event_pb2.Event(
                id=new_id(),
                type="workflow:step:start",
                sequence=len(self.mesh.stream) + 1,
                metadata=event_pb2.EventMetadata(workflow_id=workflow.id),
            )
            self.mesh.stream.append(event_service_pb2.SubscribeEventsResponse(event=event))

    def CreateWorkflow(
        self, request: workflow_service_pb2.CreateWorkflowRequest, context: grpc.ServicerContext
    ) -> workflow_pb2.Workflow:
        require_key(context)
        self.mesh.requests.append(request)
        try:
            definition = parse_and_validate(request.definition_text)
        except ValidationError as exc:
            fail(context, exc)
        workflow = workflow_pb2.Workflow(
            id=new_id(),
            name=definition.name,
            definition=definition,
            status=workflow_pb2.WORKFLOW_STATUS_PENDING,
            team_id=request.team_id,
            context=request.context,
            created_at=ts(),
        )
        self.mesh.workflows[workflow.id] = workflow
        self.mesh.steps[workflow.id] = []
        if request.start:
            self._start(workflow)
        return workflow

    def GetWorkflow(
        self, request: workflow_service_pb2.GetWorkflowRequest, context: grpc.ServicerContext
    ) -> workflow_pb2.Workflow:
        self._workflow(request.id, context)
        script = self.mesh.scripts.get(request.id)
        if script:
            self.mesh.workflows[request.id], self.mesh.steps[request.id] = script.pop(0)
        return self.mesh.workflows[request.id]

    def ListWorkflows(
        self, request: workflow_service_pb2.ListWorkflowsRequest, context: grpc.ServicerContext
    ) -> workflow_service_pb2.ListWorkflowsResponse:
        require_key(context)
        found = [
            w
            for w in self.mesh.workflows.values()
            if (not request.status or w.status in request.status)
            and (not request.team_id or w.team_id == request.team_id)
        ]
        workflows, token = page(found, request)
        return workflow_service_pb2.ListWorkflowsResponse(workflows=workflows, next_page_token=token)

    def ListWorkflowSteps(
        self, request: workflow_service_pb2.ListWorkflowStepsRequest, context: grpc.ServicerContext
    ) -> workflow_service_pb2.ListWorkflowStepsResponse:
        self._workflow(request.id, context)
        steps, token = page(self.mesh.steps[request.id], request)
        return workflow_service_pb2.ListWorkflowStepsResponse(steps=steps, next_page_token=token)

    def StartWorkflow(
        self, request: workflow_service_pb2.StartWorkflowRequest, context: grpc.ServicerContext
    ) -> workflow_pb2.Workflow:
        workflow = self._workflow(request.id, context)
        self._start(workflow)
        return workflow

    def _set(self, request: Any, context: grpc.ServicerContext, status: int) -> workflow_pb2.Workflow:
        workflow = self._workflow(request.id, context)
        self.mesh.requests.append(request)
        if workflow.status in (
            workflow_pb2.WORKFLOW_STATUS_COMPLETED,
            workflow_pb2.WORKFLOW_STATUS_CANCELLED,
        ):
            fail(context, FailedPreconditionError("the workflow has ended"))
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
        del self.mesh.workflows[request.id]
        return workflow_service_pb2.DeleteWorkflowResponse()


class FakeTasks(task_service_pb2_grpc.TaskServiceServicer):
    def __init__(self, mesh: FakeMesh) -> None:
        self.mesh = mesh

    def _task(self, id_: str, context: grpc.ServicerContext) -> task_pb2.Task:
        return find(context, self.mesh.tasks, id_, NotFoundError("task", id_))

    def CreateTask(
        self, request: task_service_pb2.CreateTaskRequest, context: grpc.ServicerContext
    ) -> task_pb2.Task:
        require_key(context)
        self.mesh.requests.append(request)
        task = task_pb2.Task(
            id=new_id(),
            title=request.title,
            description=request.description,
            priority=request.priority or task_pb2.TASK_PRIORITY_MEDIUM,
            team_id=request.team_id,
            status=task_pb2.TASK_STATUS_PENDING,
            created_at=ts(),
        )
        self.mesh.tasks[task.id] = task
        return task

    def GetTask(
        self, request: task_service_pb2.GetTaskRequest, context: grpc.ServicerContext
    ) -> task_pb2.Task:
        return self._task(request.id, context)

    def ListTasks(
        self, request: task_service_pb2.ListTasksRequest, context: grpc.ServicerContext
    ) -> task_service_pb2.ListTasksResponse:
        require_key(context)
        found = [
            t
            for t in self.mesh.tasks.values()
            if (not request.status or t.status in request.status)
            and (not request.team_id or t.team_id == request.team_id)
            and (not request.agent_id or t.agent_id == request.agent_id)
        ]
        tasks, token = page(found, request)
        return task_service_pb2.ListTasksResponse(tasks=tasks, next_page_token=token)

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
        self.mesh.requests.append(request)
        task.status = task_pb2.TASK_STATUS_FAILED if request.error else task_pb2.TASK_STATUS_COMPLETED
        task.error = request.error
        task.result.CopyFrom(request.result)
        return task


class FakeBudgets(budget_service_pb2_grpc.BudgetServiceServicer):
    """One budget per entity; a new budget has used a quarter of its total."""

    def __init__(self, mesh: FakeMesh) -> None:
        self.mesh = mesh

    def SetBudget(
        self, request: budget_service_pb2.SetBudgetRequest, context: grpc.ServicerContext
    ) -> budget_pb2.Budget:
        require_key(context)
        self.mesh.requests.append(request)
        for budget in self.mesh.budgets.values():
            if (budget.entity_type, budget.entity_id) == (request.entity_type, request.entity_id):
                budget.total_budget = request.total_budget
                return budget
        budget = budget_pb2.Budget(
            id=new_id(),
            entity_type=request.entity_type,
            entity_id=request.entity_id,
            total_budget=request.total_budget,
            used_budget=request.total_budget / 4,
            percentage=25.0,
            currency=request.currency or "USD",
            period=request.period or budget_pb2.BUDGET_PERIOD_NONE,
        )
        self.mesh.budgets[budget.id] = budget
        return budget

    def GetBudget(
        self, request: budget_service_pb2.GetBudgetRequest, context: grpc.ServicerContext
    ) -> budget_pb2.Budget:
        return find(context, self.mesh.budgets, request.id, NotFoundError("budget", request.id))

    def ListBudgets(
        self, request: budget_service_pb2.ListBudgetsRequest, context: grpc.ServicerContext
    ) -> budget_service_pb2.ListBudgetsResponse:
        require_key(context)
        found = [
            b
            for b in self.mesh.budgets.values()
            if (not request.entity_type or b.entity_type == request.entity_type)
            and (not request.entity_id or b.entity_id == request.entity_id)
        ]
        budgets, token = page(found, request)
        return budget_service_pb2.ListBudgetsResponse(budgets=budgets, next_page_token=token)

    def DeleteBudget(
        self, request: budget_service_pb2.DeleteBudgetRequest, context: grpc.ServicerContext
    ) -> budget_service_pb2.DeleteBudgetResponse:
        require_key(context)
        if self.mesh.budgets.pop(request.id, None) is None:
            fail(context, NotFoundError("budget", request.id))
        return budget_service_pb2.DeleteBudgetResponse()


class FakeIntents(intent_service_pb2_grpc.IntentServiceServicer):
    """The real deterministic parser and swarm generator (no llm parser)."""

    def __init__(self, mesh: FakeMesh) -> None:
        self.mesh = mesh

    def ParseIntent(
        self, request: intent_service_pb2.ParseIntentRequest, context: grpc.ServicerContext
    ) -> intent_pb2.Intent:
        require_key(context)
        self.mesh.requests.append(request)
        return parse_intent(request.input)

    def GenerateSwarmConfig(
        self, request: intent_service_pb2.GenerateSwarmConfigRequest, context: grpc.ServicerContext
    ) -> intent_pb2.SwarmConfig:
        require_key(context)
        self.mesh.requests.append(request)
        constraints = request.constraints if request.HasField("constraints") else None
        return generate_swarm_config(request.task, constraints)
