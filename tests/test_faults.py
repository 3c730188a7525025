"""Faults an operator meets: a broken key vault at start, a full disk, a database held locked.

Every refusal to start must leave every file as it was; every failed command must store
nothing, or say that it did store it.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.tokens import Role
from crypto.master import MasterKey
from tests.conftest import view_rows
from tests.test_cli import CLI, run_cli, serving
from ticketlog.config import PostgresURL, Settings
from ticketlog.runtime import PG_EVENTS_TABLE, Runtime, all_views, open_views_db

FAST_LOCKS = {"TICKETLOG_LOCK_TIMEOUT": "1", "TICKETLOG_RATE_LIMIT": "0"}


def snapshot(data: Path) -> dict[str, bytes]:
    """Every file under the data dir, by relative path, with its bytes."""
    return {
        str(p.relative_to(data)): p.read_bytes() for p in sorted(data.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with a vault, a master key file and a log holding personal data."""
    data = tmp_path_factory.mktemp("seeded") / "data"
    rt = Runtime.open(Settings(data_dir=data))
    try:
        customer = rt.desk.register_user("customer", "Vera Faultless", "vera@example.com")
        rt.desk.open_ticket(customer, "Printer on fire", "Smoke everywhere")
        rt.runner.catch_up()
    finally:
        rt.close()
    return data


def _overwrite(path: Path, offset: int, length: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(os.urandom(length))


def _truncate(path: Path, size: int) -> None:
    with path.open("r+b") as f:
        f.truncate(size)


def _foreign_database(path: Path) -> None:
    path.unlink()
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('not a vault')")
    conn.commit()
    conn.close()


# (fault, what the one-line refusal must say)
VAULT_FAULTS: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "missing": (lambda d: (d / "keys.db").unlink(), ["keys.db", "missing", "restore"]),
    "truncated to nothing": (lambda d: _truncate(d / "keys.db", 0), ["keys.db", "missing"]),
    "truncated by half": (
        lambda d: _truncate(d / "keys.db", (d / "keys.db").stat().st_size // 2),
        ["keys.db", "corrupt", "restore"],
    ),
    "garbage over the header": (
        lambda d: _overwrite(d / "keys.db", 0, 4096),
        ["keys.db", "corrupt", "not a SQLite database", "restore"],
    ),
    "garbage over the pages": (
        lambda d: _overwrite(d / "keys.db", 4096, (d / "keys.db").stat().st_size - 4096),
        ["keys.db", "corrupt", "restore"],
    ),
    "a database without the vault tables": (
        lambda d: _foreign_database(d / "keys.db"),
        ["keys.db", "not a ticketlog key vault", "TICKETLOG_KEYVAULT_URL"],
    ),
    "master key file missing": (
        lambda d: (d / "master.key").unlink(),
        ["master.key", "missing", "TICKETLOG_MASTER_KEY"],
    ),
}


def _assert_refused(result: subprocess.CompletedProcess[str], must_say: list[str]) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    assert lines[0].startswith("ticketlog: error: ")
    for words in must_say:
        assert words in lines[0]


@pytest.mark.parametrize("fault", list(VAULT_FAULTS))
def test_serve_refuses_a_broken_vault_and_changes_nothing(
    seeded: Path, tmp_path: Path, fault: str
) -> None:
    data = tmp_path / "data"
    shutil.copytree(seeded, data)
    damage, must_say = VAULT_FAULTS[fault]
    damage(data)
    before = snapshot(data)
    _assert_refused(run_cli(data, "serve"), must_say)
    assert snapshot(data) == before, "a refused start must create and write nothing"


def test_serve_refuses_a_wrong_master_key_and_changes_nothing(seeded: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(seeded, data)
    before = snapshot(data)
    result = run_cli(data, "serve", env={"TICKETLOG_MASTER_KEY": MasterKey.new_text()})
    _assert_refused(result, ["master key does not open", "keys.db", "TICKETLOG_MASTER_KEY"])
    assert snapshot(data) == before


@pytest.mark.parametrize("unreadable", ["keys.db", "master.key"])
def test_serve_refuses_an_unreadable_vault_and_changes_nothing(
    seeded: Path, unreadable: str
) -> None:
    # chmod 000 stops no one running as root: then serve runs as `nobody`, who owns the files.
    as_root = os.geteuid() == 0
    if as_root and shutil.which("setpriv") is None:
        pytest.skip("running as root, where chmod 000 blocks nothing, and setpriv is missing")
    base = Path(tempfile.mkdtemp(prefix="ticketlog-unreadable-"))
    try:
        base.chmod(0o755)
        data = base / "data"
        shutil.copytree(seeded, data)
        if as_root:
            for path in [data, *data.rglob("*")]:
                os.chown(path, 65534, 65534)
        before = snapshot(data)
        mode = (data / unreadable).stat().st_mode
        (data / unreadable).chmod(0)
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        result = subprocess.run(
            [*(as_nobody if as_root else []), *CLI, "serve"],
            env={**os.environ, "TICKETLOG_DATA_DIR": str(data), "HOME": str(base)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        _assert_refused(result, [unreadable, "cannot be read", "Permission denied", "permissions"])
        (data / unreadable).chmod(mode)
        assert snapshot(data) == before
    finally:
        shutil.rmtree(base)


def test_serve_refuses_an_unreachable_postgres_vault(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {
        "TICKETLOG_KEYVAULT_URL": "postgresql://postgres@127.0.0.1:1/test?schema=vault",
        "TICKETLOG_MASTER_KEY": MasterKey.new_text(),
    }
    result = run_cli(data, "serve", env=env)
    _assert_refused(result, ["PostgreSQL key vault", "cannot be used", "check the URL"])
    assert snapshot(data) == {}


def test_serve_refuses_an_unreachable_event_store_in_one_line(tmp_path: Path) -> None:
    env = {"TICKETLOG_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/test"}
    result = run_cli(tmp_path / "data", "serve", env=env)
    _assert_refused(result, ["database cannot be used", "Connection refused"])


def test_serve_refuses_a_locked_event_store_in_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    service_token(data)
    holder = sqlite3.connect(data / "events.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another process writing, or a stuck one
        result = run_cli(data, "serve", env={"TICKETLOG_LOCK_TIMEOUT": "1"})
    finally:
        holder.close()
    _assert_refused(result, ["database cannot be used", "locked"])


@pytest.mark.postgres
def test_serve_refuses_an_empty_postgres_vault_beside_a_non_empty_log(
    seeded: Path, tmp_path: Path, postgres_url: str, pg_schema: str
) -> None:
    data = tmp_path / "data"
    shutil.copytree(seeded, data)
    before = snapshot(data)
    env = {
        "TICKETLOG_KEYVAULT_URL": f"{postgres_url}?schema={pg_schema}",
        "TICKETLOG_MASTER_KEY": MasterKey.new_text(),
    }
    result = run_cli(data, "serve", env=env)
    _assert_refused(result, ["key vault", pg_schema, "missing or empty"])
    assert snapshot(data) == before


# Storage faults on a live server -------------------------------------------------------------


def count_events(data: Path, topic: str | None = None) -> int:
    conn = sqlite3.connect(data / "events.db", timeout=30)
    try:
        if topic is None:
            return int(conn.execute("SELECT count(*) FROM stored_events").fetchone()[0])
        sql = "SELECT count(*) FROM stored_events WHERE topic = ?"
        return int(conn.execute(sql, [topic]).fetchone()[0])
    finally:
        conn.close()


def dump_views(settings: Settings | Path) -> dict[str, list[str]]:
    """Every view table's rows, in a stable order (SQLite file or PostgreSQL schema)."""
    if isinstance(settings, Path):
        settings = Settings(data_dir=settings)
    db = open_views_db(settings)
    try:
        return view_rows(db, all_views())
    finally:
        db.close()


def assert_a_rebuild_gives_the_same_views(
    settings: Settings | Path, env: dict[str, str] | None = None
) -> None:
    """The views agree with the log: rebuilding them from it changes no row."""
    data = settings if isinstance(settings, Path) else settings.data_dir
    before = dump_views(settings)
    rebuilt = run_cli(data, "views", "rebuild", env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert dump_views(settings) == before


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Another process's write transaction on a database, held until the block ends."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def wait_for_views(client: httpx.Client) -> None:
    for _ in range(300):  # a bounded wait for the follower, not a timing assertion
        if all(v["lag"] == 0 for v in client.get("/healthz").json()["views"]):
            return
        time.sleep(0.1)
    raise AssertionError("the views did not catch up")


def person(name: str) -> dict[str, str]:
    return {"kind": "customer", "name": name, "email": f"{name.lower()}@example.com"}


USERS = "domain.user:User.Registered"


def service_token(data: Path | Settings) -> str:
    """A token made in process (faster than the CLI on a busy machine)."""
    rt = Runtime.open(data if isinstance(data, Settings) else Settings(data_dir=data))
    try:
        return rt.tokens.create(Role.SERVICE, "faults")[1]
    finally:
        rt.close()


def test_a_locked_database_answers_storage_busy_and_stores_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = service_token(data)
    with (
        serving(data, env=FAST_LOCKS) as (base, _),
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client,
    ):
        assert client.post("/v1/users", json=person("Early")).status_code == 201
        # The event log, the key vault (a new person needs a new key), and the auth database
        # (an Idempotency-Key is reserved there before the command runs).
        for n, database in enumerate(["events.db", "keys.db", "auth.db"]):
            before = count_events(data)
            again = {"Idempotency-Key": f"busy-{database}"}
            with locked(data / database):
                busy = client.post("/v1/users", json=person(f"Blocked{n}"), headers=again)
                assert busy.status_code == 503, (database, busy.text)
                assert busy.json()["error"]["code"] == "storage_busy", database
                assert busy.headers["Retry-After"] == "1"
            assert count_events(data) == before, f"{database}: a refused command stored"
            # Released: the same request goes through, once.
            done = client.post("/v1/users", json=person(f"Blocked{n}"), headers=again)
            assert done.status_code == 201, (database, done.text)
            assert client.get(f"/v1/users/{done.json()['id']}").json()["name"] == f"Blocked{n}"
            assert count_events(data, USERS) == n + 2, database
        wait_for_views(client)
    assert_a_rebuild_gives_the_same_views(data)


@pytest.mark.postgres
def test_a_locked_postgres_log_answers_storage_busy(
    tmp_path: Path, postgres_url: str, pg_schema: str, pg_settings: Settings
) -> None:
    settings = pg_settings
    token = service_token(settings)
    env = {"TICKETLOG_DATABASE_URL": str(settings.database_url)}
    with (
        server(settings.data_dir, tmp_path / "serve.log", env) as (base, _),
        httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120
        ) as client,
        psycopg.connect(PostgresURL.parse(postgres_url).conninfo()) as other,
    ):
        assert client.post("/v1/users", json=person("Early")).status_code == 201
        # A long transaction elsewhere (a migration, a dump taking locks) holds the log.
        other.execute(f'LOCK TABLE "{pg_schema}".{PG_EVENTS_TABLE} IN EXCLUSIVE MODE')
        busy = client.post("/v1/users", json=person("Blocked"))
        other.rollback()
        assert busy.status_code == 503, busy.text
        assert busy.json()["error"]["code"] == "storage_busy"
        done = client.post("/v1/users", json=person("Blocked"))
        assert done.status_code == 201, done.text
    rt = Runtime.open(settings)
    try:
        stored = rt.desk.recorder.select_notifications(start=0, limit=1000)
    finally:
        rt.close()
    assert sum(n.topic == USERS for n in stored) == 2, "the refused command stored nothing"


def test_locked_views_say_the_command_was_stored_and_catch_up_later(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = service_token(data)
    with (
        serving(data, env=FAST_LOCKS) as (base, _),
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client,
    ):
        retry_key = {"Idempotency-Key": "views-locked-1"}
        with locked(data / "views.db"):
            lagging = client.post("/v1/users", json=person("Stored"), headers=retry_key)
            assert lagging.status_code == 503, lagging.text
            assert lagging.json()["error"]["code"] == "views_lagging"
            assert "was stored" in lagging.json()["error"]["message"]
        assert count_events(data, USERS) == 1  # stored once: the client must not repeat it
        # A client that retries anyway, with its Idempotency-Key, stores nothing a second time.
        again = client.post("/v1/users", json=person("Stored"), headers=retry_key)
        assert again.status_code == 503, again.text
        assert again.headers["Idempotent-Replayed"] == "true"
        assert count_events(data, USERS) == 1
        wait_for_views(client)  # the follower applies it once the lock is gone
        views = sqlite3.connect(data / "views.db")
        [(user_id,)] = views.execute("SELECT id FROM view_users").fetchall()
        views.close()
        assert client.get(f"/v1/users/{user_id}").json()["name"] == "Stored"
    assert_a_rebuild_gives_the_same_views(data)


@contextmanager
def small_disk(parent: Path, size: str = "8m") -> Iterator[Path]:
    """A real filesystem that fills up: a tmpfs of a few MiB mounted at `parent`/disk (needs
    root; skipped otherwise)."""
    disk = parent / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Write until the filesystem refuses another byte; delete the file to free the space."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f:
        for chunk in (1 << 16, 512, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
    return filler


def server(
    data: Path, log: Path, env: dict[str, str] | None = None
) -> AbstractContextManager[tuple[str, subprocess.Popen[str]]]:
    """`ticketlog serve` with short lock timeouts, its output in a file."""
    return serving(data, {**FAST_LOCKS, **(env or {})}, log=log)


def test_a_full_disk_answers_storage_full_and_stores_nothing(tmp_path: Path) -> None:
    with small_disk(tmp_path) as disk:
        data = disk / "data"
        token = service_token(data)
        with (
            server(data, tmp_path / "serve.log") as (base, _),
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client,
        ):
            customer = client.post("/v1/users", json=person("Dora")).json()["id"]
            ticket = client.post(
                "/v1/tickets", json={"requester_id": customer, "subject": "Disk", "body": "Full"}
            ).json()["id"]
            before = count_events(data)
            filler = fill(disk)

            # A new person needs a new key: the vault cannot write it.
            full = client.post("/v1/users", json=person("Nobody"))
            assert full.status_code == 503, full.text
            assert full.json()["error"]["code"] == "storage_full"
            assert int(full.headers["Retry-After"]) > 0
            # Comments need no new key: the log (or, once stored, the views) cannot grow.
            stored, _ = comment_until_refused(client, ticket, customer, "comment {}")
            filler.unlink()
            assert_the_next_comment_lands(client, ticket, customer, stored)
            assert count_events(data) > before
            assert count_events(data, USERS) == 1, "the refused registration left an event"
        conn = sqlite3.connect(data / "events.db")
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
        assert_a_rebuild_gives_the_same_views(data)


def comment_until_refused(
    client: httpx.Client, ticket: str, author: str, body: str
) -> tuple[list[str], httpx.Response]:
    """Comment (body formatted with a count) until the server refuses with a 503: the bodies
    it stored, and the refusal. Each answer must be true: 201 and views_lagging were stored,
    storage_full was not."""
    stored = []
    for n in range(300):
        text = body.format(n)
        answer = client.post(
            f"/v1/tickets/{ticket}/comments",
            json={"author_id": author, "body": text, "public": True},
        )
        assert answer.status_code in (201, 503), answer.text
        code = answer.json()["error"]["code"] if answer.status_code == 503 else None
        assert code in (None, "storage_full", "views_lagging"), answer.text
        if code != "storage_full":
            stored.append(text)
        if code is not None:
            return stored, answer
    raise AssertionError("the disk never filled")


def assert_the_next_comment_lands(
    client: httpx.Client, ticket: str, author: str, stored: list[str]
) -> None:
    """Once space is freed: a comment is stored, and the ticket shows exactly what was."""
    after = client.post(
        f"/v1/tickets/{ticket}/comments",
        json={"author_id": author, "body": "after", "public": True},
    )
    assert after.status_code == 201, after.text
    wait_for_views(client)
    shown = client.get(f"/v1/tickets/{ticket}").json()["comments"]
    assert [c["body"] for c in shown] == [*stored, "after"]


@contextmanager
def database_on_small_disk(postgres_url: str) -> Iterator[tuple[str, Path]]:
    """A PostgreSQL database whose tables go to a tablespace on a 16 MiB tmpfs: its URL and
    the disk. The server keeps its WAL and catalogs on its own disk; only tables fill up.
    Needs root (to mount) and the server on this machine (skipped otherwise)."""
    name = "tl_full_" + uuid.uuid4().hex[:10]
    parent = Path("/var/tmp") / name  # the server's user must reach it: not under root's tmp
    parent.mkdir()
    try:
        with small_disk(parent, "16m") as disk:
            shutil.chown(disk, "postgres", "postgres")
            admin = psycopg.connect(PostgresURL.parse(postgres_url).conninfo(), autocommit=True)
            try:
                admin.execute(f"CREATE TABLESPACE {name} LOCATION '{disk}'")
                admin.execute(f"CREATE DATABASE {name}")
                admin.execute(f"ALTER DATABASE {name} SET default_tablespace = {name}")
                yield f"postgresql://postgres@127.0.0.1:5432/{name}?schema=ticketlog", disk
            finally:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                admin.execute(f"DROP TABLESPACE IF EXISTS {name}")
                admin.close()
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.postgres
def test_a_full_postgres_disk_answers_storage_full_and_loses_nothing(
    tmp_path: Path, postgres_url: str
) -> None:
    with database_on_small_disk(postgres_url) as (url, disk):
        settings = Settings(data_dir=tmp_path / "data", database_url=url)
        token = service_token(settings)
        env = {"TICKETLOG_DATABASE_URL": url}
        with (
            server(settings.data_dir, tmp_path / "serve.log", env) as (base, _),
            httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120
            ) as client,
        ):
            customer = client.post("/v1/users", json=person("Pia")).json()["id"]
            ticket = client.post(
                "/v1/tickets", json={"requester_id": customer, "subject": "Disk", "body": "Full"}
            ).json()["id"]
            filler = fill(disk)
            # Rows fit in the tables' free space until a table must grow: then class 53.
            stored, refusal = comment_until_refused(client, ticket, customer, "{} " + "x" * 2000)
            assert int(refusal.headers["Retry-After"]) > 0
            filler.unlink()
            assert_the_next_comment_lands(client, ticket, customer, stored)
        rt = Runtime.open(settings)
        try:
            events = rt.desk.recorder.select_notifications(start=0, limit=10_000)
        finally:
            rt.close()
        comments = [n for n in events if n.topic == "domain.ticket:Ticket.CommentAdded"]
        assert len(comments) == len(stored) + 1, "a refused comment left an event"


# kill -9 under load ---------------------------------------------------------------------------


@dataclass
class Acknowledged:
    """What the server answered 2xx to, as the clients saw it."""

    users: dict[str, str] = field(default_factory=dict)  # id -> name
    tickets: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (requester, subject)
    comments: dict[str, list[str]] = field(default_factory=dict)  # ticket id -> bodies, in order
    server_errors: list[str] = field(default_factory=list)
    cut_off: int = 0  # clients whose request was in flight when the server died
    in_flight: list[tuple[str, dict[str, Any], str]] = field(
        default_factory=list
    )  # path, body, key
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return sum(len(c) for c in self.comments.values())


def drive(base: str, token: str, worker: int, acked: Acknowledged) -> None:
    """One client: register a person, open their ticket, comment on it; until the server dies."""
    headers = {"Authorization": f"Bearer {token}"}
    sending: tuple[str, dict[str, Any], str] = ("", {}, "")

    def post(client: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
        nonlocal sending
        sending = (path, body, f"load-{worker}-{uuid.uuid4().hex}")
        return client.post(path, json=body, headers={"Idempotency-Key": sending[2]})

    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        for n in range(1000):
            try:
                name = f"Load{worker}x{n}"
                user = post(client, "/v1/users", person(name))
                if user.status_code != 201:
                    acked.server_errors.append(user.text)
                    return
                uid = user.json()["id"]
                with acked.lock:
                    acked.users[uid] = name
                subject = f"Ticket {worker}/{n}"
                ticket = post(
                    client, "/v1/tickets", {"requester_id": uid, "subject": subject, "body": "Help"}
                )
                if ticket.status_code != 201:
                    acked.server_errors.append(ticket.text)
                    return
                tid = ticket.json()["id"]
                with acked.lock:
                    acked.tickets[tid] = (uid, subject)
                    acked.comments[tid] = []
                for k in range(3):
                    body = f"comment {k} on {subject}"
                    comment = post(
                        client,
                        f"/v1/tickets/{tid}/comments",
                        {"author_id": uid, "body": body, "public": True},
                    )
                    if comment.status_code != 201:
                        acked.server_errors.append(comment.text)
                        return
                    with acked.lock:
                        acked.comments[tid].append(body)
            except httpx.TransportError:
                with acked.lock:
                    acked.cut_off += 1
                    acked.in_flight.append(sending)
                return  # the server was killed: this request's fate is unknown, and may be either


def test_kill_9_under_load_loses_no_acknowledged_command(
    settings: Settings, tmp_path: Path
) -> None:
    env = {"TICKETLOG_LOCK_TIMEOUT": "10"}
    if settings.database_url:
        env["TICKETLOG_DATABASE_URL"] = settings.database_url
    rt = Runtime.open(settings)
    try:
        service = rt.tokens.create(Role.SERVICE, "load")[1]
        auditor = rt.tokens.create(Role.AUDITOR, "checks")[1]
    finally:
        rt.close()
    acked = Acknowledged()
    log = tmp_path / "serve.log"
    with server(settings.data_dir, log, env) as (base, proc):
        workers = [threading.Thread(target=drive, args=(base, service, n, acked)) for n in range(4)]
        for worker in workers:
            worker.start()
        for _ in range(1200):  # bounded: until enough commands were acknowledged
            if acked.count() >= 30 or not any(w.is_alive() for w in workers):
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for worker in workers:
            worker.join(timeout=120)
    assert acked.server_errors == []
    assert acked.count() >= 30
    assert acked.cut_off >= 1, "the kill should land while requests are in flight"

    # Two minutes pass: what the requests cut off had reserved (their Idempotency-Key, a new
    # person's address) is now old enough to count as abandoned.
    rt = Runtime.open(settings)
    try:
        earlier = (datetime.now(UTC) - timedelta(minutes=2)).isoformat()
        with rt.tokens.db.transaction() as c:
            c.execute("UPDATE idempotency_keys SET created_at = ? WHERE status IS NULL", [earlier])
        with rt.vault.transaction() as c:
            c.execute("UPDATE email_index SET created_at = ?", [earlier])
    finally:
        rt.close()

    # Restart on the same files: every acknowledged command is there, nothing half-applied.
    with (
        server(settings.data_dir, log, env) as (base, _),
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {service}"}) as client,
    ):
        audit = {"Authorization": f"Bearer {auditor}"}
        assert all(v["lag"] == 0 for v in client.get("/healthz").json()["views"])
        stored_registrations: list[str] = []
        # Each client cut off retries its request with its key: stored exactly once, whether
        # the kill fell before the command was stored or after (its answer then lost).
        for path, body, key in acked.in_flight:
            retried = client.post(path, json=body, headers={"Idempotency-Key": key})
            stored_before = retried.status_code == 409 and retried.json()["error"]["code"] in (
                "idempotency_key_stored",
                "email_taken",  # a registration stored before the kill: its address is taken
            )
            assert retried.status_code == 201 or stored_before, retried.text
            if path == "/v1/users" and stored_before:
                stored_registrations.append(body["name"])
            if path.endswith("/comments"):
                acked.comments[path.split("/")[3]].append(body["body"])
        for uid, name in acked.users.items():
            shown = client.get(f"/v1/users/{uid}")
            assert shown.status_code == 200
            assert shown.json()["name"] == name
        for tid, (requester, subject) in acked.tickets.items():
            ticket = client.get(f"/v1/tickets/{tid}").json()
            assert (ticket["requester_id"], ticket["subject"]) == (requester, subject)
            assert [c["body"] for c in ticket["comments"]] == acked.comments[tid]
        # Every ticket the views know, acknowledged or in flight, is whole in the log.
        listed: list[dict[str, Any]] = []
        params = {"limit": "200"}
        while True:
            page = client.get("/v1/tickets", params=params).json()
            listed += page["items"]
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
        assert set(acked.tickets) <= {t["id"] for t in listed}
        subjects = Counter(t["subject"] for t in listed)
        assert subjects.most_common(1)[0][1] == 1, "a retried ticket was opened twice"
        for summary in listed:
            history = client.get(f"/v1/tickets/{summary['id']}/history", headers=audit)
            assert history.status_code == 200, history.text
            events = history.json()["events"]
            assert events[0]["type"].endswith("Opened")
            assert [e["version"] for e in events] == list(range(1, summary["version"] + 1))
            assert client.get(f"/v1/tickets/{summary['id']}").status_code == 200
    # And the other way: every ticket the log holds is in the views.
    rt = Runtime.open(settings)
    try:
        stored = rt.desk.recorder.select_notifications(start=0, limit=1_000_000)
        names = Counter(rt.desk.mapper.to_domain_event(n).name for n in stored if n.topic == USERS)
    finally:
        rt.close()
    assert names.most_common(1)[0][1] == 1, "a retried registration was stored twice"
    assert all(names[name] == 1 for name in stored_registrations)
    opened = {str(n.originator_id) for n in stored if n.topic == "domain.ticket:Ticket.Opened"}
    assert opened == {t["id"] for t in listed}
    assert_a_rebuild_gives_the_same_views(settings, env)
