"""Writes a Go module proxy directory (the GOPROXY protocol's file layout) serving Godel's two Go
modules, github.com/godel-ai/godel/gen/go (generated) and github.com/godel-ai/godel/clients/go (the
client package `godel` and the worker), at one version:

    <out>/<module>/@v/list, <version>.info, <version>.mod, <version>.zip

so that `GOPROXY=file://<out>,... go get github.com/godel-ai/godel/clients/go@<version>` installs
the client as a user installs it from a published tag. The zips hold what a tagged commit would:
the module directory's files that git tracks or would track (not ignored), without nested modules,
plus the repository's LICENSE, each under `<module>@<version>/`. The `replace` in clients/go/go.mod (a local-development link to
../../gen/go) does not apply to consumers, which get gen/go from the proxy.

    python tools/clients/goproxy.py OUT [--version V]    # default: the version in pyproject.toml
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODULES = ("gen/go", "clients/go")
# A fixed time for the .info files and zip entries: the same sources give the same bytes.
TIME = "2026-01-01T00:00:00Z"
ZIP_TIME = (2026, 1, 1, 0, 0, 0)


def default_version() -> str:
    return "v" + str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])


def module_path(directory: Path) -> str:
    for line in (directory / "go.mod").read_text().splitlines():
        if line.startswith("module "):
            return line.split()[1]
    raise SystemExit(f"{directory}/go.mod names no module")


def escape(path: str) -> str:
    """The proxy's case encoding: an upper-case letter becomes '!' and its lower case."""
    return "".join(f"!{c.lower()}" if c.isupper() else c for c in path)


def module_files(directory: Path) -> list[str]:
    """Files of the module rooted at `directory` (relative paths), as a commit would hold them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."],
        cwd=directory,
        check=True,
        capture_output=True,
    ).stdout.decode()
    files = sorted({f for f in listed.split("\0") if f and (directory / f).is_file()})
    nested = {str(Path(f).parent) for f in files if Path(f).name == "go.mod" and Path(f).parent != Path(".")}
    return [f for f in files if not any(f.startswith(n + "/") for n in nested)]


def write_module(directory: Path, out: Path, version: str) -> str:
    path = module_path(directory)
    target = out / escape(path) / "@v"
    target.mkdir(parents=True, exist_ok=True)
    (target / "list").write_text(version + "\n")
    (target / f"{version}.info").write_text(json.dumps({"Version": version, "Time": TIME}))
    (target / f"{version}.mod").write_bytes((directory / "go.mod").read_bytes())
    files = {name: directory / name for name in module_files(directory)}
    if "LICENSE" not in files and (REPO / "LICENSE").is_file():
        files["LICENSE"] = REPO / "LICENSE"  # the repository's license applies to the module
    with zipfile.ZipFile(target / f"{version}.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for name, source in sorted(files.items()):
            info = zipfile.ZipInfo(f"{path}@{version}/{name}", ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, source.read_bytes())
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--version", default=None)
    args = parser.parse_args(argv)
    version = args.version or default_version()
    for module in MODULES:
        path = write_module(REPO / module, args.out.resolve(), version)
        print(f"{path}@{version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
