"""Messages of one run waiting for its owner stream: bounded, dropping the oldest log lines first.

RunUpdate messages are never dropped; RunUsage messages are merged instead of dropped (token counts
stay exact); session messages go only when no log batch is left to drop."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from godel.v1 import agent_pb2, worker_service_pb2
from godel_server.worker.messages import log_line

DEFAULT_LIMIT = 10_000
_DROP_ORDER = ("logs", "session_message")


class RunOutbox:
    def __init__(self, run_id: str, agent_id: str, limit: int = DEFAULT_LIMIT) -> None:
        self.run_id = run_id
        self.agent_id = agent_id
        self.limit = max(limit, 1)
        self._pending: deque[worker_service_pb2.ConnectRequest] = deque()
        self.dropped_lines = 0
        self.dropped_messages = 0
        self._unreported_lines = 0
        self._unreported_messages = 0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, request: worker_service_pb2.ConnectRequest) -> None:
        kind = request.WhichOneof("message")
        if kind == "usage":
            for queued in reversed(self._pending):
                if queued.WhichOneof("message") == "usage" and queued.usage.model == request.usage.model:
                    queued.usage.prompt_tokens += request.usage.prompt_tokens
                    queued.usage.completion_tokens += request.usage.completion_tokens
                    return
        self._pending.append(request)
        while len(self._pending) > self.limit and self._drop_one():
            pass

    def prepend(self, requests: Iterable[worker_service_pb2.ConnectRequest]) -> None:
        """Puts back messages a broken stream did not send, before the ones buffered since."""
        self._pending.extendleft(reversed(list(requests)))
        while len(self._pending) > self.limit and self._drop_one():
            pass

    def _drop_one(self) -> bool:
        for kind in _DROP_ORDER:
            for i, queued in enumerate(self._pending):
                if queued.WhichOneof("message") == kind:
                    del self._pending[i]
                    if kind == "logs":
                        self.dropped_lines += len(queued.logs.lines)
                        self._unreported_lines += len(queued.logs.lines)
                    else:
                        self.dropped_messages += 1
                        self._unreported_messages += 1
                    return True
        return False

    def drain(self) -> list[worker_service_pb2.ConnectRequest]:
        """Everything buffered, oldest first, preceded by a warning line when some were dropped."""
        out: list[worker_service_pb2.ConnectRequest] = []
        if self._unreported_lines or self._unreported_messages:
            warning = log_line(
                f"{self._unreported_lines} log lines and {self._unreported_messages} session messages "
                "were dropped while the worker could not reach this run's owner",
                stream="runtime",
                level=agent_pb2.LOG_LEVEL_WARN,
            )
            out.append(
                worker_service_pb2.ConnectRequest(
                    logs=worker_service_pb2.RunLogs(
                        run_id=self.run_id, agent_id=self.agent_id, lines=[warning]
                    )
                )
            )
            self._unreported_lines = self._unreported_messages = 0
        out.extend(self._pending)
        self._pending.clear()
        return out
