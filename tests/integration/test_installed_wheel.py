"""Godel runs without a checkout: the server wheel and the client wheel it depends on are built,
installed into a fresh virtual environment outside the repository, and every process of
deploy/compose/compose.yaml is started from that environment, with its working directory outside
the checkout, running exactly the compose file's commands and settings (host names, ports and secret paths mapped onto this
machine): `godel-server migrate all up`, `keys register`, the four services, two workers and
`godel-gateway`, checked with the compose file's health-check commands. An agent created
through the gateway then runs to completion, and the gateway serves the web console the wheel
carries (building the godel wheel builds it from the copied sources: setup.py).

Dependencies come from a wheelhouse in .cache/wheelhouse (filled from PyPI the first time), so
later runs install with --no-index; the console's npm packages from npm's cache (`make console`
filled it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from godel_deploy.kafka import KafkaBroker
from godel_deploy.mesh import ensure_repo
from godel_deploy.ports import LOOPBACK, free_port
from godel_deploy.postgres import PostgresServer
from godel_deploy.process import ManagedProcess
from tests.integration import compose_file
from tests.integration.compose_file import REPO, ROLES
from tests.waits import poll

WHEELHOUSE = REPO / ".cache" / "wheelhouse"


def _run(argv: Sequence[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=True, **kwargs)


def _copy_checkout(target: Path) -> None:
    """The files git would commit (tracked and untracked, not ignored), symlinks kept."""
    listed = _run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
    for name in filter(None, listed.stdout.split("\0")):
        source, dest = REPO / name, target / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the work tree
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            dest.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, dest)


@dataclass
class Installed:
    venv: Path
    server_wheel: Path

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("wheel")
    _copy_checkout(work / "src")
    # Two distributions: godel (the services and launchers) depends on godel-client (the client,
    # the CLI and the generated godel.v1 code), which is built from clients/python.
    for source in (work / "src", work / "src" / "clients" / "python"):
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                work / "dist",
                source,
            ]
        )
    (server,) = (work / "dist").glob("godel-*.whl")
    (client,) = (work / "dist").glob("godel_client-*.whl")
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", venv])
    pip: list[str | Path] = [venv / "bin" / "python", "-m", "pip"]
    requirements = [str(client), f"{server}[gateway]"]
    install = [*pip, "install", "-q", "--no-index", "--find-links", WHEELHOUSE, *requirements]
    if subprocess.run([str(a) for a in install], capture_output=True, check=False).returncode != 0:
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        _run([*pip, "download", "-q", "-d", WHEELHOUSE, *requirements])  # from PyPI, once
        for ours in [*WHEELHOUSE.glob("godel-*.whl"), *WHEELHOUSE.glob("godel_client-*.whl")]:
            ours.unlink()
        _run(install)
    return Installed(venv, server)


def test_the_installed_package_needs_no_checkout(installed: Installed, tmp_path: Path) -> None:
    probe = (
        "import godel_server, godel_deploy.paths as p, godel_deploy.gateway as g, godel.v1.agent_pb2 as a;"
        "from godel_server.runtime.config import OPENAPI_DOCUMENT as o;"
        "print(godel_server.__file__, a.__file__, p.repo_root(), o.is_file(), g.TEMPLATE.is_file(),"
        " g.DESCRIPTOR.is_file(), p.ASSETS.joinpath('kafka-pom.xml').is_file())"
    )
    out = _run([installed.bin("python"), "-c", probe], cwd=tmp_path, env=_clean_env(installed)).stdout.split()
    assert all(path.startswith(str(installed.venv)) for path in out[:2]), out  # godel.v1: the client wheel's
    assert out[2:] == ["None", "True", "True", "True", "True"], out


def test_the_server_wheel_carries_the_built_console(installed: Installed, tmp_path: Path) -> None:
    """Building the wheel builds the web console (setup.py) and packages it, and the installed
    gateway, outside any checkout, serves it by default."""
    with zipfile.ZipFile(installed.server_wheel) as wheel:
        names = wheel.namelist()
        index = wheel.read("godel_deploy/console/index.html").decode()
    scripts = [n for n in names if n.startswith("godel_deploy/console/assets/") and n.endswith(".js")]
    assert scripts and "/ui/assets/" in index, (names, index)
    probe = "import godel_deploy.gateway_overlay as o; print(o.load_gateway_settings({}).console_dir)"
    out = _run([installed.bin("python"), "-c", probe], cwd=tmp_path, env=_clean_env(installed)).stdout.strip()
    assert out.startswith(str(installed.venv)) and out.endswith("site-packages/godel_deploy/console"), out


def _clean_env(installed: Installed) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GODEL_", "PYTHON", "VIRTUAL_ENV")) and k not in ("PATH",)
    }
    env["PATH"] = f"{installed.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Host:
    """This machine standing in for the compose network: names, ports and secret paths."""

    work: Path
    kafka: str
    postgres: PostgresServer
    grpc: dict[str, int] = field(default_factory=lambda: {r: free_port() for r in ROLES})
    admin: dict[str, int] = field(default_factory=lambda: {r: free_port() for r in ROLES})
    event_ws: int = field(default_factory=free_port)
    gateway: int = field(default_factory=free_port)
    gateway_admin: int = field(default_factory=free_port)
    prefix: str = field(default_factory=lambda: f"wheel_{uuid.uuid4().hex[:8]}")

    def value(self, value: str) -> str:
        """A compose value on this machine: service names and /run/secrets, /srv, /var/lib paths."""
        names = {
            f"{r}:{port}": f"{LOOPBACK}:{self.grpc[r]}" for r, port in compose_file.service_ports().items()
        }
        names["kafka:9092"] = self.kafka
        names["godel@postgres:5432"] = f"godel@{LOOPBACK}:{self.postgres.port}"
        for old, new in names.items():
            value = value.replace(old, new)
        value = compose_file.container_path(value, self.work, self.work / "var-lib-godel")
        return "127.0.0.1" if value == "0.0.0.0" else value

    def env(self, service: dict[str, Any], name: str) -> dict[str, str]:
        env = compose_file.env(service, self.value)
        env["GODEL_HOME"] = str(self.work / "home" / name)  # a container's own file system
        env["GODEL_DATABASE_NAME_PREFIX"] = self.prefix
        # In compose every container has its own network namespace; here the ports must differ.
        for role in ROLES:
            env[f"GODEL_{role.upper()}_PORT"] = str(self.grpc[role])
            env[f"GODEL_{role.upper()}_ADMIN_PORT"] = str(self.admin[role])
        env["GODEL_EVENT_WS_PORT"] = str(self.event_ws)
        env["GODEL_GATEWAY_PORT"] = str(self.gateway)
        env["GODEL_GATEWAY_ADMIN_PORT"] = str(self.gateway_admin)
        if "GODEL_WORKER_ADMIN_PORT" in env:
            env["GODEL_WORKER_ADMIN_PORT"] = str(free_port())
        env["GODEL_AUTH_CACHE_SECONDS"] = "1"
        return env


def _healthy(check: list[str], env: dict[str, str]) -> bool:
    return subprocess.run(check, env=env, capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="module")
def compose_on_this_host(
    installed: Installed, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Host, str]]:
    work = tmp_path_factory.mktemp("compose-host")
    # The compose file's database user (this test server trusts local connections: the password
    # file is read and sent, and not checked).
    postgres.psql(
        "DO $$BEGIN CREATE ROLE godel LOGIN CREATEDB; EXCEPTION WHEN duplicate_object THEN NULL; END$$"
    )
    base_env = _clean_env(installed)
    secrets = compose_file.generate_keys(installed.bin("godel-server"), work / "run-secrets", base_env)
    ensure_repo(work / "srv" / "workspace" / "repo")
    kafka = KafkaBroker(work / "kafka").start()
    host = Host(work, "", postgres)
    services = compose_file.services()
    procs: list[ManagedProcess] = []
    try:
        kafka.wait_ready()
        host.kafka = kafka.bootstrap
        for one_shot in ("migrate", "keys"):
            service = services[one_shot]
            assert service["restart"] == "no"
            argv = compose_file.argv(installed.venv / "bin", service, host.value)
            _run(argv, env={**base_env, **host.env(service, one_shot)}, cwd=work)
        order = [*ROLES, *compose_file.workers(), "gateway"]
        for name in order:
            service = services[name]
            env = {**base_env, **host.env(service, name)}
            argv = compose_file.argv(installed.venv / "bin", service, host.value)
            proc = ManagedProcess(argv, work / "logs" / f"{name}.log", env=env, cwd=work)
            procs.append(proc.start())
            health = compose_file.health(installed.venv / "bin", service)
            proc.wait_for(
                partial(_healthy, health, env), 120, f"{name}: {' '.join(health[-2:])}", interval=0.5
            )
        yield host, (secrets / "keys" / "admin.key").read_text().strip()
    finally:
        for proc in reversed(procs):
            proc.stop(timeout=15)
        kafka.stop()


def test_the_compose_commands_from_the_wheel_make_a_working_mesh(
    compose_on_this_host: tuple[Host, str], installed: Installed, tmp_path: Path
) -> None:
    host, admin_key = compose_on_this_host
    with httpx.Client(
        base_url=f"http://{LOOPBACK}:{host.gateway}", headers={"x-api-key": admin_key}, timeout=15
    ) as http:
        openapi = http.get("/api/v1/openapi.json")  # package data, served by the cluster service
        assert openapi.status_code == 200 and openapi.json()["swagger"] == "2.0"
        console = http.get("/ui/")  # the console the wheel carries, served by Envoy
        assert console.status_code == 200 and "text/html" in console.headers["content-type"], console.text
        script = re.search(r'src="(/ui/assets/[^"]+\.js)"', console.text)
        assert script and http.get(script.group(1)).status_code == 200, console.text
        created = http.post(
            "/api/v1/agents",
            json={
                "task": "from a wheel",
                "config": {"runtime": "command", "command": ["sh", "-c", "echo installed"]},
            },
        )
        assert created.status_code == 200, created.text
        agent_id = created.json()["id"]
        agent = poll(
            lambda: http.get(f"/api/v1/agents/{agent_id}").json(),
            lambda a: a["status"] in ("AGENT_STATUS_COMPLETED", "AGENT_STATUS_FAILED"),
            90,
            "the agent to end",
            interval=0.2,
        )
        assert agent["status"] == "AGENT_STATUS_COMPLETED", agent
        logs = http.get(f"/api/v1/agents/{agent_id}/logs").json()
        assert "installed" in str(logs)
    # The `godel` of the client wheel, installed beside the server, reaches the same gateway.
    shown = _run(
        [installed.bin("godel"), "--addr", f"{LOOPBACK}:{host.gateway}", "--json", "agent", "get", agent_id],
        env={
            **_clean_env(installed),
            "GODEL_API_KEY": admin_key,
            "GODEL_CONFIG": str(tmp_path / "none.toml"),
        },
        cwd=tmp_path,
    )
    assert json.loads(shown.stdout)["status"] == "AGENT_STATUS_COMPLETED", shown.stdout
