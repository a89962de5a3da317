"""What a deployment changes in the gateway config rendered from gateway/envoy.yaml.tmpl: the
address the listener binds, TLS on the listener (HTTPS and gRPC over TLS, ALPN h2 and http/1.1)
and mutual TLS to the services. The template stays the local, loopback, plaintext shape; this
layer is applied to its parsed result, so the two evolve separately. The endpoints of the
services (every replica; DNS names resolve as STRICT_DNS clusters) are rendered into the template
(godel_deploy/gateway.py); the settings say which they are.

Settings come from the environment, as the services' do (GODEL_BIND_HOST, GODEL_<ROLE>_ADDR,
GODEL_EVENT_WS_PORT and GODEL_TLS_* as in godel_server/runtime/config.py), plus:

| variable                      | default | meaning                                                 |
|-------------------------------|---------|---------------------------------------------------------|
| GODEL_GATEWAY_PORT            | 7373    | public listener (REST/JSON, SSE, WebSocket and gRPC)    |
| GODEL_GATEWAY_ADMIN_PORT      | 7374    | Envoy's admin interface (always on 127.0.0.1)           |
| GODEL_GATEWAY_TLS_CERT_FILE   | (unset) | certificate chain (PEM) the listener serves: HTTPS only |
| GODEL_GATEWAY_TLS_KEY_FILE    | (unset) | its private key (PEM)                                   |
| GODEL_GATEWAY_ACCESS_LOG      | /dev/stdout | where the JSON access log goes                      |
| GODEL_GATEWAY_LOG_LEVEL       | warn    | Envoy's log level (`godel-gateway run`)                 |
| GODEL_GATEWAY_<ROLE>_ENDPOINTS | GODEL_<ROLE>_ADDR | comma-separated host:port of the replicas of a role (a DNS name may stand for several: a headless Service) |
| GODEL_CONSOLE_DIR             | console/dist of the checkout when built, else the wheel's | the built web console served under /ui/ (`make console`; the godel wheel carries one: setup.py) |
| GODEL_GATEWAY_EVENT_WS_ENDPOINTS | the event host, GODEL_EVENT_WS_PORT | the same for the event service's WebSocket endpoint |

Tracing: with OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) set, as for the services
(README "Tracing"), Envoy joins the trace: its OpenTelemetry tracer continues the caller's
`traceparent`, sends its own span's to the services and exports its spans (service.name
`godel-gateway`, OTEL_SERVICE_NAME overrides) to that collector over OTLP/gRPC (an https://
endpoint is verified with the system's CA bundle, /etc/ssl/certs/ca-certificates.crt).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from godel_deploy.gateway import CLUSTER_ROLES, WEBSOCKET_CLUSTER, is_ip
from godel_deploy.paths import repo_root
from godel_server.runtime.config import (
    ConfigError,
    TlsSettings,
    TracingSettings,
    bind_host,
    event_ws_port,
    load_tls,
    load_tracing,
    service_addresses,
)

__all__ = ["GatewaySettings", "Upstream", "apply_overlay", "load_gateway_settings", "overlay_file"]

TLS_SOCKET = "envoy.transport_sockets.tls"
TLS_TYPES = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
TRACING_CLUSTER = "godel_otel_collector"
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@dataclass(frozen=True)
class Upstream:
    host: str
    port: int

    @property
    def is_ip(self) -> bool:
        return is_ip(self.host)


@dataclass(frozen=True)
class GatewaySettings:
    listen_host: str = "127.0.0.1"
    listen_port: int = 7373
    admin_port: int = 7374
    # cluster name -> its endpoints (the replicas of its role)
    upstreams: dict[str, tuple[Upstream, ...]] = field(default_factory=dict)
    downstream_cert: Path | None = None
    downstream_key: Path | None = None
    upstream_tls: TlsSettings = field(default_factory=TlsSettings)
    access_log: str | None = None  # None: as rendered
    tracing: TracingSettings = field(default_factory=TracingSettings)
    console_dir: Path | None = None  # the built web console, served under /ui/

    @property
    def serves_tls(self) -> bool:
        return self.downstream_cert is not None


def _split(address: str, name: str) -> Upstream:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"{name} must be host:port, got {address!r}")
    return Upstream(host.strip("[]"), int(port))


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name) or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"{name} must be a TCP port, got {raw!r}")
    return int(raw)


# The console the godel wheel carries (setup.py copies console/dist there; absent in a checkout).
PACKAGED_CONSOLE = Path(__file__).resolve().parent / "console"


def console_dir(env: Mapping[str, str]) -> Path | None:
    """The built web console: GODEL_CONSOLE_DIR, else the checkout's console/dist once built, else
    the one packaged in the wheel."""
    named = env.get("GODEL_CONSOLE_DIR")
    if named:
        if not (Path(named) / "index.html").is_file():
            raise ConfigError(f"GODEL_CONSOLE_DIR names {named!r}, which holds no index.html")
        return Path(named)
    root = repo_root()
    for built in (root / "console" / "dist" if root else None, PACKAGED_CONSOLE):
        if built and (built / "index.html").is_file():
            return built
    return None


def load_gateway_settings(env: Mapping[str, str]) -> GatewaySettings:
    """The gateway's settings from the environment (see the module docstring)."""
    # Only what the gateway needs: it has no database or Kafka settings (nor their secrets).
    addresses = service_addresses(env)
    defaults = {cluster: addresses[role] for cluster, role in CLUSTER_ROLES.items()}
    event = _split(addresses["event"], "GODEL_EVENT_ADDR")
    defaults[WEBSOCKET_CLUSTER] = f"{event.host}:{event_ws_port(env)}"
    upstreams: dict[str, tuple[Upstream, ...]] = {}
    for cluster, default in defaults.items():
        name = f"GODEL_GATEWAY_{cluster.removeprefix('godel_').upper()}_ENDPOINTS"
        listed = [a.strip() for a in (env.get(name) or default).split(",") if a.strip()]
        if not listed:
            raise ConfigError(f"{name} names no endpoint")
        upstreams[cluster] = tuple(_split(address, name) for address in listed)
    cert, key = env.get("GODEL_GATEWAY_TLS_CERT_FILE"), env.get("GODEL_GATEWAY_TLS_KEY_FILE")
    if bool(cert) != bool(key):
        raise ConfigError("GODEL_GATEWAY_TLS_CERT_FILE and GODEL_GATEWAY_TLS_KEY_FILE must be set together")
    for name, value in (("GODEL_GATEWAY_TLS_CERT_FILE", cert), ("GODEL_GATEWAY_TLS_KEY_FILE", key)):
        if value and not Path(value).is_file():
            raise ConfigError(f"{name} names {value!r}, which is not a readable file")
    return GatewaySettings(
        listen_host=bind_host(env),
        listen_port=_port(env, "GODEL_GATEWAY_PORT", 7373),
        admin_port=_port(env, "GODEL_GATEWAY_ADMIN_PORT", 7374),
        upstreams=upstreams,
        downstream_cert=Path(cert) if cert else None,
        downstream_key=Path(key) if key else None,
        upstream_tls=load_tls(env),
        access_log=env.get("GODEL_GATEWAY_ACCESS_LOG") or "/dev/stdout",
        tracing=load_tracing(env, "godel-gateway"),
        console_dir=console_dir(env),
    )


def _filename(path: Path) -> dict[str, str]:
    return {"filename": str(path.resolve())}


def downstream_tls(settings: GatewaySettings) -> dict[str, Any]:
    assert settings.downstream_cert and settings.downstream_key
    return {
        "name": TLS_SOCKET,
        "typed_config": {
            "@type": TLS_TYPES + "DownstreamTlsContext",
            "common_tls_context": {
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_certificates": [
                    {
                        "certificate_chain": _filename(settings.downstream_cert),
                        "private_key": _filename(settings.downstream_key),
                    }
                ],
            },
        },
    }


def upstream_tls(tls: TlsSettings, upstreams: tuple[Upstream, ...], *, websocket: bool) -> dict[str, Any]:
    """Mutual TLS to a service: its certificate must name a host the gateway dials."""
    assert tls.ca_file and tls.cert_file and tls.key_file
    hosts = sorted({u.host: u.is_ip for u in upstreams}.items())
    sans = [{"san_type": "IP_ADDRESS" if ip else "DNS", "matcher": {"exact": host}} for host, ip in hosts]
    context: dict[str, Any] = {
        "@type": TLS_TYPES + "UpstreamTlsContext",
        "common_tls_context": {
            "alpn_protocols": ["http/1.1"] if websocket else ["h2"],
            "tls_certificates": [
                {"certificate_chain": _filename(tls.cert_file), "private_key": _filename(tls.key_file)}
            ],
            "validation_context": {
                "trusted_ca": _filename(tls.ca_file),
                "match_typed_subject_alt_names": sans,
            },
        },
    }
    if len(hosts) == 1 and not hosts[0][1]:
        context["sni"] = hosts[0][0]
    return {"name": TLS_SOCKET, "typed_config": context}


def tracing_cluster(tracing: TracingSettings) -> dict[str, Any]:
    """The OTLP/gRPC collector as an HTTP/2 cluster of Envoy."""
    url = urlsplit(tracing.endpoint)
    https = url.scheme == "https"
    upstream = Upstream(url.hostname or "", url.port or (443 if https else 4317))
    cluster: dict[str, Any] = {
        "name": TRACING_CLUSTER,
        "type": "STATIC" if upstream.is_ip else "STRICT_DNS",
        "connect_timeout": "2s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": TRACING_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"address": upstream.host, "port_value": upstream.port}
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
    if https:
        context = {
            "@type": TLS_TYPES + "UpstreamTlsContext",
            "sni": upstream.host,
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "validation_context": {"trusted_ca": {"filename": SYSTEM_CA_BUNDLE}},
            },
        }
        cluster["transport_socket"] = {"name": TLS_SOCKET, "typed_config": context}
    return cluster


def http_tracing(tracing: TracingSettings) -> dict[str, Any]:
    """The HTTP connection manager's tracing: Envoy's OpenTelemetry tracer (W3C traceparent)."""
    return {
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "grpc_service": {"envoy_grpc": {"cluster_name": TRACING_CLUSTER}, "timeout": "2s"},
                "service_name": tracing.service_name,
            },
        }
    }


def apply_overlay(config: dict[str, Any], settings: GatewaySettings) -> dict[str, Any]:
    """Applies `settings` to a parsed config rendered from the template (in place; returned)."""
    resources = config["static_resources"]
    for listener in resources["listeners"]:
        listener["address"]["socket_address"]["address"] = settings.listen_host
        for chain in listener["filter_chains"]:
            if settings.serves_tls:
                chain["transport_socket"] = downstream_tls(settings)
            for log in (
                log for f in chain["filters"] for log in f.get("typed_config", {}).get("access_log", [])
            ):
                if settings.access_log is not None and "path" in log["typed_config"]:
                    log["typed_config"]["path"] = settings.access_log
            if settings.tracing.enabled:
                for manager in chain["filters"]:
                    if manager["name"] == "envoy.filters.network.http_connection_manager":
                        manager["typed_config"]["tracing"] = http_tracing(settings.tracing)
    if settings.tracing.enabled:
        resources["clusters"].append(tracing_cluster(settings.tracing))
    for cluster in resources["clusters"]:
        upstreams = settings.upstreams.get(cluster["name"])
        if upstreams and settings.upstream_tls.enabled:
            cluster["transport_socket"] = upstream_tls(
                settings.upstream_tls, upstreams, websocket=cluster["name"] == WEBSOCKET_CLUSTER
            )
    return config


def overlay_file(path: Path, settings: GatewaySettings) -> Path:
    """Rewrites a rendered config file with `settings` applied."""
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    path.write_text(yaml.safe_dump(apply_overlay(config, settings), sort_keys=False), encoding="utf-8")
    return path
