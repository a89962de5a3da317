"""Identifiers from runtime/ids.py: version-4 UUIDs in canonical form, never repeated, also not by
a forked child (which inherits its parent's buffer of random bytes)."""

from __future__ import annotations

import os
import uuid

from godel_server.runtime.ids import new_id


def test_ids_are_canonical_version_4_uuids() -> None:
    for _ in range(1000):
        value = new_id()
        parsed = uuid.UUID(value)
        assert str(parsed) == value
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)


def test_ids_do_not_repeat_across_many_refills_of_the_buffer() -> None:
    ids = [new_id() for _ in range(20_000)]  # 320,000 random bytes: the buffer refilled ~80 times
    assert len(set(ids)) == len(ids)


def test_a_forked_child_does_not_hand_out_its_parents_next_ids() -> None:
    new_id()  # the buffer holds random bytes for the next ids
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        try:
            os.write(write_end, ",".join(new_id() for _ in range(5)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        childs = set(pipe.read().split(","))
    os.waitpid(pid, 0)
    parents = {new_id() for _ in range(5)}
    assert len(childs) == 5 and not childs & parents
