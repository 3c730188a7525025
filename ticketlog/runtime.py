"""Opens everything a process needs from the settings, in a safe order, and closes it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg

from api.tokens import TokenStore
from crypto.errors import KeyVaultError
from crypto.master import MasterKey
from crypto.vault import KeyVault
from projections.attachments import AttachmentQueries, AttachmentsView
from projections.compliance import ComplianceView
from projections.queries import Queries
from projections.report_days import DayTallies
from projections.runner import ProjectionRunner
from projections.sla_view import SlaView
from projections.sql import Database, ensure_schema
from projections.store import ViewStore
from projections.views import HelpDeskView, View
from ticketlog.audit.store import AuditLog, Progress

if TYPE_CHECKING:
    from ticketlog.audit.signing import Checkpointer
from ticketlog.attachments import Attachments
from ticketlog.blobs import BlobStore, FileBlobStore, TableBlobStore
from ticketlog.config import PostgresURL, Settings
from ticketlog.desk import Clock, HelpDesk
from ticketlog.notify.outbox import Outbox
from ticketlog.notify.webhooks import WebhookStore


def all_views() -> list[View]:
    return [HelpDeskView(), ComplianceView(), SlaView(), AttachmentsView()]


# The library names PostgreSQL event tables after the application (HelpDesk.name).
PG_EVENTS_TABLE = f"{HelpDesk.name.lower()}_events"


def event_store_has_events(settings: Settings) -> bool:
    """Look without creating anything: a fresh vault beside a non-empty log means lost keys."""
    pg = settings.postgres
    if pg is None:
        path = settings.events_path
        if not path.exists():
            return False
        # With no WAL to replay, read the file as it is: even a read-only open of a WAL
        # database would leave new -wal and -shm files behind.
        wal = path.with_name(path.name + "-wal")
        mode = "ro" if wal.exists() and wal.stat().st_size else "ro&immutable=1"
        try:
            lite = sqlite3.connect(f"file:{path}?mode={mode}", uri=True)
            try:
                if not lite.execute(
                    "SELECT 1 FROM sqlite_master WHERE name='stored_events'"
                ).fetchone():
                    return False
                return lite.execute("SELECT 1 FROM stored_events LIMIT 1").fetchone() is not None
            finally:
                lite.close()
        except sqlite3.DatabaseError as e:
            raise KeyVaultError(
                f"the event store {path} cannot be read ({e}), so a new key vault cannot be "
                "made safely; fix or restore it"
            ) from None
    with psycopg.connect(pg.conninfo(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", [f'"{pg.schema}".{PG_EVENTS_TABLE}']
        ).fetchone()
        if not row or not row[0]:
            return False
        return (
            conn.execute(f'SELECT 1 FROM "{pg.schema}".{PG_EVENTS_TABLE} LIMIT 1').fetchone()
            is not None
        )


def open_views_db(settings: Settings) -> Database:
    pg = settings.postgres
    return (
        Database.postgresql(pg)
        if pg
        else Database.sqlite(settings.views_path, settings.lock_timeout)
    )


def open_vault(settings: Settings) -> KeyVault:
    if settings.keyvault_is_postgres:
        if not settings.master_key and not settings.key_file_path.exists():
            raise KeyVaultError(
                "a PostgreSQL key vault needs TICKETLOG_MASTER_KEY (or an existing key file)"
            )
        master = _master_key(settings, may_create=False)
        assert settings.keyvault_url is not None
        url = PostgresURL.parse(settings.keyvault_url)
        if not KeyVault.postgres_holds_keys(url.conninfo(), url.schema):
            _refuse_a_new_vault_beside_events(settings, f"PostgreSQL schema {url.schema}")
        return KeyVault.open_postgres(url.conninfo(), url.schema, master)
    keys_path = settings.keys_path
    holds_keys = KeyVault.sqlite_holds_keys(keys_path)
    if not holds_keys:
        _refuse_a_new_vault_beside_events(settings, str(keys_path))
    master = _master_key(settings, may_create=not holds_keys)
    timeout = settings.lock_timeout
    return KeyVault.open_sqlite(keys_path, master, busy_timeout=30 if timeout is None else timeout)


def _refuse_a_new_vault_beside_events(settings: Settings, where: str) -> None:
    if event_store_has_events(settings):
        raise KeyVaultError(
            f"the key vault {where} is missing or empty but the event store holds events; "
            "restore the vault (and its master key) from backup — starting with a new vault "
            "would make every stored personal field unreadable"
        )


def _master_key(settings: Settings, *, may_create: bool) -> MasterKey:
    if settings.master_key:
        return MasterKey.from_text(settings.master_key)
    try:
        return MasterKey.load_or_create_file(settings.key_file_path, may_create=may_create)
    except OSError as e:
        raise KeyVaultError(
            f"master key file {settings.key_file_path} cannot be read ({e.strerror}); fix its "
            "permissions or set TICKETLOG_MASTER_KEY"
        ) from None


@dataclass
class Runtime:
    settings: Settings
    vault: KeyVault
    desk: HelpDesk
    views: ViewStore
    runner: ProjectionRunner
    queries: Queries
    tokens: TokenStore
    attachments: Attachments
    notifications: Outbox
    webhooks: WebhookStore
    audit: AuditLog | None = None
    # Whole days of SLA reports, counted once per process (projections/report_days.py).
    report_days: DayTallies = field(default_factory=DayTallies)
    closers: list[Callable[[], None]] = field(default_factory=list)
    _closed: bool = field(default=False, repr=False)
    _checkpointer: Checkpointer | None = field(default=None, repr=False)

    def checkpointer(self) -> Checkpointer:
        """The process's one checkpointer: it keeps the tree's frontier between checkpoints."""
        if self._checkpointer is None:
            from ticketlog.audit.signing import Checkpointer, load_signer

            assert self.audit is not None
            signer = load_signer(self.settings, may_create=True)
            self._checkpointer = Checkpointer(self.audit, signer, self.settings.log_origin)
        return self._checkpointer

    @classmethod
    def open(
        cls, settings: Settings, clock: Clock | None = None, progress: Progress | None = None
    ) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        vault = open_vault(settings)
        try:
            pg = settings.postgres
            if pg is not None:
                ensure_schema(pg)
            desk = HelpDesk(vault, settings.library_env(), clock=clock)
            views_db = open_views_db(settings)
            auth_db = (
                Database.postgresql(pg)
                if pg
                else Database.sqlite(settings.auth_path, settings.lock_timeout)
            )
            audit = AuditLog.beside(settings, views_db)
            audit.backfill(progress)  # once, for event stores made before the Merkle leaves
        except Exception:
            vault.close()
            raise
        views = ViewStore(views_db, all_views())
        closers: list[Callable[[], None]] = []
        runner: ProjectionRunner
        if settings.views_feed == "kafka":
            from ticketlog.relay import kafka_fed_views

            runner, close_ledger = kafka_fed_views(settings, desk, views)
            closers.append(close_ledger)
        else:
            runner = ProjectionRunner(desk.recorder, desk.sealing_mapper, views)
        # On PostgreSQL, blobs and delivery state share the views' connection pool.
        blobs: BlobStore = TableBlobStore(views_db) if pg else FileBlobStore(settings.blobs_path)
        attachments = Attachments(
            desk,
            vault,
            blobs,
            AttachmentQueries(views_db),
            runner,
            max_bytes=settings.max_attachment_bytes,
        )
        notify_db = views_db if pg else Database.sqlite(settings.notify_path, settings.lock_timeout)
        notifications = Outbox(notify_db, desk.recorder, desk.sealing_mapper)
        return cls(
            settings=settings,
            vault=vault,
            desk=desk,
            views=views,
            runner=runner,
            queries=Queries(views_db),
            tokens=TokenStore(auth_db),
            audit=audit,
            attachments=attachments,
            notifications=notifications,
            webhooks=WebhookStore(notify_db, vault, desk.recorder),
            closers=closers,
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for close in self.closers:
            close()
        self.tokens.db.close()
        if self.audit is not None:
            self.audit.close()
        if self.notifications.db is not self.views.db:
            self.notifications.db.close()
        self.views.close()
        self.desk.close()
        self.vault.close()
