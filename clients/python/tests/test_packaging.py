"""The two Python distributions' metadata: ``godel-client`` stands alone (ranges, no server
packages, floors that match the generated code), and both carry the license and the links a
package index shows."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
CLIENT = ROOT / "clients" / "python"
SERVER_PACKAGES = {"sqlalchemy", "asyncpg", "aiosqlite", "aiokafka", "alembic", "prometheus-client"}


def _project(directory: Path) -> dict[str, Any]:
    document: dict[str, Any] = tomllib.loads((directory / "pyproject.toml").read_text())["project"]
    return document


def _requirements(directory: Path) -> dict[str, str]:
    """Distribution name -> version specifier of each dependency."""
    found: dict[str, str] = {}
    for requirement in _project(directory)["dependencies"]:
        match = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^]]*\])?(.*)$", requirement)
        assert match, requirement
        found[match.group(1).lower().replace("_", "-")] = match.group(2).strip()
    return found


def _generated_versions() -> tuple[str, str]:
    """The protobuf and grpcio versions gen/python was generated for (its runtime checks refuse older)."""
    generated = ROOT / "gen" / "python" / "godel" / "v1"
    protobuf = {
        m.group(1)
        for path in generated.glob("*_pb2.py")
        if (m := re.search(r"^# Protobuf Python Version: (\S+)$", path.read_text(), re.MULTILINE))
    }
    grpc = {
        m.group(1)
        for path in generated.glob("*_pb2_grpc.py")
        if (m := re.search(r"^GRPC_GENERATED_VERSION = '(\S+)'$", path.read_text(), re.MULTILINE))
    }
    assert len(protobuf) == 1 and len(grpc) == 1, (protobuf, grpc)
    return protobuf.pop(), grpc.pop()


def test_the_client_needs_no_server_package_and_pins_nothing() -> None:
    requirements = _requirements(CLIENT)
    assert not SERVER_PACKAGES & set(requirements)
    for name, specifier in requirements.items():
        assert "==" not in specifier and "<" in specifier and ">=" in specifier, f"{name}{specifier}: a range"


def test_the_client_floors_are_the_versions_the_code_was_generated_for() -> None:
    protobuf, grpc = _generated_versions()
    requirements = _requirements(CLIENT)
    assert requirements["protobuf"].startswith(f">={protobuf},")
    assert requirements["grpcio"].startswith(f">={grpc},")


def test_the_server_is_built_on_the_client() -> None:
    server = _project(ROOT)
    assert _requirements(ROOT)["godel-client"] == f"~={_project(CLIENT)['version']}"
    assert "godel" not in server.get("scripts", {})  # the CLI comes with the client
    assert _project(CLIENT)["scripts"]["godel"] == "godel_client.cli:main"


@pytest.mark.parametrize("directory", [ROOT, CLIENT], ids=["godel", "godel-client"])
def test_metadata_a_package_index_shows(directory: Path) -> None:
    project = _project(directory)
    assert project["license"] == "Apache-2.0"
    assert (directory / project["license-files"][0]).read_text() == (ROOT / "LICENSE").read_text()
    assert (directory / project["readme"]).is_file()
    assert {"Homepage", "Source", "Issues", "Documentation"} <= set(project["urls"])
    assert "Typing :: Typed" in project["classifiers"]
    assert not any(c.startswith("License ::") for c in project["classifiers"])  # the SPDX field says it


def test_the_license_is_apache_2() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n                           Version 2.0, January 2004")
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License" in text
