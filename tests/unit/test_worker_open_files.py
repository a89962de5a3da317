"""The worker raises its soft limit on open files to the hard one: every run holds its output pipes
and a pidfd, and the usual soft default (1,024) would refuse a few hundred agents. When even the
hard limit is too low for its capacity it says so, with what to change."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


CAP_SYS_RESOURCE = 24


def may_raise_hard_limits() -> bool:
    effective = next(
        line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("CapEff:")
    )
    return bool(int(effective.split()[1], 16) >> CAP_SYS_RESOURCE & 1)


def start_up(hard: int, capacity: int, *, may_raise: bool = True) -> tuple[list[int], str]:
    # Without sys_resource in the bounding set, even root's python has no CAP_SYS_RESOURCE.
    prefix = [] if may_raise else ["setpriv", "--bounding-set", "-sys_resource"]
    done = subprocess.run(
        [*prefix, sys.executable, "-c", SCRIPT, str(hard), str(capacity)],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert done.returncode == 0, done.stderr
    return [int(n) for n in done.stdout.split()], done.stderr


def test_the_soft_limit_rises_to_the_hard_one() -> None:
    limits, warnings = start_up(4096, 16)
    assert limits == [4096, 4096]
    assert warnings == ""


def test_a_capacity_the_hard_limit_cannot_hold_is_named() -> None:
    limits, warnings = start_up(300, 100, may_raise=False)
    assert limits == [300, 300]
    assert "100 runs (GODEL_WORKER_CAPACITY) need about 656" in warnings, warnings


def test_a_worker_that_may_raises_the_hard_limit_to_what_its_capacity_needs() -> None:
    """10,000 agents need ~40,000 files, past the hard limit of many hosts (20,000 here)."""
    limits, warnings = start_up(300, 100)
    if may_raise_hard_limits():
        assert (limits, warnings) == ([656, 656], "")
    else:  # not root: the hard limit stays, and the warning says what to raise
        assert limits == [300, 300] and "need about 656" in warnings
