"""worker/flag.py: asyncio.Event's behaviour for the run's coroutines, in a fraction of its memory."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Callable

from godel_server.worker.flag import Flag


async def test_waiters_wake_when_it_is_set_and_not_before() -> None:
    flag = Flag()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters) and not flag.is_set()
    flag.set()
    flag.clear()  # cleared at once: those already waiting still wake, as with asyncio.Event
    await asyncio.wait_for(asyncio.gather(*waiters), 5)
    assert not flag.is_set()


async def test_a_set_flag_is_waited_for_at_once_until_cleared() -> None:
    flag = Flag(True)
    await asyncio.wait_for(flag.wait(), 1)
    flag.clear()
    late = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    assert not late.done()
    flag.set()
    await asyncio.wait_for(late, 5)


async def test_a_cancelled_waiter_leaves_the_others_waiting() -> None:
    flag = Flag()
    gone, staying = asyncio.create_task(flag.wait()), asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    assert gone.cancelled() and not staying.done()
    flag.set()
    await asyncio.wait_for(staying, 5)


def _bytes_per(make: Callable[[], object], n: int = 1000) -> float:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = [make() for _ in range(n)]
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(held) == n
    return (after - before) / n


async def test_an_unwaited_flag_holds_a_fraction_of_an_event() -> None:
    assert _bytes_per(Flag) * 4 < _bytes_per(asyncio.Event)
