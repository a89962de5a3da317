"""Running `make up` / `make down` (godel_deploy.up / .down) on free ports in a home of the test's
own, as a user would, without the fixed ports of a real `make up`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from godel_deploy.ports import free_ports, retry_on_port_taken

ROLES = ("agent", "team", "event", "cluster")


def _free_port_env() -> dict[str, str]:
    names = [f"GODEL_{r.upper()}_PORT" for r in ROLES] + [f"GODEL_{r.upper()}_ADMIN_PORT" for r in ROLES]
    names += [
        "GODEL_GATEWAY_PORT",
        "GODEL_GATEWAY_ADMIN_PORT",
        "GODEL_KAFKA_PORT",
        "GODEL_KAFKA_CONTROLLER_PORT",
        "GODEL_EVENT_WS_PORT",
    ]
    return dict(zip(names, map(str, free_ports(len(names))), strict=True))


def launcher_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a `make up` whose every port is free and whose data lives in `home`."""
    env = {k: v for k, v in os.environ.items() if k != "GODEL_DATABASE_URL"}
    env.update(_free_port_env())
    env.update(GODEL_HOME=str(home))
    env.update(extra)
    return env


def gateway_url(env: dict[str, str]) -> str:
    return f"http://127.0.0.1:{env['GODEL_GATEWAY_PORT']}"


def make_up(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`make up` with `env`; when one of its ports was taken before its process could bind it, it
    starts again on other free ports, written into `env` (so later calls use them)."""

    def attempt(n: int) -> subprocess.CompletedProcess[str]:
        if n > 1:
            make_down(env, check=False)  # what the failed attempt left (it stops what it started)
            env.update(_free_port_env())
        up = subprocess.run(
            [sys.executable, "-m", "godel_deploy.up"], env=env, capture_output=True, text=True, timeout=300
        )
        assert up.returncode == 0, up.stdout + up.stderr
        return up

    return retry_on_port_taken(attempt)


def make_down(env: dict[str, str], *, check: bool = True) -> None:
    down = subprocess.run(
        [sys.executable, "-m", "godel_deploy.down"], env=env, capture_output=True, text=True, timeout=120
    )
    if check:
        assert down.returncode == 0, down.stdout + down.stderr
