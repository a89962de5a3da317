"""``godel`` as an installed tool: profiles in the user's config directory (and the order in which
the address and credential are looked up), ``--version``, shell completion, and the admin
commands ``keys list|revoke`` and ``cluster ...``, against the fake mesh of tests/fakes."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

from godel.v1 import cluster_pb2, cluster_service_pb2
from godel_client import ConfigError, __version__, config
from godel_client.credentials import resolve
from tests.fakes.cli import godel, run
from tests.fakes.mesh import API_KEY, FakeMesh


def _config_file(tmp_path: Path) -> Path:
    return tmp_path / "config" / "godel" / "config.toml"


# -- profiles --------------------------------------------------------------------------------------


def test_a_profile_takes_an_installed_cli_to_the_mesh(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    state, address = mesh
    state.add_agent("from a profile")
    assert run(capsys, "agent", "list").code == 1  # nothing configured: the default address, no key
    assert run(capsys, "config", "set", "endpoint", address).code == 0
    assert run(capsys, "config", "set", "api_key", API_KEY).code == 0
    listed = run(capsys, "agent", "list")
    assert listed.code == 0, listed.err
    assert "from a profile" in listed.out
    path = _config_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds a credential
    assert tomllib.loads(path.read_text())["profiles"]["default"] == {"endpoint": address, "api_key": API_KEY}


def test_named_profiles_and_the_default_one(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, address = mesh
    assert run(capsys, "--profile", "lab", "config", "set", "endpoint", address).code == 0
    assert run(capsys, "config", "set", "api_key", API_KEY, "--profile", "lab").code == 0
    assert run(capsys, "agent", "list").code == 1  # the default profile knows nothing
    assert run(capsys, "--profile", "lab", "agent", "list").code == 0
    monkeypatch.setenv("GODEL_PROFILE", "lab")
    assert run(capsys, "agent", "list").code == 0
    monkeypatch.delenv("GODEL_PROFILE")
    assert run(capsys, "config", "use", "lab").code == 0
    assert run(capsys, "agent", "list").code == 0
    unknown = run(capsys, "--profile", "nope", "agent", "list")
    assert unknown.code == 1 and "no profile 'nope'" in unknown.err
    assert run(capsys, "config", "use", "nope").code == 1


def test_config_show_masks_secrets_and_says_where_each_setting_comes_from(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "godel_sk_0123456789abcdef"
    run(capsys, "config", "set", "endpoint", "mesh.example:7373")
    run(capsys, "config", "set", "api_key", secret)
    shown = run(capsys, "config", "show")
    assert shown.code == 0, shown.err
    assert secret not in shown.out and "godel_sk_01…" in shown.out
    assert "mesh.example:7373   (from profile default)" in shown.out
    monkeypatch.setenv("GODEL_ADDR", "other:1")
    document = json.loads(run(capsys, "--json", "config", "show").out)
    assert (document["endpoint"], document["endpointFrom"]) == ("other:1", "GODEL_ADDR")
    assert (document["credential"], document["credentialFrom"]) == ("api_key", "profile default")
    assert secret not in json.dumps(document)
    run(capsys, "config", "unset", "api_key")
    assert json.loads(run(capsys, "--json", "config", "show").out)["credential"] == "none"


def test_bad_settings_are_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run(capsys, "config", "set", "colour", "blue").code == 2  # not a setting
    bad_name = run(capsys, "--profile", "a b", "config", "set", "endpoint", "x:1")
    assert bad_name.code == 1 and "invalid profile name" in bad_name.err
    assert run(capsys, "config", "set", "endpoint", "  ").code == 1
    assert not _config_file(tmp_path).exists()
    _config_file(tmp_path).parent.mkdir(parents=True)
    _config_file(tmp_path).write_text("[profiles\n")
    broken = run(capsys, "config", "show")
    assert broken.code == 1 and "cannot read the config file" in broken.err


def test_values_that_need_quoting_survive_the_file(tmp_path: Path) -> None:
    env = {"GODEL_CONFIG": str(tmp_path / "c.toml")}
    awkward = 'tök"en\\with quotes'
    config.set_value("odd-1", "token", awkward, env)
    assert config.profile("odd-1", env) == {"token": awkward}


def test_the_lookup_order(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "admin.key").write_text("from-home\n")
    env = {"GODEL_CONFIG": str(tmp_path / "c.toml"), "GODEL_HOME": str(home)}
    assert (resolve(env=env).api_key, resolve(env=env).credential_from) == (
        "from-home",
        str(home / "admin.key"),
    )
    config.set_value("default", "api_key", "from-profile", env)
    config.set_value("default", "endpoint", "profile:1", env)
    assert resolve(env=env).api_key == "from-profile"
    assert resolve(env=env).address == "profile:1"
    env["GODEL_API_KEY"] = "from-env"
    env["GODEL_ADDR"] = "env:1"
    assert (resolve(env=env).api_key, resolve(env=env).address) == ("from-env", "env:1")
    explicit = resolve("arg:1", api_key="from-arg", env=env)
    assert (explicit.api_key, explicit.address, explicit.credential_from) == ("from-arg", "arg:1", "argument")
    token = resolve(token="jwt", api_key="from-arg", env=env)
    assert (token.token, token.api_key) == ("jwt", None)
    config.set_value("default", "token", "profile-jwt", env)
    del env["GODEL_API_KEY"]
    assert (resolve(env=env).token, resolve(env=env).api_key) == ("profile-jwt", None)
    with pytest.raises(ConfigError, match="no profile"):
        resolve(profile="missing", env=env)


def test_outside_a_checkout_no_local_admin_key_is_assumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An installed client (not under clients/python of a checkout) only uses $GODEL_HOME when set.
    monkeypatch.delenv("GODEL_HOME")
    monkeypatch.setattr("godel_client.credentials.checkout_root", lambda: None)
    assert resolve(env={"GODEL_CONFIG": str(tmp_path / "none.toml")}).credential_from == "none"


# -- version and completion ------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "--version")
    assert (result.code, result.out.strip()) == (0, f"godel {__version__} (godel-client)")
    assert __version__ == "0.1.0"


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts_know_the_commands(
    shell: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    result = run(capsys, "completion", shell)
    assert result.code == 0, result.err
    for word in ("agent", "spawn", "cluster", "heartbeat", "keys", "revoke", "config", "--profile"):
        assert word in result.out
    if shutil.which(shell):
        script = tmp_path / f"godel.{shell}"
        script.write_text(result.out)
        checked = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stderr


# -- keys and clusters -----------------------------------------------------------------------------


def test_keys_list_and_revoke(mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, address = mesh
    for name in ("ci", "ops", "docs"):
        assert godel(capsys, address, "keys", "create", "--name", name).code == 0
    listed = godel(capsys, address, "keys", "list")
    assert listed.code == 0, listed.err
    lines = listed.out.splitlines()
    assert lines[0].split()[:4] == ["ID", "NAME", "ROLE", "PREFIX"]
    assert [line.split()[1] for line in lines[1:]] == ["ci", "ops", "docs"]  # over two pages
    assert "secret" not in listed.out
    key_id = lines[1].split()[0]
    revoked = godel(capsys, address, "keys", "revoke", key_id)
    assert (revoked.code, revoked.out.strip()) == (0, f"revoked API key {key_id} (ci)")
    document = json.loads(godel(capsys, address, "--json", "keys", "list").out)
    assert [key.get("revoked", False) for key in document["apiKeys"]] == [True, False, False]
    missing = godel(capsys, address, "keys", "revoke", "nope")
    assert missing.code == 1 and "not found" in missing.err


def test_cluster_register_list_get_heartbeat(
    mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]
) -> None:
    state, address = mesh
    registered = godel(
        capsys, address, "cluster", "register", "eu-1", "godel-eu.example:7373", "--region", "eu-west",
        "--max-agents", "40", "--feature", "gpu", "--feature", "openai",
    )  # fmt: skip
    assert registered.code == 0, registered.err
    cluster_id = registered.out.strip()
    assert list(state.clusters[cluster_id].features) == ["gpu", "openai"]
    listed = godel(capsys, address, "cluster", "list", "--region", "eu-west")
    assert listed.code == 0, listed.err
    row = listed.out.splitlines()[1].split()
    assert row[:4] == [cluster_id, "eu-1", "eu-west", "online"]
    beat = godel(capsys, address, "cluster", "heartbeat", cluster_id, "--agents", "12", "--max-agents", "50")
    assert (beat.code, beat.out.strip()) == (0, f"cluster {cluster_id}: online, next heartbeat in 30s")
    request = state.requests_of(cluster_service_pb2.HeartbeatRequest)[-1]
    assert (request.current_agents, request.max_agents, request.HasField("health_score")) == (12, 50, False)
    shown = godel(capsys, address, "cluster", "get", cluster_id)
    assert "12 of 50 slots" in shown.out and "gpu, openai" in shown.out
    assert godel(capsys, address, "cluster", "heartbeat", cluster_id, "--health", "90").code == 2  # gone
    assert godel(capsys, address, "cluster", "heartbeat", cluster_id, "--max-agents", "-1").code == 2
    assert godel(capsys, address, "cluster", "get", "nope").code == 1


def test_cluster_route_and_unregister(mesh: tuple[FakeMesh, str], capsys: pytest.CaptureFixture[str]) -> None:
    state, address = mesh
    for name, region in (("us-1", "us-east"), ("eu-2", "eu-west"), ("eu-1", "eu-west")):
        assert (
            godel(capsys, address, "cluster", "register", name, f"{name}:7373", "--region", region).code == 0
        )
    routed = godel(
        capsys, address, "cluster", "route", "--region", "eu-west", "--require-region", "--model", "gpt-4o",
        "--feature", "gpu", "--min-capacity", "3", "--strategy", "least-connections", "--session", "s-1",
    )  # fmt: skip
    assert (routed.code, routed.out.strip()) == (0, "eu-1\teu-1:7373\tfirst by name"), routed.err
    request = state.requests_of(cluster_service_pb2.RouteRequestRequest)[-1]
    assert (request.region, request.require_region, request.model, list(request.required_features)) == (
        "eu-west",
        True,
        "gpt-4o",
        ["gpu"],
    )
    assert (request.min_capacity, request.strategy, request.session_id) == (
        3,
        cluster_pb2.LOAD_BALANCE_STRATEGY_LEAST_CONNECTIONS,
        "s-1",
    )
    assert godel(capsys, address, "cluster", "route", "--strategy", "fastest").code == 2
    nowhere = godel(capsys, address, "cluster", "route", "--region", "ap-south", "--require-region")
    assert nowhere.code == 1 and "no cluster in region ap-south" in nowhere.err
    eu_1 = next(c.id for c in state.clusters.values() if c.name == "eu-1")
    assert godel(capsys, address, "cluster", "unregister", eu_1).code == 0
    assert sorted(c.name for c in state.clusters.values()) == ["eu-2", "us-1"]
    assert godel(capsys, address, "cluster", "unregister", eu_1).code == 1
