"""Builds each client the way its users get it, once per test session, and installs it into a
fresh place outside the checkout: the Go modules through a module proxy directory, the npm
tarball into a fresh package, the Maven artifact through a local repository into a fresh Maven
project. Caches that only speed things up (Go's module and build caches, node_modules of the
build, ~/.m2) live in the git-ignored .cache/clients/."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "clients"
PROGRAMS = Path(__file__).resolve().parent / "polyglot"
GO_MODULE = "github.com/godel-ai/godel/clients/go"


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Runs a build step; a failure fails the test with the step's output."""
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"{' '.join(argv)} (in {cwd}) exited {done.returncode}:\n{done.stdout}{done.stderr}"
    )
    return done.stdout


def version() -> str:
    import tomllib

    return str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])


# ---------------------------------------------------------------------------------------- Go


def go_env(proxy: Path) -> dict[str, str]:
    """A Go environment that fetches Godel's modules from `proxy` and every other module from the
    local module cache's download directory (itself a proxy layout) or else proxy.golang.org,
    with no checksum database (Godel's modules are not in it).
    GOMODCACHE is a stable cache of this repository's, so that compiled dependencies are reused;
    Godel's own modules are removed from it first (a rebuilt v0.1.0 must not be served stale).
    The go command's module index (in GOCACHE) trusts that a module version never changes and
    keeps its file list: goindex=0 turns it off, or a v0.1.0 rebuilt with new files compiles
    without them ("undefined: AgentSpawned")."""
    download = Path(
        subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    )
    modcache = CACHE / "gomodcache"
    for stale in (
        modcache / "github.com" / "godel-ai",
        modcache / "cache" / "download" / "github.com" / "godel-ai",
    ):
        if stale.exists():
            subprocess.run(["chmod", "-R", "u+w", str(stale)], check=False)
            shutil.rmtree(stale)
    return {
        **os.environ,
        # Then the usual proxy, for a machine whose module cache lacks a dependency.
        "GOPROXY": f"file://{proxy},file://{download}/cache/download,https://proxy.golang.org",
        "GOSUMDB": "off",
        "GOFLAGS": "-mod=mod -modcacherw -buildvcs=false",
        "GOMODCACHE": str(modcache),
        "GOTOOLCHAIN": "local",
        "GODEBUG": ",".join(filter(None, (os.environ.get("GODEBUG"), "goindex=0"))),
    }


def build_go_proxy(out: Path) -> Path:
    run([sys.executable, "tools/clients/goproxy.py", str(out), "--version", f"v{version()}"], REPO)
    return out


def install_go_program(proxy: Path, workdir: Path, program: str) -> Path:
    """A fresh module at `workdir` holding tests/integration/polyglot/go/<program>.go, with the
    client added by `go get` from the proxy, built; returns the binary."""
    workdir.mkdir(parents=True)
    shutil.copy(PROGRAMS / "go" / f"{program}.go", workdir / "main.go")
    env = go_env(proxy)
    run(["go", "mod", "init", "example.com/godel-user"], workdir, env)
    run(["go", "get", f"{GO_MODULE}@v{version()}"], workdir, env)
    run(["go", "build", "-o", program, "."], workdir, env)
    return workdir / program


# ------------------------------------------------------------------------------- TypeScript

TS_PACKAGE = "@godel-ai/client"
TS = REPO / "clients" / "ts"


def _ts_dev_tools(package: Path) -> str:
    """The exact TypeScript and @types/node versions the package builds with (for the user's
    fresh project)."""
    import json

    dev = json.loads((package / "package.json").read_text())["devDependencies"]
    return f"typescript@{dev['typescript']} @types/node@{dev['@types/node']}"


def build_npm_tarball(out: Path) -> Path:
    """`npm pack` of clients/ts (its prepack script builds dist/ from src/ and gen/ts)."""
    lock, installed = TS / "package-lock.json", TS / "node_modules" / ".package-lock.json"
    if not installed.exists() or lock.stat().st_mtime > installed.stat().st_mtime:
        run(["npm", "ci", "--no-audit", "--no-fund"], TS)
    out.mkdir(parents=True, exist_ok=True)
    run(["npm", "pack", "--silent", "--pack-destination", str(out)], TS)
    (tarball,) = out.glob("*.tgz")
    return tarball


def install_ts_program(tarball: Path, workdir: Path, program: str) -> Path:
    """A fresh npm project at `workdir` with the tarball installed, and
    tests/integration/polyglot/ts/<program>.ts compiled by tsc against its .d.ts; returns the
    JavaScript file."""
    _npm_project(workdir, str(tarball), *_ts_dev_tools(TS).split())
    for name in (f"{program}.ts", "tsconfig.json"):
        shutil.copy(PROGRAMS / "ts" / name, workdir / name)
    run([str(workdir / "node_modules" / ".bin" / "tsc"), "-p", "."], workdir)
    return workdir / f"{program}.js"


def install_ts_worker(tarball: Path, workdir: Path) -> Path:
    """The TypeScript worker as an operator gets it: the tarball installed into a fresh npm
    project; returns its `godel-worker-ts` command."""
    _npm_project(workdir, str(tarball))
    return workdir / "node_modules" / ".bin" / "godel-worker-ts"


def _npm_project(workdir: Path, *packages: str) -> None:
    workdir.mkdir(parents=True)
    (workdir / "package.json").write_text('{"name": "godel-user", "private": true, "type": "module"}\n')
    run(["npm", "install", "--no-audit", "--no-fund", *packages], workdir)


# ------------------------------------------------------------------------------------- Java

JAVA = REPO / "clients" / "java"
MAVEN_ARTIFACT = "ai.godel:godel-client"


def maven_install() -> Path:
    """`mvn install` of clients/java (generates protobuf-java and grpc-java from proto/, runs the
    JUnit tests) into the local repository (~/.m2); returns the installed jar. The install (2 to
    6 minutes here) is skipped when neither its inputs nor the installed jar changed since the
    last one that passed (a stamp in .cache/clients: ~/.m2 is shared with other checkouts)."""
    group, artifact = MAVEN_ARTIFACT.split(":")
    jar = (
        Path.home()
        / ".m2"
        / "repository"
        / group.replace(".", "/")
        / artifact
        / version()
        / f"{artifact}-{version()}.jar"
    )
    stamp = CACHE / "java-install.sha256"
    inputs = _digest(REPO, ["clients/java", "proto", "third_party"])
    if jar.is_file() and stamp.is_file() and stamp.read_text() == f"{inputs} {_file_digest(jar)}":
        return jar
    run(["mvn", "-B", "-q", "install"], JAVA, timeout=1200)
    assert jar.is_file(), jar
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(f"{inputs} {_file_digest(jar)}")
    return jar


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _digest(root: Path, paths: list[str]) -> str:
    """One digest of the files under `paths` that git tracks or would track (names and bytes)."""
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *paths], root)
    digest = hashlib.sha256()
    for name in sorted(set(filter(None, listed.split("\0")))):
        if (root / name).is_file():
            digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return digest.hexdigest()


def install_java_program(workdir: Path) -> list[str]:
    """A fresh Maven project at `workdir` (tests/integration/polyglot/java) that depends on the
    client from the local repository, compiled; returns the command that runs it."""
    shutil.copytree(PROGRAMS / "java", workdir)
    run(
        ["mvn", "-B", "-q", "compile", "dependency:build-classpath", "-Dmdep.outputFile=classpath.txt"],
        workdir,
        timeout=900,
    )
    classpath = f"{workdir / 'target' / 'classes'}:{(workdir / 'classpath.txt').read_text().strip()}"
    return ["java", "-cp", classpath, "FirstAgent"]
