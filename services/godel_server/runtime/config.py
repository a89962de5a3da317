"""The one configuration loader: every setting comes from a GODEL_* environment variable.

| variable                    | default                                   | meaning                                   |
|-----------------------------|-------------------------------------------|-------------------------------------------|
| GODEL_HOME                  | ~/.godel                                  | data dir (SQLite files, keys)             |
| GODEL_BIND_HOST             | 127.0.0.1                                 | interface the gRPC and admin ports bind   |
| GODEL_<ROLE>_PORT           | agent 50051, team 50052, event 50053, cluster 50054 | gRPC port of a service (runtime/topology.py) |
| GODEL_<ROLE>_ADMIN_PORT     | agent 9101, team 9102, event 9103, cluster 9104     | HTTP admin port: /metrics, /healthz (live), /readyz (gRPC health SERVING) |
| GODEL_<ROLE>_ADDR           | 127.0.0.1:<its port>                      | where other services reach a service      |
| GODEL_<ROLE>_ADMIN_ADDR     | 127.0.0.1:<its admin port>                | where /metrics of a service is scraped    |
| GODEL_DATABASE_URL          | (unset: SQLite file per service)          | PostgreSQL server URL; each service uses its own database on it |
| GODEL_DATABASE_PASSWORD_FILE | (unset)                                  | file holding the password of GODEL_DATABASE_URL's user (a mounted secret) |
| GODEL_DATABASE_NAME_PREFIX  | godel                                     | databases are named `<prefix>_<role>`     |
| GODEL_<ROLE>_DATABASE_URL   | (derived)                                 | full URL of one service's database        |
| GODEL_KAFKA_BOOTSTRAP       | 127.0.0.1:9092                            | Kafka bootstrap servers                   |
| GODEL_KAFKA_PARTITIONS      | 3                                         | partitions of topics Godel creates        |
| GODEL_KAFKA_TOPIC_PREFIX    | (empty)                                   | prefix of this installation's topics and consumer groups on the broker (installations sharing a broker need different ones) |
| GODEL_KAFKA_REPLICATION_FACTOR | 1                                      | replicas of each topic Godel creates (3 on a production cluster) |
| GODEL_KAFKA_MIN_INSYNC_REPLICAS | (broker default)                      | `min.insync.replicas` of the topics Godel creates (2 with RF 3) |
| GODEL_KAFKA_SECURITY_PROTOCOL | PLAINTEXT                               | PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL |
| GODEL_KAFKA_SSL_CA_FILE     | (system CAs)                              | PEM CA bundle that signed the brokers' certificates |
| GODEL_KAFKA_SSL_CERT_FILE / GODEL_KAFKA_SSL_KEY_FILE | (unset)          | client certificate and key (PEM) when the brokers require one |
| GODEL_KAFKA_SASL_MECHANISM  | PLAIN                                     | PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512     |
| GODEL_KAFKA_SASL_USERNAME   | (unset)                                   | SASL user                                 |
| GODEL_KAFKA_SASL_PASSWORD / GODEL_KAFKA_SASL_PASSWORD_FILE | (unset)    | SASL password, or a file holding it (secret) |
| GODEL_TLS_CERT_FILE / GODEL_TLS_KEY_FILE | (unset: plaintext gRPC)      | this service's certificate and key (PEM): its gRPC port serves TLS |
| GODEL_TLS_CA_FILE           | (unset)                                   | CA bundle (PEM) of the mesh: with a certificate, the gRPC port requires client certificates signed by it (mTLS); calls to other services verify them with it and present the certificate |
| GODEL_MIGRATE_ON_START      | true                                      | run the database migrations at start (under a lock); false: refuse to start unless the database is at this release's revision (a migration Job ran) |
| GODEL_OUTBOX_POLL_SECONDS   | 0.5                                       | outbox relay fallback poll interval       |
| GODEL_DEFAULT_MODEL         | kimi-k2.5                                 | model of agents created without one       |
| GODEL_DEFAULT_REPO          | (unset)                                   | git repository agents work in by default  |
| GODEL_AUTH_CACHE_SECONDS    | 2                                         | how long a verified key or token is trusted (bounds how late a revocation bites) |
| GODEL_AUTH_RECHECK_SECONDS  | 1                                         | how often open streams re-verify the credential that opened them |
| GODEL_JWT_SECRET            | (unset)                                   | HS256 key of access tokens (cluster service only; secret) |
| GODEL_JWT_SECRET_FILE       | $GODEL_HOME/jwt.secret                    | file holding it; created (mode 600) when missing and no GODEL_JWT_SECRET is set |
| GODEL_ACCESS_TOKEN_SECONDS  | 900                                       | lifetime of an access token (JWT)         |
| GODEL_REFRESH_TOKEN_SECONDS | 604800                                    | lifetime of a login session's refresh token (7 days) |
| GODEL_LOGIN_ATTEMPTS_PER_MINUTE | 10                                    | failed-or-not logins per username and minute (then RESOURCE_EXHAUSTED) |
| GODEL_RATE_LIMIT_PER_KEY    | 200                                       | requests per second per API key or login session, per service process (0 = off) |
| GODEL_RATE_LIMIT_PER_USER   | 400                                       | requests per second per user over all their keys and sessions, per process (0 = off) |
| GODEL_MAX_STREAMS_PER_USER  | 200                                       | open server streams per user and process (0 = off; workers are exempt) |
| GODEL_MAX_SUBSCRIPTIONS_PER_USER | 200                                  | live event subscriptions per user (gRPC, SSE and WebSocket; 0 = off) |
| GODEL_MAX_RUNNING_AGENTS_PER_USER | 500                                 | agents per user that have not ended (0 = off) |
| GODEL_WS_ALLOWED_ORIGINS    | (unset: the WebSocket's own host)         | comma-separated origins whose browsers may use the `godel_token` cookie on /events |
| GODEL_LOG_LEVEL             | INFO                                      | log level                                 |
| GODEL_INSTANCE_ID           | <role>-<hostname>-<pid>                   | identity in events and logs               |
| GODEL_OPENAPI_PATH          | the copy inside the package               | document served at /api/v1/openapi.json   |
| GODEL_AGENT_LEASE_SECONDS   | 5                                         | an agent replica silent this long is dead; its agents move |
| GODEL_TEAM_LEASE_SECONDS    | 5                                         | a team-service replica silent this long is dead; its teams and workflows move |
| GODEL_AGENT_PROGRESS_TIMEOUT | 0 (off)                                  | a running run without output this long is stuck |
| GODEL_WORKER_LOST_GRACE     | 15                                        | a run whose worker this replica has not heard from for this long is lost and runs again; the worker itself stops such a run after 2/3 of it (its lease), so a run never executes twice at once |
| GODEL_AGENT_MAX_RESCHEDULES | 10                                        | runs of one agent lost to infrastructure that are run again before the agent fails |
| GODEL_RETRY_BACKOFF_SECONDS | 1                                         | first retry delay; doubles per retry, at most 60 s |
| GODEL_MODEL_PRICES          | built-in table                            | JSON {"model": [usd per 1M prompt tokens, per 1M completion tokens]} |
| GODEL_API_KEY / GODEL_API_KEY_FILE | (unset)                            | API key the team service, the cluster service (its autonomic loop), the agent service (federation) and a worker present to other services; the file is read when first needed |
| GODEL_TEAM_RUNTIME          | command                                   | runtime of team members and workflow steps that name none |
| GODEL_TEAM_COMMAND          | a repository summary (see config.py)      | JSON argv template of command-runtime members that give none |
| GODEL_OPENAI_BASE_URL       | (unset)                                   | endpoint of the optional LLM intent parser (and the workers' openai runtime) |
| GODEL_OPENAI_API_KEY        | (unset)                                   | bearer key of that endpoint (secret)      |
| GODEL_EVENT_WS_PORT         | 9113                                      | event service WebSocket port (`/events`, spec §3.2); 0 = off |
| GODEL_EVENT_FANOUT_POLL_SECONDS | 0.2                                   | how soon live subscribers of an event-service replica see the events another replica stored |
| GODEL_EVENT_RETENTION_DAYS  | 0                                         | events stored longer ago are removed (0 = keep forever) |
| GODEL_AGENT_LOG_MAX_LINES   | 100000                                    | log lines kept per agent; then a marker line, and later lines are dropped |
| GODEL_AUTONOMIC_INTERVAL_SECONDS | 15                                   | cluster service: how often the autonomic loop collects the metrics, evaluates the alert rules and the policies |
| GODEL_AUTONOMIC_DRY_RUN     | false                                     | cluster service: the policies only recommend (GetRecommendations); the loop takes no action |

Tracing (runtime/tracing.py; README "Tracing"), by the standard OpenTelemetry variables, for the
services and the workers alike. Off unless an endpoint is set; the SDK reads the other OTEL_*
variables itself (OTEL_TRACES_SAMPLER, OTEL_BSP_SCHEDULE_DELAY, OTEL_RESOURCE_ATTRIBUTES, ...):

| variable                    | default                                   | meaning                                   |
|-----------------------------|-------------------------------------------|-------------------------------------------|
| OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT | (unset: no tracing) | OTLP/gRPC collector, e.g. http://127.0.0.1:4317 (https:// for TLS) |
| OTEL_EXPORTER_OTLP_TRACES_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL | grpc  | only `grpc` is supported                   |
| OTEL_SERVICE_NAME           | godel-<role> (godel-worker)               | service.name of the spans                 |
| OTEL_SDK_DISABLED / OTEL_TRACES_EXPORTER | false / otlp                 | `true` / `none` turn tracing off          |

Federation (spec §4.2; README "Federation"). A cluster is one installation; it is a member of a
federation when it has a name:

| variable                    | default                                   | meaning                                   |
|-----------------------------|-------------------------------------------|-------------------------------------------|
| GODEL_CLUSTER_NAME          | (unset: not federated)                    | this cluster's name in the registries     |
| GODEL_CLUSTER_REGION        | (empty)                                   | its region, e.g. eu-west-1                |
| GODEL_CLUSTER_ENDPOINT      | 127.0.0.1:7373                            | host:port of its gateway, as peers reach it |
| GODEL_CLUSTER_FEATURES      | (empty)                                   | comma-separated features it offers        |
| GODEL_CLUSTER_MODELS        | (empty: any model)                        | comma-separated models its agents may use |
| GODEL_FEDERATION_PEERS      | (none)                                    | JSON list of peers: [{"name", "endpoint" (host:port of its gateway), "credentialFile" (a file holding the API key of role `peer` that peer issued to this cluster)}] |
| GODEL_CLUSTER_HEARTBEAT_SECONDS | 10                                    | how often a member heartbeats to its registries |
| GODEL_CLUSTER_DEGRADED_AFTER | 30                                       | a cluster silent this long is degraded    |
| GODEL_CLUSTER_OFFLINE_AFTER | 60                                        | a cluster silent this long is offline (its pending federated agents move) |
| GODEL_CLUSTER_PROBE_SECONDS | 5                                         | how often the registry probes each cluster's gateway |
| GODEL_CLUSTER_MAX_LATENCY_MS | 1000                                     | probe latency that scores 0 in the health formula |
| GODEL_CLUSTER_ROUTING       | health-score                              | default RouteRequest strategy: round-robin, least-connections, weighted-response-time, health-score, geographic |
| GODEL_CLUSTER_AFFINITY_SECONDS | 3600                                   | how long a session stays bound to its cluster after its last use |

Worker process (`godel-server worker`, see `load_worker_settings`):

| variable                    | default                                   | meaning                                   |
|-----------------------------|-------------------------------------------|-------------------------------------------|
| GODEL_WORKER_CONNECT        | GODEL_AGENT_ADDR or 127.0.0.1:<GODEL_AGENT_PORT> | comma-separated agent-service replica addresses |
| GODEL_WORKER_ID             | kept in the state dir (worker-<hostname>-<8 hex> at first start) | worker identity; a restarted worker keeps it |
| GODEL_WORKER_STATE_DIR      | the first of $GODEL_HOME/workers/0, /1, ... no live worker holds | the worker's identity and the journal of its unacknowledged run updates |
| GODEL_WORKER_CAPACITY       | 16                                        | runs a worker executes at once (at most 10,000: half of what a heartbeat may list) |
| GODEL_WORKER_LABELS         | (none)                                    | `key=value,...` the worker advertises; agents pick workers by them (`config.workerSelector`); `language=python` is always added |
| GODEL_WORKTREE_ROOT         | $GODEL_HOME-worktrees (a sibling of GODEL_HOME, so no key or database lies above a worktree) | where agents' git worktrees are created |
| GODEL_OPENAI_BASE_URL       | https://api.openai.com                    | default endpoint of the `openai` runtime  |
| GODEL_OPENAI_API_KEY        | (unset)                                   | bearer key of that endpoint (secret)      |
| GODEL_OPENAI_KEY_ORIGINS    | the origin of GODEL_OPENAI_BASE_URL       | comma-separated origins (scheme://host[:port]) GODEL_OPENAI_API_KEY may be sent to |
| GODEL_OPENCLAW_URL          | ws://127.0.0.1:18789                      | default OpenClaw Gateway (WebSocket URL) of the `openclaw` runtime |
| GODEL_OPENCLAW_TOKEN        | (unset)                                   | shared token of that Gateway (secret)     |
| GODEL_OPENCLAW_TOKEN_ORIGINS | the origin of GODEL_OPENCLAW_URL         | comma-separated origins (ws[s]://host[:port]) GODEL_OPENCLAW_TOKEN may be sent to |
| GODEL_SANDBOX               | bwrap                                     | `bwrap`: every agent process runs in a bubblewrap sandbox (the worker refuses to start without a working one); `off`: UNSAFE, agents run with the worker's rights |
| GODEL_SANDBOX_BWRAP         | bwrap                                     | the bubblewrap executable                 |
| GODEL_SANDBOX_PATHS         | (none)                                    | comma-separated host directories agents may ask to see (sandbox.readPaths/writePaths) |
| GODEL_SANDBOX_MAX_MEMORY_MB | 0 (no limit)                              | resident memory of one run's processes: default and ceiling of sandbox.limits.maxMemoryMb |
| GODEL_SANDBOX_MAX_PROCESSES | 512                                       | processes of one run at once: default and ceiling of sandbox.limits.maxProcesses |
| GODEL_SANDBOX_MAX_CPU_SECONDS | 0 (no limit)                            | CPU seconds of one run: default and ceiling of sandbox.limits.maxCpuSeconds |
| GODEL_API_KEY               | (unset)                                   | API key the worker sends as x-api-key     |
| GODEL_API_KEY_FILE          | (unset)                                   | file holding GODEL_API_KEY                |
| GODEL_WORKER_MAX_STEPS      | 50                                        | completions per `openai` run              |
| GODEL_WORKER_ADMIN_PORT     | 0 (off)                                   | HTTP port with /metrics, /healthz and /readyz (ready: connected to a replica) |
| GODEL_TLS_*                 | (unset)                                   | as for the services: mutual TLS to the agent-service replicas |
"""

from __future__ import annotations

import json
import os
import re
import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from godel.v1 import worker_service_pb2
from godel_server.runtime.bounds import bounds
from godel_server.runtime.statuses import LOAD_BALANCE_STRATEGY, LoadBalanceStrategy
from godel_server.runtime.topics import MAX_PREFIX_LEN, valid_prefix
from godel_server.runtime.topology import EVENT_WS_PORT, GATEWAY_PORT, KAFKA_PORT, PROCESSES, ROLES, Role

# The OpenAPI document ships inside the package (a symlink to gen/openapi in a checkout).
OPENAPI_DOCUMENT = Path(__file__).resolve().parents[1] / "assets" / "godel.swagger.json"


class ConfigError(ValueError):
    """A GODEL_* variable has a value that cannot be used."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def _non_negative(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {value}")
    return value


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {value}")
    return value


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if not value > 0:
        raise ConfigError(f"{name} must be greater than 0, got {value}")
    return value


def _file(env: Mapping[str, str], name: str) -> Path | None:
    """An optional path setting; the file must exist (a typo fails at start, not at first use)."""
    raw = env.get(name)
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ConfigError(f"{name} names {raw!r}, which is not a readable file")
    return path


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (env.get(name) or default).strip().upper()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


@dataclass(frozen=True)
class TlsSettings:
    """Mutual TLS between the processes of a mesh: all three files, or none (plaintext). A service
    serves its gRPC port with `cert_file` and accepts only clients whose certificate `ca_file`
    signed; its calls to other services verify them with `ca_file` and present `cert_file`."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.ca_file is not None


def load_tls(env: Mapping[str, str]) -> TlsSettings:
    names = ("GODEL_TLS_CA_FILE", "GODEL_TLS_CERT_FILE", "GODEL_TLS_KEY_FILE")
    ca, cert, key = (_file(env, name) for name in names)
    given = [name for name, path in zip(names, (ca, cert, key), strict=True) if path is not None]
    if given and len(given) != len(names):
        missing = ", ".join(n for n in names if n not in given)
        raise ConfigError(f"mutual TLS needs {', '.join(names)} together; missing {missing}")
    return TlsSettings(ca_file=ca, cert_file=cert, key_file=key)


@dataclass(frozen=True)
class TracingSettings:
    """Where spans go (OTLP over gRPC); no endpoint: tracing is off and costs nothing."""

    endpoint: str = ""
    service_name: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.endpoint)


def load_tracing(env: Mapping[str, str], default_service: str) -> TracingSettings:
    """The OTEL_* variables of spec-compliant OpenTelemetry SDKs that Godel honours."""
    name = (env.get("OTEL_SERVICE_NAME") or "").strip() or default_service
    exporter = (env.get("OTEL_TRACES_EXPORTER") or "otlp").strip().lower()
    if _bool(env, "OTEL_SDK_DISABLED", False) or exporter == "none":
        return TracingSettings(service_name=name)
    if exporter != "otlp":
        raise ConfigError(f"OTEL_TRACES_EXPORTER must be otlp or none, got {exporter!r}")
    endpoint = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or ""
    ).strip()
    if not endpoint:
        return TracingSettings(service_name=name)
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = (env.get(variable) or "").strip().lower()
        if protocol:
            if protocol != "grpc":
                raise ConfigError(
                    f"{variable} must be grpc (the only OTLP protocol Godel exports), got {protocol!r}"
                )
            break
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"the OTLP endpoint must be an http:// or https:// URL, got {endpoint!r}")
    return TracingSettings(endpoint=endpoint, service_name=name)


KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaSettings:
    """How every Kafka client of a service connects, and how the topics Godel creates are made."""

    bootstrap: str = f"127.0.0.1:{KAFKA_PORT}"
    partitions: int = 3
    replication_factor: int = 1
    min_insync_replicas: int = 0  # 0: the broker's default
    security_protocol: str = "PLAINTEXT"
    ssl_ca_file: Path | None = None
    ssl_cert_file: Path | None = None
    ssl_key_file: Path | None = None
    sasl_mechanism: str = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    # Prefix of this installation's topics and consumer groups on the broker (runtime/topics.py).
    topic_prefix: str = ""

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")


def load_kafka(env: Mapping[str, str]) -> KafkaSettings:
    protocol = _choice(env, "GODEL_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", KAFKA_SECURITY_PROTOCOLS)
    password = env.get("GODEL_KAFKA_SASL_PASSWORD") or None
    password_file = _file(env, "GODEL_KAFKA_SASL_PASSWORD_FILE")
    if password is None and password_file is not None:
        password = password_file.read_text().strip() or None
    kafka = KafkaSettings(
        bootstrap=env.get("GODEL_KAFKA_BOOTSTRAP") or f"127.0.0.1:{KAFKA_PORT}",
        partitions=_int(env, "GODEL_KAFKA_PARTITIONS", 3),
        replication_factor=_int(env, "GODEL_KAFKA_REPLICATION_FACTOR", 1),
        min_insync_replicas=_non_negative(env, "GODEL_KAFKA_MIN_INSYNC_REPLICAS", 0),
        security_protocol=protocol,
        ssl_ca_file=_file(env, "GODEL_KAFKA_SSL_CA_FILE"),
        ssl_cert_file=_file(env, "GODEL_KAFKA_SSL_CERT_FILE"),
        ssl_key_file=_file(env, "GODEL_KAFKA_SSL_KEY_FILE"),
        sasl_mechanism=_choice(env, "GODEL_KAFKA_SASL_MECHANISM", "PLAIN", KAFKA_SASL_MECHANISMS),
        sasl_username=env.get("GODEL_KAFKA_SASL_USERNAME") or None,
        topic_prefix=_kafka_prefix(env),
        sasl_password=password,
    )
    if kafka.partitions < 1:
        raise ConfigError(f"GODEL_KAFKA_PARTITIONS must be >= 1, got {kafka.partitions}")
    if kafka.replication_factor < 1:
        raise ConfigError(f"GODEL_KAFKA_REPLICATION_FACTOR must be >= 1, got {kafka.replication_factor}")
    if kafka.min_insync_replicas > kafka.replication_factor:
        raise ConfigError(
            f"GODEL_KAFKA_MIN_INSYNC_REPLICAS ({kafka.min_insync_replicas}) must not exceed "
            f"GODEL_KAFKA_REPLICATION_FACTOR ({kafka.replication_factor}): no write could succeed"
        )
    if (kafka.ssl_cert_file is None) != (kafka.ssl_key_file is None):
        raise ConfigError("GODEL_KAFKA_SSL_CERT_FILE and GODEL_KAFKA_SSL_KEY_FILE must be set together")
    if kafka.uses_sasl and (kafka.sasl_username is None or kafka.sasl_password is None):
        raise ConfigError(
            f"GODEL_KAFKA_SECURITY_PROTOCOL={protocol} needs GODEL_KAFKA_SASL_USERNAME and a password "
            "(GODEL_KAFKA_SASL_PASSWORD or GODEL_KAFKA_SASL_PASSWORD_FILE)"
        )
    return kafka


def _with_password(hostpart: str, password_file: Path | None) -> str:
    """`user@host:port` with the password read from a file (a mounted secret) put in the URL."""
    if password_file is None:
        return hostpart
    credentials, at, host = hostpart.rpartition("@")
    if not at or ":" in credentials:
        raise ConfigError(
            "GODEL_DATABASE_PASSWORD_FILE needs a GODEL_DATABASE_URL with a user and no password"
        )
    password = urllib.parse.quote(password_file.read_text().strip(), safe="")
    return f"{credentials}:{password}@{host}"


def database_url_for(role: Role, env: Mapping[str, str], home: Path) -> str:
    """Database URL of one service: explicit, derived from a PostgreSQL server URL, or a SQLite file."""
    explicit = env.get(f"GODEL_{role.upper()}_DATABASE_URL")
    if explicit:
        return explicit
    server = env.get("GODEL_DATABASE_URL")
    if server:
        if server.startswith("postgresql://"):
            server = "postgresql+asyncpg://" + server.removeprefix("postgresql://")
        if not server.startswith("postgresql+asyncpg://"):
            raise ConfigError("GODEL_DATABASE_URL must be a postgresql:// URL")
        base, _, query = server.partition("?")
        scheme, _, rest = base.partition("://")
        hostpart = _with_password(rest.split("/", 1)[0], _file(env, "GODEL_DATABASE_PASSWORD_FILE"))
        prefix = env.get("GODEL_DATABASE_NAME_PREFIX") or "godel"
        url = f"{scheme}://{hostpart}/{prefix}_{role}"
        return f"{url}?{query}" if query else url
    return f"sqlite+aiosqlite:///{home / f'{role}.db'}"


@dataclass(frozen=True)
class FederationPeer:
    """A cluster this one routes work to (GODEL_FEDERATION_PEERS); the credential stays in its file."""

    name: str
    # host:port of the peer's gateway.
    endpoint: str
    credential_file: Path

    def credential(self) -> str | None:
        """The API key (role `peer`) the peer issued to this cluster; read when needed."""
        try:
            return self.credential_file.read_text().strip() or None
        except OSError:
            return None


@dataclass(frozen=True)
class FederationSettings:
    """This cluster's part in a federation (see the module docstring); off without a name."""

    cluster_name: str = ""
    region: str = ""
    endpoint: str = ""
    features: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    peers: tuple[FederationPeer, ...] = ()
    heartbeat_seconds: float = 10.0
    degraded_after: float = 30.0
    offline_after: float = 60.0
    probe_seconds: float = 5.0
    max_latency_ms: float = 1000.0
    routing: LoadBalanceStrategy = LoadBalanceStrategy.HEALTH_SCORE
    affinity_seconds: float = 3600.0

    @property
    def enabled(self) -> bool:
        return bool(self.cluster_name)

    def peer(self, name: str) -> FederationPeer | None:
        return next((p for p in self.peers if p.name == name), None)


@dataclass(frozen=True)
class Settings:
    role: Role
    home: Path
    bind_host: str
    grpc_port: int
    admin_port: int
    database_url: str
    kafka: KafkaSettings
    outbox_poll_seconds: float
    default_model: str
    default_repo: str | None
    auth_cache_seconds: float
    log_level: str
    instance_id: str
    openapi_path: Path
    service_addrs: dict[Role, str] = field(default_factory=dict)
    admin_addrs: dict[Role, str] = field(default_factory=dict)
    agent_lease_seconds: float = 5.0
    team_lease_seconds: float = 5.0
    progress_timeout: float = 0.0
    worker_lost_grace: float = 15.0
    retry_backoff_seconds: float = 1.0
    max_reschedules: int = 10
    model_prices: str = ""
    event_ws_port: int = EVENT_WS_PORT
    event_fanout_poll_seconds: float = 0.2
    event_retention_days: int = 0
    agent_log_max_lines: int = 100_000
    api_key: str | None = field(default=None, repr=False)
    api_key_file: Path | None = None
    team_runtime: str = "command"
    team_command: tuple[str, ...] = ()
    openai_base_url: str = ""
    openai_api_key: str | None = field(default=None, repr=False)
    auth_recheck_seconds: float = 1.0
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_secret_file: Path | None = None
    access_token_seconds: int = 900
    refresh_token_seconds: int = 604800
    login_attempts_per_minute: int = 10
    rate_limit_per_key: int = 200
    rate_limit_per_user: int = 400
    max_streams_per_user: int = 200
    max_subscriptions_per_user: int = 200
    max_running_agents_per_user: int = 500
    ws_allowed_origins: tuple[str, ...] = ()
    tls: TlsSettings = field(default_factory=TlsSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)
    migrate_on_start: bool = True
    autonomic_interval: float = 15.0
    autonomic_dry_run: bool = False
    federation: FederationSettings = field(default_factory=FederationSettings)

    def service_api_key(self) -> str | None:
        """The key this service presents to other services (the file may appear after start)."""
        if self.api_key:
            return self.api_key
        if self.api_key_file is None:
            return None
        try:
            return self.api_key_file.read_text().strip() or None
        except OSError:
            return None

    @property
    def grpc_address(self) -> str:
        return f"{self.bind_host}:{self.grpc_port}"

    @property
    def worker_run_lease(self) -> float:
        """How long a worker keeps a run of this replica going without hearing from it: well
        within worker_lost_grace, so that a run this replica declares lost has surely stopped."""
        return self.worker_lost_grace * 2 / 3

    @property
    def uses_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")


def service_addresses(env: Mapping[str, str]) -> dict[Role, str]:
    """Where each service is reached (GODEL_<ROLE>_ADDR, else 127.0.0.1:<its port>)."""
    ports = {r: _int(env, f"GODEL_{r.upper()}_PORT", PROCESSES[r].grpc_port) for r in ROLES}
    return {r: env.get(f"GODEL_{r.upper()}_ADDR") or f"127.0.0.1:{ports[r]}" for r in ROLES}


def event_ws_port(env: Mapping[str, str]) -> int:
    return _int(env, "GODEL_EVENT_WS_PORT", EVENT_WS_PORT)


def bind_host(env: Mapping[str, str]) -> str:
    return env.get("GODEL_BIND_HOST", "127.0.0.1")


def admin_port(process: str, env: Mapping[str, str]) -> int:
    """The admin HTTP port of a service role or of a worker ("worker"; 0: off)."""
    if process == "worker":
        return _non_negative(env, "GODEL_WORKER_ADMIN_PORT", 0)
    return _int(env, f"GODEL_{process.upper()}_ADMIN_PORT", PROCESSES[process].admin_port)  # type: ignore[index]


def load_settings(role: Role, env: Mapping[str, str] | None = None) -> Settings:
    """Reads the settings of one service from the environment (see the module docstring)."""
    env = os.environ if env is None else env
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    home = Path(env.get("GODEL_HOME") or Path.home() / ".godel").expanduser()
    addrs = service_addresses(env)
    admin_ports = {r: admin_port(r, env) for r in ROLES}
    admin_addrs: dict[Role, str] = {
        r: env.get(f"GODEL_{r.upper()}_ADMIN_ADDR") or f"127.0.0.1:{admin_ports[r]}" for r in ROLES
    }
    return Settings(
        role=role,
        home=home,
        bind_host=bind_host(env),
        grpc_port=_int(env, f"GODEL_{role.upper()}_PORT", PROCESSES[role].grpc_port),
        admin_port=admin_ports[role],
        database_url=database_url_for(role, env, home),
        kafka=load_kafka(env),
        tls=load_tls(env),
        tracing=load_tracing(env, f"godel-{role}"),
        migrate_on_start=_bool(env, "GODEL_MIGRATE_ON_START", True),
        outbox_poll_seconds=_float(env, "GODEL_OUTBOX_POLL_SECONDS", 0.5),
        default_model=env.get("GODEL_DEFAULT_MODEL", "kimi-k2.5"),
        default_repo=env.get("GODEL_DEFAULT_REPO") or None,
        auth_cache_seconds=_float(env, "GODEL_AUTH_CACHE_SECONDS", 2.0),
        auth_recheck_seconds=_positive_float(env, "GODEL_AUTH_RECHECK_SECONDS", 1.0),
        jwt_secret=env.get("GODEL_JWT_SECRET") or None,
        jwt_secret_file=Path(env.get("GODEL_JWT_SECRET_FILE") or home / "jwt.secret").expanduser(),
        access_token_seconds=_positive(env, "GODEL_ACCESS_TOKEN_SECONDS", 900),
        refresh_token_seconds=_positive(env, "GODEL_REFRESH_TOKEN_SECONDS", 604800),
        login_attempts_per_minute=_positive(env, "GODEL_LOGIN_ATTEMPTS_PER_MINUTE", 10),
        rate_limit_per_key=_non_negative(env, "GODEL_RATE_LIMIT_PER_KEY", 200),
        rate_limit_per_user=_non_negative(env, "GODEL_RATE_LIMIT_PER_USER", 400),
        max_streams_per_user=_non_negative(env, "GODEL_MAX_STREAMS_PER_USER", 200),
        max_subscriptions_per_user=_non_negative(env, "GODEL_MAX_SUBSCRIPTIONS_PER_USER", 200),
        max_running_agents_per_user=_non_negative(env, "GODEL_MAX_RUNNING_AGENTS_PER_USER", 500),
        ws_allowed_origins=tuple(
            o.strip().rstrip("/") for o in (env.get("GODEL_WS_ALLOWED_ORIGINS") or "").split(",") if o.strip()
        ),
        log_level=env.get("GODEL_LOG_LEVEL", "INFO").upper(),
        instance_id=env.get("GODEL_INSTANCE_ID") or f"{role}-{socket.gethostname()}-{os.getpid()}",
        openapi_path=Path(env.get("GODEL_OPENAPI_PATH") or OPENAPI_DOCUMENT),
        service_addrs=addrs,
        admin_addrs=admin_addrs,
        event_ws_port=event_ws_port(env),
        event_fanout_poll_seconds=_float(env, "GODEL_EVENT_FANOUT_POLL_SECONDS", 0.2),
        event_retention_days=_non_negative(env, "GODEL_EVENT_RETENTION_DAYS", 0),
        agent_log_max_lines=_positive(env, "GODEL_AGENT_LOG_MAX_LINES", 100_000),
        agent_lease_seconds=_float(env, "GODEL_AGENT_LEASE_SECONDS", 5.0),
        team_lease_seconds=_float(env, "GODEL_TEAM_LEASE_SECONDS", 5.0),
        progress_timeout=_float(env, "GODEL_AGENT_PROGRESS_TIMEOUT", 0.0),
        worker_lost_grace=_positive_float(env, "GODEL_WORKER_LOST_GRACE", 15.0),
        retry_backoff_seconds=_float(env, "GODEL_RETRY_BACKOFF_SECONDS", 1.0),
        max_reschedules=_non_negative(env, "GODEL_AGENT_MAX_RESCHEDULES", 10),
        model_prices=env.get("GODEL_MODEL_PRICES", ""),
        api_key=env.get("GODEL_API_KEY") or None,
        api_key_file=Path(env["GODEL_API_KEY_FILE"]).expanduser() if env.get("GODEL_API_KEY_FILE") else None,
        team_runtime=env.get("GODEL_TEAM_RUNTIME") or "command",
        team_command=_argv(env, "GODEL_TEAM_COMMAND", DEFAULT_TEAM_COMMAND),
        openai_base_url=env.get("GODEL_OPENAI_BASE_URL") or "",
        openai_api_key=env.get("GODEL_OPENAI_API_KEY") or None,
        autonomic_interval=_positive_float(env, "GODEL_AUTONOMIC_INTERVAL_SECONDS", 15.0),
        autonomic_dry_run=_bool(env, "GODEL_AUTONOMIC_DRY_RUN", False),
        federation=load_federation(env),
    )


def _kafka_prefix(env: Mapping[str, str]) -> str:
    prefix = env.get("GODEL_KAFKA_TOPIC_PREFIX") or ""
    if not valid_prefix(prefix):
        raise ConfigError(
            f"GODEL_KAFKA_TOPIC_PREFIX must be at most {MAX_PREFIX_LEN} of [A-Za-z0-9._-], got {prefix!r}"
        )
    return prefix


def _names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(sorted({v.strip() for v in (env.get(name) or "").split(",") if v.strip()}))


def _peers(env: Mapping[str, str]) -> tuple[FederationPeer, ...]:
    raw = env.get("GODEL_FEDERATION_PEERS") or ""
    if not raw.strip():
        return ()
    problem = 'GODEL_FEDERATION_PEERS must be a JSON list of {"name", "endpoint", "credentialFile"} objects'
    try:
        items = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{problem}: {exc}") from exc
    if not isinstance(items, list):
        raise ConfigError(problem)
    peers: list[FederationPeer] = []
    for item in items:
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k), str) and item[k] for k in ("name", "endpoint", "credentialFile")
        ):
            raise ConfigError(problem)
        host, _, port = item["endpoint"].rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"GODEL_FEDERATION_PEERS: endpoint of {item['name']!r} must be host:port")
        peers.append(
            FederationPeer(item["name"], item["endpoint"], Path(item["credentialFile"]).expanduser())
        )
    if len({p.name for p in peers}) != len(peers):
        raise ConfigError("GODEL_FEDERATION_PEERS names each peer once")
    return tuple(peers)


def load_federation(env: Mapping[str, str]) -> FederationSettings:
    """The federation settings (see the module docstring)."""
    raw_routing = env.get("GODEL_CLUSTER_ROUTING") or "health-score"
    routing = LOAD_BALANCE_STRATEGY.parse(raw_routing)
    if routing is None:
        raise ConfigError(
            f"GODEL_CLUSTER_ROUTING must be {LOAD_BALANCE_STRATEGY.choices()}, got {raw_routing!r}"
        )
    heartbeat = _positive_float(env, "GODEL_CLUSTER_HEARTBEAT_SECONDS", 10.0)
    degraded = _positive_float(env, "GODEL_CLUSTER_DEGRADED_AFTER", 3 * heartbeat)
    offline = _positive_float(env, "GODEL_CLUSTER_OFFLINE_AFTER", 6 * heartbeat)
    if not heartbeat <= degraded <= offline:
        raise ConfigError(
            "GODEL_CLUSTER_HEARTBEAT_SECONDS <= GODEL_CLUSTER_DEGRADED_AFTER <= GODEL_CLUSTER_OFFLINE_AFTER must hold"
        )
    name = (env.get("GODEL_CLUSTER_NAME") or "").strip()
    if len(name) > 255:
        raise ConfigError("GODEL_CLUSTER_NAME is at most 255 characters")
    return FederationSettings(
        cluster_name=name,
        region=(env.get("GODEL_CLUSTER_REGION") or "").strip(),
        endpoint=(env.get("GODEL_CLUSTER_ENDPOINT") or "").strip() or f"127.0.0.1:{GATEWAY_PORT}",
        features=_names(env, "GODEL_CLUSTER_FEATURES"),
        models=_names(env, "GODEL_CLUSTER_MODELS"),
        peers=_peers(env),
        heartbeat_seconds=heartbeat,
        degraded_after=degraded,
        offline_after=offline,
        probe_seconds=_positive_float(env, "GODEL_CLUSTER_PROBE_SECONDS", 5.0),
        max_latency_ms=_positive_float(env, "GODEL_CLUSTER_MAX_LATENCY_MS", 1000.0),
        routing=routing,
        affinity_seconds=_positive_float(env, "GODEL_CLUSTER_AFFINITY_SECONDS", 3600.0),
    )


# What a command-runtime member does when neither its team nor the workflow gives a command: print
# its task and summarize the repository (the task is one argv element, never shell text).
DEFAULT_TEAM_COMMAND: tuple[str, ...] = (
    "sh",
    "-c",
    'echo "task: $1"; echo "files: $(git ls-files | wc -l)"; git log --oneline -3',
    "godel-member",
    "{task}",
)


def _argv(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a JSON array of strings, got {raw!r}") from exc
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name} must be a non-empty JSON array of strings")
    return tuple(value)


# A worker id: a log field, a metric-free label and a file's content, so short and plain.
WORKER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}$")

SandboxMode = Literal["bwrap", "off"]
SANDBOX_MODES: tuple[SandboxMode, ...] = ("bwrap", "off")


# The OpenClaw Gateway's own default address (its `gateway.port`).
DEFAULT_OPENCLAW_URL = "ws://127.0.0.1:18789"


@dataclass(frozen=True)
class WorkerSettings:
    """Settings of a worker process (`godel-server worker`); secrets are kept out of repr()."""

    connect: tuple[str, ...]
    # GODEL_WORKER_ID, or "" for the identity kept in the state directory (worker/statedir.py).
    worker_id: str
    capacity: int
    worktree_root: Path
    openai_base_url: str
    openai_api_key: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    max_steps: int = 50
    home: Path = field(default_factory=lambda: Path.home() / ".godel")
    hostname: str = field(default_factory=socket.gethostname)
    log_level: str = "INFO"
    openai_key_origins: tuple[str, ...] = ()
    openclaw_url: str = DEFAULT_OPENCLAW_URL
    openclaw_token: str | None = field(default=None, repr=False)
    openclaw_token_origins: tuple[str, ...] = ()
    sandbox: SandboxMode = "bwrap"
    bwrap: str = "bwrap"
    sandbox_paths: tuple[Path, ...] = ()
    max_memory_mb: int = 0
    max_processes: int = 512
    max_cpu_seconds: int = 0
    # GODEL_WORKER_STATE_DIR, or None for the first free one under <home>/workers.
    state_dir: Path | None = None
    tls: TlsSettings = field(default_factory=TlsSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)
    bind_host: str = "127.0.0.1"
    admin_port: int = 0
    # Labels the worker advertises (agents select workers by them); "language" is always "python".
    labels: Mapping[str, str] = field(default_factory=dict)


def key_origins(env: Mapping[str, str], name: str, default_url: str) -> tuple[str, ...]:
    """The origins listed in `name` (comma-separated), by default the origin of `default_url`."""
    listed = [o.strip() for o in (env.get(name) or "").split(",") if o.strip()]
    origins = tuple(url_origin(o) for o in listed) if listed else (url_origin(default_url),)
    if not all(origins):
        raise ConfigError(f"{name} must list origins like https://host[:port]")
    return origins


def worker_labels(raw: str) -> dict[str, str]:
    """GODEL_WORKER_LABELS "gpu=a100,zone=eu" -> {"gpu": "a100", "zone": "eu"}; ConfigError when an
    entry has no "=" or an empty key."""
    labels: dict[str, str] = {}
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        key, sep, value = entry.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"GODEL_WORKER_LABELS must list key=value pairs, got {entry!r}")
        labels[key.strip()] = value.strip()
    return labels


def default_worktree_root(home: Path) -> Path:
    """`<home>-worktrees`: beside GODEL_HOME, not in it, so no key or database lies above a worktree."""
    return home.with_name(f"{home.name}-worktrees")


def url_origin(url: str) -> str:
    """scheme://host[:port] of a URL, lower-cased, with the default port left out ("" if none)."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.hostname:
        return ""
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        return ""
    default = {"http": 80, "https": 443}.get(scheme)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def _sandbox_mode(env: Mapping[str, str]) -> SandboxMode:
    raw = (env.get("GODEL_SANDBOX") or "bwrap").strip().lower()
    for mode in SANDBOX_MODES:
        if raw == mode:
            return mode
    raise ConfigError(f"GODEL_SANDBOX must be one of {', '.join(SANDBOX_MODES)}, got {raw!r}")


def _optional_path(env: Mapping[str, str], name: str) -> Path | None:
    raw = (env.get(name) or "").strip()
    return Path(raw).expanduser() if raw else None


def _absolute_paths(env: Mapping[str, str], name: str) -> tuple[Path, ...]:
    paths = tuple(Path(p.strip()) for p in (env.get(name) or "").split(",") if p.strip())
    for path in paths:
        if not path.is_absolute():
            raise ConfigError(f"{name} must list absolute paths, got {str(path)!r}")
    return paths


def max_worker_capacity() -> int:
    """The most runs a worker may take: half of what its heartbeat may list (WorkerHeartbeat.runs in
    the contract), which also lists the runs that ended and wait for their updates' acknowledgement."""
    return bounds(worker_service_pb2.WorkerHeartbeat.DESCRIPTOR.fields_by_name["runs"]).max_items // 2


def load_worker_settings(env: Mapping[str, str] | None = None) -> WorkerSettings:
    """Reads the settings of a worker process from the environment (see the module docstring)."""
    env = os.environ if env is None else env
    home = Path(env.get("GODEL_HOME") or Path.home() / ".godel").expanduser()
    agent_port = _int(env, "GODEL_AGENT_PORT", PROCESSES["agent"].grpc_port)
    default_addr = env.get("GODEL_AGENT_ADDR") or f"127.0.0.1:{agent_port}"
    connect = tuple(
        a.strip() for a in (env.get("GODEL_WORKER_CONNECT") or default_addr).split(",") if a.strip()
    )
    if not connect:
        raise ConfigError("GODEL_WORKER_CONNECT must name at least one address")
    capacity = _int(env, "GODEL_WORKER_CAPACITY", 16)
    if not 0 <= capacity <= max_worker_capacity():
        raise ConfigError(f"GODEL_WORKER_CAPACITY must be 0..{max_worker_capacity()}, got {capacity}")
    max_steps = _int(env, "GODEL_WORKER_MAX_STEPS", 50)
    if max_steps < 1:
        raise ConfigError(f"GODEL_WORKER_MAX_STEPS must be >= 1, got {max_steps}")
    api_key = env.get("GODEL_API_KEY") or None
    key_file = env.get("GODEL_API_KEY_FILE")
    if not api_key and key_file:
        try:
            api_key = Path(key_file).expanduser().read_text().strip() or None
        except OSError as exc:
            raise ConfigError(f"GODEL_API_KEY_FILE {key_file!r} cannot be read: {exc.strerror}") from exc
    worker_id = (env.get("GODEL_WORKER_ID") or "").strip()
    if worker_id and not WORKER_ID_RE.match(worker_id):
        raise ConfigError(
            f"GODEL_WORKER_ID must be 1-200 letters, digits or ._:@- (not first), got {worker_id!r}"
        )
    hostname = socket.gethostname()
    openai_base_url = env.get("GODEL_OPENAI_BASE_URL") or "https://api.openai.com"
    openclaw_url = env.get("GODEL_OPENCLAW_URL") or DEFAULT_OPENCLAW_URL
    return WorkerSettings(
        connect=connect,
        worker_id=worker_id,
        capacity=capacity,
        worktree_root=Path(env.get("GODEL_WORKTREE_ROOT") or default_worktree_root(home)).expanduser(),
        openai_base_url=openai_base_url,
        openai_api_key=env.get("GODEL_OPENAI_API_KEY") or None,
        api_key=api_key,
        max_steps=max_steps,
        home=home,
        hostname=hostname,
        log_level=env.get("GODEL_LOG_LEVEL", "INFO").upper(),
        openai_key_origins=key_origins(env, "GODEL_OPENAI_KEY_ORIGINS", openai_base_url),
        openclaw_url=openclaw_url,
        openclaw_token=env.get("GODEL_OPENCLAW_TOKEN") or None,
        openclaw_token_origins=key_origins(env, "GODEL_OPENCLAW_TOKEN_ORIGINS", openclaw_url),
        sandbox=_sandbox_mode(env),
        bwrap=env.get("GODEL_SANDBOX_BWRAP") or "bwrap",
        sandbox_paths=_absolute_paths(env, "GODEL_SANDBOX_PATHS"),
        max_memory_mb=_non_negative(env, "GODEL_SANDBOX_MAX_MEMORY_MB", 0),
        max_processes=_non_negative(env, "GODEL_SANDBOX_MAX_PROCESSES", 512),
        max_cpu_seconds=_non_negative(env, "GODEL_SANDBOX_MAX_CPU_SECONDS", 0),
        state_dir=_optional_path(env, "GODEL_WORKER_STATE_DIR"),
        tls=load_tls(env),
        tracing=load_tracing(env, "godel-worker"),
        bind_host=bind_host(env),
        admin_port=admin_port("worker", env),
        labels=worker_labels(env.get("GODEL_WORKER_LABELS") or ""),
    )
