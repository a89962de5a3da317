"""Checks that an agent's repository is a usable git repository before anything is stored."""

from __future__ import annotations

import asyncio
import os
import time

from godel_server.runtime.errors import ValidationError

CACHE_SECONDS = 30.0
_checked: dict[str, float] = {}


async def _git(repo: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "git",
        "-C",
        repo,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, (out or err).decode(errors="replace").strip()


def _local_dir(repo: str) -> str:
    expanded = os.path.expanduser(repo)
    if not os.path.isabs(expanded):
        raise ValidationError.single("repo", f"must be an absolute path, got {repo!r}")
    resolved = os.path.realpath(expanded)
    if not os.path.isdir(resolved):
        raise ValidationError.single("repo", f"{repo} does not exist or is not a directory")
    return resolved


async def check_repo(repo: str) -> str:
    """The repository's absolute path; INVALID_ARGUMENT on `repo` when it cannot host worktrees."""
    if not repo:
        raise ValidationError.single(
            "repo", "is required: pass a git repository path (no GODEL_DEFAULT_REPO is configured)"
        )
    resolved = _local_dir(repo)
    if _checked.get(resolved, 0.0) > time.monotonic():
        return resolved
    code, _ = await _git(resolved, "rev-parse", "--git-dir")
    if code != 0:
        raise ValidationError.single("repo", f"{repo} is not a git repository")
    code, _ = await _git(resolved, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    if code != 0:
        raise ValidationError.single("repo", f"{repo} has no commits yet (agents branch from HEAD)")
    _checked[resolved] = time.monotonic() + CACHE_SECONDS
    return resolved
