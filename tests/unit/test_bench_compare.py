"""bench/compare.py reads what bench/common.write_results writes and calls a change worse or better
by the figure's direction, names changed settings, and never divides by a missing or zero figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import common, compare


def write_run(
    path: Path, p50: float, throughput: float, requests: int, extra: dict[str, common.Figure]
) -> None:
    figures = {
        "create/p50": common.lower(p50, "ms"),
        "create/throughput": common.higher(throughput, "req/s"),
        **extra,
    }
    common.write_results("demo", {"config": {"requests": requests, "json": str(path)}}, figures, path)


def test_a_slower_run_is_worse_and_a_faster_one_better(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    gone, fresh = {"gone": common.lower(1.0, "s")}, {"fresh": common.lower(1.0, "s")}
    write_run(old, 10.0, 100.0, 1000, {**gone, "zero": common.lower(0.0, "s")})
    write_run(new, 13.0, 125.0, 1000, {**fresh, "zero": common.lower(2.0, "s")})
    assert json.loads(new.read_text())["benchmark"] == "demo"

    assert compare.main(["--files", str(old), str(new)]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = {line.split()[0]: line.split()[1:] for line in lines[2:-2]}
    assert row["create/p50"] == ["ms", "10", "13", "1.30", "worse"]
    assert row["create/throughput"] == ["req/s", "100", "125", "1.25", "better"]
    assert row["zero"] == ["s", "0", "2"], "no ratio against 0"
    assert " ".join(row["fresh"]).endswith("only in the new run")
    assert " ".join(row["gone"]).endswith("only in the previous run")
    assert lines[-2] == "1 of 5 figures worse by more than 10%"
    assert not any("settings differ" in line for line in lines), (
        "--json is where the file went, not a setting"
    )


def test_changed_settings_are_named(tmp_path: Path) -> None:
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    write_run(old, 10.0, 100.0, 1000, {})
    write_run(new, 10.5, 99.0, 40, {})
    lines = compare.report("demo", json.loads(old.read_text()), json.loads(new.read_text()), 0.10)
    assert "settings differ, so these figures are not comparable: requests 1000 -> 40" in lines
    assert all(not line.endswith(("worse", "better")) for line in lines), "5 % and 1 % are within 10 %"


def test_verdict_follows_the_direction() -> None:
    assert compare.verdict(1.2, "lower", 0.1) == "worse"
    assert compare.verdict(1.2, "higher", 0.1) == "better"
    assert compare.verdict(0.5, "lower", 0.1) == "better"
    assert compare.verdict(float("nan"), "lower", 0.1) == ""
    assert compare.verdict(1.05, "lower", 0.1) == ""


def test_every_committed_results_file_can_be_compared(capsys: pytest.CaptureFixture[str]) -> None:
    names = sorted(p.stem for p in compare.RESULTS_DIR.glob("*.json"))
    assert names, "bench/results/ holds each benchmark's last recorded run"
    assert compare.main(names) == 0
    out = capsys.readouterr().out
    assert all(f"== {name}:" in out for name in names)


def test_a_file_without_figures_gets_them_from_its_benchmark(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An older commit's benchmark wrote no `figures` table (nor `benchmark`): the figures come from
    the benchmark's figures_of, so a run of that commit compares with one of today's."""
    recorded = compare.RESULTS_DIR / "spawn_latency.json"
    payload = json.loads(recorded.read_text())
    old = {k: v for k, v in payload.items() if k not in ("benchmark", "written_at", "figures")}
    old_path = tmp_path / "spawn_latency-before.json"
    old_path.write_text(json.dumps(old))
    assert compare.main(["--files", str(old_path), str(recorded)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("== spawn_latency:")
    rows = lines[2:-2]
    assert len(rows) == len(payload["figures"])
    assert all(line.split()[-1] == "1.00" for line in rows), "the same run, so every ratio is 1"
    assert compare.figures({"no": "figures"}, "no_such_benchmark") == {}


def test_a_batch_summary_counts_errors_and_times_in_ms() -> None:
    batch = common.Batch(
        latencies=[0.001, 0.002, 0.003], errors=["UNAVAILABLE", "DEADLINE_EXCEEDED"], wall=0.5
    )
    batch.client_cpu = 0.004
    summary = batch.summary(calls=5)
    assert (summary["ok"], summary["errors"], summary["first_error"]) == (3, 2, "UNAVAILABLE")
    assert summary["throughput_rps"] == pytest.approx(6.0)
    assert (summary["min_ms"], summary["p50_ms"], summary["max_ms"]) == pytest.approx((1.0, 2.0, 3.0))
    assert summary["client_cpu_us_per_call"] == pytest.approx(800.0)
    assert common.Batch().summary(calls=0)["first_error"] == ""
