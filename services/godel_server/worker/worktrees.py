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

`git worktree add` and `git worktree remove` read every worktree of the repository (its check that
the path and the branch are not taken), so with a thousand agents on one repository each add read
a thousand worktrees' files, ~40 ms at 350 and growing. A new agent's worktree is therefore made
the way git's own add_worktree (and libgit2) makes it: the branch created by `git update-ref` (which
refuses a branch that exists), the worktree's directory in <common>/worktrees/<agent_id> written
("locked initializing" until its checkout is done), then `git reset --hard` in it. A removal deletes
the worktree and that directory. Both fall back to git's own command whenever the repository or
the worktree is anything but the plain case: a branch that exists, a name git would change or that
is taken, sparse checkout, per-worktree config, reftable refs, or a locked worktree. The repository's
post-checkout hook does not run: the worker runs no repository code outside a sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import logging
import os
import re
import shutil
import stat
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# A name git keeps as is for a worktree's directory (sanitize_refname_component changes none of it).
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
# Branch names `git check-ref-format --branch` accepts without asking: components of letters,
# digits, '_' and '-', none starting with '-' (anything else is asked of git).
_PLAIN_BRANCH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*(?:/[A-Za-z0-9_][A-Za-z0-9_-]*)*$")
# What in a repository's git directory makes `git worktree add` do more than write the worktree's
# files and check it out (it copies the first two; the third stores refs differently).
_COMMIT_ID = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")
_NOT_PLAIN = ("info/sparse-checkout", "config.worktree", "reftable")
_GIT_ENV_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY")
LOCK_NAME = "godel-worktree.lock"
GIT_PROCESSES = 4
# A git that runs longer is killed: an agent can write its repository's refs, and a FIFO there
# makes a git that reads it wait for ever, holding one of the GIT_PROCESSES slots.
GIT_TIMEOUT_SECONDS = 600.0
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


@functools.lru_cache(maxsize=4)
def _git_program(search_path: str) -> str:
    """git's absolute path: the worker starts thousands, and each exec of a bare name tried every
    directory of PATH before git's (in the vfork child, while the event loop waits)."""
    return shutil.which("git", path=search_path) or "git"


async def git(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> str:
    """Runs git and returns stdout; raises WorktreeError with git's stderr on failure."""
    loop = asyncio.get_running_loop()
    slots = _git_slots.get(loop)
    if slots is None:
        slots = _git_slots[loop] = asyncio.Semaphore(GIT_PROCESSES)
    async with slots:
        try:
            proc = await asyncio.create_subprocess_exec(
                _git_program(os.environ.get("PATH", "")),
                *args,
                cwd=cwd,
                env=clean_env(env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
            raise WorktreeError(f"cannot run git in {cwd}: {exc.strerror or exc}") from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(), GIT_TIMEOUT_SECONDS)
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # a cancelled caller leaves no git behind
            raise
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise WorktreeError(
                f"git {' '.join(args[:2])} did not finish within {GIT_TIMEOUT_SECONDS:g}s and was stopped"
            ) from None
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


def _absolute(repo: Path, raw: str) -> Path:
    path = Path(raw)
    return (path if path.is_absolute() else repo / path).resolve()


def _plain_admin_dir(path: Path, common: Path) -> Path | None:
    """git's directory of the worktree at `path` when `git worktree remove --force` would just delete
    both (registered here, not locked, no per-worktree config); None where git must decide."""
    try:
        admin = admin_dir(path, common)
    except WorktreeError:
        return None
    if (admin / "locked").exists() or (admin / "config.worktree").exists():
        return None
    return admin


def _small_file(path: Path) -> str | None:
    """The stripped text of a small regular file, read without following a link or waiting on a
    FIFO (an agent can write its branch's ref); None for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, 256).strip().decode("ascii", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def _loose_ref(common: Path, branch: str) -> str | None:
    """The commit id in the branch's loose ref file, or None where git must answer (a packed or
    symbolic ref, reftable, a name git would read differently, a file that holds no commit id)."""
    if not _PLAIN_BRANCH.match(branch):
        return None
    content = _small_file(common / "refs" / "heads" / branch)
    return content if content is not None and _COMMIT_ID.match(content) else None


def _head_commit(git_dir: Path, common: Path) -> str | None:
    """The commit the repository's HEAD names, from its files: a detached HEAD's id, or the loose ref
    of the branch it is on; None where git must answer (a packed ref, a branch with no commit yet,
    reftable)."""
    head = _small_file(git_dir / "HEAD")
    if head is None:
        return None
    if _COMMIT_ID.match(head):
        return head
    if head.startswith("ref: refs/heads/"):
        return _loose_ref(common, head.removeprefix("ref: refs/heads/"))
    return None


def _delete_admin_dir(admin: Path) -> None:
    shutil.rmtree(admin)
    with contextlib.suppress(OSError):
        admin.parent.rmdir()  # <common>/worktrees, when it was the last one (as git does)


def _plain_case(path: Path, common: Path) -> bool:
    """Whether a new worktree at `path` is one `git worktree add` would only write and check out."""
    if os.path.lexists(path) or not _PLAIN_NAME.match(path.name):
        return False
    return not any((common / p).exists() for p in _NOT_PLAIN)


def _left_by_a_dead_add(admin: Path) -> bool:
    """A worktree directory in <common>/worktrees that is still "locked initializing" and names no
    worktree: an add killed before it wrote `gitdir` (under the lock no add of ours is that early)."""
    try:
        return (admin / "locked").read_text() == "initializing" and not (admin / "gitdir").exists()
    except OSError:
        return False


async def _clear_dead_add(admin: Path) -> None:
    """Deletes what `_left_by_a_dead_add` finds (call under the lock), so the agent's next add gets
    the same name in <common>/worktrees."""
    if await asyncio.to_thread(_left_by_a_dead_add, admin):
        await asyncio.to_thread(shutil.rmtree, admin, True)


def _write_worktree(path: Path, admin: Path, branch: str) -> bool:
    """The files git's add_worktree writes before its checkout, in its order (the directory of the
    worktree in <common>/worktrees is "locked initializing" until the checkout is done). False, and
    nothing written, when that directory is taken; on an error nothing written is left."""
    admin.parent.mkdir(exist_ok=True)
    try:
        admin.mkdir()
    except FileExistsError:
        return False
    made_path = False
    try:
        (admin / "locked").write_text("initializing")
        path.mkdir()
        made_path = True
        # gitdir before .git: killed in between, git still lists the worktree ("locked
        # initializing") and the next add of the agent removes it; the other way round, git no
        # longer knew it.
        (admin / "gitdir").write_text(f"{path / '.git'}\n")
        (path / ".git").write_text(f"gitdir: {admin}\n")
        (admin / "commondir").write_text("../..\n")
        (admin / "HEAD").write_text(f"ref: refs/heads/{branch}\n")
    except OSError:
        if made_path:
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(admin, ignore_errors=True)
        raise
    return True


def _delete_junk(path: Path, admin: Path) -> None:
    """What a failed add leaves: the worktree and git's directory of it (git's remove_junk)."""
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(admin, ignore_errors=True)


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
        # The git directory of each repository seen: a removal checks the worktree against it
        # instead of asking git (a thousand agents killed at once each forked a `git rev-parse`).
        self._commons: dict[Path, Path] = {}
        # And its own git directory (<common> itself, or <common>/worktrees/<name> for a linked
        # worktree), whose HEAD an agent's base is read from.
        self._git_dirs: dict[Path, Path] = {}

    def path_for(self, agent_id: str) -> Path:
        if not _SAFE_ID.match(agent_id):
            raise WorktreeError(f"agent id {agent_id!r} cannot name a worktree directory")
        return self.root / agent_id

    async def common_dir(self, repo: Path) -> Path:
        self._check_repo_path(repo)
        try:
            raw = await git("rev-parse", "--git-common-dir", cwd=repo)
        except WorktreeError as exc:
            raise WorktreeError(f"{repo} is not a git repository ({exc})") from exc
        common = self._commons[repo] = _absolute(repo, raw)
        return common

    async def _common_dir_and_head(self, repo: Path) -> tuple[Path, str]:
        """The repository's git directory and the commit its HEAD names: read from HEAD's files once
        git has said where they are (a git process less per agent), else asked of git."""
        self._check_repo_path(repo)
        common, git_dir = self._commons.get(repo), self._git_dirs.get(repo)
        if common is not None and git_dir is not None:
            head = _head_commit(git_dir, common)
            if head is not None:
                return common, head
        try:
            raw_git_dir, raw, head = (
                await git("rev-parse", "--git-dir", "--git-common-dir", "--verify", "HEAD^{commit}", cwd=repo)
            ).splitlines()
        except (WorktreeError, ValueError):
            common = await self.common_dir(repo)  # says which of the two is wrong
            try:
                head = await git("rev-parse", "--verify", "HEAD^{commit}", cwd=repo)
            except WorktreeError as exc:
                raise WorktreeError(f"repository {repo} has no commit to start from ({exc})") from exc
            return common, head
        self._git_dirs[repo] = _absolute(repo, raw_git_dir)
        common = self._commons[repo] = _absolute(repo, raw)
        return common, head

    @staticmethod
    def _check_repo_path(repo: Path) -> None:
        if not repo.is_absolute():
            raise WorktreeError(f"repository path {str(repo)!r} must be absolute")
        if not _is_dir(repo):
            raise WorktreeError(f"repository {repo} does not exist or is not a directory")

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
        common, head = await self._common_dir_and_head(repo)
        if not _PLAIN_BRANCH.match(branch) or branch == "HEAD":
            await git("check-ref-format", "--branch", branch, cwd=repo)
        base_file = self.root / f"{agent_id}.base"
        self.root.mkdir(parents=True, exist_ok=True)
        _clear_stale_locks(common / "refs" / "heads" / f"{branch}.lock")
        # The common case, a new agent: the branch and the worktree's files (only those under the
        # lock), then the checkout.
        fresh = await self._add_plain(repo, common, path, branch, head, base_file)
        if fresh is not None:
            return await self._check_out(fresh, path, branch, head, repo, common)
        async with self.locked(common):
            await _clear_dead_add(common / "worktrees" / path.name)
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
            base = await self._add_with_git(repo, path, branch, head, base_file)
            return Worktree(path, branch, base, repo, common, admin_dir(path, common))

    async def _add_with_git(self, repo: Path, path: Path, branch: str, head: str, base_file: Path) -> str:
        """`git worktree add` (under the lock) and returns the base; stale entries are pruned only when
        they get in the way."""
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
        await asyncio.to_thread(base_file.write_text, base + "\n")
        return base

    async def _add_plain(
        self, repo: Path, common: Path, path: Path, branch: str, head: str, base_file: Path
    ) -> Path | None:
        """Creates the branch at `head` and writes the files of a worktree on it at `path`, as git's
        add_worktree does, and returns the worktree's directory in <common>/worktrees, still
        locked "initializing"; None where git's own add must do it (the branch may exist then)."""
        if not _plain_case(path, common):
            return None
        try:
            # The empty old value makes update-ref refuse a branch that exists.
            await git(
                "update-ref", "-m", "branch: Created from HEAD", f"refs/heads/{branch}", head, "", cwd=repo
            )
        except WorktreeError:
            if await self._branch_exists(repo, branch):
                return None
            raise
        admin = common / "worktrees" / path.name
        async with self.locked(common):
            await _clear_dead_add(admin)
            try:
                if not await asyncio.to_thread(_write_worktree, path, admin, branch):
                    return None
            except OSError as exc:
                raise WorktreeError(f"cannot write the worktree {path}: {exc}") from exc
        await asyncio.to_thread(base_file.write_text, head + "\n")
        return admin

    async def _check_out(
        self, admin: Path, path: Path, branch: str, head: str, repo: Path, common: Path
    ) -> Worktree:
        """Checks out the worktree `_add_plain` wrote and unlocks it; deletes it when that fails."""
        env = {"GIT_DIR": str(path / ".git"), "GIT_WORK_TREE": str(path)}
        try:
            await git("reset", "--hard", "--no-recurse-submodules", "--quiet", cwd=path, env=env)
        except WorktreeError:
            async with self.locked(common):
                await asyncio.to_thread(_delete_junk, path, admin)
            raise
        (admin / "locked").unlink()
        return Worktree(path, branch, head, repo, common, admin)

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
        if _loose_ref(worktree.common, worktree.branch) == worktree.base:
            return []  # the branch has not moved: no git process (a thousand runs end at once)
        out = await git("rev-list", "--reverse", f"{worktree.base}..{worktree.branch}", cwd=worktree.common)
        return out.split()

    async def remove(self, repo_path: str, worktree: str) -> None:
        """Removes a worktree (the branch is kept) and prunes stale entries."""
        if not worktree:
            raise WorktreeError("CLEANUP names no worktree")
        path = Path(worktree)
        repo = _repo_path(repo_path) if repo_path else None
        if repo is None:
            if not _is_dir(path):
                return
            repo = path
        common = self._commons.get(repo)
        admin = _plain_admin_dir(path, common) if common is not None and _is_dir(path) else None
        if common is None or admin is None:
            common = await self.common_dir(repo)
            admin = _plain_admin_dir(path, common) if _is_dir(path) else None
        if admin is not None:
            # Only a registered, unlocked worktree of this repository gets here: the worktree
            # first, then git's directory of it, as `git worktree remove` does.
            await asyncio.to_thread(shutil.rmtree, path)
            async with self.locked(common):
                await asyncio.to_thread(_delete_admin_dir, admin)
        else:
            async with self.locked(common):
                if _is_dir(path):
                    # git refuses paths that are not its worktrees, so nothing else is ever deleted.
                    await git("worktree", "remove", "--force", str(path), cwd=common)
                else:
                    await git("worktree", "prune", cwd=common)
        if _resolved(path.parent) == _resolved(self.root):
            (self.root / f"{path.name}.base").unlink(missing_ok=True)
