"""``client.workflows``: DAG workflows from YAML/JSON definitions; run, watch and control them
(WorkflowService)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, overload

from godel.v1 import event_pb2, event_service_pb2, workflow_pb2, workflow_service_pb2
from godel_client.enums import WorkflowStatusLike, enum_numbers, workflow_ended, workflow_status
from godel_client.errors import GodelError
from godel_client.events import subscribe_request
from godel_client.methods import Async, Mode, SubClient, Sync, by_id, paged, unary
from godel_client.service import AsyncConnection, to_struct


@dataclass(frozen=True)
class WorkflowProgress:
    """One observation of a watched workflow: the workflow, its steps, and the event that prompted
    the look (None for the first look and for polls)."""

    workflow: workflow_pb2.Workflow
    steps: list[workflow_pb2.WorkflowStep] = field(default_factory=list)
    event: event_pb2.Event | None = None

    @property
    def ended(self) -> bool:
        return workflow_ended(self.workflow)

    def fingerprint(self) -> bytes:
        parts = [self.workflow, *self.steps]
        return b"\0".join(part.SerializeToString(deterministic=True) for part in parts)


def _create(
    definition_text: str | None = None,
    *,
    definition: workflow_pb2.WorkflowDefinition | None = None,
    team_id: str | None = None,
    context: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    start: bool = False,
    request_id: str | None = None,
) -> workflow_service_pb2.CreateWorkflowRequest:
    """Creates a workflow from YAML/JSON ``definition_text`` (or a structured ``definition``); with
    ``start`` it runs right away. ``context`` is the workflow's input document."""
    return workflow_service_pb2.CreateWorkflowRequest(
        request_id=request_id or "",
        definition=definition,
        definition_text=definition_text or "",
        team_id=team_id or "",
        context=to_struct(context),
        metadata=to_struct(metadata),
        start=start,
    )


def _list(
    *,
    status: WorkflowStatusLike | Iterable[WorkflowStatusLike] | None = None,
    team_id: str | None = None,
    page_size: int = 50,
) -> workflow_service_pb2.ListWorkflowsRequest:
    """Workflows, fetched page by page as the iterator is consumed."""
    return workflow_service_pb2.ListWorkflowsRequest(
        page_size=page_size, status=enum_numbers(status, workflow_status), team_id=team_id or ""
    )


def _cancel(id: str, reason: str | None = None) -> workflow_service_pb2.CancelWorkflowRequest:
    """Cancels the workflow; the agents of its running steps are stopped."""
    return workflow_service_pb2.CancelWorkflowRequest(id=id, reason=reason or "")


def _steps(id: str, page_size: int = 100) -> workflow_service_pb2.ListWorkflowStepsRequest:
    """The state of each step of the workflow."""
    return workflow_service_pb2.ListWorkflowStepsRequest(id=id, page_size=page_size)


class Workflows(SubClient[Mode]):
    """The workflows of the mesh."""

    SERVICE = workflow_service_pb2.DESCRIPTOR.services_by_name["WorkflowService"]

    create = unary("CreateWorkflow", _create, workflow_pb2.Workflow)
    get = unary("GetWorkflow", by_id(workflow_service_pb2.GetWorkflowRequest), workflow_pb2.Workflow)
    list = paged(
        "ListWorkflows", _list, workflow_service_pb2.ListWorkflowsResponse, lambda page: page.workflows
    )
    delete = unary(
        "DeleteWorkflow",
        by_id(workflow_service_pb2.DeleteWorkflowRequest),
        workflow_service_pb2.DeleteWorkflowResponse,
        lambda _: None,
    )
    start = unary("StartWorkflow", by_id(workflow_service_pb2.StartWorkflowRequest), workflow_pb2.Workflow)
    cancel = unary("CancelWorkflow", _cancel, workflow_pb2.Workflow)
    pause = unary("PauseWorkflow", by_id(workflow_service_pb2.PauseWorkflowRequest), workflow_pb2.Workflow)
    resume = unary("ResumeWorkflow", by_id(workflow_service_pb2.ResumeWorkflowRequest), workflow_pb2.Workflow)
    steps = paged(
        "ListWorkflowSteps", _steps, workflow_service_pb2.ListWorkflowStepsResponse, lambda page: page.steps
    )

    @overload
    def watch(
        self: Workflows[Sync], id: str, *, poll_interval: float = 0.5, heartbeat_seconds: int = 1
    ) -> Iterator[WorkflowProgress]: ...
    @overload
    def watch(
        self: Workflows[Async], id: str, *, poll_interval: float = 0.5, heartbeat_seconds: int = 1
    ) -> AsyncIterator[WorkflowProgress]: ...
    def watch(self: Any, id: str, *, poll_interval: float = 0.5, heartbeat_seconds: int = 1) -> Any:
        """The workflow and its steps now, then again whenever they change, until the workflow ends.

        Changes are noticed through the event stream (``workflow:*`` events of this workflow; each
        one, and each heartbeat of a quiet stream, prompts a fresh look). The first look is taken
        once the subscription is in place, so that no change falls between the two. When the
        stream cannot be had or ends early, the workflow is polled every ``poll_interval`` seconds
        instead.
        """
        request = subscribe_request(["workflow:*"], workflow_id=id, heartbeat_seconds=heartbeat_seconds)
        connection = self._connection
        messages = connection.follow(connection.stubs.events.SubscribeEvents, request, _message)
        if isinstance(connection, AsyncConnection):
            return _watch_async(self, id, messages, poll_interval)
        return _watch(self, id, messages, poll_interval)


def _message(message: event_service_pb2.SubscribeEventsResponse) -> event_service_pb2.SubscribeEventsResponse:
    return message


def _event(message: event_service_pb2.SubscribeEventsResponse | None) -> event_pb2.Event | None:
    return message.event if message is not None and message.WhichOneof("item") == "event" else None


class _Changes:
    """The observations of a watched workflow worth reporting: those that differ from the last."""

    def __init__(self) -> None:
        self._seen: bytes | None = None

    def new(self, progress: WorkflowProgress) -> bool:
        fingerprint = progress.fingerprint()
        if fingerprint == self._seen:
            return False
        self._seen = fingerprint
        return True


def _watch(
    workflows: Workflows[Sync],
    id: str,
    messages: Iterator[event_service_pb2.SubscribeEventsResponse],
    poll_interval: float,
) -> Iterator[WorkflowProgress]:
    changes = _Changes()
    try:
        followed = _until_it_fails(messages)
        for message in itertools.chain([next(followed, None)], followed):  # the first: registered
            current = WorkflowProgress(workflows.get(id), [*workflows.steps(id)], _event(message))
            if changes.new(current):
                yield current
            if current.ended:
                return
    finally:
        close = getattr(messages, "close", None)
        if close is not None:
            close()
    while True:
        time.sleep(poll_interval)
        current = WorkflowProgress(workflows.get(id), [*workflows.steps(id)])
        if changes.new(current):
            yield current
        if current.ended:
            return


async def _watch_async(
    workflows: Workflows[Async],
    id: str,
    messages: AsyncIterator[event_service_pb2.SubscribeEventsResponse],
    poll_interval: float,
) -> AsyncIterator[WorkflowProgress]:
    changes = _Changes()

    async def look(event: event_pb2.Event | None = None) -> WorkflowProgress:
        return WorkflowProgress(await workflows.get(id), [step async for step in workflows.steps(id)], event)

    try:
        followed = _until_it_fails_async(messages)
        message = await anext(followed, None)  # the first: registered
        while True:
            current = await look(_event(message))
            if changes.new(current):
                yield current
            if current.ended:
                return
            message = await anext(followed, None)
            if message is None:
                break
    finally:
        close = getattr(messages, "aclose", None)
        if close is not None:
            await close()
    while True:
        await asyncio.sleep(poll_interval)
        current = await look()
        if changes.new(current):
            yield current
        if current.ended:
            return


def _until_it_fails(items: Iterator[Any]) -> Iterator[Any]:
    """The items until the stream ends or fails (e.g. events are not allowed, or the service is
    away): either way, polling takes over."""
    try:
        yield from items
    except GodelError:
        return


async def _until_it_fails_async(items: AsyncIterator[Any]) -> AsyncIterator[Any]:
    try:
        async for item in items:
            yield item
    except GodelError:
        return
