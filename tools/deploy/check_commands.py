"""The Helm chart's containers run exactly the commands the compose file runs (which the
installed-wheel test runs too): the same `godel-server` / `godel-gateway` arguments, image by image.

    python tools/deploy/check_commands.py compose.yaml rendered-chart.yaml...
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

IMAGES = ("godel-server", "godel-gateway")


def _image_kind(image: str) -> str | None:
    """godel-server or godel-gateway for our images (`${GODEL_IMAGE:-godel-server:dev}` too)."""
    name = image.rsplit("/", 1)[-1]
    return next((kind for kind in IMAGES if kind in name), None)


def compose_commands(path: Path) -> set[tuple[str, ...]]:
    services: dict[str, Any] = yaml.safe_load(path.read_text())["services"]
    commands = set()
    for service in services.values():
        kind = _image_kind(str(service.get("image", "")))
        if kind:
            commands.add((kind, *service.get("command", ())))
    return commands


def chart_commands(paths: list[Path]) -> set[tuple[str, ...]]:
    commands = set()
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            spec = ((doc or {}).get("spec") or {}).get("template", {}).get("spec", {})
            for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
                kind = _image_kind(container["image"])
                if kind:
                    commands.add((kind, *container.get("args", ())))
    return commands


def main(argv: list[str]) -> int:
    compose = compose_commands(Path(argv[0]))
    chart = chart_commands([Path(p) for p in argv[1:]])
    if compose != chart:
        print("compose and the chart run different commands:", file=sys.stderr)
        for only, where in ((compose - chart, "compose only"), (chart - compose, "chart only")):
            for command in sorted(only):
                print(f"  {where}: {' '.join(command)}", file=sys.stderr)
        return 1
    print(f"compose and the chart run the same {len(chart)} commands")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
