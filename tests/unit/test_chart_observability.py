"""The Helm chart's PrometheusRule and dashboard ConfigMaps are checked against deploy/observability
by tools/deploy/check_observability.py in `make lint`: here, that the check passes on what the
chart renders from the files and names what differs when a rule or a dashboard drifts."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def check() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_observability", ROOT / "tools" / "deploy" / "check_observability.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rendered(check: ModuleType) -> list[dict[str, Any]]:
    """What the chart renders with metrics.prometheusRule and metrics.dashboards on."""
    rule = {"kind": "PrometheusRule", "spec": {"groups": check.expected_groups()}}
    maps = [
        {"kind": "ConfigMap", "metadata": {"labels": {"grafana_dashboard": "1"}}, "data": {name: text}}
        for name, text in check.expected_dashboards().items()
    ]
    return [rule, *maps, {"kind": "ConfigMap", "metadata": {"name": "godel"}, "data": {"X": "1"}}]


def test_the_chart_as_rendered_from_the_files_passes(check: ModuleType) -> None:
    assert check.problems(_rendered(check)) == []


def test_a_drifted_rule_or_dashboard_or_a_missing_one_is_named(check: ModuleType) -> None:
    documents = _rendered(check)
    drifted = copy.deepcopy(documents)
    drifted[0]["spec"]["groups"][0]["rules"][0]["for"] = "1h"
    name = next(iter(drifted[1]["data"]))
    drifted[1]["data"][name] = drifted[1]["data"][name].replace("Godel", "Other")
    assert check.problems(drifted) == [
        "the PrometheusRule's groups differ from deploy/observability/prometheus/*.yaml",
        f"the ConfigMap of {name} differs from deploy/observability/grafana/{name}",
    ]
    missing = [doc for doc in documents if doc["kind"] != "PrometheusRule"][1:]
    found = check.problems(missing)
    assert found[0] == "0 PrometheusRules rendered, expected 1"
    assert found[1].startswith("dashboard ConfigMaps hold") and len(found) == 2


def test_the_chart_reads_the_files_through_a_link_not_a_copy() -> None:
    link = ROOT / "deploy" / "helm" / "godel" / "observability"
    assert link.is_symlink() and link.resolve() == (ROOT / "deploy" / "observability").resolve()
