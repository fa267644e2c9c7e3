"""Building audit stores for the verifier's tests, and tampering with them as an attacker would.

The stores are written by the real `AuditWriter` (or, where an attack needs a chain the writer
would never produce, by `Chain` and `AuditStore` directly), so the tests verify what production
writes. `tamper` goes around the store API the way an attacker with file access does: it opens
the file with plain sqlite3 and drops the append-only triggers first.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from otel_ai_audit.integrity.chain import Chain
from otel_ai_audit.integrity.checkpoint import SignedCheckpoint, payload_hash
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.integrity.merkle import leaf_hash
from otel_ai_audit.pipeline.writer import AuditWriter
from otel_ai_audit.record.canonical import canonical_json
from otel_ai_audit.record.schema import EventType, new_event
from otel_ai_audit.store.sqlite import AuditStore, SealedRecord
from otel_ai_audit.verify.findings import Report
from otel_ai_audit.verify.verifier import Verifier

TRIGGERS = ("records_append_only_update", "records_append_only_delete",
            "checkpoints_append_only_update", "checkpoints_append_only_delete")
FIELDS = ("chain_id", "seq", "time", "type", "record_id", "data")
STORE_EVENTS = 20
"""Inference events `write_store` writes by default (after the chain_open record at seq 0)."""


def inference_event(i: int) -> dict[str, Any]:
    """A small, realistic decision record (distinct scores so every record hashes apart)."""
    return new_event(EventType.INFERENCE, model={"name": "adult-income", "version": "3"},
                     input={"age": 20 + i % 50, "hours": 40}, output={"score": 0.001 * i + 0.25,
                                                                     "label": i % 2 == 0})


SMALL_STORE_EVENTS = 20
"""Decisions in the sink tests' small store: records seq 0..20, checkpoints of 4, 8, ..., 20 and
21 (see `tests/integration/conftest.py`)."""


def saved_key(directory: Path) -> tuple[SigningKey, Path]:
    """A new signing key saved in `directory`; returns it and its public key file."""
    signing = SigningKey.generate()
    signing.save(directory / "audit.key.pem", directory / "audit.pub.pem")
    return signing, directory / "audit.pub.pem"


def key_beside(store: Path | str) -> Path:
    """STORE.key.pem, made once with its public half STORE.pub.pem (where the tests look for
    it): the runtime never makes a signing key itself, so every audited test process is given
    one. Returns the private key's path."""
    private = Path(f"{store}.key.pem")
    if not private.exists():
        SigningKey.generate().save(private, f"{store}.pub.pem")
    return private


def write_store(path: Path, key: SigningKey, records: int = STORE_EVENTS, *,
                checkpoint_every: int = 4,
                close: bool = True) -> AuditWriter:
    """Write `records` inference events (after the chain_open record at seq 0).

    Checkpoints come only from the record count (the interval is an hour), so their sizes are
    predictable: every `checkpoint_every` records, and the closing one. With `close=False` the
    writer is flushed and abandoned, as if its process died before shutdown. The writer thread
    runs only when flush or close wake it, so an abandoned one sleeps instead of polling.
    """
    writer = AuditWriter(str(path), key, checkpoint_every=checkpoint_every,
                         checkpoint_interval=3600.0, flush_interval=3600.0)
    for i in range(records):
        writer.submit(inference_event(i))
    if close:
        assert writer.close()
    else:
        assert writer.flush()
    return writer


def decide_in_forked_child(writer: AuditWriter, decisions: int) -> None:
    """Fork; the child submits `decisions` inference events through the inherited writer and
    closes it (its own chain), leaving through os._exit, never through pytest. Returns once the
    child exited 0."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for i in range(decisions):
                writer.submit(inference_event(i))
            code = 0 if writer.close() else 2
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def delete_chain(db_path: Path, chain_id: str) -> None:
    """Delete a whole chain, records and checkpoints, as an attacker would."""
    tamper(db_path, "DELETE FROM records WHERE chain_id = ?", (chain_id,))
    tamper(db_path, "DELETE FROM checkpoints WHERE chain_id = ?", (chain_id,))


def tamper(db_path: Path, sql: str, params: Iterable[Any] = ()) -> None:
    """Run `sql` on the store as an attacker would: plain sqlite3, triggers dropped."""
    db = sqlite3.connect(db_path, isolation_level=None)
    try:
        for trigger in TRIGGERS:
            db.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        db.execute(sql, tuple(params))
    finally:
        db.close()


def rows(db_path: Path, chain_id: str) -> list[dict[str, Any]]:
    """Every stored row of one chain, in seq-column order."""
    db = sqlite3.connect(db_path)
    try:
        cursor = db.execute(f"SELECT {', '.join(FIELDS)} FROM records WHERE chain_id = ? "
                            "ORDER BY seq", (chain_id,))
        return [dict(zip(FIELDS, row, strict=True)) for row in cursor]
    finally:
        db.close()


def put_row(db_path: Path, row: dict[str, Any]) -> None:
    """Insert one row (an attacker's forged, shifted or replayed record)."""
    tamper(db_path, f"INSERT INTO records ({', '.join(FIELDS)}) VALUES (?, ?, ?, ?, ?, ?)",
           [row[field] for field in FIELDS])


def set_data(db_path: Path, chain_id: str, seq: int, data: bytes) -> None:
    tamper(db_path, "UPDATE records SET data = ? WHERE chain_id = ? AND seq = ?",
           (data, chain_id, seq))


def chain_ids(db_path: Path) -> list[str]:
    with AuditStore(db_path, create=False, readonly=True) as store:
        return store.chain_ids()


def checkpoints(db_path: Path, chain_id: str) -> list[SignedCheckpoint]:
    with AuditStore(db_path, create=False, readonly=True) as store:
        return store.checkpoints(chain_id)


def edit_event(data: bytes, **changes: Any) -> bytes:
    """The record's canonical bytes with event fields replaced (still canonical)."""
    record = json.loads(data)
    record["event"].update(changes)
    return canonical_json(record)


def replay_chain(db_path: Path, chain_id: str) -> Chain:
    """The chain's state (head, Merkle tree, checkpoint link) recomputed from the store, as
    anyone who can read the file can: all an attacker needs to forge a checkpoint but the key."""
    chain = Chain(chain_id)
    for row in rows(db_path, chain_id):
        record = json.loads(row["data"])
        chain.seal(record["event"], int(record["chain"]["logged"]))
    signed = checkpoints(db_path, chain_id)
    chain.checkpoint_index = len(signed)
    chain.last_checkpoint_hash = payload_hash(signed[-1].payload) if signed else ""
    return chain


def forge_closing_checkpoint(db_path: Path, chain_id: str, key: SigningKey, *,
                             store_key: bool = True) -> None:
    """Append a closing checkpoint over every stored record, correctly linked to the last
    checkpoint but signed with `key` (whose public half the store gets unless `store_key` is
    False): the only thing wrong with it is who signed it."""
    chain = replay_chain(db_path, chain_id)
    with AuditStore(db_path) as store:
        if store_key:
            store.put_public_key(key.key_id, key.public_pem)
        store.write([], chain.checkpoint(key, time.time_ns(), closed=True))


def write_chain(db_path: Path, key: SigningKey, logged: list[int], *,
                checkpoint_every: int = 4, issued: list[int] | None = None) -> Chain:
    """A closed chain built by hand from `Chain.seal`, with times the writer never picks.

    Record i is an inference event logged at `logged[i]`. Checkpoints (signed with `key`) are
    issued every `checkpoint_every` records and at the end, at the times in `issued` if given.
    """
    chain = Chain()
    issued_times = iter(issued or range(10**18, 10**18 + len(logged) + 2))
    with AuditStore(db_path) as store:
        store.put_public_key(key.key_id, key.public_pem)
        batch: list[SealedRecord] = []
        for i, logged_ns in enumerate(logged):
            batch.append(chain.seal(inference_event(i), logged_ns))
            if chain.size % checkpoint_every == 0 and chain.size < len(logged):
                store.write(batch, chain.checkpoint(key, next(issued_times)))
                batch = []
        store.write(batch, chain.checkpoint(key, next(issued_times), closed=True))
    return chain


def verify(db_path: Path, *trusted: SigningKey, allow_self_asserted: bool = False) -> Report:
    """Verify a store with the public halves of `trusted` pinned."""
    keys = {key.key_id: key.public_key for key in trusted}
    with AuditStore(db_path, create=False, readonly=True) as store:
        return Verifier(keys, allow_self_asserted=allow_self_asserted).verify(store)


def located(report: Report) -> set[tuple[str | None, int | None, str]]:
    """The findings as (chain_id, seq, kind) triples: what the attack tests compare exactly.

    A set, so a test states each expected finding once; a finding reported twice fails here.
    """
    found = {(f.chain_id, f.seq, f.kind.value) for f in report.findings}
    assert len(found) == len(report.findings), f"a finding is reported twice: {report.findings}"
    return found


def leaf(data: bytes) -> str:
    return leaf_hash(data).hex()
