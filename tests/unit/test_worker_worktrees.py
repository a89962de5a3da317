"""Agents' git worktrees: many agents on one repository, cleanup, restart on an existing branch."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from godel.v1 import worker_service_pb2 as ws
from godel_server.runtime.config import WorkerSettings
from godel_server.worker import Worker, worktrees
from godel_server.worker.worktrees import WorktreeError, Worktrees
from tests.fakes.worker_controller import FakeController
from tests.fakes.worker_env import assignment, exists, git, make_git_repo, worker_settings

pytestmark = pytest.mark.timeout(90)

COMMIT = [
    "sh",
    "-c",
    'echo "$GODEL_AGENT_ID" > agent.txt && git add . && git commit -q -m "work of $GODEL_AGENT_ID"',
]


@pytest.fixture
async def controller() -> AsyncIterator[FakeController]:
    ctl = await FakeController().start()
    try:
        yield ctl
    finally:
        await ctl.stop()


async def _worker(settings: WorkerSettings, ctl: FakeController) -> Worker:
    worker = Worker(settings)
    await worker.start()
    await ctl.wait_stream()
    return worker


async def test_ten_agents_on_one_repository(tmp_path: Path, controller: FakeController) -> None:
    repo = make_git_repo(tmp_path / "repo")
    settings = worker_settings(tmp_path, controller.address, GODEL_WORKER_CAPACITY="10")
    worker = await _worker(settings, controller)
    try:
        for n in range(10):
            controller.assign(assignment(repo, f"r{n}", f"a{n}", COMMIT))
        finals = [await controller.wait_final(f"r{n}", timeout=60) for n in range(10)]
    finally:
        await worker.stop()
    for n, final in enumerate(finals):
        assert final.state == ws.RUN_STATE_SUCCEEDED, final.error
        assert list(final.commits) == [git(repo, "rev-parse", f"godel/a{n}")]
        assert (Path(final.worktree) / "agent.txt").read_text() == f"a{n}\n"
    assert len(git(repo, "worktree", "list").splitlines()) == 11
    git(repo, "fsck", "--strict")


async def test_two_processes_share_a_repository_under_the_file_lock(tmp_path: Path) -> None:
    # Two Worktrees objects stand for two worker processes: only the flock serializes them.
    repo = make_git_repo(tmp_path / "repo")
    first, second = Worktrees(tmp_path / "wt1"), Worktrees(tmp_path / "wt2")
    created = await asyncio.gather(
        *(
            (first if n % 2 else second).create(str(repo), f"p{n}", f"godel/p{n}", reuse=False)
            for n in range(8)
        )
    )
    assert {wt.path.name for wt in created} == {f"p{n}" for n in range(8)}
    assert len(git(repo, "worktree", "list").splitlines()) == 9
    git(repo, "fsck", "--strict")


async def test_cleanup_removes_the_worktree_and_keeps_the_branch(
    tmp_path: Path, controller: FakeController
) -> None:
    repo = make_git_repo(tmp_path / "repo")
    settings = worker_settings(tmp_path, controller.address)
    worker = await _worker(settings, controller)
    try:
        controller.assign(assignment(repo, "r1", "a1", COMMIT))
        final = await controller.wait_final("r1")
        assert final.state == ws.RUN_STATE_SUCCEEDED
        controller.control("r1", ws.CONTROL_ACTION_CLEANUP, worktree=final.worktree, repo=str(repo))
        ack = await controller.wait_ack("r1", ws.CONTROL_ACTION_CLEANUP)
        assert ack.ok, ack.error
        assert not exists(final.worktree)
        assert str(final.worktree) not in git(repo, "worktree", "list")
        assert git(repo, "rev-parse", "godel/a1") == final.commits[0]

        # A restart of the agent: the worktree is made again from the kept branch.
        controller.assign(
            assignment(repo, "r2", "a1", ["git", "log", "-1", "--format=%s"], reuse_worktree=True)
        )
        again = await controller.wait_final("r2")
        assert again.state == ws.RUN_STATE_SUCCEEDED, again.error
        assert again.result.strip() == "work of a1"
        assert list(again.commits) == list(final.commits)

        # Reuse of a worktree that still exists.
        controller.assign(assignment(repo, "r3", "a1", ["cat", "agent.txt"], reuse_worktree=True))
        third = await controller.wait_final("r3")
        assert (third.state, third.result, third.worktree) == (ws.RUN_STATE_SUCCEEDED, "a1\n", final.worktree)
    finally:
        await worker.stop()


async def test_an_existing_worktree_is_not_reused_unless_asked(tmp_path: Path) -> None:
    repo = make_git_repo(tmp_path / "repo")
    worktrees = Worktrees(tmp_path / "wt")
    await worktrees.create(str(repo), "a1", "godel/a1", reuse=False)
    with pytest.raises(WorktreeError, match="exists already"):
        await worktrees.create(str(repo), "a1", "godel/a1", reuse=False)
    with pytest.raises(WorktreeError, match="cannot name a worktree"):
        await worktrees.create(str(repo), "../escape", "godel/x", reuse=False)
    with pytest.raises(WorktreeError, match="must be absolute"):
        await worktrees.create("relative/repo", "a2", "godel/a2", reuse=False)


async def test_a_worktree_whose_add_never_finished_is_added_again(tmp_path: Path) -> None:
    """A worker killed during `git worktree add` leaves it locked "initializing": never reused as
    is (nothing could remove it), but removed and added again, on the same branch."""
    repo = make_git_repo(tmp_path / "repo")
    worktrees = Worktrees(tmp_path / "wt")
    first = await worktrees.create(str(repo), "a1", "godel/a1", reuse=False)
    git(first.path, "commit", "-q", "--allow-empty", "-m", "kept")
    git(repo, "worktree", "lock", "--reason", "initializing", str(first.path))
    again = await worktrees.create(str(repo), "a1", "godel/a1", reuse=True)
    assert "locked" not in git(repo, "worktree", "list", "--porcelain")
    assert git(again.path, "log", "-1", "--format=%s") == "kept"
    await worktrees.remove(str(repo), str(again.path))
    assert not again.path.exists()
    (tmp_path / "wt" / "a2").mkdir()  # an add that died before git registered anything
    assert (await worktrees.create(str(repo), "a2", "godel/a2", reuse=False)).path.is_dir()


@pytest.mark.parametrize("dot_git", ["", None], ids=["empty .git", "no .git"])
async def test_a_worktree_whose_add_died_before_its_git_file_is_added_again(
    tmp_path: Path, dot_git: str | None
) -> None:
    """Killed before `git worktree add` wrote the worktree's .git file: `git worktree remove`
    refuses it ("validation failed"), and the run must not fail for that (seen in
    bench/crash_recovery.py, kill -9 of the worker)."""
    repo = make_git_repo(tmp_path / "repo")
    worktrees = Worktrees(tmp_path / "wt")
    first = await worktrees.create(str(repo), "a1", "godel/a1", reuse=False)
    git(first.path, "commit", "-q", "--allow-empty", "-m", "kept")
    git(repo, "worktree", "lock", "--reason", "initializing", str(first.path))
    (first.path / ".git").unlink()
    if dot_git is not None:
        (first.path / ".git").write_text(dot_git)
    again = await worktrees.create(str(repo), "a1", "godel/a1", reuse=True)
    assert "locked" not in git(repo, "worktree", "list", "--porcelain")
    assert git(again.path, "log", "-1", "--format=%s") == "kept"


async def test_a_reused_worktree_loses_the_git_locks_a_killed_run_left(tmp_path: Path) -> None:
    repo = make_git_repo(tmp_path / "repo")
    worktrees = Worktrees(tmp_path / "wt")
    first = await worktrees.create(str(repo), "a1", "godel/a1", reuse=False)
    (first.admin / "index.lock").write_text("")  # killed in the middle of `git commit`
    (first.common / "refs" / "heads" / "godel" / "a1.lock").write_text("")
    again = await worktrees.create(str(repo), "a1", "godel/a1", reuse=True)
    git(again.path, "commit", "-q", "--allow-empty", "-m", "after the crash")
    assert git(again.path, "log", "-1", "--format=%s") == "after the crash"
    # Also when the worktree is gone (removed, or half added) and is added again on the branch.
    await worktrees.remove(str(repo), str(again.path))
    (again.common / "refs" / "heads" / "godel" / "a1.lock").write_text("")
    third = await worktrees.create(str(repo), "a1", "godel/a1", reuse=True)
    assert git(third.path, "log", "-1", "--format=%s") == "after the crash"


async def test_no_more_than_a_few_git_processes_run_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thousand runs killed together each read their commits and have their worktree removed;
    forked all at once, their git processes starved the worker's stream past its run lease."""
    running, seen = tmp_path / "running", tmp_path / "seen"
    running.mkdir()
    fake = tmp_path / "bin" / "git"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        f'touch "{running}/$$"\n'
        f'ls "{running}" | wc -l >> "{seen}"\n'
        "sleep 0.3\n"
        f'rm "{running}/$$"\n'
        'echo "$1"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    calls = 3 * worktrees.GIT_PROCESSES
    outputs = await asyncio.gather(*(worktrees.git(f"call-{i}", cwd=tmp_path) for i in range(calls)))
    assert outputs == [f"call-{i}" for i in range(calls)]
    at_once = [int(line) for line in seen.read_text().split()]
    assert len(at_once) == calls and max(at_once) <= worktrees.GIT_PROCESSES, at_once


@pytest.fixture
def git_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """The git commands the worktrees module runs, in order."""
    calls: list[tuple[str, ...]] = []
    real = worktrees.git

    async def recording(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> str:
        calls.append(args)
        return await real(*args, cwd=cwd, env=env)

    monkeypatch.setattr(worktrees, "git", recording)
    return calls


async def test_a_new_worktree_reads_no_other_worktree(
    tmp_path: Path, git_calls: list[tuple[str, ...]]
) -> None:
    """`git worktree add` reads every worktree of the repository (~40 ms each at 350 worktrees, so a
    thousand agents came up at a few a second): a new agent's worktree is written as git writes it,
    and git takes it for one of its own."""
    repo = make_git_repo(tmp_path / "repo")
    wts = Worktrees(tmp_path / "wt")
    await asyncio.gather(*(wts.create(str(repo), f"a{n}", f"godel/a{n}", reuse=False) for n in range(20)))
    git_calls.clear()
    last = await wts.create(str(repo), "last", "godel/last", reuse=False)
    # Not even a rev-parse: HEAD's commit is read from its files once git has said where they are.
    assert [call[0] for call in git_calls] == ["update-ref", "reset"], git_calls
    listed = git(repo, "worktree", "list", "--porcelain").split("\n\n")
    entry = next(block for block in listed if block.startswith(f"worktree {last.path}\n"))
    assert "branch refs/heads/godel/last" in entry and "locked" not in entry
    assert last.admin == repo / ".git" / "worktrees" / "last" and last.base == git(repo, "rev-parse", "HEAD")
    assert git(last.path, "status", "--porcelain") == ""
    assert (last.path / "README.md").read_text() == (repo / "README.md").read_text()
    git(last.path, "commit", "-q", "--allow-empty", "-m", "work")
    assert await wts.commits(last) == [git(repo, "rev-parse", "godel/last")]
    git(repo, "fsck", "--strict")
    git(repo, "worktree", "prune")
    assert len(git(repo, "worktree", "list").splitlines()) == 22  # prune keeps them all


async def test_removing_a_worktree_deletes_it_and_gits_record_of_it(
    tmp_path: Path, git_calls: list[tuple[str, ...]]
) -> None:
    repo = make_git_repo(tmp_path / "repo")
    wts = Worktrees(tmp_path / "wt")
    first = await wts.create(str(repo), "a1", "godel/a1", reuse=False)
    second = await wts.create(str(repo), "a2", "godel/a2", reuse=False)
    git(first.path, "commit", "-q", "--allow-empty", "-m", "kept")
    (first.path / "untracked.txt").write_text("scratch")
    git_calls.clear()
    await wts.remove(str(repo), str(first.path))
    assert git_calls == []  # not even a rev-parse: the repository's git directory is known
    assert not first.path.exists() and not first.admin.exists()
    assert str(first.path) not in git(repo, "worktree", "list")
    assert git(repo, "log", "-1", "--format=%s", "godel/a1") == "kept"
    # The last worktree takes <common>/worktrees with it, as git's own remove does.
    await wts.remove(str(repo), str(second.path))
    assert not (repo / ".git" / "worktrees").exists()
    # A worker that has not seen the repository asks git where its git directory is.
    git_calls.clear()
    fourth = await wts.create(str(repo), "a4", "godel/a4", reuse=False)
    await Worktrees(tmp_path / "wt").remove(str(repo), str(fourth.path))
    assert not fourth.path.exists() and [call[:2] for call in git_calls][-1] == (
        "rev-parse",
        "--git-common-dir",
    )
    # A locked worktree is git's to refuse.
    third = await wts.create(str(repo), "a3", "godel/a3", reuse=False)
    git(repo, "worktree", "lock", str(third.path))
    with pytest.raises(WorktreeError, match="locked"):
        await wts.remove(str(repo), str(third.path))
    assert third.path.is_dir()


async def test_a_repository_with_sparse_checkout_gets_gits_own_add(
    tmp_path: Path, git_calls: list[tuple[str, ...]]
) -> None:
    """git copies the sparse-checkout patterns into a new worktree; anything but the plain case is
    left to `git worktree add`."""
    repo = make_git_repo(tmp_path / "repo")
    git(repo, "sparse-checkout", "set", "--no-cone", "/README.md")
    wt = await Worktrees(tmp_path / "wt").create(str(repo), "a1", "godel/a1", reuse=False)
    assert ("worktree", "add", "-b", "godel/a1", str(wt.path), wt.base) in git_calls
    assert (wt.admin / "info" / "sparse-checkout").read_text() == "/README.md\n"


async def test_a_checkout_that_fails_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_git_repo(tmp_path / "repo")
    wts = Worktrees(tmp_path / "wt")
    real = worktrees.git

    async def failing_reset(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> str:
        if args[0] == "reset":
            raise WorktreeError("git reset failed: disk full")
        return await real(*args, cwd=cwd, env=env)

    monkeypatch.setattr(worktrees, "git", failing_reset)
    with pytest.raises(WorktreeError, match="disk full"):
        await wts.create(str(repo), "a1", "godel/a1", reuse=False)
    assert not (tmp_path / "wt" / "a1").exists() and not (repo / ".git" / "worktrees" / "a1").exists()
    monkeypatch.setattr(worktrees, "git", real)
    # The branch stays (as after a failed `git worktree add -b`): the next run checks it out.
    again = await wts.create(str(repo), "a1", "godel/a1", reuse=False)
    assert git(again.path, "status", "--porcelain") == ""


@pytest.mark.parametrize("killed_after", ["locked", "gitdir"])
async def test_a_plain_add_killed_half_way_is_added_again(tmp_path: Path, killed_after: str) -> None:
    """The worker killed while it wrote a new worktree's files: the next run of the agent gets a
    whole worktree, and no directory of the dead add is left in <common>/worktrees."""
    repo = make_git_repo(tmp_path / "repo")
    wts = Worktrees(tmp_path / "wt")
    path, admin = tmp_path / "wt" / "a1", repo / ".git" / "worktrees" / "a1"
    git(repo, "branch", "godel/a1")
    admin.mkdir(parents=True)
    (admin / "locked").write_text("initializing")
    path.mkdir(parents=True)
    if killed_after == "gitdir":
        (admin / "gitdir").write_text(f"{path / '.git'}\n")
        (admin / "commondir").write_text("../..\n")
        (admin / "HEAD").write_text("ref: refs/heads/godel/a1\n")
    again = await wts.create(str(repo), "a1", "godel/a1", reuse=True)
    assert git(again.path, "status", "--porcelain") == ""
    assert sorted(p.name for p in (repo / ".git" / "worktrees").iterdir()) == ["a1"]
    assert "locked" not in git(repo, "worktree", "list", "--porcelain")


async def test_the_commits_of_a_branch_that_did_not_move_cost_no_git_process(
    tmp_path: Path, git_calls: list[tuple[str, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thousand agents killed at once each forked a `git rev-list` to report no commits."""
    repo = make_git_repo(tmp_path / "repo")
    wts = Worktrees(tmp_path / "wt")
    idle = await wts.create(str(repo), "idle", "godel/idle", reuse=False)
    busy = await wts.create(str(repo), "busy", "godel/busy", reuse=False)
    git(busy.path, "commit", "-q", "--allow-empty", "-m", "work")
    git_calls.clear()
    assert await wts.commits(idle) == []
    assert git_calls == []
    assert await wts.commits(busy) == [git(repo, "rev-parse", "godel/busy")]
    assert [call[0] for call in git_calls] == ["rev-list"]
    # The agent can write its branch's ref: a FIFO there, or a link to the base's ref, is git's to
    # read (the worker reads nothing that waits for ever, and follows no link). git waits on the
    # FIFO for ever: it is stopped after its time.
    ref = repo / ".git" / "refs" / "heads" / "godel" / "idle"
    ref.unlink()
    os.mkfifo(ref)
    monkeypatch.setattr(worktrees, "GIT_TIMEOUT_SECONDS", 1.0)
    git_calls.clear()
    with pytest.raises(WorktreeError, match="did not finish within 1s"):
        await asyncio.wait_for(wts.commits(idle), 10)
    assert [call[0] for call in git_calls] == ["rev-list"]
    ref.unlink()
    (repo / "base-ref").write_text(idle.base + "\n")
    ref.symlink_to(repo / "base-ref")
    git_calls.clear()
    assert await wts.commits(idle) == []
    assert [call[0] for call in git_calls] == ["rev-list"]


async def test_a_worktree_is_not_cleaned_up_while_its_agent_runs_in_it(
    tmp_path: Path, controller: FakeController
) -> None:
    repo = make_git_repo(tmp_path / "repo")
    worker = await _worker(worker_settings(tmp_path, controller.address), controller)
    try:
        controller.assign(assignment(repo, "r1", "a1", ["sleep", "60"]))
        running = await controller.wait_update("r1", ws.RUN_STATE_RUNNING)
        controller.control("r1", ws.CONTROL_ACTION_CLEANUP, worktree=running.worktree, repo=str(repo))
        refused = await controller.wait_ack("r1", ws.CONTROL_ACTION_CLEANUP)
        assert not refused.ok and refused.error == f"run r1 still runs in {running.worktree}"
        assert exists(running.worktree)
        controller.control("r1", ws.CONTROL_ACTION_KILL)
        assert (await controller.wait_final("r1")).state == ws.RUN_STATE_KILLED
        controller.control("r1", ws.CONTROL_ACTION_CLEANUP, worktree=running.worktree, repo=str(repo))
        await controller.wait_for(
            lambda r: (
                r.WhichOneof("message") == "ack" and r.ack.action == ws.CONTROL_ACTION_CLEANUP and r.ack.ok
            )
        )
        assert not exists(running.worktree)
    finally:
        await worker.stop()


async def test_a_cancelled_git_is_stopped(tmp_path: Path) -> None:
    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)
    call = asyncio.create_task(worktrees.git("hash-object", str(fifo), cwd=tmp_path))
    deadline = asyncio.get_running_loop().time() + 10
    while not (pids := _processes_reading(fifo)):
        assert asyncio.get_running_loop().time() < deadline, "git never started"
        await asyncio.sleep(0.02)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    while any(_state(pid) not in ("Z", "gone") for pid in pids):
        assert asyncio.get_running_loop().time() < deadline, "the cancelled git still runs"
        await asyncio.sleep(0.02)


def _processes_reading(path: Path) -> list[int]:
    """The processes whose command line names `path` (git blocks in open() of the FIFO)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if str(path).encode() in f.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            continue
    return found


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except OSError:
        return "gone"


async def test_a_new_agent_starts_from_the_repositorys_head_as_it_is_now(
    tmp_path: Path, git_calls: list[tuple[str, ...]]
) -> None:
    repo = make_git_repo(tmp_path / "repo")
    wts = Worktrees(tmp_path / "wt")
    first = await wts.create(str(repo), "a1", "godel/a1", reuse=False)
    assert first.base == git(repo, "rev-parse", "HEAD") and git_calls[0][0] == "rev-parse"
    git(repo, "commit", "-q", "--allow-empty", "-m", "moved on")
    git_calls.clear()
    moved = await wts.create(str(repo), "a2", "godel/a2", reuse=False)
    assert moved.base == git(repo, "rev-parse", "HEAD") != first.base
    assert "rev-parse" not in [call[0] for call in git_calls]
    assert git(moved.path, "log", "-1", "--format=%s") == "moved on"
    # A detached HEAD is read as well; a packed branch is git's to read.
    git(repo, "checkout", "-q", "--detach", first.base)
    detached = await wts.create(str(repo), "a3", "godel/a3", reuse=False)
    assert detached.base == first.base
    git(repo, "checkout", "-q", "-")
    git(repo, "pack-refs", "--all")
    assert not (repo / ".git" / "refs" / "heads" / git(repo, "branch", "--show-current")).exists()
    git_calls.clear()
    packed = await wts.create(str(repo), "a4", "godel/a4", reuse=False)
    assert packed.base == moved.base and git_calls[0][0] == "rev-parse"
    # A repository path that is itself a linked worktree: its own HEAD, not the main one's.
    git(repo, "worktree", "add", "-q", "-b", "side", str(tmp_path / "side"), first.base)
    side = tmp_path / "side"
    await wts.create(str(side), "a5", "godel/a5", reuse=False)
    git(side, "commit", "-q", "--allow-empty", "-m", "on the side")
    git_calls.clear()
    from_side = await wts.create(str(side), "a6", "godel/a6", reuse=False)
    assert from_side.base == git(side, "rev-parse", "HEAD") != git(repo, "rev-parse", "HEAD")
    assert "rev-parse" not in [call[0] for call in git_calls]
    git(repo, "fsck", "--strict")
