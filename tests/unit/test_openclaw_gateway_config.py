"""godel_deploy.openclaw writes a Gateway's openclaw.json around its plugin installs: a channel is
configured only once its plugin is installed (before, openclaw tries ClawHub first and starts a
minute slower), and what the install wrote (the plugin enabled) is kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from godel_deploy.openclaw import IRC_PLUGIN, OpenClawGateway, OpenClawInstall

CHANNELS = {"irc": {"enabled": True, "host": "127.0.0.1", "port": 6667, "nick": "claw"}}


def test_channels_are_configured_after_the_plugins_are_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = OpenClawGateway(
        OpenClawInstall(tmp_path / "install"),
        tmp_path / "home",
        18789,
        "tok",
        {"channels": CHANNELS, "plugins": {"allow": ["memory-core"]}},
        plugins=[IRC_PLUGIN],
    )
    seen: list[dict[str, object]] = []

    def install(spec: str) -> None:  # what `openclaw plugins install` does to the config
        config = json.loads(gateway.config_path.read_text())
        seen.append(config)
        config["plugins"] = {"allow": ["memory-core", "irc"], "entries": {"irc": {"enabled": True}}}
        gateway.config_path.write_text(json.dumps(config))

    monkeypatch.setattr(gateway, "install_plugin", install)
    gateway.home.mkdir()
    gateway._install_plugins()
    assert len(seen) == 1 and "channels" not in seen[0]
    assert seen[0]["gateway"] == {
        "mode": "local",
        "port": 18789,
        "bind": "loopback",
        "auth": {"mode": "token", "token": "tok"},
        "controlUi": {"enabled": False},
    }
    written = json.loads(gateway.config_path.read_text())
    assert written["channels"] == CHANNELS
    assert written["plugins"]["entries"] == {"irc": {"enabled": True}}
    assert gateway.config_path.stat().st_mode & 0o777 == 0o600


def test_without_plugins_the_config_is_written_whole(tmp_path: Path) -> None:
    gateway = OpenClawGateway(
        OpenClawInstall(tmp_path / "install"), tmp_path, 18789, "tok", {"channels": CHANNELS}
    )
    gateway._install_plugins()
    assert json.loads(gateway.config_path.read_text())["channels"] == CHANNELS
