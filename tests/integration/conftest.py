"""The client artifacts (Go module proxy, npm tarball, Maven artifact), built once per test
session for every module that installs them (tests/integration/client_builds.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration import client_builds


@pytest.fixture(scope="session")
def go_proxy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return client_builds.build_go_proxy(tmp_path_factory.mktemp("goproxy"))


@pytest.fixture(scope="session")
def npm_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return client_builds.build_npm_tarball(tmp_path_factory.mktemp("npm"))


@pytest.fixture(scope="session")
def maven_artifact() -> Path:
    return client_builds.maven_install()
