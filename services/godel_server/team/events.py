"""The one builder of the team service's events (team, workflow, task and budget namespaces)."""

from __future__ import annotations

from google.protobuf.message import Message

from godel.v1 import event_pb2
from godel_server.runtime.context import current_caller
from godel_server.runtime.events import new_event
from godel_server.runtime.ownership import Owner

COMPONENT = "team-service"


def service_event(
    instance: str,
    data: Message,
    *,
    key: str,
    owner: Owner,
    agent_id: str = "",
    team_id: str = "",
    workflow_id: str = "",
    user_id: str | None = None,
) -> event_pb2.Event:
    """An event keyed by its aggregate's id, attributed to the calling user unless `user_id`, and
    owned by `owner`, the owner of what it is about (who may read it: runtime/ownership.py)."""
    caller = current_caller()
    return new_event(
        data,
        partition_key=key,
        component=COMPONENT,
        instance=instance,
        agent_id=agent_id,
        team_id=team_id,
        workflow_id=workflow_id,
        user_id=user_id if user_id is not None else (caller.user_id if caller else ""),
        owner=owner,
    )
