"""The gateway's routes come from the contract: one per RPC that declares its access, to the
process that serves it; streaming RPCs without timeouts; SSE on the REST paths of the
server-streaming RPCs; reflection to a process that lists every service."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.api import annotations_pb2

import godel_deploy.gateway as gateway
from godel_server.__main__ import service_class
from godel_server.runtime.rbac import API_SERVICES, RULES, declared_rule, method_path
from godel_server.runtime.reflection import GATEWAY_HEADER, GATEWAY_VALUE
from godel_server.runtime.topology import ROLES


def render(tmp_path: Path, console_dir: Path | None = None) -> dict[str, Any]:
    config = gateway.render_envoy_config(
        out_path=tmp_path / "envoy.yaml",
        listen_port=7373,
        admin_port=7374,
        service_ports={"agent": 50051, "team": 50052, "event": 50053, "cluster": 50054},
        descriptor=gateway.DESCRIPTOR,
        access_log=tmp_path / "access.log",
        console_dir=console_dir,
    )
    loaded: dict[str, Any] = yaml.safe_load(config.read_text())
    return loaded


def http_config(config: dict[str, Any]) -> dict[str, Any]:
    listener = config["static_resources"]["listeners"][0]
    typed: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return typed


def routes_by_path(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    routes = http_config(config)["route_config"]["virtual_hosts"][0]["routes"]
    return {r["match"]["path"]: r for r in routes if "path" in r["match"]}


def test_every_declared_rpc_is_routed_to_the_process_that_serves_it(tmp_path: Path) -> None:
    routes = routes_by_path(render(tmp_path))
    served_by = {name: role for role in ROLES for name in service_class(role).grpc_services}
    for service in API_SERVICES:
        for method in service.methods:
            path = method_path(method)
            assert path in RULES
            route = routes[path]["route"]
            assert route["cluster"] == f"godel_{served_by[service.full_name]}", path
            streaming = method.client_streaming or method.server_streaming
            assert route["timeout"] == ("0s" if streaming else "60s"), path
    assert routes["/godel.v1.WorkerService/Connect"]["route"]["idle_timeout"] == "0s"


def test_reflection_is_answered_with_every_service(tmp_path: Path) -> None:
    routes = routes_by_path(render(tmp_path))
    for version in ("v1", "v1alpha"):
        route = routes[f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"]
        assert route["route"]["cluster"] == "godel_cluster"
        [header] = route["request_headers_to_add"]
        assert header["header"] == {"key": GATEWAY_HEADER, "value": GATEWAY_VALUE}


def test_an_rpc_without_access_is_not_routed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        gateway, "declared_rule", lambda m: None if m.name == "KillAgent" else declared_rule(m)
    )
    routes = routes_by_path(render(tmp_path))
    assert "/godel.v1.AgentService/KillAgent" not in routes
    assert "/godel.v1.AgentService/PauseAgent" in routes


def test_transcoded_services_are_those_with_rest_bindings(tmp_path: Path) -> None:
    filters = {f["name"]: f for f in http_config(render(tmp_path))["http_filters"]}
    transcoder = filters["envoy.filters.http.grpc_json_transcoder"]["typed_config"]
    with_rest = [
        s.full_name
        for s in API_SERVICES
        if any(m.GetOptions().HasExtension(annotations_pb2.http) for m in s.methods)
    ]
    assert transcoder["services"] == with_rest
    assert "godel.v1.AgentService" in with_rest and "godel.v1.WorkerService" not in with_rest


def test_sse_covers_the_rest_paths_of_server_streaming_rpcs(tmp_path: Path) -> None:
    routes = http_config(render(tmp_path))["route_config"]["virtual_hosts"][0]["routes"]
    [sse] = [r for r in routes if "safe_regex" in r["match"]]
    transcoder = sse["typed_per_filter_config"]["envoy.filters.http.grpc_json_transcoder"]
    assert transcoder["print_options"]["stream_sse_style_delimited"] is True
    regex = re.compile(sse["match"]["safe_regex"]["regex"])
    for path in (
        "/api/v1/events/stream",
        "/api/events/stream",
        "/api/v1/agents/a-1/logs/stream",
        "/api/agents/a-1/logs/stream",
        "/api/v1/teams/t-1/start",
    ):
        assert regex.fullmatch(path), path
    for path in ("/api/v1/agents", "/api/v1/agents/a-1/logs", "/api/v1/agents/a/b/logs/stream", "/events"):
        assert not regex.fullmatch(path), path


def test_rest_path_templates_become_regexes() -> None:
    assert gateway._path_regex("/api/v1/agents/{id}/logs/stream") == "/api/v1/agents/[^/]+/logs/stream"
    assert gateway._path_regex("/api/v1/files/{name=**}") == "/api/v1/files/.+"
    assert gateway._path_regex("/api/v1/openapi.json") == "/api/v1/openapi[.]json"
    with pytest.raises(ValueError, match="unsupported character"):
        gateway._path_regex("/api/v1/a b")


def _console_routes(tmp_path: Path, console_dir: Path | None) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = http_config(render(tmp_path, console_dir))["route_config"][
        "virtual_hosts"
    ][0]["routes"]
    return [r for r in routes if r["match"].get("path", r["match"].get("prefix", "")).startswith("/ui")]


def test_the_built_console_is_served_under_ui_as_direct_responses(tmp_path: Path) -> None:
    built = tmp_path / "dist"
    (built / "assets").mkdir(parents=True)
    (built / "index.html").write_text("<!doctype html>")
    (built / "assets" / "index-abc.js").write_text("export {}")
    routes = _console_routes(tmp_path, built)
    by_path = {r["match"].get("path"): r for r in routes}
    assert by_path["/ui"]["redirect"] == {"path_redirect": "/ui/"}
    for path, file, kind in (
        ("/ui/", "index.html", "text/html"),
        ("/ui/index.html", "index.html", "text/html"),
        ("/ui/assets/index-abc.js", "assets/index-abc.js", "text/javascript"),
    ):
        route = by_path[path]
        assert route["direct_response"] == {
            "status": 200,
            "body": {"filename": str((built / file).resolve())},
        }
        headers = {h["header"]["key"]: h["header"]["value"] for h in route["response_headers_to_add"]}
        assert headers["content-type"].startswith(kind)
        assert headers["content-security-policy"].startswith("default-src 'self'")
        # The transcoder would refuse a path that is no RPC.
        assert route["typed_per_filter_config"]["envoy.filters.http.grpc_json_transcoder"]["disabled"]
    # Anything else under /ui/ is a 404, matched after the files.
    assert routes[-1]["match"] == {"prefix": "/ui/"} and routes[-1]["direct_response"]["status"] == 404


def test_without_a_built_console_ui_says_how_to_build_it(tmp_path: Path) -> None:
    routes = _console_routes(tmp_path, None)
    assert [r["match"] for r in routes] == [{"path": "/ui"}, {"prefix": "/ui/"}]
    assert "make console" in routes[-1]["direct_response"]["body"]["inline_string"]


def test_envoy_keeps_its_successful_local_replies_as_they_are(tmp_path: Path) -> None:
    """The local-reply mappers turn Envoy's errors into JSON; a console file (a 200 direct
    response) or the /ui redirect must pass untouched, so every mapper filters on status >= 400."""
    mappers = http_config(render(tmp_path))["local_reply_config"]["mappers"]
    for mapper in mappers:
        statuses = [
            f["status_code_filter"]
            for f in mapper["filter"]["and_filter"]["filters"]
            if "status_code_filter" in f
        ]
        assert statuses, mapper
        comparison = statuses[0]["comparison"]
        assert comparison["op"] in {"EQ", "GE"} and int(comparison["value"]["default_value"]) >= 400


def test_a_console_dir_without_a_build_is_a_configuration_error(tmp_path: Path) -> None:
    from godel_deploy.gateway_overlay import load_gateway_settings
    from godel_server.runtime.config import ConfigError

    with pytest.raises(ConfigError, match="GODEL_CONSOLE_DIR"):
        load_gateway_settings({"GODEL_CONSOLE_DIR": str(tmp_path)})
    (tmp_path / "index.html").write_text("<!doctype html>")
    assert load_gateway_settings({"GODEL_CONSOLE_DIR": str(tmp_path)}).console_dir == tmp_path


def test_without_a_checkout_the_gateway_serves_the_console_the_wheel_carries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import godel_deploy.gateway_overlay as overlay

    packaged = tmp_path / "site-packages" / "godel_deploy" / "console"
    monkeypatch.setattr(overlay, "PACKAGED_CONSOLE", packaged)
    monkeypatch.setattr(overlay, "repo_root", lambda: None)
    assert overlay.console_dir({}) is None
    packaged.mkdir(parents=True)
    (packaged / "index.html").write_text("<!doctype html>")
    assert overlay.console_dir({}) == packaged
    # A checkout's own build comes first (`make console` there is newer than any wheel).
    checkout = tmp_path / "checkout"
    (checkout / "console" / "dist").mkdir(parents=True)
    (checkout / "console" / "dist" / "index.html").write_text("<!doctype html>")
    monkeypatch.setattr(overlay, "repo_root", lambda: checkout)
    assert overlay.console_dir({}) == checkout / "console" / "dist"
