"""The web console (console/, built by `make console`, served by the gateway at /ui/) in headless
Chromium: Debian's /usr/bin/chromium driven by npm's playwright-core from console/e2e/drive.mjs.
The browser logs in with an API key, starts a workflow and sees its DAG complete live, pages past
the first page of teams (this test makes more than one page holds), creates a team (then starts
it) and a started workflow from the console's forms (both complete), sets the team's budget (a bad limit first: the API's
INVALID_ARGUMENT shown with the field it names), spawns an agent and sees it complete live (no
reload), opens its page and logs, spawns a second one and kills it, watches the event stream, and
logs in as a viewer with a password (no forms or actions offered); this test then checks each step
against the API.
Screenshots of every page land in docs/console/ (linked from the README)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningMesh
from tests.integration.auth_helpers import PASSWORD, create_user

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / "docs" / "console"
PAGES = ("login", "workflow", "teams", "budgets", "fleet", "agent", "events")
CONSOLE_PAGE_SIZE = 100  # console/src/paging.ts PAGE_SIZE
PAGE_TEAMS = CONSOLE_PAGE_SIZE + 1
# A diamond: the console lays it out in three layers.
DIAMOND = [
    {"id": "source", "name": "source", "task": "sleep 1; echo source"},
    {"id": "left", "name": "left", "task": "sleep 1; echo left", "dependsOn": ["source"]},
    {"id": "right", "name": "right", "task": "sleep 1; echo right", "dependsOn": ["source"]},
    {"id": "sink", "name": "sink", "task": "echo sink", "dependsOn": ["left", "right"]},
]


@pytest.fixture(scope="module")
def console_url(godel: RunningMesh) -> str:
    """The console, built (a no-op when up to date) and served by the mesh's gateway. Envoy reads
    the files when it loads its config: a gateway started before this build serves none, or the
    previous one, and is restarted once to load it."""
    build = subprocess.run(
        ["make", "--no-print-directory", "console"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert build.returncode == 0, f"make console failed:\n{build.stdout}{build.stderr}"
    url = f"{godel.rest}/ui/"
    built = (REPO / "console" / "dist" / "index.html").read_text()
    if httpx.get(url, timeout=15).text != built:
        godel.mesh.restart_gateway()
    served = httpx.get(url, timeout=15)
    assert served.status_code == 200, served.text
    assert served.headers["content-type"].startswith("text/html")
    assert served.text == built
    return url


def test_console_is_served_under_ui(godel: RunningMesh, console_url: str) -> None:
    index = httpx.get(console_url, timeout=15).text
    script = index.split('src="', 1)[1].split('"', 1)[0]
    asset = httpx.get(f"{godel.rest}{script}", timeout=15)
    assert asset.status_code == 200
    assert asset.headers["content-type"].startswith("text/javascript")
    assert "immutable" in asset.headers["cache-control"]
    assert (
        httpx.get(f"{godel.rest}/ui", timeout=15, follow_redirects=False).headers["location"].endswith("/ui/")
    )
    missing = httpx.get(f"{godel.rest}/ui/no-such-file.js", timeout=15)
    assert missing.status_code == 404 and missing.json()["message"] == "no such file in the console"


def _create_workflow(godel: RunningMesh, tag: str) -> str:
    definition = {"name": f"console-dag {tag}", "command": ["sh", "-c", "{task}"], "steps": DIAMOND}
    with godel.http() as http:
        made = http.post("/api/v1/workflows", json={"definitionText": json.dumps(definition)})
    assert made.status_code == 200, made.text
    workflow_id: str = made.json()["id"]
    return workflow_id


@pytest.fixture
def page_of_teams(godel: RunningMesh) -> Iterator[str]:
    """More teams than one page of the console holds (rows only: none is started), deleted after,
    so that no other test's list of the shared mesh holds them. Yields the tag in their names."""
    tag = f"page-{uuid.uuid4().hex[:8]}"
    made: list[str] = []
    with godel.http() as http:
        try:
            for i in range(PAGE_TEAMS):
                team = http.post("/api/v1/teams", json={"name": f"{tag} {i:03d}", "task": "not started"})
                assert team.status_code == 200, team.text
                made.append(team.json()["id"])
            yield tag
        finally:
            gone = [http.delete(f"/api/v1/teams/{team_id}").status_code for team_id in made]
        assert set(gone) <= {200}, gone


def _drive(
    godel: RunningMesh, url: str, viewer: dict[str, Any], tag: str, page_tag: str
) -> dict[str, dict[str, Any]]:
    env = {
        "WORKFLOW_ID": _create_workflow(godel, tag),
        "PAGE_TAG": page_tag,
        "PAGE_TEAMS": str(PAGE_TEAMS),
        **os.environ,
        "CONSOLE_URL": url,
        "GODEL_API_KEY": godel.admin_key,
        "VIEWER_USER": viewer["username"],
        "VIEWER_PASSWORD": PASSWORD,
        "SCREENSHOTS": str(SCREENSHOTS),
        "TAG": tag,
        "CHROMIUM": str(CHROMIUM),
    }
    done = subprocess.run(
        ["node", "e2e/drive.mjs"], cwd=REPO / "console", env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"the browser run failed:\n{done.stdout}\n{done.stderr}"
    return {step["step"]: step for step in map(json.loads, done.stdout.splitlines())}


def _agent(godel: RunningMesh, agent_id: str) -> dict[str, Any]:
    with godel.http() as http:
        found = http.get(f"/api/v1/agents/{agent_id}")
    assert found.status_code == 200, found.text
    agent: dict[str, Any] = found.json()
    return agent


def test_console_spawns_watches_and_kills_agents(
    godel: RunningMesh, console_url: str, page_of_teams: str
) -> None:
    assert CHROMIUM.is_file(), "Debian's chromium is needed: apt-get install chromium (.ci/run does)"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    started = time.time()
    tag = uuid.uuid4().hex[:8]
    viewer = create_user(godel, "viewer")

    steps = _drive(godel, console_url, viewer, tag, page_of_teams)

    assert steps["logged-in"]["role"] == "admin"
    dag = steps["workflow"]
    assert dag["sinkFirstSeen"] == "pending"  # then started from the console, and completed live
    assert [sorted(layer) for layer in dag["depths"]] == [["source"], ["left", "right"], ["sink"]]
    assert steps["teams"]["workflowStatus"] == "completed"
    with godel.http() as http:
        assert (
            http.get(f"/api/v1/workflows/{dag['workflow']}").json()["status"] == "WORKFLOW_STATUS_COMPLETED"
        )
    paged = steps["paged"]
    assert paged["firstPage"] == CONSOLE_PAGE_SIZE, paged
    assert paged["tagged"] == PAGE_TEAMS and paged["afterMore"] > CONSOLE_PAGE_SIZE, paged

    with godel.http() as http:
        team = http.get(f"/api/v1/teams/{steps['team-created']['team']}").json()
        made = http.get(f"/api/v1/workflows/{steps['workflow-created']['workflow']}").json()
        budgets = http.get("/api/v1/budgets", params={"entityId": team["id"]}).json()["budgets"]
    assert team["name"] == f"console-team {tag}" and team["task"] == "echo from the console", team
    assert team["executionStrategy"] == "EXECUTION_STRATEGY_PIPELINE", team
    assert team["config"]["command"] == ["sh", "-c", "echo team says hi"], team
    # Created, then started from the console: it ran to the end.
    assert steps["team-created"]["teamFirstSeen"] == "creating" and team["status"] == "TEAM_STATUS_COMPLETED"
    assert made["name"] == f"console-made {tag}" and made["status"] == "WORKFLOW_STATUS_COMPLETED", made
    budget = steps["budget"]
    assert "total_budget" in budget["refused"] and budget["errorGone"] == 0, budget
    assert "$12.50" in budget["shown"], budget
    assert [(b["entityType"], b["totalBudget"]) for b in budgets] == [("BUDGET_ENTITY_TYPE_TEAM", 12.5)]

    completed = steps["completed-live"]
    # First shown before it ended, then completed in the same document: updated live.
    assert completed["firstSeen"] != "completed" and completed["sameDocument"] is True
    first = _agent(godel, completed["agent"])
    assert first["status"] == "AGENT_STATUS_COMPLETED"
    assert first["task"] == f"console-first {tag}"
    assert first["config"]["command"] == ["sh", "-c", "sleep 2; echo console says hi; echo to stderr >&2"]

    page = steps["agent-page"]
    assert page["agent"] == first["id"]
    assert "console says hi" in page["logs"] and "to stderr" in page["logs"]
    assert "completed" in page["states"]

    killed = steps["killed"]
    assert killed["sameDocument"] is True
    second = _agent(godel, killed["agent"])
    assert second["status"] == "AGENT_STATUS_KILLED"
    assert second["task"] == f"console-second {tag}"
    assert "agent:kill" in steps["events"]["types"]

    looked = steps["viewer"]
    assert looked["role"] == "viewer"
    assert looked["spawnForms"] == 0 and looked["actionButtons"] == 0
    assert looked["teamsView"] == {"forms": 0, "actionButtons": 0}, looked
    assert looked["budgetsView"] == {"forms": 0}, looked
    assert steps["problems"]["problems"] == []

    for name in PAGES:
        shot = SCREENSHOTS / f"{name}.png"
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert shot.stat().st_mtime >= started - 1, f"{shot} was not written by this run"
