"""The pure parts of bench/mixed_load.py: the mix and the slots, the closed loop's bounds and error
counting, the summaries (percentiles, error rate), the thresholds, the results file's figures, and
the py-spy profile summary."""

from __future__ import annotations

import asyncio
import http.server
import json
import random
import sys
import threading
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import grpc
import httpx
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))  # the benchmarks import bench/common.py as `common`, like when run
from bench import common, compare, mixed_load  # noqa: E402


def test_the_mix_is_parsed_as_shares_and_bad_mixes_are_refused() -> None:
    assert mixed_load.parse_mix("70/20/10") == pytest.approx({"get": 0.7, "list": 0.2, "create": 0.1})
    assert mixed_load.parse_mix("1/1/0") == {"get": 0.5, "list": 0.5, "create": 0.0}
    for bad in ("70/30", "a/b/c", "0/0/0", "-1/1/1", "inf/1/1"):
        with pytest.raises(ValueError, match="--mix"):
            mixed_load.parse_mix(bad)


def test_pick_op_gives_each_op_its_share_and_never_an_op_at_zero() -> None:
    mix = mixed_load.parse_mix("70/20/10")
    assert [mixed_load.pick_op(mix, u) for u in (0.0, 0.69, 0.7, 0.89, 0.9, 0.999999)] == [
        "get",
        "get",
        "list",
        "list",
        "create",
        "create",
    ]
    rng = random.Random(1)
    counts = Counter(mixed_load.pick_op(mix, rng.random()) for _ in range(20_000))
    assert counts["get"] / 20_000 == pytest.approx(0.7, abs=0.02)
    assert counts["create"] / 20_000 == pytest.approx(0.1, abs=0.02)
    only_reads = mixed_load.parse_mix("1/0/0")
    assert {mixed_load.pick_op(only_reads, rng.random()) for _ in range(1000)} == {"get"}


def test_slots_are_split_by_the_rest_share_and_interleaved() -> None:
    half = mixed_load.slot_protocols(200, 0.5)
    assert Counter(half) == {"grpc": 100, "rest": 100}
    assert half[:4] == ["grpc", "rest", "grpc", "rest"]
    assert Counter(mixed_load.slot_protocols(10, 0.3)) == {"grpc": 7, "rest": 3}
    assert set(mixed_load.slot_protocols(5, 0.0)) == {"grpc"}
    assert set(mixed_load.slot_protocols(5, 1.0)) == {"rest"}


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="no")


def test_every_failure_is_counted_under_its_reason() -> None:
    assert mixed_load.reason(rpc_error(grpc.StatusCode.UNAVAILABLE)) == "UNAVAILABLE"
    assert mixed_load.reason(rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED)) == "timeout"
    assert mixed_load.reason(httpx.ReadTimeout("slow")) == "timeout"
    assert mixed_load.reason(mixed_load.CallFailed("HTTP 503")) == "HTTP 503"
    assert mixed_load.reason(httpx.ConnectError("refused")) == "ConnectError"


def test_the_closed_loop_is_bounded_and_counts_errors() -> None:
    async def ok(i: int) -> None:
        await asyncio.sleep(0)

    async def failing(i: int) -> None:
        raise mixed_load.CallFailed("HTTP 500")

    calls: dict[str, common.Call] = {"grpc-get": ok, "rest-get": failing}
    pick = mixed_load.mixed_picker(["grpc", "rest"], mixed_load.parse_mix("1/0/0"))
    load = asyncio.run(mixed_load.closed_loop(calls, pick, 2, duration=None, requests=101, seed=1))
    ok_samples, failed = load.kinds["grpc-get"], load.kinds["rest-get"]
    assert len(ok_samples.latencies) + sum(failed.errors.values()) == 101
    assert failed.errors == Counter({"HTTP 500": sum(failed.errors.values())}) and failed.first_error
    assert not failed.latencies and not ok_samples.errors

    # Long enough that a busy machine's scheduling stalls cannot use it up before the first call.
    timed = asyncio.run(mixed_load.closed_loop(calls, pick, 4, duration=0.5, requests=None, seed=1))
    assert 0.5 <= timed.wall < 10 and timed.kinds["grpc-get"].latencies
    with pytest.raises(ValueError):
        asyncio.run(mixed_load.closed_loop(calls, pick, 1, duration=1.0, requests=1, seed=1))


def test_a_bug_in_a_call_aborts_instead_of_counting_as_an_error() -> None:
    async def broken(i: int) -> None:
        raise AttributeError("bench bug")

    pick = mixed_load.mixed_picker(["grpc"], mixed_load.parse_mix("1/0/0"))
    with pytest.raises(AttributeError):
        asyncio.run(mixed_load.closed_loop({"grpc-get": broken}, pick, 1, duration=None, requests=3, seed=1))


def load_of(latencies_ms: dict[str, list[float]], errors: dict[str, int], wall: float) -> mixed_load.Load:
    return mixed_load.Load(
        kinds={
            kind: mixed_load.Samples(
                [ms / 1000 for ms in latencies_ms.get(kind, [])],
                Counter({"timeout": errors[kind]} if kind in errors else {}),
            )
            for kind in latencies_ms.keys() | errors.keys()
        },
        wall=wall,
    )


def test_summaries_per_kind_per_protocol_and_overall() -> None:
    load = load_of(
        {"rest-get": [float(ms) for ms in range(1, 101)], "grpc-list": [10.0, 20.0], "grpc-get": [5.0] * 8},
        {"grpc-get": 2},
        wall=2.0,
    )
    load.kinds["rest-create"] = mixed_load.Samples()  # in the mix at 0 %: no row
    rows = {r.kind: r for r in mixed_load.summarise_load(load)}
    assert list(rows) == ["grpc-get", "grpc-list", "rest-get", "grpc", "rest", "all"]
    rest = rows["rest-get"]
    assert (rest.p50_ms, rest.p95_ms, rest.p99_ms) == pytest.approx((50.5, 95.05, 99.01))
    assert rest.throughput_rps == 50.0 and rest.label == "REST via Envoy GetAgent"
    get = rows["grpc-get"]
    assert (get.calls, get.ok, get.errors, get.error_rate) == (10, 8, 2, 0.2)
    assert get.errors_by_reason == {"timeout": 2}
    assert (rows["grpc"].calls, rows["grpc"].errors) == (12, 2)
    assert (rows["all"].calls, rows["all"].ok, rows["all"].throughput_rps) == (112, 110, 55.0)


def test_thresholds_say_met_or_not_met() -> None:
    load = load_of({"grpc-get": [10.0] * 99 + [60.0], "rest-get": [300.0] * 100}, {"rest-get": 2}, wall=1.0)
    rows = mixed_load.summarise_load(load)
    echo = mixed_load.summarise("echo", mixed_load.Samples([0.001] * 300), 1.0)
    checks = {t.name: t for t in mixed_load.thresholds(rows, echo)}
    assert not checks["spec 10.4: p95 < 200 ms (REST calls)"].met
    assert checks["spec 10.4: error rate < 1% (all calls)"].met  # 2 of 202
    assert not checks["spec 10.4: error rate < 1% (REST calls)"].met  # 2 of 102
    assert checks["issue 18: gRPC GetAgent p99 <= 50 ms (in the mix)"].measured == pytest.approx(10.5)
    assert checks["issue 18: gRPC GetAgent p99 <= 50 ms (in the mix)"].met
    assert checks["issue 18: throughput >= 0.6x raw echo (all calls)"].measured == pytest.approx(200 / 300)


def _access_entry(protocol: str, rpc: str, ms: int, grpc_status: int = 0) -> str:
    """One line of the gateway's access log (gateway/envoy.yaml.tmpl's JSON format, the fields read)."""
    path = f"/godel.v1.AgentService/{rpc}"
    return json.dumps(
        {"protocol": protocol, "grpc_path": path, "grpc_status": grpc_status, "duration_ms": ms}
    )


def test_the_gateway_view_times_each_kind_of_successful_call_from_the_access_log() -> None:
    lines = [
        _access_entry("HTTP/2", "GetAgent", 4),
        _access_entry("HTTP/2", "GetAgent", 6),
        _access_entry("HTTP/1.1", "GetAgent", 20),
        _access_entry("HTTP/1.1", "ListAgents", 30),
        _access_entry("HTTP/2", "CreateAgent", 900, grpc_status=14),  # failed: the client counts it
        _access_entry("HTTP/2", "KillAgent", 1),  # not a call of the mix
        '{"protocol": "HTTP/2", "grpc_pa',  # cut by a flush
    ]
    seconds = mixed_load.gateway_latencies(lines)
    assert seconds == {"grpc-get": [0.004, 0.006], "rest-get": [0.02], "rest-list": [0.03]}
    rows = {r.kind: r for r in mixed_load.summarise_gateway(seconds, wall=1.0)}
    assert list(rows) == ["grpc-get", "rest-get", "rest-list", "grpc", "rest", "all"]
    assert (rows["grpc-get"].p50_ms, rows["grpc-get"].max_ms) == pytest.approx((5.0, 6.0))
    assert rows["all"].ok == 4 and mixed_load.summarise_gateway({}, wall=1.0) == []
    client = mixed_load.summarise_load(load_of({"grpc-get": [900.0] * 10}, {}, wall=1.0))
    echo = mixed_load.summarise("echo", mixed_load.Samples([0.001] * 10), 1.0)
    checks = {t.name: t for t in mixed_load.thresholds(client, echo, list(rows.values()))}
    assert not checks["issue 18: gRPC GetAgent p99 <= 50 ms (in the mix)"].met
    at_gateway = checks["issue 18: gRPC GetAgent p99 <= 50 ms (in the mix, as the gateway timed it)"]
    assert at_gateway.met and at_gateway.measured == pytest.approx(5.98)


def test_the_access_log_is_read_from_the_offset_until_every_call_is_there(tmp_path: Path) -> None:
    log = tmp_path / "gateway-access.log"
    log.write_text("before\n")
    offset = log.stat().st_size

    def later() -> None:
        with log.open("a") as out:
            out.write("one\n")
            out.flush()
            threading.Event().wait(0.3)
            out.write("two\n")

    writer = threading.Thread(target=later)
    writer.start()
    assert mixed_load.read_access_log(log, offset, calls=2, timeout=30) == ["one", "two"]
    writer.join()
    assert mixed_load.read_access_log(log, offset, calls=3, timeout=0.5) == ["one", "two"]  # what there is
    assert mixed_load.read_access_log(tmp_path / "absent.log", 0, calls=1, timeout=0.2) == []


def test_the_halves_of_the_mix_merge_on_one_clock_and_cross_the_pipe_as_plain_data() -> None:
    grpc_half = load_of({"grpc-get": [5.0, 7.0]}, {"grpc-get": 1}, wall=2.0)
    grpc_half.begun, grpc_half.client_cpu, grpc_half.per_second = 100.0, 0.5, Counter({0: 2, 1: 1})
    rest_half = load_of({"rest-get": [9.0], "grpc-get": [6.0]}, {}, wall=2.5)
    rest_half.begun, rest_half.client_cpu, rest_half.per_second = 101.0, 1.5, Counter({0: 1, 1: 1})
    wire = json.loads(json.dumps(rest_half.to_wire()))  # nothing but plain data
    assert wire["per_second"] == {"0": 1, "1": 1}
    back = mixed_load.Load.from_wire(
        {**wire, "per_second": {int(k): v for k, v in wire["per_second"].items()}}
    )
    assert back == rest_half
    both = mixed_load.merged([grpc_half, back])
    assert (both.begun, both.wall, both.client_cpu) == (100.0, 3.5, 2.0)
    assert both.per_second == {0: 2, 1: 2, 2: 1}
    assert sorted(both.kinds["grpc-get"].latencies) == [0.005, 0.006, 0.007]
    assert both.kinds["grpc-get"].errors == {"timeout": 1} and both.kinds["rest-get"].latencies == [0.009]
    assert grpc_half.kinds["grpc-get"].latencies == [0.005, 0.007]  # the parts are left as they were


def test_a_requests_bound_is_shared_by_the_halves_in_proportion() -> None:
    assert mixed_load.split_requests(101, [100, 100]) == [51, 50]
    assert mixed_load.split_requests(10, [7, 3]) == [7, 3]
    assert mixed_load.split_requests(10, [0, 5]) == [0, 10]
    assert mixed_load.split_requests(None, [1, 1]) == [None, None]


def test_the_rest_half_runs_in_its_own_process_and_reports_every_call() -> None:
    seen: list[str] = []

    class Agents(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            ok = self.headers["x-api-key"] == "k" and self.path.startswith("/api/v1/agents")
            self.send_response(200 if ok else 401)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"id": "a"}')

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Agents)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    target = mixed_load.Target(
        f"127.0.0.1:{port}", f"http://127.0.0.1:{port}", "127.0.0.1:1", "k", 10.0, 5, rest_slots=3, seed=1
    )
    rest = mixed_load.RestProcess(target, ["a1", "a2"], mixed_load.parse_mix("1/1/0"))
    try:

        async def run() -> mixed_load.Load:
            await rest.ready()
            rest.start(requests=30, duration=None, seed=2)
            return await rest.result()

        load = asyncio.run(run())
    finally:
        rest.stop()
        server.shutdown()
    assert set(load.kinds) == {"rest-get", "rest-list", "rest-create"}
    assert sum(len(s.latencies) for s in load.kinds.values()) == 30 and load.client_cpu > 0
    assert not any(s.errors for s in load.kinds.values())
    assert {path.partition("?")[0] for path in seen} <= {
        "/api/v1/agents/a1",
        "/api/v1/agents/a2",
        "/api/v1/agents/",  # httpx ends a base_url with a slash
    }
    assert any(path.startswith("/api/v1/agents/?page_size=5") for path in seen)  # ListAgents


def test_the_results_file_has_the_figures_compare_reads(tmp_path: Path) -> None:
    load = load_of({"grpc-get": [2.0, 4.0], "rest-create": [8.0]}, {"rest-create": 1}, wall=1.0)
    rows = mixed_load.summarise_load(load)
    echo = mixed_load.summarise("echo", mixed_load.Samples([0.001, 0.002]), 1.0)
    payload = {
        "config": {"concurrency": 200},
        "results": [asdict(r) for r in rows],
        "echo": asdict(echo),
        "ratios": mixed_load.ratios(rows, echo),
        "client": {"cpu_us_per_call": 300.0},
    }
    out = tmp_path / "mixed_load.json"
    common.write_results(mixed_load.NAME, payload, mixed_load.figures_of(payload), out)
    written = json.loads(out.read_text())
    assert written["benchmark"] == "mixed_load"
    figures = written["figures"]
    assert figures["all/p95"]["better"] == "lower" and figures["all/throughput"]["better"] == "higher"
    assert figures["rest-create/error rate"]["value"] == 0.5
    assert figures["echo/p50"]["value"] == pytest.approx(1.5)
    assert figures["all/throughput of echo"] == {"value": 1.5, "unit": "x", "better": "higher"}
    without_table = {k: v for k, v in written.items() if k != "figures"}
    assert compare.figures(without_table, "mixed_load") == figures


def test_the_profile_summary_shares_self_and_package_time() -> None:
    folded = "\n".join(
        [
            "<module> (godel_server/runtime/main.py:3);run (asyncio/base_events.py:1);"
            "execute (sqlalchemy/engine/base.py:10) 6",
            "<module> (godel_server/runtime/main.py:3);run (asyncio/base_events.py:1);"
            "agent_to_proto (godel_server/agent/mapping.py:7) 3",
            "<module> (godel_server/runtime/main.py:3);execute (sqlalchemy/engine/base.py:12) 1",
            "not a line",
        ]
    )
    profile = mixed_load.summarise_folded(folded)
    assert profile["samples"] == 10
    assert profile["self"] == {
        "execute (sqlalchemy/engine/base.py)": 0.7,
        "agent_to_proto (godel_server/agent/mapping.py)": 0.3,
    }
    packages = profile["inclusive_by_package"]
    assert packages["godel_server/runtime"] == 1.0 and packages["sqlalchemy"] == 0.7
    assert packages["asyncio"] == 0.9 and packages["godel_server/agent"] == 0.3
    assert mixed_load.frame_package("<listcomp> (<string>:1)") == "<string>"


def test_server_time_per_call_comes_from_two_scrapes_of_the_histogram() -> None:
    name = mixed_load.RPC_SECONDS
    get, listed = '{method="/godel.v1.AgentService/GetAgent"}', '{method="/godel.v1.AgentService/ListAgents"}'
    before = {f"{name}_sum{get}": 1.0, f"{name}_count{get}": 10.0, f"{name}_sum{listed}": 2.0}
    after = {
        f"{name}_sum{get}": 1.5,
        f"{name}_count{get}": 110.0,
        f'{name}_bucket{get[:-1]},le="0.5"}}': 99.0,
        f"{name}_sum{listed}": 2.0,
        f"{name}_count{listed}": 4.0,
        "godel_outbox_pending": 3.0,
    }
    assert mixed_load.server_ms_per_call(before, after) == {"GetAgent": 5.0, "ListAgents": 0.0}


def test_metrics_are_read_from_a_services_admin_port() -> None:
    body = b'# HELP godel_outbox_pending x\ngodel_outbox_pending 3.0\nrpc_sum{method="/a/B"} 0.5\nbad line\n'

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        assert common.metrics(port) == {"godel_outbox_pending": 3.0, 'rpc_sum{method="/a/B"}': 0.5}
    finally:
        server.shutdown()
        server.server_close()
    assert common.metrics(port) == {}, "nothing listens any more"
