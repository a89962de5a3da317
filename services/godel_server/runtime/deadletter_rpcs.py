"""ListDeadLetters, RetryDeadLetter and DeleteDeadLetter, the same on every service's servicer:
each service owns its dead-letter table, so each serves them (the gateway routes RPCs by
service), here once for all four."""

from __future__ import annotations

import grpc

from godel.v1 import dead_letter_pb2
from godel_server.runtime.deadletters import DeadLetter, DeadLetterStore
from godel_server.runtime.events import set_times
from godel_server.runtime.pagination import PageRequest
from godel_server.runtime.validation import Violations


def dead_letter_to_proto(letter: DeadLetter, service: str) -> dead_letter_pb2.DeadLetter:
    message = dead_letter_pb2.DeadLetter(
        id=letter.id,
        service=service,
        source=letter.source,
        event_id=letter.event_id or "",
        event_type=letter.event_type or "",
        topic=letter.topic,
        key=letter.key or "",
        kafka_partition=letter.kafka_partition or 0,
        kafka_offset=letter.kafka_offset or 0,
        error=letter.error,
        attempts=letter.attempts,
        size_bytes=len(letter.value),
    )
    set_times(message, create_time=letter.created_at, update_time=letter.updated_at)
    return message


def _check_id(value: int) -> None:
    v = Violations()
    if value <= 0:
        v.add("id", "must be the id of a dead letter (> 0)")
    v.raise_if_any()


class DeadLetterRpcs:
    """Mixed into a service's servicer; the service sets `dead_letters` when it registers it."""

    dead_letters: DeadLetterStore

    async def ListDeadLetters(
        self, request: dead_letter_pb2.ListDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> dead_letter_pb2.ListDeadLettersResponse:
        page = PageRequest.of(request.page_size, request.page_token, ("dead-letters", request.source), (int,))
        after = page.after[0] if page.after else 0
        letters = await self.dead_letters.list(source=request.source, after_id=after, limit=page.limit)
        rows, token = page.split(letters, lambda d: (d.id,))
        return dead_letter_pb2.ListDeadLettersResponse(
            dead_letters=[dead_letter_to_proto(d, self.dead_letters.service) for d in rows],
            next_page_token=token,
        )

    async def RetryDeadLetter(
        self, request: dead_letter_pb2.RetryDeadLetterRequest, context: grpc.aio.ServicerContext
    ) -> dead_letter_pb2.RetryDeadLetterResponse:
        _check_id(request.id)
        await self.dead_letters.retry(request.id)
        return dead_letter_pb2.RetryDeadLetterResponse()

    async def DeleteDeadLetter(
        self, request: dead_letter_pb2.DeleteDeadLetterRequest, context: grpc.aio.ServicerContext
    ) -> dead_letter_pb2.DeleteDeadLetterResponse:
        _check_id(request.id)
        await self.dead_letters.delete(request.id)
        return dead_letter_pb2.DeleteDeadLetterResponse()
