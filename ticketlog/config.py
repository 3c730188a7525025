"""Settings, read from TICKETLOG_* environment variables; the embedded default needs none."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from ticketlog.logs import LOG_FORMATS


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and how to fix it."""


@dataclass(frozen=True)
class PostgresURL:
    host: str
    port: int
    user: str
    password: str
    dbname: str
    schema: str

    @classmethod
    def parse(cls, url: str) -> PostgresURL:
        parts = urlparse(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ConfigError(f"expected a postgresql:// URL, got scheme {parts.scheme!r}")
        dbname = parts.path.lstrip("/")
        if not dbname:
            raise ConfigError("the PostgreSQL URL names no database (postgresql://host/DBNAME)")
        schema = parse_qs(parts.query).get("schema", ["public"])[0]
        if not schema.replace("_", "").isalnum():
            raise ConfigError(f"schema {schema!r} must be letters, digits and underscores")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
            dbname=dbname,
            schema=schema,
        )

    def conninfo(self) -> str:
        parts = [f"host={self.host}", f"port={self.port}", f"user={self.user}"]
        if self.password:
            parts.append(f"password={self.password}")
        parts.append(f"dbname={self.dbname}")
        return " ".join(parts)

    def library_env(self) -> dict[str, str]:
        """The `eventsourcing` library's settings for this database."""
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_SCHEMA": self.schema,
            "POSTGRES_POOL_SIZE": "5",
            "POSTGRES_MAX_OVERFLOW": "10",
            "POSTGRES_CONNECT_TIMEOUT": "10",
            "APPLICATION_RECORDER_TOPIC": "ticketlog.audit.leaves:LeafPostgresRecorder",
        }


DEFAULT_LOG_ORIGIN = "ticketlog.local/log"


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a positive number, got {text!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {text!r}")
    return value


def _audit_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The verifiable log's settings: signing key, log name, checkpoint cadence."""
    key_file = env.get("TICKETLOG_SIGNING_KEY_FILE")
    origin = env.get("TICKETLOG_LOG_ORIGIN") or DEFAULT_LOG_ORIGIN
    if any(c in origin for c in "+ \t\n") or not origin.isprintable():
        raise ConfigError("TICKETLOG_LOG_ORIGIN is printable text without '+' or spaces")
    return {
        "signing_key": env.get("TICKETLOG_SIGNING_KEY") or None,
        "signing_key_file": Path(key_file) if key_file else None,
        "log_origin": origin,
        "checkpoint_every": int(_positive(env, "TICKETLOG_CHECKPOINT_EVERY", 1000)),
        "checkpoint_interval": _positive(env, "TICKETLOG_CHECKPOINT_INTERVAL", 60.0),
    }


DEFAULT_KAFKA_TOPIC = "ticketlog.events"
VIEWS_FEEDS = ("inline", "kafka")


def _kafka_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """Kafka is optional: nothing here is needed unless TICKETLOG_KAFKA_BOOTSTRAP is set."""
    feed = env.get("TICKETLOG_VIEWS_FEED") or "inline"
    if feed not in VIEWS_FEEDS:
        raise ConfigError(f"TICKETLOG_VIEWS_FEED must be one of {', '.join(VIEWS_FEEDS)}")
    bootstrap = env.get("TICKETLOG_KAFKA_BOOTSTRAP") or None
    partitions = env.get("TICKETLOG_KAFKA_PARTITIONS") or "6"
    if not partitions.isdigit() or int(partitions) < 1:
        raise ConfigError("TICKETLOG_KAFKA_PARTITIONS must be a positive whole number")
    max_poll = env.get("TICKETLOG_KAFKA_MAX_POLL_MS") or "30000"
    if not max_poll.isdigit() or int(max_poll) < 1000:
        raise ConfigError("TICKETLOG_KAFKA_MAX_POLL_MS must be a whole number of at least 1000")
    return {
        "kafka_bootstrap": bootstrap,
        "kafka_max_poll_ms": int(max_poll),
        "kafka_topic": env.get("TICKETLOG_KAFKA_TOPIC") or DEFAULT_KAFKA_TOPIC,
        "kafka_partitions": int(partitions),
        "kafka_group": env.get("TICKETLOG_KAFKA_GROUP") or "ticketlog-projectors",
        "views_feed": feed,
    }


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str | None = None
    keyvault_url: str | None = None
    master_key: str | None = None
    master_key_file: Path | None = None
    retention_file: Path | None = None
    retention_interval: float = 3600.0
    signing_key: str | None = None
    signing_key_file: Path | None = None
    log_origin: str = DEFAULT_LOG_ORIGIN
    checkpoint_every: int = 1000
    checkpoint_interval: float = 60.0
    max_attachment_bytes: int = 25 * 1024 * 1024
    max_body_bytes: int = 1 << 20
    rate_limit: float = 50.0
    rate_burst: int = 100
    smtp_url: str | None = None
    kafka_bootstrap: str | None = None
    kafka_topic: str = DEFAULT_KAFKA_TOPIC
    kafka_partitions: int = 6
    kafka_group: str = "ticketlog-projectors"
    views_feed: str = "inline"
    kafka_max_poll_ms: int = 30_000
    log_format: str = "text"
    lock_timeout: int | None = None  # seconds a write waits for another's lock, then 503

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        data_dir = Path(env.get("TICKETLOG_DATA_DIR") or "./data")
        key_file = env.get("TICKETLOG_MASTER_KEY_FILE")
        retention_file = env.get("TICKETLOG_RETENTION_FILE")
        interval = env.get("TICKETLOG_RETENTION_INTERVAL") or "3600"
        try:
            retention_interval = float(interval)
        except ValueError:
            raise ConfigError(
                f"TICKETLOG_RETENTION_INTERVAL must be seconds, got {interval!r}"
            ) from None
        return cls(
            data_dir=data_dir,
            database_url=env.get("TICKETLOG_DATABASE_URL") or None,
            keyvault_url=env.get("TICKETLOG_KEYVAULT_URL") or None,
            master_key=env.get("TICKETLOG_MASTER_KEY") or None,
            master_key_file=Path(key_file) if key_file else None,
            retention_file=Path(retention_file) if retention_file else None,
            retention_interval=retention_interval,
            **_audit_settings(env),
            max_attachment_bytes=_positive_int(env, "TICKETLOG_MAX_ATTACHMENT_BYTES", 25 << 20),
            max_body_bytes=_positive_int(env, "TICKETLOG_MAX_BODY_BYTES", 1 << 20),
            **_rate_settings(env),
            smtp_url=env.get("TICKETLOG_SMTP_URL") or None,
            lock_timeout=_positive_int(env, "TICKETLOG_LOCK_TIMEOUT", 0) or None,
            **_kafka_settings(env),
            log_format=_log_format(env),
        )

    def require_kafka(self) -> str:
        """The bootstrap servers, or a ConfigError saying how to set them."""
        if not self.kafka_bootstrap:
            raise ConfigError(
                "this command needs Kafka: set TICKETLOG_KAFKA_BOOTSTRAP=host:port[,host:port]"
            )
        return self.kafka_bootstrap

    @property
    def postgres(self) -> PostgresURL | None:
        return PostgresURL.parse(self.database_url) if self.database_url else None

    @property
    def events_path(self) -> Path:
        return self.data_dir / "events.db"

    @property
    def views_path(self) -> Path:
        return self.data_dir / "views.db"

    @property
    def auth_path(self) -> Path:
        return self.data_dir / "auth.db"

    @property
    def keys_path(self) -> Path:
        """Where the SQLite key vault lives (when the vault is not in PostgreSQL)."""
        url = self.keyvault_url
        if url is None:
            return self.data_dir / "keys.db"
        if url.startswith("sqlite:///"):
            return Path(url.removeprefix("sqlite:///"))
        raise ConfigError("this key vault URL is not a SQLite file")

    @property
    def keyvault_is_postgres(self) -> bool:
        return bool(
            self.keyvault_url and self.keyvault_url.startswith(("postgresql:", "postgres:"))
        )

    @property
    def notify_path(self) -> Path:
        """Notification and webhook delivery state (SQLite); not disposable like views.db."""
        return self.data_dir / "notify.db"

    @property
    def blobs_path(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def key_file_path(self) -> Path:
        return self.master_key_file or self.data_dir / "master.key"

    @property
    def signing_key_path(self) -> Path:
        return self.signing_key_file or self.data_dir / "signing.key"

    def library_env(self) -> dict[str, str]:
        """Settings for the `eventsourcing` application: store only, no snapshots, no cache."""
        pg = self.postgres
        if pg is not None:
            # Writers take a table lock; the library tries ten times, so each try waits a
            # tenth of the whole (at least 1 s), and then the API answers 503 storage_busy.
            per_try = max(1, round((self.lock_timeout or 10) / 10))
            return {**pg.library_env(), "POSTGRES_LOCK_TIMEOUT": str(per_try)}
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(self.events_path),
            "SQLITE_LOCK_TIMEOUT": str(self.lock_timeout or 10),
            "APPLICATION_RECORDER_TOPIC": "ticketlog.audit.leaves:LeafSQLiteRecorder",
        }


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {text[:40]!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive")
    return value


def _rate_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """Requests per second per token (0 turns limiting off) and the burst a token may spend."""
    text = env.get("TICKETLOG_RATE_LIMIT") or "50"
    try:
        rate = float(text)
    except ValueError:
        raise ConfigError(
            f"TICKETLOG_RATE_LIMIT must be requests per second, got {text[:40]!r}"
        ) from None
    if rate < 0 or not math.isfinite(rate):
        raise ConfigError("TICKETLOG_RATE_LIMIT must be 0 (off) or a positive number")
    burst = _positive_int(env, "TICKETLOG_RATE_BURST", max(1, round(rate * 2)))
    return {"rate_limit": rate, "rate_burst": burst}


def _log_format(env: Mapping[str, str]) -> str:
    text = env.get("TICKETLOG_LOG_FORMAT") or "text"
    if text not in LOG_FORMATS:
        raise ConfigError(f"TICKETLOG_LOG_FORMAT must be text or json, got {text[:40]!r}")
    return text
