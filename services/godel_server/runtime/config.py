"""The one configuration loader: every setting comes from a GODEL_* environment variable.

| variable                    | default                                   | meaning                                   |
|-----------------------------|-------------------------------------------|-------------------------------------------|
| GODEL_HOME                  | ~/.godel                                  | data dir (SQLite files, worktrees, keys)  |
| GODEL_BIND_HOST             | 127.0.0.1                                 | interface the gRPC and admin ports bind   |
| GODEL_<ROLE>_PORT           | agent 50051, team 50052, event 50053, cluster 50054 | gRPC port of a service          |
| GODEL_<ROLE>_ADMIN_PORT     | agent 9101, team 9102, event 9103, cluster 9104     | HTTP admin port (/metrics)      |
| GODEL_<ROLE>_ADDR           | 127.0.0.1:<its port>                      | where other services reach a service      |
| GODEL_<ROLE>_ADMIN_ADDR     | 127.0.0.1:<its admin port>                | where /metrics of a service is scraped    |
| GODEL_DATABASE_URL          | (unset: SQLite file per service)          | PostgreSQL server URL; each service uses its own database on it |
| GODEL_DATABASE_NAME_PREFIX  | godel                                     | databases are named `<prefix>_<role>`     |
| GODEL_<ROLE>_DATABASE_URL   | (derived)                                 | full URL of one service's database        |
| GODEL_KAFKA_BOOTSTRAP       | 127.0.0.1:9092                            | Kafka bootstrap servers                   |
| GODEL_KAFKA_PARTITIONS      | 3                                         | partitions of topics Godel creates        |
| GODEL_OUTBOX_POLL_SECONDS   | 0.5                                       | outbox relay fallback poll interval       |
| GODEL_DEFAULT_MODEL         | kimi-k2.5                                 | model of agents created without one       |
| GODEL_DEFAULT_REPO          | (unset)                                   | git repository agents work in by default  |
| GODEL_AUTH_CACHE_SECONDS    | 30                                        | how long a verified API key is trusted    |
| GODEL_LOG_LEVEL             | INFO                                      | log level                                 |
| GODEL_INSTANCE_ID           | <role>-<hostname>-<pid>                   | identity in events and logs               |
| GODEL_OPENAPI_PATH          | <repo>/gen/openapi/godel.swagger.json     | document served at /api/v1/openapi.json   |
| GODEL_AGENT_LEASE_SECONDS   | 5                                         | an agent replica silent this long is dead; its agents move |
| GODEL_AGENT_HEARTBEAT_TIMEOUT | 15                                      | a run no worker reported this long is stuck |
| GODEL_AGENT_PROGRESS_TIMEOUT | 0 (off)                                  | a running run without output this long is stuck |
| GODEL_WORKER_LOST_GRACE     | 3                                         | seconds a disconnected worker has to come back before its runs restart |
| GODEL_RETRY_BACKOFF_SECONDS | 1                                         | first retry delay; doubles per retry, at most 60 s |
| GODEL_MODEL_PRICES          | built-in table                            | JSON {"model": [usd per 1M prompt tokens, per 1M completion tokens]} |
| GODEL_API_KEY / GODEL_API_KEY_FILE | (unset)                            | API key the team service (and a worker) presents to other services; the file is read when first needed |
| GODEL_TEAM_RUNTIME          | command                                   | runtime of team members and workflow steps that name none |
| GODEL_TEAM_COMMAND          | a repository summary (see config.py)      | JSON argv template of command-runtime members that give none |
| GODEL_OPENAI_BASE_URL       | (unset)                                   | endpoint of the optional LLM intent parser (and the workers' openai runtime) |

Worker process (`godel-server worker`, see `load_worker_settings`):

| variable                    | default                                   | meaning                                   |
|-----------------------------|-------------------------------------------|-------------------------------------------|
| GODEL_WORKER_CONNECT        | GODEL_AGENT_ADDR or 127.0.0.1:<GODEL_AGENT_PORT> | comma-separated agent-service replica addresses |
| GODEL_WORKER_ID             | worker-<hostname>-<pid>-<4 hex>           | worker identity (new for every process)   |
| GODEL_WORKER_CAPACITY       | 16                                        | runs a worker executes at once            |
| GODEL_WORKTREE_ROOT         | $GODEL_HOME/worktrees                     | where agents' git worktrees are created   |
| GODEL_OPENAI_BASE_URL       | https://api.openai.com                    | default endpoint of the `openai` runtime  |
| GODEL_OPENAI_API_KEY        | (unset)                                   | bearer key of that endpoint (secret)      |
| GODEL_API_KEY               | (unset)                                   | API key the worker sends as x-api-key     |
| GODEL_API_KEY_FILE          | (unset)                                   | file holding GODEL_API_KEY                |
| GODEL_WORKER_MAX_STEPS      | 50                                        | completions per `openai` run              |
| GODEL_EVENT_WS_PORT         | 9113                                      | event service WebSocket port (`/events`, spec §3.2); 0 = off |
| GODEL_EVENT_RETENTION_DAYS  | 0                                         | events stored longer ago are removed (0 = keep forever) |
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

REPO_ROOT = Path(__file__).resolve().parents[3]

Role = Literal["agent", "team", "event", "cluster"]
ROLES: tuple[Role, ...] = ("agent", "team", "event", "cluster")

DEFAULT_GRPC_PORTS: dict[Role, int] = {"agent": 50051, "team": 50052, "event": 50053, "cluster": 50054}
DEFAULT_ADMIN_PORTS: dict[Role, int] = {"agent": 9101, "team": 9102, "event": 9103, "cluster": 9104}


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
        hostpart = rest.split("/", 1)[0]
        prefix = env.get("GODEL_DATABASE_NAME_PREFIX") or "godel"
        url = f"{scheme}://{hostpart}/{prefix}_{role}"
        return f"{url}?{query}" if query else url
    return f"sqlite+aiosqlite:///{home / f'{role}.db'}"


@dataclass(frozen=True)
class Settings:
    role: Role
    home: Path
    bind_host: str
    grpc_port: int
    admin_port: int
    database_url: str
    kafka_bootstrap: str
    kafka_partitions: int
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
    heartbeat_timeout: float = 15.0
    progress_timeout: float = 0.0
    worker_lost_grace: float = 3.0
    retry_backoff_seconds: float = 1.0
    model_prices: str = ""
    event_ws_port: int = 9113
    event_retention_days: int = 0
    api_key: str | None = field(default=None, repr=False)
    api_key_file: Path | None = None
    team_runtime: str = "command"
    team_command: tuple[str, ...] = ()
    openai_base_url: str = ""
    openai_api_key: str | None = field(default=None, repr=False)

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
    def uses_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")


def load_settings(role: Role, env: Mapping[str, str] | None = None) -> Settings:
    """Reads the settings of one service from the environment (see the module docstring)."""
    env = os.environ if env is None else env
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    home = Path(env.get("GODEL_HOME") or Path.home() / ".godel").expanduser()
    ports = {r: _int(env, f"GODEL_{r.upper()}_PORT", DEFAULT_GRPC_PORTS[r]) for r in ROLES}
    addrs: dict[Role, str] = {r: env.get(f"GODEL_{r.upper()}_ADDR") or f"127.0.0.1:{ports[r]}" for r in ROLES}
    admin_ports = {r: _int(env, f"GODEL_{r.upper()}_ADMIN_PORT", DEFAULT_ADMIN_PORTS[r]) for r in ROLES}
    admin_addrs: dict[Role, str] = {
        r: env.get(f"GODEL_{r.upper()}_ADMIN_ADDR") or f"127.0.0.1:{admin_ports[r]}" for r in ROLES
    }
    return Settings(
        role=role,
        home=home,
        bind_host=env.get("GODEL_BIND_HOST", "127.0.0.1"),
        grpc_port=ports[role],
        admin_port=admin_ports[role],
        database_url=database_url_for(role, env, home),
        kafka_bootstrap=env.get("GODEL_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        kafka_partitions=_int(env, "GODEL_KAFKA_PARTITIONS", 3),
        outbox_poll_seconds=_float(env, "GODEL_OUTBOX_POLL_SECONDS", 0.5),
        default_model=env.get("GODEL_DEFAULT_MODEL", "kimi-k2.5"),
        default_repo=env.get("GODEL_DEFAULT_REPO") or None,
        auth_cache_seconds=_float(env, "GODEL_AUTH_CACHE_SECONDS", 30.0),
        log_level=env.get("GODEL_LOG_LEVEL", "INFO").upper(),
        instance_id=env.get("GODEL_INSTANCE_ID") or f"{role}-{socket.gethostname()}-{os.getpid()}",
        openapi_path=Path(
            env.get("GODEL_OPENAPI_PATH") or REPO_ROOT / "gen" / "openapi" / "godel.swagger.json"
        ),
        service_addrs=addrs,
        admin_addrs=admin_addrs,
        event_ws_port=_int(env, "GODEL_EVENT_WS_PORT", 9113),
        event_retention_days=_non_negative(env, "GODEL_EVENT_RETENTION_DAYS", 0),
        agent_lease_seconds=_float(env, "GODEL_AGENT_LEASE_SECONDS", 5.0),
        heartbeat_timeout=_float(env, "GODEL_AGENT_HEARTBEAT_TIMEOUT", 15.0),
        progress_timeout=_float(env, "GODEL_AGENT_PROGRESS_TIMEOUT", 0.0),
        worker_lost_grace=_float(env, "GODEL_WORKER_LOST_GRACE", 3.0),
        retry_backoff_seconds=_float(env, "GODEL_RETRY_BACKOFF_SECONDS", 1.0),
        model_prices=env.get("GODEL_MODEL_PRICES", ""),
        api_key=env.get("GODEL_API_KEY") or None,
        api_key_file=Path(env["GODEL_API_KEY_FILE"]).expanduser() if env.get("GODEL_API_KEY_FILE") else None,
        team_runtime=env.get("GODEL_TEAM_RUNTIME") or "command",
        team_command=_argv(env, "GODEL_TEAM_COMMAND", DEFAULT_TEAM_COMMAND),
        openai_base_url=env.get("GODEL_OPENAI_BASE_URL") or "",
        openai_api_key=env.get("GODEL_OPENAI_API_KEY") or None,
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


@dataclass(frozen=True)
class WorkerSettings:
    """Settings of a worker process (`godel-server worker`); secrets are kept out of repr()."""

    connect: tuple[str, ...]
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


def load_worker_settings(env: Mapping[str, str] | None = None) -> WorkerSettings:
    """Reads the settings of a worker process from the environment (see the module docstring)."""
    env = os.environ if env is None else env
    home = Path(env.get("GODEL_HOME") or Path.home() / ".godel").expanduser()
    default_addr = env.get("GODEL_AGENT_ADDR") or f"127.0.0.1:{_int(env, 'GODEL_AGENT_PORT', 50051)}"
    connect = tuple(
        a.strip() for a in (env.get("GODEL_WORKER_CONNECT") or default_addr).split(",") if a.strip()
    )
    if not connect:
        raise ConfigError("GODEL_WORKER_CONNECT must name at least one address")
    capacity = _int(env, "GODEL_WORKER_CAPACITY", 16)
    if capacity < 0:
        raise ConfigError(f"GODEL_WORKER_CAPACITY must be >= 0, got {capacity}")
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
    hostname = socket.gethostname()
    return WorkerSettings(
        connect=connect,
        worker_id=env.get("GODEL_WORKER_ID") or f"worker-{hostname}-{os.getpid()}-{os.urandom(2).hex()}",
        capacity=capacity,
        worktree_root=Path(env.get("GODEL_WORKTREE_ROOT") or home / "worktrees").expanduser(),
        openai_base_url=env.get("GODEL_OPENAI_BASE_URL") or "https://api.openai.com",
        openai_api_key=env.get("GODEL_OPENAI_API_KEY") or None,
        api_key=api_key,
        max_steps=max_steps,
        home=home,
        hostname=hostname,
        log_level=env.get("GODEL_LOG_LEVEL", "INFO").upper(),
    )
