"""The Python client against a running mesh: the README's examples run as a user runs them, and
every sub-client reaches its service through the gateway."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from godel_client import GodelClient, NotFoundError
from tests.conftest import RunningMesh
from tests.waits import wait_for

README = Path(__file__).resolve().parents[2] / "README.md"


def python_examples() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL)


def test_the_readme_python_example_runs(godel: RunningMesh) -> None:
    (example,) = python_examples()
    done = subprocess.run(
        [sys.executable, "-c", example], env=godel.client_env(), capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    # The agent's events, replayed and then live, until the agent has ended (a fast agent may have
    # ended before its `agent:complete` is read); then the team's progress.
    agent_events = [line.split() for line in itertools.takewhile(lambda x: " agent:" in x, lines)]
    assert agent_events and agent_events[0][1] == "agent:spawn", lines
    sequences = [int(sequence) for sequence, _ in agent_events]
    assert sequences == sorted(set(sequences)), lines
    assert lines[-1] == "100 team:complete", lines


def test_every_sub_client_reaches_its_service(godel: RunningMesh) -> None:
    marker = uuid.uuid4().hex
    with GodelClient(godel.mesh.gateway_address, api_key=godel.admin_key) as client:
        assert client.system.health().version
        assert client.system.capabilities().ByteSize() > 0
        event_id = client.events.publish("client:hello", {"n": 1}, correlation_id=marker)

        def stored() -> list[str]:
            return [e.id for e in client.events.query(["client:*"], correlation_id=marker)]

        wait_for(lambda: stored() == [event_id], 30, "the published event to be stored")
        assert client.events.get(event_id).type == "client:hello"
        assert client.intent.parse("what is running").confidence > 0
        key = client.keys.create(f"client-{marker[:6]}", role="viewer")
        assert key.secret and key.api_key.role == "viewer"
        for listing in (
            client.agents.list(page_size=1),
            client.teams.list(page_size=1),
            client.workflows.list(page_size=1),
            client.tasks.list(page_size=1),
            client.budgets.list(page_size=1),
            client.clusters.list(page_size=1),
        ):
            next(iter(listing), None)  # the call went through: no error
        with pytest.raises(NotFoundError):
            client.clusters.get(str(uuid.uuid4()))
