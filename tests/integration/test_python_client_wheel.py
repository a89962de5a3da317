"""The godel-client wheel as a user gets it: built from the sources, installed into a fresh venv
outside the checkout, and used there against a live mesh: a script creates an agent, pages
through agents (asyncio), follows the agent's events to completion, and meets a 400 and a 401 as
typed errors; the installed ``godel`` finds the mesh through a profile. Installing it must pull
no server package.

Dependencies come from a local wheel cache (``.cache/wheels``, filled once from the package index
with ``pip download``), so that a second run installs offline and fast.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest

from godel.v1 import agent_pb2
from tests.conftest import RunningMesh

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "clients" / "python.md"
WHEEL_CACHE = ROOT / ".cache" / "wheels"
SERVER_PACKAGES = {"sqlalchemy", "asyncpg", "aiokafka", "alembic", "aiosqlite", "godel"}

SCRIPT = r"""
import asyncio, json, sys, uuid

import godel_client
from godel.v1 import agent_pb2
from godel_client import AsyncGodelClient, AuthError, GodelClient, InvalidArgumentError

address, key, marker = sys.argv[1:4]
report = {"module": godel_client.__file__, "version": godel_client.__version__}

with GodelClient(address, key) as godel:
    first = godel.agents.create("say hi", label=marker, command=["echo", "{task}"])
    second = godel.agents.create("say hi again", label=marker, command=["echo", "{task}"])
    report["created"] = [first.id, second.id]

    async def page_through() -> list[str]:
        async with AsyncGodelClient(address, key) as client:
            return [agent.id async for agent in client.agents.list(label=marker, page_size=1)]

    report["paged"] = asyncio.run(page_through())

    seen = []
    for event in godel.events.subscribe(["agent:*"], agent_id=first.id, from_sequence=0, heartbeat_seconds=2):
        seen.append(event.type)
        if event.type == "agent:complete":
            break
    report["events"] = seen
    report["status"] = agent_pb2.AgentStatus.Name(godel.agents.get(first.id).status)

    try:
        godel.agents.create("   ")
    except InvalidArgumentError as error:
        report["400"] = [type(error).__name__, error.status.name, [v.field for v in error.field_violations]]

with GodelClient(address, "godel_sk_not_a_key") as stranger:
    try:
        next(iter(stranger.agents.list()))
    except AuthError as error:
        report["401"] = [type(error).__name__, error.status.name]

print(json.dumps(report))
"""


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done  # type: ignore[no-any-return]


def _build_wheel(work: Path) -> Path:
    """The wheel, built from a copy of the sources it needs (so no build/ is left in the checkout,
    and nothing stale from one gets in)."""
    source = work / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info", "dist")
    shutil.copytree(ROOT / "clients" / "python", source / "clients" / "python", ignore=ignore)
    shutil.copytree(ROOT / "gen" / "python", source / "gen" / "python", ignore=ignore)
    dist = work / "dist"
    _run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(dist),
            str(source / "clients" / "python"),
        ]
    )
    (wheel,) = dist.glob("godel_client-*.whl")
    return wheel


def _requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(name).decode()
    return [
        line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")
    ]


def _install(wheel: Path, venv: Path) -> None:
    """``pip install WHEEL`` into ``venv`` (made without pip: the project's pip installs into it)."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    install = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q"]
    offline = [*install, "--no-index", "--find-links", str(WHEEL_CACHE), str(wheel)]
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    if subprocess.run(offline, capture_output=True, check=False).returncode != 0:
        download = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--only-binary=:all:",
            "--dest",
            str(WHEEL_CACHE),
        ]
        _run([*download, *_requirements(wheel)])
        _run(offline)


def _installed(venv: Path) -> set[str]:
    """The distributions the venv's Python sees (run outside the checkout: its cwd is on sys.path)."""
    listing = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m, json; print(json.dumps([d.metadata['Name'] for d in m.distributions()]))",
        ],
        cwd=venv,
    )
    return {name.lower().replace("_", "-") for name in json.loads(listing.stdout)}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the godel-client wheel installed."""
    work = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(work)
    venv = work / "venv"
    _install(wheel, venv)
    return venv


def _user_env(home: Path) -> dict[str, str]:
    """A user's environment: no Godel variables, no checkout on the path, a config dir of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GODEL_") and k != "PYTHONPATH"}
    return {**env, "XDG_CONFIG_HOME": str(home / "config"), "HOME": str(home)}


def test_installing_the_wheel_pulls_no_server_package(installed: Path) -> None:
    found = _installed(installed)
    assert {"godel-client", "grpcio", "protobuf", "grpcio-status", "googleapis-common-protos"} <= found
    assert not SERVER_PACKAGES & found, sorted(found)


def test_the_installed_client_works_against_the_mesh(
    installed: Path, godel: RunningMesh, tmp_path: Path
) -> None:
    marker = f"wheel-{uuid.uuid4().hex[:8]}"
    done = _run(
        [
            str(installed / "bin" / "python"),
            "-c",
            SCRIPT,
            godel.mesh.gateway_address,
            godel.admin_key,
            marker,
        ],
        cwd=tmp_path,
        env=_user_env(tmp_path),
        timeout=240,
    )
    report = json.loads(done.stdout.splitlines()[-1])
    assert Path(report["module"]).is_relative_to(installed), report["module"]  # not the checkout's
    assert report["version"] == "0.1.0"
    assert sorted(report["paged"]) == sorted(report["created"])  # two agents, a page each
    assert report["events"][-1] == "agent:complete" and "agent:start" in report["events"]
    assert report["status"] == "AGENT_STATUS_COMPLETED"
    assert report["400"] == ["InvalidArgumentError", "INVALID_ARGUMENT", ["task"]]
    assert report["401"] == ["AuthError", "UNAUTHENTICATED"]


def test_the_installed_cli_reaches_the_mesh_through_a_profile(
    installed: Path, godel: RunningMesh, tmp_path: Path
) -> None:
    env = _user_env(tmp_path)
    cli = str(installed / "bin" / "godel")
    assert _run([cli, "--version"], env=env, cwd=tmp_path).stdout.strip() == "godel 0.1.0 (godel-client)"
    refused = subprocess.run(
        [cli, "agent", "list"], env=env, cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert refused.returncode == 1  # nothing configured: no mesh at the default address, or no key
    _run([cli, "config", "set", "endpoint", godel.mesh.gateway_address], env=env, cwd=tmp_path)
    _run([cli, "config", "set", "api_key", godel.admin_key], env=env, cwd=tmp_path)
    listed = json.loads(_run([cli, "--json", "agent", "list", "--limit", "1"], env=env, cwd=tmp_path).stdout)
    assert "agents" in listed
    shown = json.loads(_run([cli, "--json", "config", "show"], env=env, cwd=tmp_path).stdout)
    assert (shown["endpointFrom"], shown["credentialFrom"]) == ("profile default", "profile default")


def test_the_guide_gets_to_a_first_agent_in_ten_lines(
    installed: Path, godel: RunningMesh, tmp_path: Path
) -> None:
    first = re.findall(r"^```python\n(.*?)^```", GUIDE.read_text(), re.MULTILINE | re.DOTALL)[0]
    assert len(first.strip().splitlines()) <= 10
    example = first.replace("127.0.0.1:7373", godel.mesh.gateway_address).replace(
        "godel_sk_...", godel.admin_key
    )
    done = _run(
        [str(installed / "bin" / "python"), "-c", example], cwd=tmp_path, env=_user_env(tmp_path), timeout=240
    )
    lines = done.stdout.splitlines()
    assert lines[-2].endswith(" agent:complete"), lines
    assert lines[-1] == str(agent_pb2.AGENT_STATUS_COMPLETED), lines
