"""Git worktrees of agents: <root>/<agent_id> on branch godel/<agent_id>, created from the repository's
HEAD, with the base commit recorded in <root>/<agent_id>.base.

Many agents (and several worker processes) may work on one repository at once, so every
`git worktree add/remove/prune` on a repository runs under an asyncio lock (this process) and an
fcntl.flock on <git common dir>/godel-worktree.lock (other processes). Under that lock, a worktree
git still marks "initializing" was left by an add that never finished (its worker died): it is
removed and added again, never reused (when the add died before the worktree's `.git` file was
written, git no longer sees a worktree there and refuses to remove it: the directory, ours by its
path and git's record of it, is deleted, and the record unlocked and pruned). The git lock files a killed run left (its worktree's index
and HEAD locks, its branch's ref lock) are removed before a worktree is added or reused: no other
run of the agent is alive then, and git would fail on them.

At most GIT_PROCESSES git commands run at once per worker: a thousand runs killed together each
read their commits and have their worktree removed, and a thousand git processes forked at once
(each fork from the worker's event loop) starved the worker's stream long enough for its run lease
to lapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import re
import shutil
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_GIT_ENV_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY")
LOCK_NAME = "godel-worktree.lock"
GIT_PROCESSES = 4
_git_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


class WorktreeError(Exception):
    """A worktree cannot be created or removed; the message says why."""


def git_identity(agent_id: str) -> dict[str, str]:
    """Author/committer of an agent's commits, so commits work without a global git identity."""
    name, email = f"Godel agent {agent_id}", f"agent-{agent_id}@godel.local"
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """os.environ without variables that would point git at another repository."""
    env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_DROP}
    env["GIT_TERMINAL_PROMPT"] = "0"
    if extra:
        env.update(extra)
    return env


async def git(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> str:
    """Runs git and returns stdout; raises WorktreeError with git's stderr on failure."""
    loop = asyncio.get_running_loop()
    slots = _git_slots.get(loop)
    if slots is None:
        slots = _git_slots[loop] = asyncio.Semaphore(GIT_PROCESSES)
    async with slots:
        try:
            proc = await asyncio.create_subprocess_exec(
                "git",
                *args,
                cwd=cwd,
                env=clean_env(env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
            raise WorktreeError(f"cannot run git in {cwd}: {exc.strerror or exc}") from exc
        out, err = await proc.communicate()
    if proc.returncode != 0:
        message = err.decode(errors="replace").strip() or out.decode(errors="replace").strip()
        raise WorktreeError(f"git {' '.join(args[:2])} failed: {message}")
    return out.decode(errors="replace").strip()


def _resolved(path: Path) -> Path:
    return path.resolve()


def _is_dir(path: Path) -> bool:
    return path.is_dir()


def _repo_path(raw: str) -> Path:
    return Path(raw).expanduser()


@dataclass(frozen=True)
class Worktree:
    path: Path
    branch: str
    base: str
    repo: Path
    common: Path  # the repository's git directory
    admin: Path  # <common>/worktrees/<name>: git's directory of this worktree


def admin_dir(path: Path, common: Path) -> Path:
    """The directory git keeps for the worktree at `path` (<common>/worktrees/<name>). The worktree's
    `.git` file says which; its agent can rewrite that file, so the answer is checked against what
    only git and the worker write (the admin directory's own `gitdir` file)."""
    dot_git = path / ".git"
    try:
        if dot_git.is_symlink():
            raise OSError("a symlink")
        text = dot_git.read_text(errors="replace")
    except OSError as exc:
        raise WorktreeError(f"{dot_git} is not a worktree's .git file") from exc
    if not text.startswith("gitdir:"):
        raise WorktreeError(f"{dot_git} is not a worktree's .git file")
    admin = Path(text.removeprefix("gitdir:").strip())
    admin = (admin if admin.is_absolute() else path / admin).resolve()
    try:
        back = Path((admin / "gitdir").read_text().strip()).resolve()
    except OSError:
        back = None
    if admin.parent != common / "worktrees" or back != dot_git.resolve():
        raise WorktreeError(f"{dot_git} does not point at its own directory in {common / 'worktrees'}")
    return admin


def _clear_stale_locks(*locks: Path) -> None:
    for lock in locks:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
            log.warning("removed a git lock a killed run left", extra={"lock": str(lock)})


class Worktrees:
    """Creates, reuses and removes agents' worktrees under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks: dict[Path, asyncio.Lock] = {}

    def path_for(self, agent_id: str) -> Path:
        if not _SAFE_ID.match(agent_id):
            raise WorktreeError(f"agent id {agent_id!r} cannot name a worktree directory")
        return self.root / agent_id

    async def common_dir(self, repo: Path) -> Path:
        if not repo.is_absolute():
            raise WorktreeError(f"repository path {str(repo)!r} must be absolute")
        if not _is_dir(repo):
            raise WorktreeError(f"repository {repo} does not exist or is not a directory")
        try:
            raw = await git("rev-parse", "--git-common-dir", cwd=repo)
        except WorktreeError as exc:
            raise WorktreeError(f"{repo} is not a git repository ({exc})") from exc
        common = Path(raw)
        return (common if common.is_absolute() else repo / common).resolve()

    @contextlib.asynccontextmanager
    async def locked(self, common: Path) -> AsyncIterator[None]:
        """Serializes worktree changes on one repository across tasks and processes."""
        lock = self._locks.setdefault(common, asyncio.Lock())
        async with lock:
            fd = os.open(common / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except OSError as exc:
                        if exc.errno not in (errno.EAGAIN, errno.EACCES):
                            raise
                        await asyncio.sleep(0.01)
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    async def _half_added(self, repo: Path, path: Path) -> bool:
        """True when git still locks the worktree at `path` as "initializing" (call under the lock)."""
        out = await git("worktree", "list", "--porcelain", cwd=repo)
        current: Path | None = None
        for line in out.splitlines():
            if line.startswith("worktree "):
                current = _resolved(Path(line.removeprefix("worktree ")))
            elif current == _resolved(path) and line == "locked initializing":
                return True
        return False

    async def _registered(self, repo: Path) -> dict[Path, str]:
        """Registered worktrees of the repository: path -> branch ref ('' when detached)."""
        out = await git("worktree", "list", "--porcelain", cwd=repo)
        result: dict[Path, str] = {}
        current: Path | None = None
        for line in out.splitlines():
            if line.startswith("worktree "):
                current = _resolved(Path(line.removeprefix("worktree ")))
                result[current] = ""
            elif line.startswith("branch ") and current is not None:
                result[current] = line.removeprefix("branch ")
        return result

    async def _branch_exists(self, repo: Path, branch: str) -> bool:
        try:
            await git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", cwd=repo)
            return True
        except WorktreeError:
            return False

    async def create(self, repo_path: str, agent_id: str, branch: str, reuse: bool) -> Worktree:
        """Creates (or, with `reuse`, reuses) the worktree of an agent and returns it."""
        if not repo_path:
            raise WorktreeError("the assignment names no repository")
        path = self.path_for(agent_id)
        repo = _repo_path(repo_path)
        common = await self.common_dir(repo)
        try:
            head = await git("rev-parse", "--verify", "HEAD^{commit}", cwd=repo)
        except WorktreeError as exc:
            raise WorktreeError(f"repository {repo} has no commit to start from ({exc})") from exc
        await git("check-ref-format", "--branch", branch, cwd=repo)
        base_file = self.root / f"{agent_id}.base"
        self.root.mkdir(parents=True, exist_ok=True)
        async with self.locked(common):
            _clear_stale_locks(common / "refs" / "heads" / f"{branch}.lock")
            if path.exists() and await self._half_added(repo, path):
                await self._remove_half_added(path, common)
            with contextlib.suppress(OSError):
                path.rmdir()  # an empty directory: an add that died before registering anything
            if path.exists():
                if _resolved(path) in await self._registered(repo):
                    if not reuse:
                        raise WorktreeError(f"worktree {path} exists already (reuse_worktree is false)")
                    if _is_dir(path):
                        base = self._read_base(base_file) or head
                        admin = admin_dir(path, common)
                        _clear_stale_locks(admin / "index.lock", admin / "HEAD.lock")
                        return Worktree(path, branch, base, repo, common, admin)
                raise WorktreeError(f"{path} exists and is not a worktree of {repo}")
            # The common case costs two git calls under the lock; stale entries are pruned only
            # when they get in the way.
            if await self._branch_exists(repo, branch):
                base = self._read_base(base_file) or await git("merge-base", head, branch, cwd=repo)
                add = ["worktree", "add", str(path), branch]
            else:
                base = head
                add = ["worktree", "add", "-b", branch, str(path), head]
            try:
                await git(*add, cwd=repo)
            except WorktreeError:
                await git("worktree", "prune", cwd=repo)
                await git(*add, cwd=repo)
            base_file.write_text(base + "\n")
        return Worktree(path, branch, base, repo, common, admin_dir(path, common))

    @staticmethod
    async def _remove_half_added(path: Path, common: Path) -> None:
        try:
            await git("worktree", "remove", "--force", "--force", str(path), cwd=common)
        except WorktreeError as exc:
            log.warning(
                "deleting a worktree git cannot remove", extra={"worktree": str(path), "error": str(exc)}
            )
            await asyncio.to_thread(shutil.rmtree, path)
            await git("worktree", "unlock", str(path), cwd=common)
            await git("worktree", "prune", cwd=common)

    @staticmethod
    def _read_base(base_file: Path) -> str | None:
        with contextlib.suppress(OSError):
            return base_file.read_text().strip() or None
        return None

    async def commits(self, worktree: Worktree) -> list[str]:
        """Commits on the agent's branch that are not on its base, oldest first (asked of the
        repository, not of the worktree, whose `.git` file the agent controls)."""
        out = await git("rev-list", "--reverse", f"{worktree.base}..{worktree.branch}", cwd=worktree.common)
        return out.split()

    async def remove(self, repo_path: str, worktree: str) -> None:
        """Removes a worktree (the branch is kept) and prunes stale entries."""
        if not worktree:
            raise WorktreeError("CLEANUP names no worktree")
        path = Path(worktree)
        repo = Path(repo_path) if repo_path else None
        if repo is None:
            if not _is_dir(path):
                return
            repo = path
        common = await self.common_dir(repo)
        async with self.locked(common):
            if _is_dir(path):
                # git refuses paths that are not its worktrees, so nothing else is ever deleted.
                await git("worktree", "remove", "--force", str(path), cwd=common)
            else:
                await git("worktree", "prune", cwd=common)
        if _resolved(path.parent) == _resolved(self.root):
            (self.root / f"{path.name}.base").unlink(missing_ok=True)
