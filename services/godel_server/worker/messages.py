"""Builders for the worker protocol messages (godel.v1.worker_service) and their timestamps."""

from __future__ import annotations

import time

from google.protobuf import timestamp_pb2

from godel.v1 import agent_pb2, worker_service_pb2
from godel_server.runtime.enums import ProtoEnum, upper

RunState = worker_service_pb2.RunState

TERMINAL_STATES: frozenset[int] = frozenset(
    {
        worker_service_pb2.RUN_STATE_SUCCEEDED,
        worker_service_pb2.RUN_STATE_FAILED,
        worker_service_pb2.RUN_STATE_KILLED,
        worker_service_pb2.RUN_STATE_REJECTED,
        worker_service_pb2.RUN_STATE_LOST,
    }
)


def now() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(time.time_ns())
    return ts


RUN_STATE = ProtoEnum(worker_service_pb2.RunState, str, spelling=upper)


def state_name(state: int) -> str:
    """RUN_STATE_RUNNING -> RUNNING."""
    return RUN_STATE.get(state) or "UNSPECIFIED"


def log_line(
    message: str, stream: str = "runtime", level: int = agent_pb2.LOG_LEVEL_INFO
) -> worker_service_pb2.RunLogLine:
    return worker_service_pb2.RunLogLine(time=now(), level=level, stream=stream, message=message)  # type: ignore[arg-type]
