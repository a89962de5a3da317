"""The unit suite on a machine booted half a minute ago: `time.monotonic()` counts from boot, so
code that treats it as starting at zero (a "last done at 0.0" marker, say) misbehaves only on a
fresh machine. A Linux time namespace sets the clock back without rebooting."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def fresh_boot_command(argv: list[str], uptime: float = 30.0) -> list[str]:
    """`argv` run in a new time namespace whose monotonic and boot-time clocks read `uptime`."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("util-linux `unshare` is needed to simulate a freshly booted clock")
    # A new namespace's offsets count from the host's clock, not from the clock of the namespace
    # this runs in (which may itself be one, e.g. a CI that simulates a fresh boot): add its offset.
    host_monotonic = time.monotonic() - _namespace_offset("monotonic")
    offset = max(0, int(host_monotonic - uptime))
    return [unshare, "--time", f"--monotonic=-{offset}", f"--boottime=-{offset}", "--", *argv]


def _namespace_offset(clock: str) -> float:
    """Seconds the current time namespace adds to the host's `clock` (0 outside a namespace)."""
    try:
        lines = Path("/proc/self/timens_offsets").read_text().splitlines()
    except OSError:
        return 0.0
    for line in lines:
        name, seconds, nanoseconds = line.split()
        if name == clock:
            return int(seconds) + int(nanoseconds) / 1e9
    return 0.0


def test_the_clock_namespace_reads_a_fresh_boot() -> None:
    probe = [sys.executable, "-c", "import time; print(time.monotonic())"]
    out = subprocess.run(fresh_boot_command(probe), capture_output=True, text=True, timeout=60, check=True)
    assert float(out.stdout) < 120, out.stdout


@pytest.mark.timeout(900)
def test_the_unit_suite_passes_half_a_minute_after_boot() -> None:
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-m",
        "not integration",
        "tests/unit",
        "clients/python/tests",
        "--ignore",
        str(Path(__file__).relative_to(ROOT)),
    ]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        fresh_boot_command(argv), cwd=ROOT, env=env, capture_output=True, text=True, timeout=840
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
