"""What every test of the Python client (clients/python/tests) shares: no credentials of the
developer's shell or checkout leak in, and the one fake mesh (tests/fakes/mesh) with its address.
It sits here, not in clients/python/tests, because mypy names that directory `tests` (a base of
its own) and would take a conftest.py there for a second `tests.conftest`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.cli import clean_environment
from tests.fakes.mesh import FakeMesh, serve


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_environment(monkeypatch, tmp_path)


@pytest.fixture
def mesh() -> Iterator[tuple[FakeMesh, str]]:
    """The fake mesh and its address."""
    with serve() as running:
        yield running
