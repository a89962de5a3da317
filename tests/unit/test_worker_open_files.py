"""The worker raises its soft limit on open files to the hard one: every run holds its output pipes
and a pidfd, and the usual soft default (1,024) would refuse a few hundred agents. When even the
hard limit is too low for its capacity it says so, with what to change."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)

# Lowers the soft limit to 256 and the hard one to argv[1], then runs the worker's start-up step
# for a capacity of argv[2]: prints the limit it returned and the soft limit in force.
SCRIPT = """
import resource, sys
from godel_server.worker.procs import raise_open_files_limit
resource.setrlimit(resource.RLIMIT_NOFILE, (256, int(sys.argv[1])))
print(raise_open_files_limit(int(sys.argv[2])), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def start_up(hard: int, capacity: int) -> tuple[list[int], str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(hard), str(capacity)], capture_output=True, text=True, timeout=50
    )
    assert done.returncode == 0, done.stderr
    return [int(n) for n in done.stdout.split()], done.stderr


def test_the_soft_limit_rises_to_the_hard_one() -> None:
    limits, warnings = start_up(4096, 16)
    assert limits == [4096, 4096]
    assert warnings == ""


def test_a_capacity_the_hard_limit_cannot_hold_is_named() -> None:
    limits, warnings = start_up(300, 100)
    assert limits == [300, 300]
    assert "100 runs (GODEL_WORKER_CAPACITY) need about 656" in warnings, warnings
