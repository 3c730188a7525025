"""The verifiable log on real SQLite and PostgreSQL stores: tampering with the stored rows
directly is caught and named; erasure changes no hash; checkpoints are never signed over a
broken log; old stores get their leaves once."""

from __future__ import annotations

import base64
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from crypto.checkpoint import NoteSigner, open_checkpoint
from crypto.merkle import root_of, verify_consistency, verify_inclusion
from domain.ticket import Status
from ticketlog.audit.leaves import event_leaf_hash
from ticketlog.audit.signing import Checkpointer, CheckpointRefused, load_signer
from ticketlog.audit.store import AuditLog
from ticketlog.audit.verify import Report, verify_log
from ticketlog.config import Settings
from ticketlog.runtime import Runtime


class Store:
    """Raw SQL on the event store, the way an intruder with database access would write it."""

    def __init__(self, settings: Settings) -> None:
        self.pg = settings.postgres
        if self.pg is None:
            self.conn: Any = sqlite3.connect(settings.events_path, isolation_level=None)
            self.table, self.id = "stored_events", "rowid"
        else:
            self.conn = psycopg.connect(self.pg.conninfo(), autocommit=True)
            self.conn.execute(f'SET search_path TO "{self.pg.schema}"')
            self.table, self.id = "ticketlog_events", "notification_id"

    def run(self, sql: str, *params: object) -> list[Any]:
        sql = sql.format(t=self.table, id=self.id)
        if self.pg is not None:
            sql = sql.replace("?", "%s")
        cur = self.conn.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []

    def ids(self) -> list[int]:
        return [r[0] for r in self.run("SELECT {id} FROM {t} ORDER BY {id}")]

    def swap(self, a: int, b: int) -> None:
        if self.pg is not None:
            self.run("UPDATE {t} SET {id} = -1 WHERE {id} = ?", a)
            self.run("UPDATE {t} SET {id} = ? WHERE {id} = ?", a, b)
            self.run("UPDATE {t} SET {id} = ? WHERE {id} = -1", b)
            return
        cols = "originator_id, originator_version, topic, state"
        row_a = self.run(f"SELECT {cols} FROM {{t}} WHERE rowid = ?", a)[0]
        row_b = self.run(f"SELECT {cols} FROM {{t}} WHERE rowid = ?", b)[0]
        sets = "originator_id = ?, originator_version = ?, topic = ?, state = ?"
        self.run(f"UPDATE {{t}} SET {sets} WHERE rowid = ?", "tmp", -1, "", b"", a)
        self.run(f"UPDATE {{t}} SET {sets} WHERE rowid = ?", *row_a, b)
        self.run(f"UPDATE {{t}} SET {sets} WHERE rowid = ?", *row_b, a)

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = Store(settings)
    yield s
    s.close()


def seed(runtime: Runtime) -> dict[str, uuid.UUID]:
    """Ten events: three people (fresh addresses each call, as addresses are unique), two
    tickets."""
    desk = runtime.desk
    at = f"{uuid.uuid4().hex[:6]}.example"
    ada = desk.register_user("customer", "Ada Lovelace", f"ada@{at}")
    bob = desk.register_user("customer", "Bob Stone", f"bob@{at}")
    agent = desk.register_user("agent", "Grace Hopper", f"grace@{at}")
    ticket = desk.open_ticket(ada, "Printer on fire", "It is really on fire")
    desk.add_comment(ticket, agent, "Have you tried water?", True)
    desk.assign(ticket, agent)
    desk.change_status(ticket, Status.PENDING)
    other = desk.open_ticket(bob, "Login fails", "Since Monday")
    desk.add_comment(other, bob, "Still failing", True)
    return {"ada": ada, "bob": bob, "agent": agent, "ticket": ticket, "other": other}


def checkpoint(runtime: Runtime) -> str:
    assert runtime.audit is not None
    signer = load_signer(runtime.settings, may_create=True)
    return Checkpointer(runtime.audit, signer, runtime.settings.log_origin).make().note


def verify(runtime: Runtime, *notes: str) -> Report:
    from ticketlog.audit.verify import parse_anchor

    assert runtime.audit is not None
    origin = runtime.settings.log_origin
    verifier = load_signer(runtime.settings, may_create=False).verifier
    anchors = [parse_anchor(f"given {i}", n, verifier, origin) for i, n in enumerate(notes)]
    return verify_log(runtime.audit, verifier, origin, anchors)


def first(report: Report) -> tuple[str, int | None]:
    assert not report.ok
    return report.problems[0].kind, report.problems[0].position


@pytest.fixture
def seeded(runtime: Runtime) -> Runtime:
    seed(runtime)
    checkpoint(runtime)
    report = verify(runtime)
    assert report.ok, report.problems
    assert report.tree_size == report.events == 10
    return runtime


def test_a_changed_byte_in_a_stored_state_is_named_modified(seeded: Runtime, store: Store) -> None:
    nid = store.ids()[3]
    state = bytes(store.run("SELECT state FROM {t} WHERE {id} = ?", nid)[0][0])
    i = state.index(b'"priority"') if b'"priority"' in state else len(state) // 2
    store.run("UPDATE {t} SET state = ? WHERE {id} = ?", state[:i] + b"X" + state[i + 1 :], nid)
    assert first(verify(seeded)) == ("modified", 3)
    with pytest.raises(CheckpointRefused):
        checkpoint(seeded)  # never sign over a broken log


def test_a_deleted_event_is_named_missing(seeded: Runtime, store: Store) -> None:
    store.run("DELETE FROM {t} WHERE {id} = ?", store.ids()[4])
    assert first(verify(seeded)) == ("missing", 4)


def test_two_swapped_events_are_named_reordered(seeded: Runtime, store: Store) -> None:
    ids = store.ids()
    store.swap(ids[5], ids[6])
    report = verify(seeded)
    assert first(report) == ("reordered", 5)
    assert not report.anchors[0].matched


def test_a_forged_row_appended_is_named_inserted(seeded: Runtime, store: Store) -> None:
    topic, state = store.run("SELECT topic, state FROM {t} ORDER BY {id} LIMIT 1")[0]
    forged = uuid.uuid4()
    oid = forged.hex if store.pg is None else forged
    store.run(
        "INSERT INTO {t} (originator_id, originator_version, topic, state) VALUES (?, 1, ?, ?)",
        oid,
        topic,
        state,
    )
    assert first(verify(seeded)) == ("inserted", 10)
    seeded.desk.register_user("customer", "Fay", "fay@example.com")
    with pytest.raises(CheckpointRefused, match="does not match its leaf"):
        checkpoint(seeded)  # the slipped-in row is never signed into the tree


def test_a_cut_off_end_is_named_truncated(seeded: Runtime, store: Store) -> None:
    store.run("DELETE FROM {t} WHERE {id} > ?", store.ids()[6])
    assert first(verify(seeded)) == ("truncated", 7)


def test_truncating_events_and_leaves_together_is_caught_by_the_signature(
    seeded: Runtime, store: Store
) -> None:
    keep = store.ids()[6]
    store.run("DELETE FROM {t} WHERE {id} > ?", keep)
    store.run("DELETE FROM merkle_leaves WHERE notification_id > ?", keep)
    report = verify(seeded)
    assert first(report) == ("truncated", 7)
    with pytest.raises(CheckpointRefused):
        checkpoint(seeded)


def test_rewriting_the_leaves_to_match_an_edit_is_still_caught(
    seeded: Runtime, store: Store
) -> None:
    nid = store.ids()[1]
    oid, version, topic, state = store.run(
        "SELECT originator_id, originator_version, topic, state FROM {t} WHERE {id} = ?", nid
    )[0]
    state = bytes(state).replace(b"customer", b"agent\x20\x20\x20")
    store.run("UPDATE {t} SET state = ? WHERE {id} = ?", state, nid)
    digest = event_leaf_hash(nid, uuid.UUID(str(oid)), version, topic, state)
    store.run("UPDATE merkle_leaves SET leaf_hash = ? WHERE notification_id = ?", digest, nid)
    report = verify(seeded)
    assert first(report)[0] == "modified"
    assert report.anchors[0].matched is False


def test_erasing_people_changes_no_hash(seeded: Runtime) -> None:
    before = checkpoint(seeded)
    ids = {r.originator_id for r in seeded.audit.events()} if seeded.audit else set()
    people = [i for i in ids if seeded.desk.history(i)[0].__class__.__name__ == "Registered"]
    for person in people:
        seeded.desk.erase_subject(person)
    report = verify(seeded, before)
    assert report.ok, report.problems
    assert report.erased_subjects == 3
    # Every event is someone's: all ten seeded ones plus the three erasure records.
    assert report.erased_events == 13
    checkpoint(seeded)
    assert verify(seeded, before).ok


def test_a_failed_write_leaves_no_leaf_and_no_hole(runtime: Runtime) -> None:
    ids = seed(runtime)
    assert runtime.audit is not None
    size = runtime.audit.tree_size()
    clash = StoredEvent(ids["ada"], 1, "domain.user:User.Registered", b"{}")
    with pytest.raises(IntegrityError):
        runtime.desk.recorder.insert_events([clash])
    assert runtime.audit.tree_size() == size == runtime.audit.event_count()
    runtime.desk.register_user("customer", "Carol", "carol@example.com")
    checkpoint(runtime)
    report = verify(runtime)
    assert report.ok, report.problems
    assert report.tree_size == size + 1


def test_proofs_from_the_store_verify_against_signed_checkpoints(runtime: Runtime) -> None:
    seed(runtime)
    log = runtime.audit
    assert log is not None
    verifier = load_signer(runtime.settings, may_create=True).verifier
    old = open_checkpoint(checkpoint(runtime), verifier)
    seed(runtime)
    new = open_checkpoint(checkpoint(runtime), verifier)
    assert (old.size, new.size) == (10, 20)
    for leaf in log.leaves():
        proof = log.inclusion_proof(leaf.index, new.size)
        assert verify_inclusion(leaf.digest, leaf.index, new.size, proof, new.root)
    proof = log.consistency_proof(old.size, new.size)
    assert verify_consistency(old.size, new.size, old.root, new.root, proof)


def test_a_checkpoint_that_does_not_extend_the_last_one_is_never_signed(
    runtime: Runtime, store: Store
) -> None:
    seed(runtime)
    checkpoint(runtime)
    # Someone rewrites history consistently (events and leaves) and forges the tail.
    nid = store.ids()[0]
    oid, version, topic, state = store.run(
        "SELECT originator_id, originator_version, topic, state FROM {t} WHERE {id} = ?", nid
    )[0]
    state = bytes(state) + b" "
    store.run("UPDATE {t} SET state = ? WHERE {id} = ?", state, nid)
    digest = event_leaf_hash(nid, uuid.UUID(str(oid)), version, topic, state)
    store.run("UPDATE merkle_leaves SET leaf_hash = ? WHERE notification_id = ?", digest, nid)
    runtime.desk.register_user("customer", "Dan", "dan@example.com")
    with pytest.raises(CheckpointRefused, match="no longer matches"):
        checkpoint(runtime)
    assert runtime.audit is not None
    assert runtime.audit.latest_checkpoint().size == 10


def test_a_store_made_before_the_leaves_gets_them_once_at_startup(settings: Settings) -> None:
    runtime = Runtime.open(settings)
    seed(runtime)
    runtime.close()
    legacy = Store(settings)
    legacy.run("DROP TABLE merkle_leaves")
    legacy.run("DROP TABLE checkpoints")
    legacy.close()
    progress: list[tuple[int, int]] = []
    runtime = Runtime.open(settings, progress=lambda done, total: progress.append((done, total)))
    try:
        assert progress[-1] == (10, 10)
        checkpoint(runtime)
        report = verify(runtime)
        assert report.ok
        assert report.tree_size == 10
        runtime.desk.register_user("customer", "Eve", "eve@example.com")
        assert runtime.audit is not None
        assert runtime.audit.tree_size() == 11
    finally:
        runtime.close()
    # Leaves exist now: a later start backfills nothing, so no forged row is ever legitimized.
    with AuditLog.open(settings) as log:
        assert log.backfill() == 0


def test_verify_needs_the_right_public_key(seeded: Runtime) -> None:
    assert seeded.audit is not None
    stranger = NoteSigner.generate(seeded.settings.log_origin).verifier
    report = verify_log(seeded.audit, stranger, seeded.settings.log_origin, [])
    assert first(report)[0] == "signature"


def test_a_long_log_verifies_with_progress_in_bounded_memory(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import tracemalloc

    from ticketlog.audit import store as store_module

    settings = Settings(data_dir=tmp_path / "data")
    runtime = Runtime.open(settings)
    try:
        # 20,000 events of ~600 stored bytes, written through the real leaf-writing recorder.
        for _ in range(20):
            runtime.desk.recorder.insert_events(
                [
                    StoredEvent(uuid.uuid4(), 1, "domain.user:User.Registered", os.urandom(600))
                    for _ in range(1000)
                ]
            )
        checkpoint(runtime)
        assert runtime.audit is not None
        monkeypatch.setattr(store_module, "PAGE", 100)
        calls: list[tuple[int, int]] = []
        verifier = load_signer(settings, may_create=False).verifier
        tracemalloc.start()
        report = verify_log(
            runtime.audit, verifier, settings.log_origin, [], lambda d, t: calls.append((d, t))
        )
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert report.ok
        assert report.tree_size == 20_000
        assert calls[-1] == (20_000, 20_000)
        assert len(calls) >= 20
        # The log holds 12 MB of states; reading it in pages of 100 rows peaks far below.
        assert peak < 1_500_000, peak

        # Proofs over a large tree (cached block roots) agree with the streamed root.
        log = runtime.audit
        root = base64.b64decode(report.root)
        assert log.root(20_000) == root
        leaf = next(log.leaves(12_345, 12_346))
        proof = log.inclusion_proof(12_345, 20_000)
        assert verify_inclusion(leaf.digest, 12_345, 20_000, proof, root)
        early = log.root(777)
        assert early == root_of(x.digest for x in log.leaves(0, 777))
        assert verify_consistency(777, 20_000, early, root, log.consistency_proof(777, 20_000))
    finally:
        runtime.close()


def test_concurrent_writers_get_leaves_in_commit_order(runtime: Runtime) -> None:
    import threading

    def register(n: int) -> None:
        for i in range(15):
            runtime.desk.register_user("customer", f"W{n}-{i}", f"w{n}x{i}@example.com")

    threads = [threading.Thread(target=register, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert runtime.audit is not None
    leaves = list(runtime.audit.leaves())
    assert [leaf.index for leaf in leaves] == list(range(90))
    ids = [leaf.notification_id for leaf in leaves]
    assert ids == sorted(ids)
    checkpoint(runtime)
    assert verify(runtime).ok


def test_any_statement_can_be_signed_with_the_log_key(settings: Settings) -> None:
    from ticketlog.audit.signing import local_verifier, sign_note

    note = sign_note(settings, "erasure certificate\nsubject 42\n")
    verifier = local_verifier(settings)
    assert verifier is not None
    assert verifier.verify(note) == "erasure certificate\nsubject 42\n"


def test_a_checkpoint_signed_behind_the_frontier_must_be_a_prefix(
    runtime: Runtime, store: Store
) -> None:
    from crypto.checkpoint import Checkpoint

    seed(runtime)
    log = runtime.audit
    assert log is not None
    signer = load_signer(runtime.settings, may_create=True)
    origin = runtime.settings.log_origin
    signing = Checkpointer(log, signer, origin)
    assert signing.make().checkpoint.size == 10
    # Another signer stored a checkpoint of size 5 (and ours of 10 is gone): it is checked
    # against the tree we hold by a consistency proof.
    store.run("DELETE FROM checkpoints")
    log.add_checkpoint(5, log.root(5), Checkpoint(origin, 5, log.root(5)).sign(signer))
    runtime.desk.register_user("customer", "Gus", "gus@example.com")
    assert signing.make().checkpoint.size == 11
    store.run("DELETE FROM checkpoints")
    bogus = log.root(4)
    log.add_checkpoint(5, bogus, Checkpoint(origin, 5, bogus).sign(signer))
    runtime.desk.register_user("customer", "Hal", "hal@example.com")
    with pytest.raises(CheckpointRefused, match="not a prefix"):
        signing.make()
