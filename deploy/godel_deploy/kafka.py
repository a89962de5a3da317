"""Apache Kafka (KRaft, broker+controller) for local runs and tests: a single node on 127.0.0.1, or
one node of a quorum of several, each on its own address (the multi-host test's network
namespaces)."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import fcntl
import hashlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from godel_server.runtime.kafka import KAFKA_MAX_MESSAGE_BYTES

from .kafka_jars import default_libs_dir, ensure_jars, pom_path
from .ports import LOOPBACK, free_port, port_open
from .process import ManagedProcess
from .server import ServerProcess

__all__ = ["KafkaBroker", "default_libs_dir", "ensure_jars", "pom_path"]

# Flags measured to shorten JVM start-up for a throw-away single node broker.
JVM_FLAGS: tuple[str, ...] = (
    "-Xms256m",
    "-Xmx768m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)

LOG4J2_PROPERTIES = """\
status = warn
shutdownHook = disable
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
# the full config dumps ("... values:") are hundreds of lines each
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def _cds_archive(java: str, libs: Path, jvm_flags: tuple[str, ...]) -> Path | None:
    """Where the AppCDS archive for this JDK + classpath + flags lives.

    A class-data-sharing archive halves JVM start-up (~3.2s -> ~1.5s to a
    ready broker).  It is created by the first broker that stops cleanly and
    is keyed on the JDK binary so a JDK upgrade makes a new one.  The JVM
    itself validates the archive against the jars and silently ignores a
    stale one.  Disabled with ``GODEL_KAFKA_CDS=0`` or if the cache dir is
    not writable.
    """
    if os.environ.get("GODEL_KAFKA_CDS", "1") == "0":
        return None
    if not os.access(libs.parent, os.W_OK):
        return None
    real = Path(java).resolve()
    key = hashlib.sha256(f"{real}|{real.stat().st_mtime_ns}|{' '.join(jvm_flags)}".encode()).hexdigest()[:12]
    return libs.parent / f"{libs.name}-cds-{key}.jsa"


def random_cluster_id() -> str:
    """A Kafka cluster id: base64url(uuid4) without padding, as Uuid.randomUuid()."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka rejects ids that look like options
            return text


class KafkaBroker(ServerProcess):
    """Kafka in KRaft combined mode (node 1 = broker + controller) on 127.0.0.1.

    A node of a cluster instead: ``node_id``, its own ``host`` address (and
    ``netns``, the network namespace it runs in), and ``voters``, every node's
    controller address by node id (a static quorum; formatted with one
    ``cluster_id`` shared by all).

    ``data_dir`` holds the config, the broker's console log (``kafka.log``) and
    the partition data (``kraft-logs/``).  Storage is formatted only when
    ``meta.properties`` is absent, so a new broker on an old ``data_dir`` keeps
    its topics and messages.  Free ports are picked when none are given and
    kept across :meth:`restart`.
    """

    kind = "Kafka broker"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        controller_port: int | None = None,
        *,
        libs_dir: Path | None = None,
        extra_config: Mapping[str, str] | None = None,
        jvm_flags: tuple[str, ...] = JVM_FLAGS,
        host: str = LOOPBACK,
        node_id: int = 1,
        voters: Mapping[int, str] | None = None,
        cluster_id: str | None = None,
        netns: str | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.host = host
        self.node_id = node_id
        self.voters = dict(voters or {})
        self.cluster_id = cluster_id or random_cluster_id()
        self.netns = netns
        self.port = port if port is not None else free_port()
        self.controller_port = controller_port if controller_port is not None else free_port()
        self.libs_dir = libs_dir
        self.extra_config = dict(extra_config or {})
        self.jvm_flags = jvm_flags
        self.log_dirs = self.data_dir / "kraft-logs"
        self.config_path = self.data_dir / "server.properties"
        self.log4j_path = self.data_dir / "log4j2.properties"
        self.log_path = self.data_dir / "kafka.log"
        self._process: ManagedProcess | None = None
        self._cds_dump: tuple[Path, Path] | None = None  # (being written, final)
        self._lock: IO[bytes] | None = None

    # -- addresses -----------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``bootstrap_servers`` for clients: ``127.0.0.1:<port>`` (this node's address)."""
        return f"{self.host}:{self.port}"

    # -- configuration -------------------------------------------------------

    def server_properties(self) -> dict[str, str]:
        quorum = (
            {"controller.quorum.voters": ",".join(f"{n}@{a}" for n, a in sorted(self.voters.items()))}
            if self.voters
            else {"controller.quorum.bootstrap.servers": f"{self.host}:{self.controller_port}"}
        )
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "listeners": (
                f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            **quorum,
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.log_dirs),
            "num.partitions": "3",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "5",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "5",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            # After kill -9 the restarted broker can only re-register once the
            # controller expired the old session (default 9s).
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "3000",
            "num.network.threads": "2",
            "num.io.threads": "4",
            # The record limit Godel's producers and topics use (godel_server.runtime.kafka).
            "message.max.bytes": str(KAFKA_MAX_MESSAGE_BYTES),
        }
        props.update(self.extra_config)
        return props

    def write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        body = "".join(f"{k}={v}\n" for k, v in self.server_properties().items())
        self.config_path.write_text("# generated by godel_deploy.kafka\n" + body)
        self.log4j_path.write_text(LOG4J2_PROPERTIES)

    def formatted(self) -> bool:
        return (self.log_dirs / "meta.properties").is_file()

    # -- lifecycle -----------------------------------------------------------

    def _java(self, libs: Path, main_class: str, *args: str, dump_cds: bool = False) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise RuntimeError("Java 17+ is required for Kafka: apt-get install -y openjdk-17-jre-headless")
        cds: list[str] = []
        archive = _cds_archive(java, libs, self.jvm_flags)
        if archive is not None and archive.is_file():
            cds = [f"-XX:SharedArchiveFile={archive}", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"]
        elif archive is not None and dump_cds:
            pending = archive.with_name(f"{archive.name}.{os.getpid()}.{self.host}.{self.port}.tmp")
            self._cds_dump = (pending, archive)
            cds = [f"-XX:ArchiveClassesAtExit={pending}"]
        return [
            java,
            *self.jvm_flags,
            *cds,
            f"-Dlog4j2.configurationFile={self.log4j_path}",
            f"-Dkafka.logs.dir={self.data_dir / 'app-logs'}",
            "-cp",
            f"{libs}/*",
            main_class,
            *args,
        ]

    def _format(self, libs: Path) -> None:
        argv = self._java(
            libs,
            "kafka.tools.StorageTool",
            "format",
            # A static quorum (voters) needs no initial controllers; a single node is its own.
            *([] if self.voters else ["--standalone"]),
            "-t",
            self.cluster_id,
            "-c",
            str(self.config_path),
        )
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"kafka StorageTool format failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
            )

    def start(self) -> KafkaBroker:
        """Fetch jars if needed, write config, format storage once, launch."""
        if self.alive():
            return self
        libs = ensure_jars(self.libs_dir or default_libs_dir())
        for p in (self.port, self.controller_port):
            if self.netns is None and port_open(p, self.host):
                raise RuntimeError(f"port {self.host}:{p} is already in use")
        self._acquire_data_dir()
        try:
            self.write_config()
            if not self.formatted():
                self._format(libs)
            self._process = ManagedProcess(
                self._java(libs, "kafka.Kafka", str(self.config_path), dump_cds=True),
                self.log_path,
                cwd=self.data_dir,
                name=f"kafka:{self.host}:{self.port}",
                pass_fds=[self._lock.fileno()] if self._lock else [],
                netns=self.netns,
            ).start()
        except BaseException:
            self._release_data_dir()
            raise
        return self

    def _acquire_data_dir(self) -> None:
        """Exclusive lock on ``data_dir`` (Kafka's own log-dir lock comes too
        late: a second broker on the same dir corrupts the metadata log first).

        The JVM inherits the locked descriptor, so the lock lives as long as
        the broker does, even if this Python process dies.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lock = (self.data_dir / "godel.lock").open("wb")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise RuntimeError(f"{self.data_dir} is in use by another Kafka broker") from None
        self._lock = lock

    def _release_data_dir(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def wait_ready(self, timeout: float = 90.0) -> float:
        """Block until the broker serves metadata; returns seconds waited.

        Fails fast (with the log tail) if the JVM exits.  Works whether or not
        the caller is inside a running event loop (probes run in a thread);
        from async code use ``await asyncio.to_thread(broker.wait_ready)``.
        """
        return self._require_process().wait_for(
            self._probe, timeout, f"Kafka at {self.bootstrap} to serve metadata", interval=0.2
        )

    def _probe(self) -> bool:
        if not port_open(self.port, self.host):
            return False
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, _metadata_has_broker(self.bootstrap)).result()

    def brokers(self) -> int:
        """How many brokers the cluster's metadata lists, as this node serves it."""
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, _metadata_brokers(self.bootstrap)).result()

    def stop(self, timeout: float = 30.0) -> None:
        """Controlled shutdown (SIGTERM), SIGKILL after ``timeout``."""
        if self._process is not None:
            self._process.stop(timeout)
        self._release_data_dir()
        self._finish_cds_dump(keep=True)

    def kill9(self) -> None:
        """SIGKILL the broker (crash simulation); data on disk survives."""
        if self._process is not None:
            self._process.kill9()
        self._release_data_dir()
        self._finish_cds_dump(keep=False)

    def _finish_cds_dump(self, *, keep: bool) -> None:
        if self._cds_dump is None:
            return
        pending, final = self._cds_dump
        self._cds_dump = None
        if keep and pending.is_file() and pending.stat().st_size > 0:
            os.replace(pending, final)
            for leftover in final.parent.glob(f"{final.name}.*.tmp"):  # from killed runs
                leftover.unlink(missing_ok=True)
        else:
            pending.unlink(missing_ok=True)

    def __repr__(self) -> str:
        state = "running" if self.alive() else "stopped"
        return f"<KafkaBroker {self.bootstrap} {state} data={self.data_dir}>"


async def _metadata_has_broker(bootstrap: str) -> bool:
    return await _metadata_brokers(bootstrap) > 0


async def _metadata_brokers(bootstrap: str) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        return len(cluster.get("brokers") or ())
    finally:
        await admin.close()
