"""`godel-gateway`: the Envoy gateway of a deployment, configured from the environment (see
godel_deploy/gateway_overlay.py). It renders gateway/envoy.yaml.tmpl (shipped in the package) with
the deployment's endpoints (every replica of each service), applies the overlay (bind address, TLS) and replaces itself
with Envoy, so Envoy gets the signals (a container's PID 1).

godel-gateway [run]      render to $GODEL_HOME/gateway/envoy.yaml and exec Envoy
godel-gateway render     print the config
godel-gateway validate   render, then `envoy --mode validate`
godel-gateway probe      exit 0 when Envoy's admin /ready answers LIVE (health checks)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from godel_deploy.envoy import envoy_binary, validate
from godel_deploy.gateway import DESCRIPTOR, WEBSOCKET_CLUSTER, render_envoy_config
from godel_deploy.gateway_overlay import GatewaySettings, load_gateway_settings, overlay_file
from godel_server.runtime.config import ConfigError
from godel_server.runtime.topology import ROLES


def render(settings: GatewaySettings, out_path: Path) -> Path:
    """The deployment's Envoy config, written to `out_path`."""
    endpoints = {name: [(u.host, u.port) for u in found] for name, found in settings.upstreams.items()}
    render_envoy_config(
        out_path=out_path,
        listen_port=settings.listen_port,
        admin_port=settings.admin_port,
        service_ports={role: endpoints[f"godel_{role}"][0][1] for role in ROLES},
        event_ws_port=endpoints[WEBSOCKET_CLUSTER][0][1],
        descriptor=DESCRIPTOR,
        access_log=out_path.parent / "access.log",  # replaced by the overlay's
        endpoints=endpoints,
        console_dir=settings.console_dir,
    )
    return overlay_file(out_path, settings)


def config_path(env: Mapping[str, str]) -> Path:
    home = Path(env.get("GODEL_HOME") or Path.home() / ".godel").expanduser()
    return home / "gateway" / "envoy.yaml"


def _run(settings: GatewaySettings, env: Mapping[str, str]) -> int:
    config = render(settings, config_path(env))
    binary = str(envoy_binary())
    # One Envoy per container or host process: no hot restart (its shared memory would clash
    # with another Envoy on the same machine).
    level = env.get("GODEL_GATEWAY_LOG_LEVEL") or "warn"
    argv = [binary, "-c", str(config), "--disable-hot-restart", "--log-level", level]
    sys.stdout.flush()
    os.execv(binary, argv)  # the gateway process becomes Envoy


def _probe(settings: GatewaySettings) -> int:
    from godel_server.runtime.admin import probe

    ok, said = probe(f"127.0.0.1:{settings.admin_port}", "/ready")
    print(f"gateway admin 127.0.0.1:{settings.admin_port}/ready: {said}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="godel-gateway", description="Run the Godel Envoy gateway.")
    parser.add_argument("command", nargs="?", default="run", choices=("run", "render", "validate", "probe"))
    args = parser.parse_args(argv)
    env = os.environ
    try:
        settings = load_gateway_settings(env)
    except ConfigError as exc:
        print(f"godel-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "probe":
        return _probe(settings)
    if args.command == "run":
        return _run(settings, env)
    with tempfile.TemporaryDirectory(prefix="godel-gateway-") as tmp:
        config = render(settings, Path(tmp) / "envoy.yaml")
        if args.command == "render":
            sys.stdout.write(config.read_text(encoding="utf-8"))
            return 0
        try:
            validate(config)
        except RuntimeError as exc:
            print(f"godel-gateway: {exc}", file=sys.stderr)
            return 1
        print("godel-gateway: config OK", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
