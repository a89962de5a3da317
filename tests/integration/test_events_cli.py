"""`godel events publish | query | tail` against a running mesh, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

from tests.conftest import RunningMesh


def godel_cli(godel: RunningMesh, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GODEL_ADDR": godel.mesh.gateway_address, "GODEL_API_KEY": godel.admin_key}
    return subprocess.run(
        [sys.executable, "-m", "godel_client", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


def test_publish_then_query_then_tail_from_a_sequence(godel: RunningMesh) -> None:
    marker = uuid.uuid4().hex
    published = godel_cli(
        godel, "events", "publish", "cli:hello", "--payload", '{"n": 1}', "--correlation", marker, "--json"
    )
    event_id = json.loads(published.stdout)["id"]

    deadline = time.monotonic() + 20
    events: list[dict[str, object]] = []
    while not events and time.monotonic() < deadline:
        out = godel_cli(godel, "events", "query", "--type", "cli:*", "--correlation", marker, "--json")
        events = json.loads(out.stdout)["events"]
        time.sleep(0.2)
    assert [e["id"] for e in events] == [event_id]
    assert events[0]["payload"] == {"n": 1}
    sequence = int(str(events[0]["sequence"]))

    text = godel_cli(godel, "events", "query", "--type", "cli:hello", "--desc", "--limit", "1")
    assert f"#{sequence}" in text.stdout or "cli:hello" in text.stdout

    env = {**os.environ, "GODEL_ADDR": godel.mesh.gateway_address, "GODEL_API_KEY": godel.admin_key}
    tail = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "godel_client",
            "--json",
            "events",
            "tail",
            "--type",
            "cli:*",
            "--from-seq",
            str(sequence - 1),
        ],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert tail.stdout is not None
        first = json.loads(tail.stdout.readline())
    finally:
        tail.kill()
        tail.wait()
    assert first["id"] == event_id


def test_bad_input_is_reported_with_the_field(godel: RunningMesh) -> None:
    bad = godel_cli(godel, "events", "publish", "NoNamespace", check=False)
    assert bad.returncode != 0
    assert "type" in bad.stderr
    assert "Traceback" not in bad.stderr
    bad_json = godel_cli(godel, "events", "publish", "x:y", "--payload", "[1]", check=False)
    assert bad_json.returncode == 2 and "JSON object" in bad_json.stderr
