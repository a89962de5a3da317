"""An agent's safety rules (SafetyRules in agent.proto, from its safety_boundaries), checked by the
worker that runs it: forbidden commands (the openai runtime's shell tool, a command runtime's own
command line), forbidden paths (the file tools; what a run changed), the number of files and lines
it changed against its branch's base. A refusal is reported to the agent service (SafetyBlock on the
worker stream, which publishes `safety:block`) by the run (run.py: `Run.safety_block`), which then
fails the run or holds it paused, as the rules' onViolation says.

These rules guard against an agent's mistakes and injected instructions, not against an agent that
wants around them (`sh -c "$(echo Y3VybA== | base64 -d)"` runs curl): the sandbox bounds that one.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from godel.v1 import agent_pb2
from godel_server.worker.runtimes.command import shell_script_index
from godel_server.worker.worktrees import WorktreeError, git

FORBIDDEN_PATHS = "safetyBoundaries.forbiddenPaths"
FORBIDDEN_COMMANDS = "safetyBoundaries.forbiddenCommands"
MAX_FILES_CHANGED = "safetyBoundaries.maxFilesChanged"
MAX_DIFF_LINES = "safetyBoundaries.maxDiffLines"
# What separates the commands of a command line (subshells and command substitutions included).
_SEPARATORS = ";&|()`"
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_NESTING = 3
# Bytes of an untracked file read to count its lines.
_MAX_READ = 16 * 1024 * 1024


@dataclass(frozen=True)
class Violation:
    """A rule a run broke: the rule's name and what was refused."""

    rule: str
    detail: str

    @property
    def error(self) -> str:
        """The agent's lastError when the run fails for it."""
        return f"safety: {self.rule}: {self.detail}"

    @property
    def approval(self) -> str:
        """What resuming a run held for this allows: a count rule for the rest of the run (the
        count only grows), anything else this once (the same command or file again)."""
        return (
            self.rule if self.rule in (MAX_FILES_CHANGED, MAX_DIFF_LINES) else f"{self.rule}: {self.detail}"
        )


@functools.cache
def _glob(pattern: str) -> re.Pattern[str]:
    """A path glob: `*` and `?` within a segment, `**` across segments; without "/" it matches a
    file name in any directory."""
    if "/" not in pattern.strip("/"):
        pattern = "**/" + pattern.strip("/")
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out).lstrip("/") + "(?:/.*)?")


def path_matches(pattern: str, relative: str) -> bool:
    """Whether a worktree path (relative, "/"-separated) or a directory above it matches."""
    return _glob(pattern).fullmatch(relative.strip("/")) is not None


def commands_of(line: str, depth: int = 0) -> list[list[str]]:
    """The simple commands of a command line, as words (the scripts of `sh -c` too)."""
    # A newline ends a command; "$(" opens a command substitution, in double quotes too.
    text = line.replace("\n", ";").replace("$(", "(")
    lexer = shlex.shlex(text, posix=True, punctuation_chars=_SEPARATORS)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: the shell would refuse it; read it word by word
        tokens = line.split()
    commands: list[list[str]] = []
    words: list[str] = []
    for token in [*tokens, ";"]:
        if not token or not set(token) <= set(_SEPARATORS):
            words.append(token)
            continue
        commands += _command(words, depth)
        words = []
    return commands


def _command(words: list[str], depth: int) -> list[list[str]]:
    """One simple command (without its leading NAME=value assignments), and what its `sh -c` runs."""
    while words and _ASSIGNMENT.match(words[0]):
        words = words[1:]
    if not words:
        return []
    script = shell_script_index(words)
    nested = commands_of(words[script], depth + 1) if script is not None and depth < _NESTING else []
    return [words, *nested]


class Guard:
    """The safety rules of one run."""

    def __init__(self, rules: agent_pb2.SafetyRules) -> None:
        self.rules = rules

    @property
    def pauses(self) -> bool:
        return self.rules.on_violation == agent_pb2.SAFETY_ACTION_PAUSE

    @property
    def action(self) -> agent_pb2.SafetyAction.ValueType:
        return agent_pb2.SAFETY_ACTION_PAUSE if self.pauses else agent_pb2.SAFETY_ACTION_FAIL

    def command(self, line: str) -> Violation | None:
        """The forbidden command a command line runs, if any."""
        return self._first(commands_of(line)) if self.rules.forbidden_commands else None

    def _first(self, commands: list[list[str]]) -> Violation | None:
        for words in commands:
            program, text = Path(words[0]).name, " ".join(words)
            for pattern in self.rules.forbidden_commands:
                if fnmatch.fnmatchcase(program, pattern) or fnmatch.fnmatchcase(text, pattern):
                    return Violation(FORBIDDEN_COMMANDS, f"{text[:200]!r} matches {pattern!r}")
        return None

    def argv(self, argv: list[str]) -> Violation | None:
        """The forbidden command an argv runs (a `sh -c` script is read as a command line)."""
        return self._first(_command(list(argv), 0))

    def path(self, relative: str) -> Violation | None:
        """Whether a worktree path is forbidden."""
        for pattern in self.rules.forbidden_paths:
            if path_matches(pattern, relative):
                return Violation(FORBIDDEN_PATHS, f"{relative[:200]!r} matches {pattern!r}")
        return None

    @property
    def checks_changes(self) -> bool:
        r = self.rules
        return bool(r.forbidden_paths or r.max_files_changed or r.max_diff_lines)

    async def changes(self, worktree: Path, base: str) -> Violation | None:
        """What the run changed against its branch's base (committed or not) that breaks a rule."""
        if not self.checks_changes:
            return None
        try:
            files, lines = await changed(worktree, base)
        except (WorktreeError, OSError) as exc:
            return Violation(self._first_change_rule(), f"cannot measure the changes: {exc}")
        for name in sorted(files):
            violation = self.path(name)
            if violation is not None:
                return Violation(FORBIDDEN_PATHS, f"the run changed {name[:200]!r}, which {violation.detail}")
        limit = self.rules.max_files_changed
        if limit and len(files) > limit:
            return Violation(MAX_FILES_CHANGED, f"{len(files)} files changed, at most {limit} may be")
        limit = self.rules.max_diff_lines
        if limit and lines > limit:
            return Violation(MAX_DIFF_LINES, f"{lines} lines changed, at most {limit} may be")
        return None

    def _first_change_rule(self) -> str:
        r = self.rules
        return (
            FORBIDDEN_PATHS
            if r.forbidden_paths
            else MAX_FILES_CHANGED
            if r.max_files_changed
            else MAX_DIFF_LINES
        )


async def changed(worktree: Path, base: str) -> tuple[set[str], int]:
    """The files changed in the worktree against `base` (tracked and untracked) and the lines
    added plus deleted. Git runs without external diff drivers or text conversions."""
    numstat = await git(
        "diff", "--numstat", "-z", "--no-renames", "--no-ext-diff", "--no-textconv", base, "--", cwd=worktree
    )
    files: set[str] = set()
    lines = 0
    for record in numstat.split("\0"):
        added, _, rest = record.partition("\t")
        deleted, _, name = rest.partition("\t")
        if not name:
            continue
        files.add(name)
        lines += (int(added) if added.isdigit() else 0) + (int(deleted) if deleted.isdigit() else 0)
    untracked = await git("ls-files", "--others", "--exclude-standard", "-z", cwd=worktree)
    for name in filter(None, untracked.split("\0")):
        files.add(name)
        lines += await asyncio.to_thread(_line_count, worktree / name)
    return files, lines


def _line_count(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_READ)
    except OSError:
        return 0
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
