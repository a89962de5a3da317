"""The ``godel`` CLI run in-process against the fake mesh (tests.fakes.mesh), as the CLI suites of
tests/unit and clients/python/tests run it: exit code and captured output of one command, in an
environment that holds no credentials of the developer's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from godel_client.cli import main
from tests.fakes.mesh import API_KEY

CREDENTIAL_VARIABLES = (
    "GODEL_ADDR",
    "GODEL_API_KEY",
    "GODEL_CREDENTIALS_FILE",
    "GODEL_DEBUG",
    "GODEL_CONFIG",
    "GODEL_PROFILE",
    "GODEL_TLS_CA",
    "GODEL_TLS_CERT",
    "GODEL_TLS_KEY",
)


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    """``godel ARGV...`` as typed (no address or key added)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def godel(capsys: pytest.CaptureFixture[str], address: str, *argv: str) -> Run:
    """``godel ARGV...`` against the mesh at ``address``, with the key the fake mesh accepts."""
    return run(capsys, "--addr", address, "--api-key", API_KEY, *argv)


def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials leak in from the developer's shell, profiles, login sessions or the checkout's
    .data/admin.key: the config directory and GODEL_HOME are the test's own (empty) ones."""
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GODEL_HOME", str(tmp_path / "godel-home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
