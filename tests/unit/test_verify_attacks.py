"""The verifier against every attack of DESIGN.md section 2, each in its own test.

Each attack test asserts the exact set of findings as (chain_id, seq, kind): the right kind at
the right place, and nothing else, so a verifier that cries wolf fails as surely as one that
misses the attack. The stores are written by the real `AuditWriter`: 20 inference events after
the chain_open record (seq 0..20), checkpoints of sizes 4, 8, 12, 16, 20 and a closing one of
size 21, so every record has a successor or a checkpoint that commits to it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from otel_ai_audit.cli import main
from otel_ai_audit.integrity.chain import Chain
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.pipeline.writer import AuditWriter
from otel_ai_audit.record.canonical import to_json_data
from otel_ai_audit.record.schema import HEADER_PATTERN, EventType, new_event, parse_header, seal
from otel_ai_audit.store.sqlite import AuditStore, SealedRecord
from tests.audit_fixtures import (
    STORE_EVENTS,
    chain_ids,
    checkpoints,
    decide_in_forked_child,
    delete_chain,
    edit_event,
    forge_closing_checkpoint,
    inference_event,
    leaf,
    located,
    put_row,
    rows,
    set_data,
    tamper,
    verify,
    write_chain,
    write_store,
)
from tests.unit.profiles import property_settings

EVENTS = STORE_EVENTS
SIZE = EVENTS + 1
"""Records in a default store: the chain_open record and the events."""
HEADS = (3, 7, 11, 15, 19, 20)
"""Seqs the default store's checkpoints end at (sizes 4, 8, ..., 20 and the closing 21)."""
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Store:
    """A closed store of one chain written by `AuditWriter`."""

    path: Path
    key: SigningKey
    chain_id: str


@pytest.fixture
def store(store: Path, key: SigningKey) -> Store:
    """The shared store's copy (`tests/unit/conftest.py`), with its key and chain."""
    (chain_id,) = chain_ids(store)
    return Store(store, key, chain_id)


def data_at(store: Store, seq: int) -> bytes:
    return next(row["data"] for row in rows(store.path, store.chain_id) if row["seq"] == seq)


def logged_at(data: bytes) -> int:
    header = parse_header(data)
    assert header is not None
    return header.logged_ns


# --- clean stores ----------------------------------------------------------------------------


def test_clean_store_has_no_findings(store: Store) -> None:
    report = verify(store.path, store.key)
    assert report.ok, report.findings
    assert report.findings == []
    assert [(c.records, c.closed, c.signed_size) for c in report.chains] == [(SIZE, True, SIZE)]
    assert [json.loads(c.payload)["size"] for c in checkpoints(store.path, store.chain_id)] == [
        4, 8, 12, 16, 20, 21]


def test_clean_store_of_several_chains_and_sizes(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "audit.db"
    for events, every in ((0, 4), (1, 1), (3, 4), (16, 4), (7, 100)):
        write_store(path, key, events, checkpoint_every=every)
    report = verify(path, key)
    assert report.findings == []
    assert sorted(c.records for c in report.chains) == [2, 4, 8, 17]  # no events: no chain


# --- 1-2: modified and re-serialised records -------------------------------------------------


@pytest.mark.parametrize("seq", [0, 9, 7, 20], ids=["chain-open", "middle", "checkpoint-head",
                                                     "last"])
def test_modified_field_is_record_modified(store: Store, seq: int) -> None:
    original = data_at(store, seq)
    record = json.loads(original)
    output = record["event"].get("output") or {"score": 0.5}
    forged = edit_event(original, output={**output, "score": 0.99})
    assert forged != original and parse_header(forged) is not None  # still canonical
    set_data(store.path, store.chain_id, seq, forged)
    assert located(verify(store.path, store.key)) == {(store.chain_id, seq, "record_modified")}


@pytest.mark.parametrize("style", ["spaces", "key-order"])
def test_reserialized_record_is_noncanonical(store: Store, style: str) -> None:
    original = data_at(store, 9)
    record = json.loads(original)
    if style == "spaces":
        text = json.dumps(record, sort_keys=True, indent=1)
    else:
        text = json.dumps({"event": record["event"], "chain": dict(reversed(
            record["chain"].items()))}, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(text) == record and text.encode() != original
    set_data(store.path, store.chain_id, 9, text.encode())
    assert located(verify(store.path, store.key)) == {(store.chain_id, 9, "noncanonical")}


# --- 3-4: deletion ---------------------------------------------------------------------------


def test_deleted_middle_record_is_gap(store: Store) -> None:
    tamper(store.path, "DELETE FROM records WHERE chain_id = ? AND seq = 9", (store.chain_id,))
    assert located(verify(store.path, store.key)) == {(store.chain_id, 9, "gap")}


@pytest.mark.parametrize("k", [1, 3, 6])
def test_deleted_tail_is_truncated(store: Store, k: int) -> None:
    tamper(store.path, "DELETE FROM records WHERE chain_id = ? AND seq >= ?",
           (store.chain_id, SIZE - k))
    assert located(verify(store.path, store.key)) == {(store.chain_id, SIZE - k, "truncated")}


# --- 5-8: insertion, reordering, replay, splicing --------------------------------------------


def test_inserted_record(store: Store) -> None:
    before = data_at(store, 4)
    tamper(store.path, "UPDATE records SET seq = -seq - 1 WHERE chain_id = ? AND seq >= 5",
           (store.chain_id,))
    tamper(store.path, "UPDATE records SET seq = -seq WHERE chain_id = ? AND seq < 0",
           (store.chain_id,))
    event = inference_event(99)
    forged = seal(event, store.chain_id, 5, leaf(before), logged_at(before) + 1)
    put_row(store.path, {"chain_id": store.chain_id, "seq": 5, "time": event["time"],
                         "type": event["type"], "record_id": event["id"], "data": forged})
    assert located(verify(store.path, store.key)) == {(store.chain_id, 5, "inserted")}


@pytest.mark.parametrize("pair", [(5, 6), (3, 12)], ids=["adjacent", "apart"])
def test_reordered_records(store: Store, pair: tuple[int, int]) -> None:
    first, second = (next(r for r in rows(store.path, store.chain_id) if r["seq"] == seq)
                     for seq in pair)
    for row, other in ((first, second), (second, first)):
        tamper(store.path, "UPDATE records SET time = ?, type = ?, record_id = ?, data = ? "
               "WHERE chain_id = ? AND seq = ?", (other["time"], other["type"],
                                                  other["record_id"], other["data"],
                                                  store.chain_id, row["seq"]))
    assert located(verify(store.path, store.key)) == {(store.chain_id, seq, "reordered")
                                                      for seq in pair}


def test_replayed_record_is_duplicate(store: Store) -> None:
    row = next(r for r in rows(store.path, store.chain_id) if r["seq"] == 9)
    put_row(store.path, {**row, "seq": SIZE})
    assert located(verify(store.path, store.key)) == {(store.chain_id, 9, "duplicate")}


def test_spliced_chains(store: Store) -> None:
    """Records 5 and 6 of chain A are replaced by records 5 and 6 of chain B.

    Besides `spliced` at both places, A's own records 5..6 are missing, which is a `gap` at 5:
    both are true, and `spliced` is the primary finding. Chain B is untouched.
    """
    write_store(store.path, store.key, EVENTS)
    (other,) = set(chain_ids(store.path)) - {store.chain_id}
    for row in rows(store.path, other)[5:7]:
        set_data(store.path, store.chain_id, row["seq"], row["data"])
    found = located(verify(store.path, store.key))
    spliced = {(store.chain_id, 5, "spliced"), (store.chain_id, 6, "spliced")}
    assert spliced <= found <= spliced | {(store.chain_id, 5, "gap")}


def test_forged_header_values_are_findings_not_crashes(store: Store) -> None:
    """A 20-digit logged time (beyond 64 bits) is record_modified; a record stored as TEXT
    with the same bytes is the same record; a checkpoint stored as TEXT is still checked."""
    record = json.loads(data_at(store, 9))
    set_data(store.path, store.chain_id, 9, seal(record["event"], store.chain_id, 9,
                                                 record["chain"]["prev"], 10**19 + 1))
    tamper(store.path, "UPDATE records SET data = CAST(data AS TEXT) WHERE chain_id = ? "
           "AND seq = 5", (store.chain_id,))
    tamper(store.path, "UPDATE checkpoints SET payload = CAST(payload AS TEXT) "
           "WHERE chain_id = ? AND idx = 0", (store.chain_id,))
    assert located(verify(store.path, store.key)) == {(store.chain_id, 9, "record_modified")}


# --- 9-11: rewriting history, checkpoints and keys -------------------------------------------


def test_recomputed_chain_without_key_is_checkpoint_mismatch(store: Store) -> None:
    """Record 9 is changed and every later record re-sealed with correct links: only the
    signed checkpoints (size 12 is the first covering record 9) reveal it."""
    prev = leaf(data_at(store, 8))
    for row in rows(store.path, store.chain_id)[9:]:
        record = json.loads(row["data"])
        if row["seq"] == 9:
            record["event"]["output"]["score"] = 0.99
        data = seal(record["event"], store.chain_id, row["seq"], prev, logged_at(row["data"]))
        set_data(store.path, store.chain_id, row["seq"], data)
        prev = leaf(data)
    report = verify(store.path, store.key)
    assert located(report) == {(store.chain_id, 11, "checkpoint_mismatch")}


def test_edited_checkpoint_is_bad_signature(store: Store) -> None:
    signed = checkpoints(store.path, store.chain_id)[1]
    at = signed.payload.index(b'"issued_at":"') + len(b'"issued_at":"') + 5
    edited = signed.payload[:at] + (b"1" if signed.payload[at:at + 1] != b"1" else b"2") + (
        signed.payload[at + 1:])
    tamper(store.path, "UPDATE checkpoints SET payload = ? WHERE chain_id = ? AND idx = 1",
           (edited, store.chain_id))
    assert located(verify(store.path, store.key)) == {(store.chain_id, 7, "bad_signature")}


def test_checkpoint_signed_by_attacker_key_is_untrusted(tmp_path: Path,
                                                         key: SigningKey) -> None:
    """The attacker covers up a crash: a closing checkpoint over the chain, signed by their
    own key (stored in the file as if it were the writer's)."""
    path = tmp_path / "audit.db"
    chain_id = write_store(path, key, 10, close=False).chain.chain_id
    forge_closing_checkpoint(path, chain_id, SigningKey.generate())
    assert located(verify(path, key)) == {(chain_id, 10, "untrusted_key")}


def test_checkpoint_signed_by_attacker_key_after_close(store: Store) -> None:
    """Appended after the real closing checkpoint, it is also a checkpoint after close."""
    forge_closing_checkpoint(store.path, store.chain_id, SigningKey.generate())
    assert located(verify(store.path, store.key)) == {
        (store.chain_id, SIZE - 1, "untrusted_key"),
        (store.chain_id, SIZE - 1, "record_after_close")}


def test_substituted_public_key_is_key_mismatch(store: Store) -> None:
    tamper(store.path, "UPDATE public_keys SET pem = ? WHERE key_id = ?",
           (SigningKey.generate().public_pem, store.key.key_id))
    assert located(verify(store.path, store.key)) == {(None, None, "key_mismatch")}


def test_verifying_with_another_trusted_key_is_untrusted_key(store: Store) -> None:
    report = verify(store.path, SigningKey.generate())
    assert located(report) == {(store.chain_id, seq, "untrusted_key") for seq in HEADS}


def test_checkpoint_key_known_nowhere_is_unknown_key(store: Store) -> None:
    forge_closing_checkpoint(store.path, store.chain_id, SigningKey.generate(),
                             store_key=False)
    found = located(verify(store.path, store.key))
    assert found == {(store.chain_id, SIZE - 1, "unknown_key")}


# --- 12-13: time and forks -------------------------------------------------------------------


def test_record_logged_before_its_predecessor(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "audit.db"
    chain = write_chain(path, key, [1000, 2000, 3000, 2500, 4000, 5000, 6000])
    assert located(verify(path, key)) == {(chain.chain_id, 3, "timestamp_backwards")}


def test_checkpoint_issued_before_its_predecessor(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "audit.db"
    chain = write_chain(path, key, list(range(1000, 11000, 1000)), issued=[3000, 2000, 4000])
    assert located(verify(path, key)) == {(chain.chain_id, 7, "timestamp_backwards")}


def test_two_checkpoints_of_one_size_with_different_heads_are_a_fork(
        tmp_path: Path, key: SigningKey) -> None:
    """The key signed two histories of size 4; the stored records follow the first."""
    events = [inference_event(i) for i in range(6)]
    chain = Chain()
    stored = [chain.seal(event, 1000 + i) for i, event in enumerate(events[:4])]
    first = chain.checkpoint(key, 10)
    branch = Chain(chain.chain_id)
    for i, event in enumerate([*events[:3], inference_event(99)]):
        branch.seal(event, 1000 + i)
    branch.checkpoint_index, branch.last_checkpoint_hash = 1, chain.last_checkpoint_hash
    second = branch.checkpoint(key, 11)
    chain.checkpoint_index, chain.last_checkpoint_hash = 2, branch.last_checkpoint_hash
    rest = [chain.seal(event, 1004 + i) for i, event in enumerate(events[4:])]
    path = tmp_path / "audit.db"
    with AuditStore(path) as audit:
        audit.put_public_key(key.key_id, key.public_pem)
        audit.write(stored, first)
        audit.write([], second)
        audit.write(rest, chain.checkpoint(key, 12, closed=True))
    assert located(verify(path, key)) == {(chain.chain_id, 3, "fork")}


# --- 14-16: crashes and closing --------------------------------------------------------------


@pytest.mark.parametrize("after_header", [True, False], ids=["after-header", "inside-header"])
def test_torn_last_write_is_its_own_state(tmp_path: Path, key: SigningKey,
                                          after_header: bool) -> None:
    """The writer died mid-write of seq 9 (checkpoints cover 0..7): torn, and not closed.

    Cut after the chain header, the prefix pass 1 reads is intact, and only a whole reading of
    the one record nothing commits to can tell."""
    path = tmp_path / "audit.db"
    chain_id = write_store(path, key, 9, close=False).chain.chain_id
    data = rows(path, chain_id)[-1]["data"]
    header = HEADER_PATTERN.match(data)
    assert header is not None
    set_data(path, chain_id, 9, data[:header.end() + 10 if after_header else 40])
    assert located(verify(path, key)) == {(chain_id, 9, "torn_record"),
                                          (chain_id, 9, "chain_not_closed")}


def test_unclosed_chain_after_flush(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "audit.db"
    chain_id = write_store(path, key, 10, close=False).chain.chain_id
    assert located(verify(path, key)) == {(chain_id, 10, "chain_not_closed")}


WRITER_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from otel_ai_audit.integrity.keys import SigningKey
    from otel_ai_audit.pipeline.writer import AuditWriter
    from tests.audit_fixtures import inference_event

    path, key_file, events, every, end = sys.argv[1:]
    writer = AuditWriter(path, SigningKey.load(key_file), checkpoint_every=int(every),
                         checkpoint_interval=3600.0, flush_interval=0.01)
    for i in range(int(events)):
        writer.submit(inference_event(i))
    if end == "kill":
        assert writer.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    assert writer.close()
""")


def run_writers(path: Path, key_file: Path, count: int, events: int, every: int,
                end: str = "close") -> list[int]:
    """Start `count` writer processes on one store at once; their exit codes."""
    processes = [subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, str(path),
                                   str(key_file), str(events), str(every), end], cwd=ROOT)
                 for _ in range(count)]
    return [process.wait(timeout=120) for process in processes]


@pytest.fixture
def key_file(tmp_path: Path, key: SigningKey) -> Path:
    key.save(tmp_path / "signer.key.pem", tmp_path / "signer.pub.pem")
    return tmp_path / "signer.key.pem"


def test_unclosed_chain_after_sigkill(tmp_path: Path, key: SigningKey, key_file: Path) -> None:
    path = tmp_path / "audit.db"
    assert run_writers(path, key_file, 1, 10, 4, end="kill") == [-signal.SIGKILL]
    (chain_id,) = chain_ids(path)
    assert located(verify(path, key)) == {(chain_id, 10, "chain_not_closed")}


def test_record_after_close(store: Store) -> None:
    last = data_at(store, SIZE - 1)
    event = inference_event(99)
    forged = seal(event, store.chain_id, SIZE, leaf(last), logged_at(last) + 1)
    put_row(store.path, {"chain_id": store.chain_id, "seq": SIZE, "time": event["time"],
                         "type": event["type"], "record_id": event["id"], "data": forged})
    assert located(verify(store.path, store.key)) == {(store.chain_id, SIZE,
                                                       "record_after_close")}


# --- 17-18: trust ----------------------------------------------------------------------------


def test_self_asserted_key_is_a_finding_unless_allowed(store: Store) -> None:
    report = verify(store.path)
    assert report.trust == "self-asserted"
    assert located(report) == {(store.chain_id, seq, "self_asserted_key") for seq in HEADS}
    allowed = verify(store.path, allow_self_asserted=True)
    assert allowed.ok and allowed.findings == []
    assert any("--public-key" in notice for notice in allowed.notices)


def test_key_rotation_transfers_trust_from_the_old_key(tmp_path: Path, key: SigningKey) -> None:
    """Two rotations (old -> middle -> new): the old public key alone verifies all of it."""
    path = tmp_path / "audit.db"
    middle, new = SigningKey.generate(), SigningKey.generate()
    writer = AuditWriter(str(path), key, checkpoint_every=4, checkpoint_interval=3600.0)
    for i in range(6):
        writer.submit(inference_event(i))
    writer.rotate_key(middle)
    for i in range(5):
        writer.submit(inference_event(i))
    writer.rotate_key(new)
    for i in range(9):
        writer.submit(inference_event(i))
    assert writer.close()
    chain_id = writer.chain.chain_id
    assert [c.key_id for c in checkpoints(path, chain_id)][-1] == new.key_id
    assert {c.key_id for c in checkpoints(path, chain_id)} == {key.key_id, middle.key_id,
                                                                new.key_id}
    assert verify(path, key).findings == []
    # The new key alone does not vouch for what the older keys signed before it.
    assert {kind for _, _, kind in located(verify(path, new))} == {"untrusted_key"}


def forged_rotation_chain(path: Path, key: SigningKey, attacker: SigningKey,
                          rotation_at: int, rotation: dict[str, Any]) -> str:
    """Records 0..3 under a real checkpoint, 4..6 closed by the attacker's checkpoint."""
    chain = Chain()

    def sealed(seqs: range) -> list[SealedRecord]:
        return [chain.seal(rotation if i == rotation_at else inference_event(i), 1000 + i)
                for i in seqs]

    with AuditStore(path) as audit:
        audit.put_public_key(key.key_id, key.public_pem)
        audit.put_public_key(attacker.key_id, attacker.public_pem)
        audit.write(sealed(range(4)), chain.checkpoint(key, 10))
        audit.write(sealed(range(4, 7)), chain.checkpoint(attacker, 11, closed=True))
    return chain.chain_id


def test_rotation_not_covered_by_a_trusted_checkpoint_grants_no_trust(
        tmp_path: Path, key: SigningKey) -> None:
    attacker = SigningKey.generate()
    rotation = new_event(EventType.KEY_ROTATION, old_key_id=key.key_id,
                         new_key_id=attacker.key_id, new_public_key=attacker.public_pem)
    chain_id = forged_rotation_chain(tmp_path / "audit.db", key, attacker, 4, rotation)
    assert located(verify(tmp_path / "audit.db", key)) == {(chain_id, 6, "untrusted_key")}


def test_rotation_fields_smuggled_into_an_event_grant_no_trust(
        tmp_path: Path, key: SigningKey) -> None:
    """Application data that merely looks like a rotation is not one, even when a trusted
    checkpoint covers it."""
    attacker = SigningKey.generate()
    smuggled = new_event(EventType.INFERENCE, input={"type": "key_rotation"},
                         new_key_id=attacker.key_id, new_public_key=attacker.public_pem)
    chain_id = forged_rotation_chain(tmp_path / "audit.db", key, attacker, 1, smuggled)
    assert located(verify(tmp_path / "audit.db", key)) == {(chain_id, 6, "untrusted_key")}


# --- property-based --------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@property_settings(0.1, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                               HealthCheck.too_slow])
@given(payloads=st.lists(JSON_VALUES, min_size=1, max_size=25), every=st.integers(1, 10),
       close=st.booleans())
def test_random_clean_stores_verify(key: SigningKey, payloads: list[Any], every: int,
                                    close: bool) -> None:
    """Any payload (NaN, big integers, odd unicode included) in any chain length verifies."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "audit.db"
        writer = AuditWriter(str(path), key, checkpoint_every=every,
                             checkpoint_interval=3600.0, flush_interval=3600.0)
        for payload in payloads:
            writer.submit(new_event(EventType.INFERENCE, output=payload))
        assert writer.close() if close else writer.flush()
        found = located(verify(path, key))
        assert found == (set() if close else {(writer.chain.chain_id, len(payloads),
                                                "chain_not_closed")})


@property_settings(0.1, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                               HealthCheck.too_slow])
@given(data=st.data())
def test_random_tampering_is_caught(template: Path, key: SigningKey, data: st.DataObject) -> None:
    """A byte flipped, deleted or inserted, or an event field replaced, anywhere in any record."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "audit.db"
        shutil.copy(template, path)
        (chain_id,) = chain_ids(path)
        seq = data.draw(st.integers(0, SIZE - 1), label="seq")
        original = next(r["data"] for r in rows(path, chain_id) if r["seq"] == seq)
        how = data.draw(st.sampled_from(["flip", "delete", "insert", "field"]), label="how")
        forged = bytearray(original)
        offset = data.draw(st.integers(0, len(original) - 1), label="offset")
        if how == "flip":
            forged[offset] ^= data.draw(st.integers(1, 255), label="mask")
        elif how == "delete":
            del forged[offset]
        elif how == "insert":
            forged.insert(offset, data.draw(st.integers(0, 255), label="byte"))
        else:
            event = json.loads(original)["event"]
            field = data.draw(st.sampled_from(sorted(event)), label="field")
            # Through the write path's conversion: the attacker writes what a record can hold.
            value = data.draw(JSON_VALUES.map(to_json_data).filter(lambda v: v != event[field]),
                              label="value")
            forged = bytearray(edit_event(original, **{field: value}))
        set_data(path, chain_id, seq, bytes(forged))
        report = verify(path, key)
        assert not report.ok


# --- no false positives under concurrency and fork -------------------------------------------


def test_several_processes_writing_one_store(tmp_path: Path, key: SigningKey,
                                             key_file: Path) -> None:
    path = tmp_path / "audit.db"
    assert run_writers(path, key_file, 4, 300, 16) == [0, 0, 0, 0]
    report = verify(path, key)
    assert report.findings == []
    assert [(c.records, c.closed) for c in report.chains] == [(301, True)] * 4


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_worker_writes_its_own_chain(tmp_path: Path, key: SigningKey) -> None:
    """Parent and child write one store, interleaved: the child persists part of its chain,
    the parent writes and closes its own, then the child finishes. (Before the writer closed
    its SQLite connection over fork, the child's last commit was lost while its close()
    reported success.)"""
    path = tmp_path / "audit.db"
    writer = AuditWriter(str(path), key, checkpoint_every=4, checkpoint_interval=3600.0,
                         flush_interval=3600.0)
    for i in range(5):
        writer.submit(inference_event(i))
    assert writer.flush()
    parent_chain = writer.chain.chain_id
    child_ready, parent_done = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:  # the child must leave through os._exit, never through pytest
        code = 1
        try:
            for i in range(4):
                writer.submit(inference_event(i))
            assert writer.flush()
            os.write(child_ready[1], b"x")
            os.read(parent_done[0], 1)
            for i in range(4, 7):
                writer.submit(inference_event(i))
            code = 0 if writer.close() and writer.chain.chain_id != parent_chain else 3
        finally:
            os._exit(code)
    os.read(child_ready[0], 1)
    for i in range(5, 9):
        writer.submit(inference_event(i))
    assert writer.close()
    os.write(parent_done[1], b"x")
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    for end in (*child_ready, *parent_done):
        os.close(end)
    report = verify(path, key)
    assert report.findings == []
    (child_chain,) = set(chain_ids(path)) - {parent_chain}
    opening = json.loads(rows(path, child_chain)[0]["data"])["event"]
    assert opening["type"] == "chain_open" and opening["parent_chain_id"] == parent_chain
    # The parent recorded the fork, naming the child's chain, before the child existed.
    forks = [json.loads(row["data"])["event"] for row in rows(path, parent_chain)]
    assert [e["child_chain_id"] for e in forks if e["type"] == "chain_fork"] == [child_chain]
    assert {c.chain_id: c.records for c in report.chains} == {parent_chain: 11, child_chain: 8}


# --- command line ----------------------------------------------------------------------------


@pytest.fixture
def public_key_file(tmp_path: Path, key: SigningKey) -> Path:
    path = tmp_path / "trusted.pub.pem"
    path.write_text(key.public_pem)
    return path


def cli(*args: str) -> Result:
    """Run the CLI in-process; an uncaught exception (a traceback for the user) fails here."""
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.exc_info)
    assert "Traceback" not in result.output
    return result


def test_cli_verify_clean_store(store: Store, public_key_file: Path) -> None:
    result = cli("verify", str(store.path), "--public-key", str(public_key_file))
    assert result.exit_code == 0, result.output
    assert "OK: intact and complete" in result.stdout


def test_cli_verify_tampered_store_json(store: Store, public_key_file: Path) -> None:
    tamper(store.path, "DELETE FROM records WHERE chain_id = ? AND seq = 9", (store.chain_id,))
    result = cli("verify", str(store.path), "--public-key", str(public_key_file), "--json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert {key: body[key] for key in ("ok", "chains", "records", "findings")} == {
        "ok": False, "chains": 1, "records": SIZE - 1,
        "findings": [{"chain_id": store.chain_id, "seq": 9, "kind": "gap",
                      "detail": body["findings"][0]["detail"]}]}


def not_sqlite(path: Path) -> None:
    path.write_bytes(b"this is not a database\n" * 100)


def sqlite_not_a_store(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE records (x)")


def newer_store(path: Path) -> None:
    AuditStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")


@pytest.mark.parametrize(("make", "message"), [
    (None, "no such store file"),
    (not_sqlite, "not an SQLite database"),
    (sqlite_not_a_store, "not an otel-ai-audit store"),
    (newer_store, "newer"),
], ids=["missing", "not-sqlite", "not-a-store", "newer-schema"])
def test_cli_verify_unusable_store_is_usage_error(tmp_path: Path, public_key_file: Path,
                                                  make: Callable[[Path], None] | None,
                                                  message: str) -> None:
    path = tmp_path / "audit.db"
    if make is not None:
        make(path)
    result = cli("verify", str(path), "--public-key", str(public_key_file))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("otel-ai-audit: error: ")
    assert message in result.stderr and result.stderr.count("\n") == 1


@pytest.fixture(scope="module")
def large_store(tmp_path_factory: pytest.TempPathFactory, key: SigningKey) -> Path:
    """A store of some hundreds of pages, its write-ahead log folded into the file."""
    path = tmp_path_factory.mktemp("large") / "audit.db"
    write_store(path, key, 3000, checkpoint_every=500)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it: a traceback would reach stderr."""
    command = [str(Path(sys.executable).with_name("otel-ai-audit")), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr
    return result


def test_cli_verify_truncated_store_is_usage_error(tmp_path: Path, large_store: Path,
                                                   public_key_file: Path) -> None:
    """Cut to half its size, the file cannot be opened at all: SQLite checks the page count
    in its header against the file's size and reports it malformed before anything can be
    read. Nothing was verified, so it is exit 2 with the damage named, like any unreadable
    store (damage met after opening is a finding instead: see the next test)."""
    path = tmp_path / "audit.db"
    shutil.copy(large_store, path)
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    result = run_cli("verify", str(path), "--public-key", str(public_key_file))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (f"otel-ai-audit: error: {path}: the SQLite file is damaged "
                             "(database disk image is malformed)\n")


@pytest.mark.parametrize("seq", [10, 1500, 2990])
def test_cli_verify_damaged_page_is_store_corrupt(tmp_path: Path, large_store: Path,
                                                  public_key_file: Path, seq: int) -> None:
    """The page holding record `seq`, overwritten inside an otherwise whole file, is met while
    reading: verification reports `store_corrupt` (and no made-up truncation), exit 1."""
    path = tmp_path / "audit.db"
    shutil.copy(large_store, path)
    content = path.read_bytes()
    page_size = int.from_bytes(content[16:18], "big")  # the SQLite file header says
    page = content.index(b'"seq":%d,"v":1}' % seq) // page_size
    assert content.count(b'"seq":%d,"v":1}' % seq) == 1 and page > 0
    with open(path, "r+b") as handle:
        handle.seek(page * page_size)
        handle.write(b"\xa5" * page_size)
    result = run_cli("verify", str(path), "--public-key", str(public_key_file), "--json")
    assert result.returncode == 1, result.stderr
    body = json.loads(result.stdout)
    assert not body["ok"]
    assert {finding["kind"] for finding in body["findings"]} == {"store_corrupt"}


@pytest.mark.parametrize("content", [
    "garbage\n",
    "-----BEGIN PUBLIC KEY-----\nZ2FyYmFnZQ==\n-----END PUBLIC KEY-----\n",
], ids=["no-pem", "bad-pem"])
def test_cli_verify_garbage_public_key_is_usage_error(store: Store, tmp_path: Path,
                                                      content: str) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text(content)
    result = cli("verify", str(store.path), "--public-key", str(bad))
    assert result.exit_code == 2
    assert result.stderr.startswith("otel-ai-audit: error: ")
    assert result.stderr.count("\n") == 1


def test_cli_keygen_prove_verify_proof(tmp_path: Path) -> None:
    prefix = tmp_path / "signer"
    assert cli("keygen", "--out", str(prefix)).exit_code == 0
    assert cli("keygen", "--out", str(prefix)).exit_code == 2  # never overwrites a key
    path = tmp_path / "audit.db"
    write_store(path, SigningKey.load(f"{prefix}.key.pem"), EVENTS)
    (chain_id,) = chain_ids(path)
    record_id = rows(path, chain_id)[9]["record_id"]
    proof = tmp_path / "proof.json"
    assert cli("prove", str(path), record_id, "--out", str(proof)).exit_code == 0
    public = f"{prefix}.pub.pem"
    result = cli("verify-proof", str(proof), "--public-key", public)
    assert result.exit_code == 0, result.output
    # The proof's record altered: the audit path no longer leads to the signed root.
    document = json.loads(proof.read_text())
    document["record"] = edit_event(document["record"].encode(), output={"score": 0.99}).decode()
    proof.write_text(json.dumps(document))
    result = cli("verify-proof", str(proof), "--public-key", public)
    assert result.exit_code == 1 and "FAIL" in result.stdout
    # A proof built from a tampered store fails too.
    set_data(path, chain_id, 9, edit_event(rows(path, chain_id)[9]["data"],
                                            output={"score": 0.99}))
    assert cli("prove", str(path), record_id, "--out", str(proof)).exit_code == 0
    assert cli("verify-proof", str(proof), "--public-key", public).exit_code == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_childs_deleted_chain_is_missing(tmp_path: Path, key: SigningKey) -> None:
    """The parent recorded the fork (chain_fork, committed before the child existed), so the
    child's chain deleted with its checkpoints is a finding, not silence; even a child that
    made no decision has a closed chain."""
    path = tmp_path / "audit.db"
    writer = AuditWriter(str(path), key, checkpoint_every=4, checkpoint_interval=3600.0,
                         flush_interval=3600.0)
    writer.submit(inference_event(0))
    assert writer.flush()
    for decisions in (2, 0):
        decide_in_forked_child(writer, decisions)
    assert writer.close()
    parent = writer.chain.chain_id
    children = sorted(set(chain_ids(path)) - {parent})
    assert len(children) == 2 and verify(path, key).findings == []
    delete_chain(path, children[0])
    assert located(verify(path, key)) == {(children[0], None, "missing_chain")}
