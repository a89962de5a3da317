"""The alert rules and dashboards users load (deploy/observability/) use only what Godel exports:
every metric a rule or a panel names is a series some process exports, with the labels the query
selects or groups by. The inventory comes from the code (every metric object of every module,
the database gauges and the process collector), not from a list kept beside it."""

from __future__ import annotations

import importlib
import importlib.util
import json
import pkgutil
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

import godel_server
from godel_server.runtime.db_gauges import GaugeFamily
from godel_server.runtime.process_metrics import ProcessMemory

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "deploy" / "observability"
RULES = OBSERVABILITY / "prometheus" / "godel-alerts.yaml"
DASHBOARDS = sorted((OBSERVABILITY / "grafana").glob("*.json"))
# Labels Prometheus adds to every scraped series, and a histogram bucket's bound.
SCRAPE_LABELS = {"job", "instance"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "info": ("_info",),
}
# Prometheus's own series the rules may use (a scrape target's health).
PROMETHEUS_SERIES = {"up": set[str]()}
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
    "offset", "inf", "nan",
}  # fmt: skip


def _modules() -> Iterator[Any]:
    for info in pkgutil.walk_packages(godel_server.__path__, "godel_server."):
        if ".migrations" in info.name or info.name.endswith("__main__"):
            continue
        yield importlib.import_module(info.name)


def exported() -> dict[str, set[str]]:
    """Series name -> its label names, for every series a Godel process can export."""
    series: dict[str, set[str]] = {}

    def add(name: str, kind: str, labels: set[str]) -> None:
        for suffix in SUFFIXES[kind]:
            series[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())

    for module in _modules():
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                add(value._name, str(value._type), set(value._labelnames))
            elif isinstance(value, GaugeFamily):
                add(value.name, "gauge", set(value.labels))
    for family in ProcessMemory().collect():
        add(family.name, family.type, set())
    return series


@pytest.fixture(scope="module")
def inventory() -> dict[str, set[str]]:
    return exported()


def _strip(expr: str) -> str:
    """The expression without string literals, range/subquery brackets and Grafana variables."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    return re.sub(r"\$\w+", "", expr)


def problems(expr: str, inventory: dict[str, set[str]]) -> list[str]:
    """What in a PromQL expression is not exported: unknown metrics, and label names that none of
    its metrics has (in matchers, `by`/`without` and `on`/`ignoring`)."""
    known = {**inventory, **PROMETHEUS_SERIES}
    text = _strip(expr)
    found: list[str] = []
    grouping = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
    grouped = {
        label.strip() for labels in grouping.findall(text) for label in labels.split(",") if label.strip()
    }
    bare = grouping.sub(" ", text)
    selectors = re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?", bare)
    metrics: list[str] = []
    for name, matchers in selectors:
        called = re.search(rf"\b{re.escape(name)}\s*\(", bare) is not None and not matchers
        if name in KEYWORDS or called or re.fullmatch(r"[0-9.e]+", name):
            continue
        if name not in known:
            found.append(f"{name}: no Godel process exports this metric")
            continue
        metrics.append(name)
        for label in re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", matchers or ""):
            if label not in known[name] | SCRAPE_LABELS:
                found.append(f"{name}{{{label}}}: {name} has no label {label!r}")
    if not metrics and not found:
        found.append("the expression names no exported metric")
    available = set().union(*(known[m] for m in metrics)) | SCRAPE_LABELS if metrics else SCRAPE_LABELS
    found += [f"by/on ({label}): none of {metrics} has it" for label in sorted(grouped - available)]
    return found


def rule_expressions() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [
        (rule.get("alert") or rule["record"], rule["expr"]) for group in groups for rule in group["rules"]
    ]


def panel_expressions(path: Path) -> list[tuple[str, str]]:
    dashboard = json.loads(path.read_text())
    return [
        (f"{path.name}: {panel['title']} ({target['refId']})", target["expr"])
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def test_the_inventory_knows_the_spec_metrics(inventory: dict[str, set[str]]) -> None:
    for name in (
        "godel_agents_total",
        "godel_agents_active",
        "godel_agent_duration_seconds_bucket",
        "godel_agent_cost_dollars",
        "godel_api_requests_total",
        "godel_api_request_duration_seconds_bucket",
        "godel_queue_depth",
        "godel_memory_usage_bytes",
        "godel_worker_runs_active",
    ):
        assert name in inventory
    assert inventory["godel_api_requests_total"] == {"method", "code"}
    assert inventory["godel_agents_by_status"] == {"status"}


def test_the_checker_catches_what_is_not_exported(inventory: dict[str, set[str]]) -> None:
    assert problems('sum by (status) (godel_agents_by_status{status="pending"})', inventory) == []
    assert problems("rate(godel_api_requests_total[5m]) > 0", inventory) == []
    assert problems("godel_agents_activ > 0", inventory) == [
        "godel_agents_activ: no Godel process exports this metric"
    ]
    assert problems('godel_agents_active{status="x"}', inventory) == [
        "godel_agents_active{status}: godel_agents_active has no label 'status'"
    ]
    assert problems("sum by (team_id) (godel_agents_active)", inventory) == [
        "by/on (team_id): none of ['godel_agents_active'] has it"
    ]
    assert problems("vector(1)", inventory) == ["the expression names no exported metric"]


def test_every_alert_rule_uses_exported_metrics(inventory: dict[str, set[str]]) -> None:
    rules = rule_expressions()
    assert {"HighErrorRate", "AgentStuck", "QueueBacklog"} <= {name for name, _ in rules}  # spec §9.3
    bad = {name: found for name, expr in rules if (found := problems(expr, inventory))}
    assert bad == {}


def test_every_dashboard_panel_queries_exported_metrics(inventory: dict[str, set[str]]) -> None:
    assert len(DASHBOARDS) == 6
    uids = [json.loads(path.read_text())["uid"] for path in DASHBOARDS]
    assert len(set(uids)) == len(uids)
    queries = [query for path in DASHBOARDS for query in panel_expressions(path)]
    assert len(queries) > 40
    bad = {name: found for name, expr in queries if (found := problems(expr, inventory))}
    assert bad == {}


def test_the_dashboards_are_what_the_generator_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location(
        "dashboards", ROOT / "tools" / "observability" / "dashboards.py"
    )
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "dashboards", generator)  # its dataclasses look themselves up
    spec.loader.exec_module(generator)
    expected = generator.rendered()
    assert sorted(expected) == [path.name for path in DASHBOARDS]
    stale = [
        name for name, text in expected.items() if (OBSERVABILITY / "grafana" / name).read_text() != text
    ]
    assert stale == [], "run .venv/bin/python tools/observability/dashboards.py"
