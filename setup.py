"""The godel wheel carries the built web console as package data (godel_deploy/console), so that an
installed gateway serves /ui/ without a checkout. Everything else is declared in pyproject.toml.

Building the wheel builds the console: tools/console/build.sh (node and npm, from the npm
registry at the versions of the package-lock.json files) into console/dist, copied into the
wheel. Where there is no npm (a Docker build stage given console/dist by a node stage), an
existing console/dist is copied as it is. GODEL_WHEEL_CONSOLE=none leaves the console out (the
services image, which runs no gateway). Editable installs serve the checkout's console/dist."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
CONSOLE = ROOT / "console"
BUILT = CONSOLE / "dist"
PACKAGED = Path("godel_deploy") / "console"  # godel_deploy.gateway_overlay.PACKAGED_CONSOLE


class BuildPyWithConsole(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        choice = os.environ.get("GODEL_WHEEL_CONSOLE", "")
        if choice == "none":
            return
        if choice not in ("", "build"):
            raise SystemExit(f"GODEL_WHEEL_CONSOLE must be 'none' or 'build', got {choice!r}")
        if (CONSOLE / "package.json").is_file() and shutil.which("npm"):
            subprocess.run([str(ROOT / "tools" / "console" / "build.sh")], check=True, cwd=ROOT)
        if not (BUILT / "index.html").is_file():
            raise SystemExit(
                "the godel wheel includes the web console: install node and npm to build it "
                "(tools/console/build.sh), or set GODEL_WHEEL_CONSOLE=none to leave it out"
            )
        target = Path(self.build_lib) / PACKAGED
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(BUILT, target)


setup(cmdclass={"build_py": BuildPyWithConsole})
