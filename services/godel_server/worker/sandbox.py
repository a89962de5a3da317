"""The sandbox of agent processes. Every process a run starts (the command of the "command" runtime,
each tool call of the "openai" runtime) runs under bubblewrap (`bwrap`) and sees:

- its worktree, read-write, at its real path;
- what git needs of the repository to commit on the agent's branch: the common git directory
  read-only, with `objects/`, the directory of the branch's ref (and its reflog) and the worktree's
  own admin directory writable;
- read-only system directories (`/usr`, `/etc` without its secret files, the `/bin`, `/lib`
  links), a private `/tmp` (also HOME), a fresh `/proc` of its own PID namespace, a minimal `/dev`;
- host paths the worker's GODEL_SANDBOX_PATHS let it ask for (sandbox.read_paths/write_paths).

Nothing else: not GODEL_HOME (keys, databases), not other worktrees, not other processes. It runs in
new user, mount, PID, IPC, UTS, cgroup and (unless the agent is granted egress) network namespaces,
with no capabilities (without `--cap-drop ALL` a root-run sandbox could remount `/usr` read-write)
and no further user namespaces. Its environment is only what the run grants: a fixed PATH, HOME and
LANG, the run's GODEL_* facts (ids, task), the git identity and config.env; bwrap itself gets no
variable of the agent's (LD_PRELOAD in config.env must not reach a process running as root outside
the sandbox).

Limits: per-process rlimits (prlimit) as a backstop (address space 4x the memory limit, CPU seconds,
process count, no core files) and the watchdog of limits.py over the whole tree, which stops the run
and says why. RLIMIT_NPROC is applied inside the sandbox's user namespace, where it counts only the
sandbox's processes; the kernel exempts processes of the host's root from it, so a worker running as
root relies on the watchdog for the process limit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import duration_pb2

from godel.v1 import agent_pb2
from godel_server.runtime.agent_rules import config_problems
from godel_server.runtime.config import WorkerSettings
from godel_server.worker.procs import signal_group, spawn_group

log = logging.getLogger(__name__)

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
SANDBOX_HOME = "/tmp"
MIB = 1024 * 1024
# Address space per process, as a multiple of the memory limit: far enough above resident memory
# for ordinary programs, low enough that one huge allocation fails before it lands.
ADDRESS_SPACE_FACTOR = 4
PROBE_SECONDS = 20.0

_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
# Files and directories of /etc that hold host secrets; inside the sandbox they are empty.
_ETC_SECRETS = (
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/ssh",
    "/etc/ssl/private",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/security/opasswd",
)
_NAMESPACES = ("--unshare-all", "--unshare-user", "--disable-userns", "--cap-drop", "ALL")
# The worker's fcntl lock on worktree changes: an agent must not be able to hold it.
WORKTREE_LOCK = "godel-worktree.lock"


class SandboxError(Exception):
    """This machine cannot sandbox agents (the worker refuses to start); the message says why."""


class SandboxRefused(Exception):
    """A run asks its sandbox for something the worker does not grant; the message names the field."""


@dataclass(frozen=True)
class Limits:
    """Limits of one process tree of a run; 0 = none."""

    memory_mb: int = 0
    processes: int = 0
    cpu_seconds: int = 0

    @property
    def any(self) -> bool:
        return bool(self.memory_mb or self.processes or self.cpu_seconds)


@dataclass(frozen=True)
class Policy:
    """What one run's sandbox grants (AgentConfig.sandbox under the worker's settings)."""

    network: bool = False
    limits: Limits = field(default_factory=Limits)
    read_paths: tuple[Path, ...] = ()
    write_paths: tuple[Path, ...] = ()
    wall_seconds: float = 0.0
    # What the agent asked for that this worker cannot enforce (said in the agent's logs).
    notes: tuple[str, ...] = ()


def _under(limit: int, asked: int) -> int:
    """The agent's limit under the worker's: the smaller of the two that are set (0 = unset)."""
    if asked > 0 and limit > 0:
        return min(asked, limit)
    return asked or limit


def _seconds(duration: duration_pb2.Duration) -> float:
    return duration.ToTimedelta().total_seconds()


def policy_for(config: agent_pb2.AgentConfig, settings: WorkerSettings) -> Policy:
    """The sandbox policy of a run; SandboxRefused when the config breaks a rule of agent_rules (the
    agent service refuses those, but a run may come from anywhere) or asks for what the worker denies."""
    for name, problem in config_problems(config):
        raise SandboxRefused(f"config.{name}: {problem}")
    sandbox = config.sandbox
    limits = sandbox.limits
    walls = [_seconds(config.timeout)] if config.HasField("timeout") else []
    if limits.HasField("max_duration"):
        walls.append(_seconds(limits.max_duration))
    notes = []
    if limits.max_cpu_cores > 0:
        notes.append(
            f"sandbox: max_cpu_cores={limits.max_cpu_cores:g} is not enforced on this worker "
            "(no cgroups v2); max_cpu_seconds bounds CPU time"
        )
    return Policy(
        network=sandbox.network,
        limits=Limits(
            memory_mb=_under(settings.max_memory_mb, limits.max_memory_mb),
            processes=_under(settings.max_processes, limits.max_processes),
            cpu_seconds=_under(settings.max_cpu_seconds, limits.max_cpu_seconds),
        ),
        read_paths=_granted("config.sandbox.read_paths", sandbox.read_paths, settings),
        write_paths=_granted("config.sandbox.write_paths", sandbox.write_paths, settings),
        wall_seconds=min((w for w in walls if w > 0), default=0.0),
        notes=tuple(notes),
    )


def _granted(name: str, raw_paths: Iterable[str], settings: WorkerSettings) -> tuple[Path, ...]:
    allowed = [p.resolve() for p in settings.sandbox_paths]
    secret = [settings.home.resolve(), settings.worktree_root.resolve()]
    granted: list[Path] = []
    for raw in raw_paths:
        path = Path(raw).resolve()
        if not any(path.is_relative_to(root) for root in allowed):
            raise SandboxRefused(f"{name}: {raw} is not under the worker's GODEL_SANDBOX_PATHS")
        if any(path.is_relative_to(s) or s.is_relative_to(path) for s in secret):
            raise SandboxRefused(f"{name}: {raw} would show the worker's data or other agents' worktrees")
        granted.append(path)
    return tuple(granted)


@dataclass(frozen=True)
class GitDirs:
    """What git needs of the repository to commit in one worktree."""

    common: Path  # the repository's git directory (objects, refs, config)
    admin: Path  # <common>/worktrees/<name>: the worktree's HEAD, index, logs
    branch: str  # the agent's branch, e.g. godel/<agent id>

    def writable(self) -> list[Path]:
        """objects/, the directory holding the branch's ref (git writes `<ref>.lock` beside it) and
        its reflog directory, and the admin directory; created if missing (packed refs leave none)."""
        ref_dir = Path("refs/heads", self.branch).parent
        dirs = [self.common / "objects", self.common / ref_dir, self.common / "logs" / ref_dir, self.admin]
        for path in dirs:
            path.mkdir(parents=True, exist_ok=True)
        return dirs

    def alternates(self) -> list[Path]:
        """Object directories this repository borrows from (objects/info/alternates), read-only."""
        try:
            lines = (self.common / "objects" / "info" / "alternates").read_text().splitlines()
        except OSError:
            return []
        paths = [Path(line.strip()) for line in lines if line.strip() and not line.startswith("#")]
        return [p if p.is_absolute() else (self.common / "objects" / p).resolve() for p in paths]


def system_mounts() -> list[str]:
    """bwrap arguments for the read-only system directories, with /etc's secret files hidden."""
    args: list[str] = []
    for name in _SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            args += ["--ro-bind", name, name]
    for name in _ETC_SECRETS:
        path = Path(name)
        if path.is_symlink() or not path.exists():
            continue
        if path.is_dir():
            args += ["--tmpfs", name, "--remount-ro", name]
        else:
            args += ["--ro-bind", "/dev/null", name]
    resolv = Path("/etc/resolv.conf")
    if resolv.is_symlink() and resolv.resolve().is_file():
        target = str(resolv.resolve())
        args += ["--ro-bind", target, target]
    return args


@dataclass(frozen=True)
class Sandbox:
    """How the processes of one run are started: `command()` wraps an argv and its environment."""

    run_id: str
    policy: Policy
    bwrap: str | None  # None: GODEL_SANDBOX=off (the argv runs as it is, with the worker's rights)
    mounts: tuple[str, ...] = ()
    prlimit: str | None = None

    @property
    def overhead(self) -> int:
        """Processes of the sandbox itself in a run's process tree (bwrap and its PID-1 reaper)."""
        return 2 if self.bwrap else 0

    def base_env(self) -> dict[str, str]:
        """PATH, HOME and LANG of the agent (with the sandbox off: the worker's PATH and HOME)."""
        if self.bwrap:
            return {"PATH": SANDBOX_PATH, "HOME": SANDBOX_HOME, "LANG": "C.UTF-8"}
        host = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
        return {"PATH": SANDBOX_PATH, "HOME": SANDBOX_HOME, **host, "LANG": "C.UTF-8"}

    def _rlimits(self, inside_userns: bool) -> list[str]:
        if self.prlimit is None:
            return []
        limits = self.policy.limits
        args = [self.prlimit, "--core=0"]
        if limits.memory_mb:
            size = limits.memory_mb * MIB * ADDRESS_SPACE_FACTOR
            args.append(f"--as={size}:{size}")
        if limits.cpu_seconds:
            # A second above the limit: the watchdog, which says why, stops the run first.
            args.append(f"--cpu={limits.cpu_seconds + 1}:{limits.cpu_seconds + 2}")
        if limits.processes and inside_userns:
            # + 1: bwrap's reaper is PID 1 of the sandbox and counts too.
            args.append(f"--nproc={limits.processes + 1}:{limits.processes + 1}")
        return [*args, "--"]

    def command(self, argv: list[str], env: dict[str, str], cwd: Path) -> tuple[list[str], dict[str, str]]:
        """The argv to execute and the environment of that process."""
        if self.bwrap is None:
            return [*self._rlimits(inside_userns=False), *argv], env
        wrapped = [self.bwrap, *_NAMESPACES, "--die-with-parent"]
        if self.policy.network:
            wrapped.append("--share-net")
        wrapped += self.mounts
        wrapped += ["--chdir", str(cwd), "--clearenv"]
        for key, value in env.items():
            wrapped += ["--setenv", key, value]
        wrapped += ["--", *self._rlimits(inside_userns=True), *argv]
        # bwrap runs outside the sandbox: none of the agent's variables; GODEL_RUN_ID lets a later
        # worker recognize (and kill) the tree if this one dies.
        return wrapped, {"PATH": SANDBOX_PATH, "GODEL_RUN_ID": self.run_id}

    def exit_code(self, returncode: int) -> int:
        """The command's exit code (-N: killed by signal N); bwrap reports a signal N as 128 + N."""
        if self.bwrap and 128 < returncode < 160:
            return 128 - returncode
        return returncode


class Sandboxes:
    """The worker's sandbox maker: probes bubblewrap once at start, then builds each run's Sandbox."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.bwrap: str | None = None
        self.prlimit = shutil.which("prlimit")
        self._system = system_mounts()

    @property
    def enabled(self) -> bool:
        return self.settings.sandbox != "off"

    async def check(self) -> None:
        """Makes sure agents can be sandboxed here; SandboxError otherwise (unless GODEL_SANDBOX=off)."""
        if not self.enabled:
            log.warning(
                "UNSAFE: GODEL_SANDBOX=off: agents run WITHOUT a sandbox, with this worker's rights: "
                "they can read its keys, databases, environment and every other agent's worktree"
            )
            return
        path = shutil.which(self.settings.bwrap)
        if path is None:
            raise SandboxError(
                f"bubblewrap ({self.settings.bwrap!r}) is not installed: install it (Debian: apt-get "
                "install bubblewrap) or set GODEL_SANDBOX=off to run agents unsandboxed (unsafe)"
            )
        await self._probe(path)
        self.bwrap = path
        if self.prlimit is None:
            log.warning("prlimit not found: sandboxed runs get no rlimits, only the limits watchdog")
        log.info("agents run in a bubblewrap sandbox", extra={"bwrap": path})

    async def _probe(self, bwrap: str) -> None:
        """Runs `sh` in a sandbox like a run's and checks that GODEL_HOME is out of its sight."""
        probe = Sandbox("probe", Policy(), bwrap, (*self._system, "--proc", "/proc", "--dev", "/dev"))
        script = 'test ! -e "$1" || { echo "$1 is visible in the sandbox"; exit 1; }'
        argv, env = probe.command(
            ["sh", "-c", script, "sh", str(self.settings.home)], {"PATH": SANDBOX_PATH}, Path("/")
        )
        proc: asyncio.subprocess.Process | None = None
        try:
            proc = await spawn_group(
                argv, Path("/"), env, root=self.settings.worktree_root, merge_stderr=True
            )
            out, _ = await asyncio.wait_for(proc.communicate(), PROBE_SECONDS)
        except (OSError, TimeoutError) as exc:
            raise SandboxError(f"bubblewrap ({bwrap}) does not work here: {exc!r}") from exc
        finally:
            if proc is not None:
                signal_group(proc.pid, signal.SIGKILL)
        if proc.returncode != 0:
            detail = out.decode(errors="replace").strip()[:500] or f"exit code {proc.returncode}"
            raise SandboxError(f"bubblewrap ({bwrap}) does not work here: {detail}")

    def for_run(self, run_id: str, config: agent_pb2.AgentConfig, worktree: Path, git: GitDirs) -> Sandbox:
        """The sandbox of one run (blocking: it creates git's writable directories)."""
        policy = policy_for(config, self.settings)
        if not self.enabled:
            return Sandbox(run_id, policy, None, prlimit=self.prlimit)
        if self.bwrap is None:
            raise SandboxError("the sandbox was not probed (Worker.start() does that)")
        mounts = [*self._system, "--proc", "/proc", "--dev", "/dev"]
        if policy.limits.memory_mb:
            mounts += ["--size", str(policy.limits.memory_mb * MIB)]
        mounts += ["--tmpfs", "/tmp"]
        mounts += ["--ro-bind", str(git.common), str(git.common)]
        for path in git.writable():
            mounts += ["--bind", str(path), str(path)]
        for path in git.alternates():
            mounts += ["--ro-bind-try", str(path), str(path)]
        if (git.common / WORKTREE_LOCK).is_file():
            mounts += ["--ro-bind", "/dev/null", str(git.common / WORKTREE_LOCK)]
        for path in policy.read_paths:
            mounts += ["--ro-bind", str(path), str(path)]
        for path in policy.write_paths:
            mounts += ["--bind", str(path), str(path)]
        mounts += ["--bind", str(worktree), str(worktree)]
        return Sandbox(run_id, policy, self.bwrap, tuple(mounts), self.prlimit)
