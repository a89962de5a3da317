"""WebSocket `command` messages (spec §3.2) forwarded to the service that owns the aggregate, over
gRPC with the caller's own credential, so that service authorizes and audits them as usual."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from godel.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc
from godel_server.runtime.config import TlsSettings
from godel_server.runtime.errors import FieldViolation
from godel_server.runtime.statuses import AGENT_STATUS
from godel_server.runtime.tls import open_channel
from godel_server.runtime.validation import is_uuid

COMMAND_TIMEOUT_SECONDS = 15.0


class CommandFailed(Exception):
    """A command that was refused or failed; `code` is the gRPC status name."""

    def __init__(self, code: str, message: str, violations: list[FieldViolation] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.violations = violations or []


@dataclass(frozen=True)
class _AgentCommand:
    rpc: str
    build: Callable[[str, Mapping[str, Any]], Message]


def _text(payload: Mapping[str, Any], key: str) -> str:
    value = payload.get(key, "")
    if not isinstance(value, str):
        raise CommandFailed(
            "INVALID_ARGUMENT", "invalid command", [FieldViolation(f"payload.{key}", "must be a string")]
        )
    return value


AGENT_COMMANDS: dict[str, _AgentCommand] = {
    "agent:pause": _AgentCommand(
        "PauseAgent",
        lambda agent_id, p: agent_service_pb2.PauseAgentRequest(id=agent_id, paused_by=_text(p, "pausedBy")),
    ),
    "agent:resume": _AgentCommand(
        "ResumeAgent", lambda agent_id, _p: agent_service_pb2.ResumeAgentRequest(id=agent_id)
    ),
    "agent:kill": _AgentCommand(
        "KillAgent",
        lambda agent_id, p: agent_service_pb2.KillAgentRequest(id=agent_id, reason=_text(p, "reason")),
    ),
    "agent:restart": _AgentCommand(
        "RestartAgent", lambda agent_id, _p: agent_service_pb2.RestartAgentRequest(id=agent_id)
    ),
}


def _violations(exc: grpc.aio.AioRpcError) -> list[FieldViolation]:
    try:
        status = rpc_status.from_call(exc)
    except Exception:
        return []
    found: list[FieldViolation] = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found += [FieldViolation(v.field, v.description) for v in bad.field_violations]
    return found


def _agent_result(agent: agent_pb2.Agent) -> dict[str, Any]:
    status = AGENT_STATUS.get(agent.status) or "unspecified"
    return {"agentId": agent.id, "status": status, "agent": json_format.MessageToDict(agent)}


class CommandForwarder:
    def __init__(self, agent_addr: str, tls: TlsSettings) -> None:
        self._channel = open_channel(agent_addr, tls)
        self._agents = agent_service_pb2_grpc.AgentServiceStub(self._channel)

    async def run(self, payload: Mapping[str, Any], credential: str, request_id: str) -> dict[str, Any]:
        """Runs one command; returns the `data` of the response or raises CommandFailed."""
        name = payload.get("command")
        if not isinstance(name, str) or name not in AGENT_COMMANDS:
            raise CommandFailed(
                "INVALID_ARGUMENT",
                "unknown command",
                [FieldViolation("payload.command", f"must be one of {', '.join(AGENT_COMMANDS)}")],
            )
        agent_id = _text(payload, "agentId")
        if not is_uuid(agent_id):
            raise CommandFailed(
                "INVALID_ARGUMENT", "invalid command", [FieldViolation("payload.agentId", "must be a UUID")]
            )
        command = AGENT_COMMANDS[name]
        call: Callable[..., Awaitable[agent_pb2.Agent]] = getattr(self._agents, command.rpc)
        try:
            agent = await call(
                command.build(agent_id, payload),
                metadata=(("x-api-key", credential), ("x-request-id", request_id)),
                timeout=COMMAND_TIMEOUT_SECONDS,
            )
        except grpc.aio.AioRpcError as exc:
            raise CommandFailed(exc.code().name, exc.details() or exc.code().name, _violations(exc)) from None
        return _agent_result(agent)

    async def close(self) -> None:
        await self._channel.close()
