"""`godel events publish | query | tail` against a running mesh, as a user runs them."""

from __future__ import annotations

import json
import uuid

from tests.conftest import RunningMesh, godel_cli, godel_cli_lines
from tests.waits import poll


def test_publish_then_query_then_tail_from_a_sequence(godel: RunningMesh) -> None:
    marker = uuid.uuid4().hex
    published = godel_cli(
        godel, "events", "publish", "cli:hello", "--payload", '{"n": 1}', "--correlation", marker, "--json"
    )
    event_id = json.loads(published.stdout)["id"]

    events = poll(
        lambda: json.loads(
            godel_cli(godel, "events", "query", "--type", "cli:*", "--correlation", marker, "--json").stdout
        )["events"],
        bool,
        20,
        "the published event in the store",
    )
    assert [e["id"] for e in events] == [event_id]
    assert events[0]["payload"] == {"n": 1}
    sequence = int(str(events[0]["sequence"]))

    text = godel_cli(godel, "events", "query", "--type", "cli:hello", "--correlation", marker, "--desc")
    lines = text.stdout.splitlines()
    assert len(lines) == 1 and f"  #{sequence}  cli:hello  " in lines[0], text.stdout

    tail = ("--json", "events", "tail", "--type", "cli:*", "--from-seq", str(sequence - 1))
    with godel_cli_lines(godel, *tail) as (_, output):
        first = json.loads(output.next_line(30, "the replayed event"))
    assert first["id"] == event_id


def test_bad_input_is_reported_with_the_field(godel: RunningMesh) -> None:
    bad = godel_cli(godel, "events", "publish", "NoNamespace", check=False)
    assert bad.returncode != 0
    assert "type" in bad.stderr
    assert "Traceback" not in bad.stderr
    bad_json = godel_cli(godel, "events", "publish", "x:y", "--payload", "[1]", check=False)
    assert bad_json.returncode == 2 and "JSON object" in bad_json.stderr
