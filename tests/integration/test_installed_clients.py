"""Each client installed the way a user installs it, from the artifact the build makes, into a
fresh place outside the checkout (tests/integration/client_builds.py), then used against the
running mesh: it creates an agent that commits, pages through the agents, follows the agent's
events to completion, and maps a 400 and a 401 to its typed errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import RunningMesh
from tests.integration import client_builds


def _first_agent(godel: RunningMesh, argv: list[str], cwd: Path) -> dict[str, object]:
    done = subprocess.run(argv, cwd=cwd, env=godel.client_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def _check(report: dict[str, object]) -> None:
    assert report["found"] is True and isinstance(report["paged"], int) and report["paged"] >= 1
    events = report["events"]
    assert isinstance(events, list) and events[0] == "agent:spawn" and events[-1] == "agent:complete", events
    sequences = report["sequences"]
    assert isinstance(sequences, list) and sequences == sorted(set(sequences))
    assert report["status"] == "AGENT_STATUS_COMPLETED"
    commits = report["commits"]
    assert isinstance(commits, list) and len(commits) == 1
    assert report["invalidArgument"] is True and report["violations"] == ["task"]
    assert report["unauthenticated"] is True


def test_go_client_from_a_module_proxy(godel: RunningMesh, go_proxy: Path, tmp_path: Path) -> None:
    binary = client_builds.install_go_program(go_proxy, tmp_path / "app", "first_agent")
    go_mod = (tmp_path / "app" / "go.mod").read_text()
    assert f"{client_builds.GO_MODULE} v{client_builds.version()}" in go_mod and "replace" not in go_mod
    _check(_first_agent(godel, [str(binary)], tmp_path))


def test_go_client_package_tests() -> None:
    """The Go package's own tests (resume of subscriptions, typed errors, retry policy) on an
    in-process fake server, and the Go worker's settings."""
    client_builds.run(
        ["go", "test", "-count=1", "./godel/...", "./worker/..."], client_builds.REPO / "clients" / "go"
    )


def test_ts_client_from_its_npm_tarball(godel: RunningMesh, npm_tarball: Path, tmp_path: Path) -> None:
    listed = client_builds.run(["tar", "-tzf", str(npm_tarball)], tmp_path).split()
    assert "package/dist/index.js" in listed and "package/dist/index.d.ts" in listed
    assert not any(name.startswith("package/src/") for name in listed), "sources stay out of the package"
    script = client_builds.install_ts_program(npm_tarball, tmp_path / "app", "first-agent")
    _check(_first_agent(godel, ["node", str(script)], tmp_path))


def test_ts_client_package_tests(npm_tarball: Path) -> None:
    """The npm package's own tests (resume of subscriptions, typed errors, request ids) on
    Connect's in-memory transport, and the TypeScript worker's settings, against the dist/ that
    `npm pack` built."""
    client_builds.run(["node", "--test", "test/"], client_builds.TS)


def test_java_client_from_the_local_maven_repository(
    godel: RunningMesh, maven_artifact: Path, tmp_path: Path
) -> None:
    listed = client_builds.run(["jar", "tf", str(maven_artifact)], tmp_path).split()
    assert "ai/godel/client/GodelClient.class" in listed and "godel/v1/AgentServiceGrpc.class" in listed
    argv = client_builds.install_java_program(tmp_path / "app")
    _check(_first_agent(godel, argv, tmp_path))
