"""config.env values are write-only, also in what a worker reports of a run: the agent's processes
get them, but its log lines, session messages, result and error show ENV_MASK instead (values
shorter than MIN_SECRET_CHARS are left alone)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from godel.v1 import worker_service_pb2 as ws
from godel_server.runtime.secrets import ENV_MASK, MIN_SECRET_CHARS, Scrubber
from tests.fakes.openai_server import FakeOpenAI, final, tool_call
from tests.fakes.worker_env import assignment, running_worker

pytestmark = pytest.mark.timeout(60)
SECRET = "tok-0123456789abcdef"


def test_the_scrubber_masks_each_long_enough_value_and_the_longest_first() -> None:
    scrub = Scrubber({"A": SECRET, "B": SECRET[:10], "PORT": "8080", "EMPTY": ""})
    assert scrub(f"a={SECRET} b={SECRET[:10]} port=8080") == f"a={ENV_MASK} b={ENV_MASK} port=8080"
    assert scrub.data({"k": [SECRET, 1, {SECRET: None}]}) == {"k": [ENV_MASK, 1, {ENV_MASK: None}]}
    assert Scrubber({"X": "x" * (MIN_SECRET_CHARS - 1)})("x" * MIN_SECRET_CHARS) == "x" * MIN_SECRET_CHARS
    assert Scrubber({})(SECRET) == SECRET


async def test_a_command_agent_that_prints_its_token_does_not_publish_it(tmp_path: Path) -> None:
    script = (
        'echo "token: $API_TOKEN port: $PORT"; printf %s "$API_TOKEN" | wc -c; echo "$API_TOKEN" >&2; exit 3'
    )
    async with running_worker(tmp_path) as env:
        a = assignment(env.repo, "r1", "a1", ["sh", "-c", script])
        a.config.env.update({"API_TOKEN": SECRET, "PORT": "8080"})
        env.ctl.assign(a)
        done = await env.ctl.wait_final("r1")
        lines = [line.message for line in env.ctl.log_lines("r1")]
    assert done.state == ws.RUN_STATE_FAILED
    assert f"token: {ENV_MASK} port: 8080" in lines
    assert str(len(SECRET)) in lines  # the process had the value
    assert SECRET not in "\n".join(lines)
    assert SECRET.encode() not in done.SerializeToString()


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as endpoint:
        yield endpoint


async def test_an_openai_agent_that_repeats_its_token_does_not_publish_it(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    fake.add(tool_call("write_file", {"path": "note.txt", "content": SECRET}), final(f"done with {SECRET}"))
    async with running_worker(tmp_path, GODEL_OPENAI_BASE_URL=fake.base_url) as env:
        a = assignment(env.repo, "r1", "a1", runtime="openai", model="m")
        a.config.env["API_TOKEN"] = SECRET
        env.ctl.assign(a)
        done = await env.ctl.wait_final("r1")
        reports = [r.SerializeToString() for r in env.ctl.received]
        messages = env.ctl.session_messages("r1")
        written = (env.settings.worktree_root / "a1" / "note.txt").read_text()
    assert done.state == ws.RUN_STATE_SUCCEEDED and done.result == f"done with {ENV_MASK}"
    assert written == SECRET  # the agent's own files keep it
    assert any(ENV_MASK in str(m.message.metadata) for m in messages if m.message.role == "assistant")
    assert all(SECRET.encode() not in report for report in reports)
