"""How the client picks plaintext or TLS (from the address, the TLS options, the environment and
the profile), and the sync client, the asyncio client and the CLI over TLS and mutual TLS to the fake
mesh, with certificates from a CA the test makes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from godel_client import AsyncGodelClient, ConfigError, GodelClient, UnavailableError, config
from godel_client.credentials import ClientTls, resolve
from godel_client.errors import unavailable_message
from tests.certs import Issued, TestCA
from tests.fakes.cli import run
from tests.fakes.mesh import API_KEY, FakeMesh, serve


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def server_cert(ca: TestCA) -> Issued:
    return ca.issue("fake-mesh")


def _server_credentials(ca: TestCA, cert: Issued, *, mutual: bool) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(cert.key.read_bytes(), cert.cert.read_bytes())],
        root_certificates=ca.ca_file.read_bytes() if mutual else None,
        require_client_auth=mutual,
    )


@pytest.fixture
def tls_mesh(ca: TestCA, server_cert: Issued) -> Iterator[tuple[FakeMesh, str]]:
    """The fake mesh over TLS only; the address is ``https://127.0.0.1:PORT``."""
    with serve(credentials=_server_credentials(ca, server_cert, mutual=False)) as (mesh, address):
        mesh.add_agent("over tls")
        yield mesh, f"https://{address}"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"GODEL_CONFIG": str(tmp_path / "config.toml"), **extra}


# -- which connections are TLS -----------------------------------------------------------------------


def test_https_addresses_and_tls_options_mean_tls(tmp_path: Path) -> None:
    env = _env(tmp_path)
    https = resolve("https://gw.example:443/", env=env)
    assert (https.address, https.tls) == ("gw.example:443", ClientTls())  # the system's CAs
    assert resolve("127.0.0.1:7373", env=env).tls is None
    assert resolve("http://127.0.0.1:7373", env=env).tls is None
    assert resolve("gw:443", tls_ca="ca.pem", env=env).tls == ClientTls(ca_file=Path("ca.pem"))
    from_env = resolve(env=_env(tmp_path, GODEL_ADDR="https://gw:443", GODEL_TLS_CA="/etc/ca.pem"))
    assert (from_env.address, from_env.tls) == ("gw:443", ClientTls(ca_file=Path("/etc/ca.pem")))
    with_cert = resolve("https://gw:443", tls_cert="c.pem", tls_key="k.pem", env=env)
    assert with_cert.tls == ClientTls(cert_file=Path("c.pem"), key_file=Path("k.pem"))


def test_contradicting_tls_options_are_refused(tmp_path: Path) -> None:
    env = _env(tmp_path)
    with pytest.raises(ConfigError, match="need https://"):
        resolve("http://gw:80", tls_ca="ca.pem", env=env)
    with pytest.raises(ConfigError, match="need https://"):
        resolve("http://gw:80", env=_env(tmp_path, GODEL_TLS_CA="ca.pem"))
    with pytest.raises(ConfigError, match="both --tls-cert and --tls-key"):
        resolve("https://gw:443", tls_cert="c.pem", env=env)
    with pytest.raises(ConfigError, match="cannot read"):
        ClientTls(ca_file=Path("/nonexistent/ca.pem")).credentials()
    with pytest.raises(ConfigError, match="not both"):
        GodelClient(
            "https://gw:443",
            credentials=grpc.ssl_channel_credentials(),
            tls_ca="ca.pem",
            env=env,
        )


def test_a_profile_holds_tls_files_for_its_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env(tmp_path)
    ca_file = tmp_path / "certs" / "ca.pem"
    ca_file.parent.mkdir()
    ca_file.write_text("not read until a channel is made")
    monkeypatch.chdir(ca_file.parent)
    config.set_value("default", "tls_ca", "ca.pem", env)
    assert config.profile(None, env)["tls_ca"] == str(ca_file)  # absolute: works from anywhere
    with pytest.raises(ConfigError, match="no file"):
        config.set_value("default", "tls_cert", "missing.pem", env)
    expected = ClientTls(ca_file=ca_file)

    config.set_value("default", "endpoint", "https://gw.example:443", env)
    assert resolve(env=env).tls == expected
    config.set_value("default", "endpoint", "gw.example:443", env)
    assert resolve(env=env).tls == expected  # the profile's own endpoint: its TLS files imply TLS
    config.set_value("default", "endpoint", "http://gw.example:80", env)
    with pytest.raises(ConfigError, match="need https://"):
        resolve(env=env)
    # An address named on the command line (or in $GODEL_ADDR) decides for itself; an https:// one
    # is verified with the profile's CA.
    assert resolve("127.0.0.1:7373", env=env).tls is None
    assert resolve("http://127.0.0.1:7373", env=env).tls is None
    assert resolve(env={**env, "GODEL_ADDR": "127.0.0.1:7373"}).tls is None
    assert resolve("https://other:443", env=env).tls == expected
    assert resolve("https://other:443", tls_ca="mine.pem", env=env).tls == ClientTls(ca_file=Path("mine.pem"))


def test_a_failed_handshake_is_reported_as_tls_not_as_a_mesh_that_is_down() -> None:
    transport = (
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:7373: Ssl handshake "
        "failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:"
        "CERTIFICATE_VERIFY_FAILED"
    )
    message = unavailable_message("gw:443", transport)
    assert message.startswith("TLS with gw:443 failed") and "--tls-ca" in message
    assert "make up" in unavailable_message("gw:443", "Connection refused")


# -- over TLS to the fake mesh -------------------------------------------------------------------------


def test_both_clients_reach_a_tls_mesh_with_its_ca(tls_mesh: tuple[FakeMesh, str], ca: TestCA) -> None:
    _, address = tls_mesh
    with GodelClient(address, API_KEY, tls_ca=str(ca.ca_file)) as client:
        assert [a.task for a in client.agents.list()] == ["over tls"]

    async def listed() -> list[str]:
        async with AsyncGodelClient(address, API_KEY, tls_ca=str(ca.ca_file)) as client:
            return [a.task async for a in client.agents.list()]

    assert asyncio.run(listed()) == ["over tls"]


def test_a_mesh_whose_certificate_is_not_trusted_is_a_tls_failure(tls_mesh: tuple[FakeMesh, str]) -> None:
    _, address = tls_mesh
    untrusting = GodelClient(address, API_KEY, max_attempts=1)  # the system's CAs
    with untrusting, pytest.raises(UnavailableError, match=r"^TLS with 127\.0\.0\.1:") as refused:
        list(untrusting.agents.list())
    assert "is the mesh running" not in refused.value.message
    plaintext = GodelClient(address.replace("https://", ""), API_KEY, max_attempts=1)
    with plaintext, pytest.raises(UnavailableError):
        list(plaintext.agents.list())


def test_a_client_certificate_for_a_mutual_tls_mesh(ca: TestCA, server_cert: Issued) -> None:
    client_cert = ca.issue("a-client")
    with serve(credentials=_server_credentials(ca, server_cert, mutual=True)) as (mesh, address):
        mesh.add_agent("mutual")
        https = f"https://{address}"
        with GodelClient(
            https,
            API_KEY,
            tls_ca=str(ca.ca_file),
            tls_cert=str(client_cert.cert),
            tls_key=str(client_cert.key),
        ) as client:
            assert [a.task for a in client.agents.list()] == ["mutual"]
        anonymous = GodelClient(https, API_KEY, tls_ca=str(ca.ca_file), max_attempts=1)
        with anonymous, pytest.raises(UnavailableError):
            list(anonymous.agents.list())


def test_the_cli_over_tls_with_flags_and_with_a_profile(
    tls_mesh: tuple[FakeMesh, str], ca: TestCA, capsys: pytest.CaptureFixture[str]
) -> None:
    _, address = tls_mesh
    flags = run(capsys, "--addr", address, "--api-key", API_KEY, "agent", "list", "--tls-ca", str(ca.ca_file))
    assert flags.code == 0, flags.err
    assert "over tls" in flags.out
    untrusted = run(capsys, "--addr", address, "--api-key", API_KEY, "agent", "list")
    assert untrusted.code == 1 and "TLS with" in untrusted.err

    assert run(capsys, "config", "set", "endpoint", address).code == 0
    assert run(capsys, "config", "set", "api_key", API_KEY).code == 0
    assert run(capsys, "config", "set", "tls_ca", str(ca.ca_file)).code == 0
    listed = run(capsys, "agent", "list")
    assert listed.code == 0, listed.err
    assert "over tls" in listed.out
    shown = json.loads(run(capsys, "--json", "config", "show").out)
    assert shown["tls"] == {"ca": str(ca.ca_file), "cert": "", "key": ""}
    assert shown["settings"]["tls_ca"] == str(ca.ca_file)
    assert "tls:          on" in run(capsys, "config", "show").out
    assert run(capsys, "config", "unset", "tls_ca").code == 0
    assert run(capsys, "agent", "list").code == 1  # the system's CAs do not know the test's CA
