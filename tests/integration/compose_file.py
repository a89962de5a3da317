"""deploy/compose/compose.yaml as the tests that run its commands read it: the installed-wheel test
(every container on this machine) and the multi-host test (every host a network namespace). Both
run the compose file's commands, settings and health checks, with its host names, ports and
secret paths mapped onto where they run."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "compose" / "compose.yaml"
# Settings the images set (deploy/docker/*Dockerfile ENV), mapped like the compose file's.
IMAGE_ENV = {"GODEL_HOME": "/var/lib/godel", "GODEL_BIND_HOST": "0.0.0.0"}
ROLES = ("cluster", "event", "agent", "team")
# Where the containers' files are (secrets, the shared workspace volume, the home).
CONTAINER_PATHS = ("/run/secrets", "/srv", "/var/lib/godel")


def services() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return found


def service_ports() -> dict[str, str]:
    """role -> the port other containers reach it on (from GODEL_<ROLE>_ADDR in the compose file)."""
    env = services()["cluster"]["environment"]
    return {r: env[f"GODEL_{r.upper()}_ADDR"].rsplit(":", 1)[1] for r in ROLES}


def key_names() -> list[str]:
    """The API keys the compose file hands to Godel (secrets/<name>.key, `keys register`)."""
    secrets: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["secrets"]
    files = (Path(str(s["file"])).name for s in secrets.values())
    return sorted(name.removesuffix(".key") for name in files if name.endswith(".key"))


def workers() -> list[str]:
    return [name for name in services() if name.startswith("worker-")]


def argv(bin_dir: Path, service: Mapping[str, Any], value: Callable[[str], str]) -> list[str]:
    """The container's command: the image's entrypoint (godel-server or godel-gateway) + command."""
    program = "godel-gateway" if "gateway" in str(service["image"]) else "godel-server"
    return [str(bin_dir / program), *(value(str(a)) for a in service.get("command", ()))]


def health(bin_dir: Path, service: Mapping[str, Any]) -> list[str]:
    """The container's health check command."""
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD", test
    return [str(bin_dir / test[1]), *test[2:]]


def env(service: Mapping[str, Any], value: Callable[[str], str]) -> dict[str, str]:
    """The container's GODEL_* settings (the image's and its own), each mapped by `value`."""
    return {k: value(str(v)) for k, v in {**IMAGE_ENV, **service.get("environment", {})}.items()}


def container_path(value: str, root: Path, home: Path) -> str:
    """`value` with the containers' paths under `root` (the home of this container at `home`)."""
    for prefix in CONTAINER_PATHS:
        target = home if prefix == "/var/lib/godel" else root / prefix.strip("/").replace("/", "-")
        value = value.replace(prefix, str(target))
    return value


def generate_keys(godel_server: Path, directory: Path, env: Mapping[str, str]) -> Path:
    """What deploy/compose/init-secrets.sh makes, with `godel-server keys generate`: keys/<name>.key
    for every key of the compose file, and the (unchecked) database password."""
    (directory / "keys").mkdir(parents=True)
    (directory / "postgres-password").write_text("unused-by-a-trust-server\n")
    for name in key_names():
        key = subprocess.run(
            [str(godel_server), "keys", "generate"], env=dict(env), capture_output=True, text=True, check=True
        ).stdout
        (directory / "keys" / f"{name}.key").write_text(key)
    return directory
