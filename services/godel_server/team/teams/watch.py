"""Live team updates for StartTeam streams in this process."""

from __future__ import annotations

import asyncio

from godel.v1 import event_pb2, team_pb2

QUEUE_LIMIT = 1000

Update = tuple[team_pb2.Team, event_pb2.Event]


class TeamWatch:
    def __init__(self) -> None:
        self._queues: dict[str, set[asyncio.Queue[Update]]] = {}

    def subscribe(self, team_id: str) -> asyncio.Queue[Update]:
        queue: asyncio.Queue[Update] = asyncio.Queue(QUEUE_LIMIT)
        self._queues.setdefault(team_id, set()).add(queue)
        return queue

    def unsubscribe(self, team_id: str, queue: asyncio.Queue[Update]) -> None:
        queues = self._queues.get(team_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._queues[team_id]

    def publish(self, team_id: str, team: team_pb2.Team, event: event_pb2.Event) -> None:
        for queue in self._queues.get(team_id, ()):
            if queue.full():
                # A slow watcher only needs the newest snapshot: drop its oldest update.
                queue.get_nowait()
            queue.put_nowait((team, event))
