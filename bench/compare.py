#!/usr/bin/env python3
"""Shows how a benchmark run moved against the previous one, so a regression is visible.

Each benchmark writes bench/results/<name>.json with a flat `figures` table (value, unit, and which
way is better; see `Figure` in bench/common.py). The previous run is the version of that file in a
git revision (default HEAD: the figures the repository last recorded), or any other file given.

    python bench/compare.py                         # every bench/results/<name>.json against HEAD
    python bench/compare.py spawn_latency --rev HEAD~3
    python bench/compare.py --files OLD.json NEW.json

For each figure it prints both values, new / old, and "worse" or "better" when the change in the
figure's bad or good direction is beyond --threshold (default 10 %). It also names the settings that
differ between the two runs (such figures are not comparable) and says when a benchmark has no
previous run. It exits 0 either way: on a shared machine a change of 20 % can be noise.

A results file written before the `figures` table existed (e.g. by an older commit's benchmark) gets
its figures from the benchmark's own `figures_of`, so a run of an old commit compares too.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = RESULTS_DIR.parent.parent


def previous_from_git(path: Path, rev: str) -> dict[str, Any] | None:
    """The file as it is in `rev`, or None when it is not there (or this is not a git checkout)."""
    relative = path.resolve().relative_to(REPO_ROOT).as_posix()
    shown = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "show", f"{rev}:{relative}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return json.loads(shown.stdout) if shown.returncode == 0 else None


def figures(payload: dict[str, Any], name: str) -> dict[str, Any]:
    """The run's figures table; for a file without one, what `bench/<name>.py`'s figures_of makes of
    its payload (empty when that benchmark has none or the payload does not fit it)."""
    if "figures" in payload:
        return dict(payload["figures"])
    if str(RESULTS_DIR.parent) not in sys.path:
        sys.path.insert(0, str(RESULTS_DIR.parent))  # the benchmarks import `common` like this
    try:
        module = importlib.import_module(name)
        derived = module.figures_of(payload)
    except (ImportError, AttributeError, KeyError, TypeError):
        return {}
    return {key: {"value": f.value, "unit": f.unit, "better": f.better} for key, f in derived.items()}


def verdict(ratio: float, better: str, threshold: float) -> str:
    if math.isnan(ratio) or abs(ratio - 1) <= threshold:
        return ""
    return "better" if (ratio < 1) == (better == "lower") else "worse"


def _number(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    before, after = old.get("config", {}), new.get("config", {})
    return [
        f"{key} {before.get(key)!r} -> {after.get(key)!r}"
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key) and key not in ("json", "home", "keep")
    ]


def table(old: dict[str, Any], new: dict[str, Any], threshold: float, name: str = "") -> list[str]:
    """One line per figure of either run: old, new, new / old and the verdict."""
    old_figures, new_figures = figures(old, name), figures(new, name)
    keys = list(new_figures) + [k for k in old_figures if k not in new_figures]
    width = max((len(k) for k in keys), default=10)
    lines = [f"{'figure':<{width}}  {'unit':<10}{'previous':>12}{'new':>12}{'new/prev':>10}  verdict"]
    worse = 0
    for key in keys:
        before, after = old_figures.get(key), new_figures.get(key)
        figure = after or before
        assert figure is not None
        old_value = float(before["value"]) if before else math.nan
        new_value = float(after["value"]) if after else math.nan
        ratio = new_value / old_value if old_value else math.nan  # none against 0 or NaN
        said = verdict(ratio, figure["better"], threshold)
        if before is None or after is None:
            said = "only in the new run" if before is None else "only in the previous run"
        worse += said == "worse"
        lines.append(
            f"{key:<{width}}  {figure['unit']:<10}{_number(old_value):>12}{_number(new_value):>12}"
            f"{'' if math.isnan(ratio) else f'{ratio:.2f}':>10}  {said}"
        )
    lines.append(f"{worse} of {len(keys)} figures worse by more than {threshold:.0%}")
    return lines


def report(name: str, old: dict[str, Any] | None, new: dict[str, Any], threshold: float) -> list[str]:
    lines = [
        f"== {name}: {new.get('written_at', '?')}" + (f" against {old.get('written_at', '?')}" if old else "")
    ]
    if old is None:
        return [*lines, "no previous run to compare with"]
    if old == new:
        return [*lines, "the same run: nothing new since the previous results"]
    changes = config_changes(old, new)
    if changes:
        lines.append("settings differ, so these figures are not comparable: " + "; ".join(changes))
    return lines + table(old, new, threshold, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Ratios of the latest benchmark figures against the previous ones."
    )
    parser.add_argument(
        "names", nargs="*", help="benchmarks to compare (default: every bench/results/<name>.json)"
    )
    parser.add_argument("--rev", default="HEAD", help="git revision holding the previous results (HEAD)")
    parser.add_argument(
        "--files", nargs=2, type=Path, metavar=("OLD", "NEW"), help="compare two files instead"
    )
    parser.add_argument("--threshold", type=float, default=0.10, help="change called better/worse (0.10)")
    args = parser.parse_args(argv)
    if args.files:
        old_path, new_path = args.files
        old, new = json.loads(old_path.read_text()), json.loads(new_path.read_text())
        # A file named <benchmark>[-anything].json, when neither run names its benchmark.
        runs = [(old.get("benchmark") or new_path.stem.split("-")[0], old, new)]
    else:
        paths = [RESULTS_DIR / f"{n}.json" for n in args.names] or sorted(RESULTS_DIR.glob("*.json"))
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            parser.error("no results file " + ", ".join(missing))
        runs = [(p.stem, previous_from_git(p, args.rev), json.loads(p.read_text())) for p in paths]
    for name, old, new in runs:
        print("\n".join(report(new.get("benchmark", name), old, new, args.threshold)), end="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
