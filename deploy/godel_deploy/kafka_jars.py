"""Fetch the Apache Kafka broker classpath from Maven Central (cached)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .paths import ASSETS, cache_dir

__all__ = ["default_libs_dir", "ensure_jars", "pom_path"]

_STAMP = ".pom.sha256"
_BROKER_JAR_GLOB = "kafka_2.13-*.jar"


def pom_path() -> Path:
    """``deploy/kafka/pom.xml`` (shipped in the package) — pins the Kafka version."""
    return ASSETS / "kafka-pom.xml"


def default_libs_dir() -> Path:
    """``$GODEL_KAFKA_LIBS`` or ``<cache>/kafka/libs`` (see paths.cache_dir)."""
    env = os.environ.get("GODEL_KAFKA_LIBS")
    return Path(env) if env else cache_dir() / "kafka" / "libs"


def _pom_digest(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def _is_current(libs: Path, digest: str, *, explicit: bool) -> bool:
    if not any(libs.glob(_BROKER_JAR_GLOB)):
        return False
    stamp = libs / _STAMP
    if stamp.is_file():
        return stamp.read_text().strip() == digest
    # A libs dir we did not fill ourselves (e.g. a Kafka distribution's libs/
    # given via GODEL_KAFKA_LIBS) is trusted as-is.
    return explicit


def ensure_jars(libs_dir: Path | None = None) -> Path:
    """Return a directory holding the Kafka broker jars, downloading on first use.

    Re-downloads when ``deploy/kafka/pom.xml`` changed since the last fetch.
    Safe to call concurrently from several processes (file lock).
    """
    explicit = libs_dir is not None or "GODEL_KAFKA_LIBS" in os.environ
    libs = (libs_dir or default_libs_dir()).resolve()
    pom = pom_path()
    digest = _pom_digest(pom)
    if _is_current(libs, digest, explicit=explicit):
        return libs

    libs.parent.mkdir(parents=True, exist_ok=True)
    with (libs.parent / f".{libs.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_current(libs, digest, explicit=explicit):  # another process did it
            return libs
        _download(pom, libs, digest)
    return libs


def _download(pom: Path, libs: Path, digest: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven ('mvn') is required to fetch Kafka: apt-get install -y maven")
    print("fetching Kafka jars from Maven Central (first run only)...", file=sys.stderr, flush=True)
    staging = libs.parent / f".{libs.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    result = subprocess.run(
        [
            mvn,
            "-B",
            "-q",
            "-Dstyle.color=never",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not any(staging.glob(_BROKER_JAR_GLOB)):
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(
            f"mvn dependency:copy-dependencies failed (exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )
    (staging / _STAMP).write_text(digest + "\n")
    shutil.rmtree(libs, ignore_errors=True)
    for archive in libs.parent.glob(f"{libs.name}-cds-*.jsa"):  # see kafka._cds_archive
        archive.unlink(missing_ok=True)
    os.replace(staging, libs)
    print(f"Kafka jars cached in {libs}", file=sys.stderr, flush=True)
