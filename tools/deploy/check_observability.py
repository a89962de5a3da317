"""The Helm chart installs exactly the alert rules and dashboards of deploy/observability: the
PrometheusRule holds the rule files' groups, and each Grafana dashboard file is the data of one
ConfigMap with the sidecar's label. The chart reads them through its `observability` link; this
check fails if the link is replaced by a copy that drifts, or a template drops or edits a file.

    python tools/deploy/check_observability.py rendered-chart.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

OBSERVABILITY = Path(__file__).resolve().parents[2] / "deploy" / "observability"
SIDECAR_LABEL = ("grafana_dashboard", "1")


def expected_groups(directory: Path = OBSERVABILITY) -> list[Any]:
    rule_files = sorted((directory / "prometheus").glob("*.yaml"))
    return [group for path in rule_files for group in yaml.safe_load(path.read_text())["groups"]]


def expected_dashboards(directory: Path = OBSERVABILITY) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted((directory / "grafana").glob("*.json"))}


def problems(documents: list[Any], directory: Path = OBSERVABILITY) -> list[str]:
    """What differs between the rendered chart and the files (empty when they agree)."""
    found: list[str] = []
    rules = [doc for doc in documents if doc.get("kind") == "PrometheusRule"]
    if len(rules) != 1:
        found.append(f"{len(rules)} PrometheusRules rendered, expected 1")
    elif rules[0]["spec"]["groups"] != expected_groups(directory):
        found.append("the PrometheusRule's groups differ from deploy/observability/prometheus/*.yaml")
    dashboards: dict[str, str] = {}
    for doc in documents:
        labels = doc.get("metadata", {}).get("labels") or {}
        if doc.get("kind") == "ConfigMap" and labels.get(SIDECAR_LABEL[0]) == SIDECAR_LABEL[1]:
            dashboards.update(doc.get("data") or {})
    wanted = expected_dashboards(directory)
    if sorted(dashboards) != sorted(wanted):
        found.append(f"dashboard ConfigMaps hold {sorted(dashboards)}, the files are {sorted(wanted)}")
    found += [
        f"the ConfigMap of {name} differs from deploy/observability/grafana/{name}"
        for name, text in wanted.items()
        if name in dashboards and dashboards[name].rstrip("\n") != text.rstrip("\n")
    ]
    return found


def main(argv: list[str]) -> int:
    documents = [doc for doc in yaml.safe_load_all(Path(argv[0]).read_text()) if doc]
    found = problems(documents)
    for problem in found:
        print(problem, file=sys.stderr)
    if not found:
        groups, dashboards = len(expected_groups()), len(expected_dashboards())
        print(f"the chart installs the {groups} rule groups and {dashboards} dashboards")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
