"""Core costs: appending records, their size on disk, checkpoints, fsyncs.

Target (issue 15): append (canonicalise + hash + link + persist, as the writer's thread does
it) >= 0.8 x the floor measured in the same run on the same data: plain `sqlite3`
`executemany` of the same canonical bytes into the same schema, with the same pragmas, in the
same transactions. A records/s target flips with the machine; this ratio says what the audit
adds to what SQLite alone costs here. The absolute figures are printed beside it, without
targets. The machine is shared and noisy, so the floor and the append runs are interleaved and
each throughput is the best of a few repeats. Stores are written under TMPDIR: put it on the
disk the stores will live on, since fsync costs depend on it. (Verification is measured by
`benchmarks.bench_verify`.) Beside the ratio, its bound: what it would be if sealing cost only
the least any record needs, its canonical JSON and one SHA-256 (no header, link or Merkle
tree), so a missed target says whether the chain's own work or Python's per-record floor
stands in the way.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import itertools
import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from benchmarks import Result
from otel_ai_audit.integrity.chain import Chain, SealedRecord, new_chain_id
from otel_ai_audit.integrity.checkpoint import (
    Checkpoint,
    SignedCheckpoint,
    payload_hash,
    sign_payload,
    signature_valid,
)
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.integrity.merkle import leaf_hash
from otel_ai_audit.pipeline.writer import AuditWriter
from otel_ai_audit.record.canonical import canonical_json
from otel_ai_audit.record.schema import EventType, new_event
from otel_ai_audit.store.sqlite import AuditStore

RECORDS = 200_000
REPEATS = 3
APPEND_RATIO_TARGET = 0.8
"""Append >= 0.8 x raw SQLite inserts of the same bytes (issue 15)."""
BATCH = 2048
"""The writer's default batch size."""
CHECKPOINT_EVERY = 1000
"""The writer's default checkpoint interval in records."""
POLICY_RECORDS = 50_000
POLICIES = (100, 1000, 10_000)
CHECKPOINTS = 2000

LOGGED_FROM = 1_800_000_000_000_000_000
"""The first sequencing time (Unix ns) of a chain sealed twice to the same bytes."""

Write = tuple[list[SealedRecord], SignedCheckpoint | None]


def run() -> list[Result]:
    key = SigningKey.generate()
    events = inference_events(RECORDS, time.time_ns())
    rng = random.Random(9562)
    random_ids = [{**event, "id": rng.randbytes(16).hex()} for event in events]
    gc.collect()
    gc.freeze()  # the pre-built events are not the writer's garbage to scan
    try:
        with tempfile.TemporaryDirectory(prefix="otel-ai-audit-bench-") as directory:
            return _run(events, random_ids, key, directory)
    finally:
        gc.unfreeze()


def inference_events(count: int, start_ns: int) -> list[dict[str, Any]]:
    """Inference events as the instrumentation records them (16 fields), built untimed."""
    rng = random.Random(8785)
    fingerprint = hashlib.sha256(b"credit-risk 3.2.1").hexdigest()
    events = []
    for index in range(count):
        score = round(rng.random(), 7)
        events.append(new_event(
            EventType.INFERENCE, time_ns=start_ns + index * 20_000,
            model={"name": "credit-risk", "version": "3.2.1", "fingerprint": fingerprint},
            input={"hash": rng.randbytes(32).hex(), "policy": "hash"},
            output={"label": "approve" if score >= 0.5 else "decline", "score": score},
            risk={"level": "high" if 0.4 <= score <= 0.6 else "low"},
            trace_id=rng.randbytes(16).hex(), span_id=rng.randbytes(8).hex(),
            service={"name": "loan-scoring", "version": "2.4.0"},
            retention={"days": 3650},
        ))
    return events


def _run(events: list[dict[str, Any]], random_ids: list[dict[str, Any]], key: SigningKey,
         directory: str) -> list[Result]:
    paths = (os.path.join(directory, f"store-{n}.db") for n in itertools.count())
    count = len(events)
    chain_id = new_chain_id()

    # Append as the writer's background thread does it (seal and persist interleaved), and
    # the floor: the same records, sealed beforehand, inserted by plain sqlite3. Interleaved,
    # so both see the same machine.
    sealed = list(_writes(events, key, CHECKPOINT_EVERY, chain_id))
    gc.freeze()  # nor are the floor's records
    append_times, floor_times, store_path = [], [], ""
    for _ in range(REPEATS):
        path = next(paths)
        floor_times.append(_raw_sqlite(sealed, path, key))
        _remove(path)
        _remove(store_path)
        store_path = next(paths)
        append_times.append(_persist(_writes(events, key, CHECKPOINT_EVERY, chain_id),
                                     store_path, key))
    del sealed
    random_id_times = []
    for _ in range(REPEATS):
        path = next(paths)
        random_id_times.append(_persist(_writes(random_ids, key, CHECKPOINT_EVERY), path, key))
        _remove(path)
    # The same work split in two, to see where the time goes.
    seal_times, persist_times = [], []
    for _ in range(REPEATS):
        started = time.perf_counter()
        writes = list(_writes(events, key, CHECKPOINT_EVERY))
        seal_times.append(time.perf_counter() - started)
        path = next(paths)
        persist_times.append(_persist(writes, path, key))
        _remove(path)
        del writes
    least_seconds = _best(lambda: [leaf_hash(canonical_json(event)) for event in events])
    end_to_end, submit_costs = [], []
    for _ in range(REPEATS):
        path = next(paths)
        seconds, submit_cost = _end_to_end(events, path, key)
        end_to_end.append(seconds)
        submit_costs.append(submit_cost)
        _remove(path)

    disk_bytes = _bytes_on_disk(store_path)
    with AuditStore(store_path, create=False, readonly=True) as store:
        record_bytes = statistics.fmean(len(data) for _, data in store.records(
            store.chain_ids()[0]))
    sign_us, check_us, full_us = _checkpoint_costs(events[:CHECKPOINT_EVERY], key)
    policies = _policies(events[:POLICY_RECORDS], key, paths)

    floor = _rate(count, floor_times)
    append = _rate(count, append_times)
    pairs = sorted(floor_seconds / append_seconds
                   for floor_seconds, append_seconds in zip(floor_times, append_times, strict=True))
    seal_us = min(seal_times) / count * 1e6
    least_us = least_seconds / count * 1e6
    floor_us = min(floor_times) / count * 1e6
    persist_us = min(persist_times) / count * 1e6
    results = [
        Result("append / raw SQLite inserts of the same bytes", append / floor, "x",
               APPEND_RATIO_TARGET,
               note=f"best of {REPEATS} each, interleaved; per-repeat ratios "
                    f"{', '.join(f'{ratio:.2f}' for ratio in pairs)}"),
        Result("append: seal + persist (writer's thread)", append, "records/s",
               note=f"{_spread(count, append_times)}; checkpoint every {CHECKPOINT_EVERY}, "
                    f"batches of {BATCH}; split: seal {seal_us:.1f} us + persist "
                    f"{persist_us:.1f} us per record"),
        Result("append floor: plain sqlite3 inserts", floor, "records/s",
               note=f"{_spread(count, floor_times)}; the same records, checkpoint rows and "
                    "transactions, same schema and pragmas (WAL; synchronous NORMAL, FULL "
                    "for the commits with a checkpoint)"),
        Result("append: same, random event ids (uuid4-like)", _rate(count, random_id_times),
               "records/s", note="ids out of time order hit random pages of the record-id "
                                 "index: why new_event ids are UUIDv7"),
        Result("append: seal only (canonicalise+hash+link)", _rate(count, seal_times),
               "records/s"),
        Result("append bound: sealing as cheap as it can be", floor_us / (floor_us + least_us),
               "x", note=f"what append / raw SQLite would be if sealing cost no more than "
                         f"canonical JSON and one SHA-256 of each event ({least_us:.1f} us a "
                         f"record, against the floor's {floor_us:.1f} us), in Python"),
        Result("append: persist only (SQLite)", _rate(count, persist_times), "records/s"),
        Result("append: end to end (submit ... close)", _rate(count, end_to_end), "records/s",
               note=f"{_spread(count, end_to_end)}; {_rate(count, end_to_end) / floor:.2f}x "
                    "the floor; AuditWriter defaults, caller and writer thread share one "
                    "interpreter"),
        Result("submit: caller's CPU per event", min(submit_costs) * 1e6, "us",
               note="calling thread's CPU time in the end-to-end run"),
        Result("disk: bytes per record (db+WAL, checkpointed)", disk_bytes / count, "B",
               note=f"canonical record {record_bytes:.0f} B; the rest is the key columns "
                    "and the time and record-id indexes"),
        Result("checkpoint: payload + sign", sign_us, "us"),
        Result("checkpoint: parse + verify signature", check_us, "us"),
        Result("checkpoint: Chain.checkpoint (root+sign)", full_us, "us"),
    ]
    fastest = max(policies.values())
    for every, rate in policies.items():
        results.append(Result(
            f"fsync policy: checkpoint every {every:,}", rate, "records/s",
            note=f"{rate / fastest:.2f}x of the fastest policy; {rate / every:,.0f} "
                 "checkpoints (full fsyncs) per second"))
    return results


def _writes(events: list[dict[str, Any]], key: SigningKey, every: int,
            chain_id: str | None = None) -> Iterator[Write]:
    """The store writes the writer's thread makes for `events`: batches of BATCH, cut at a
    checkpoint every `every` records, then the closing checkpoint. With `chain_id`, the same
    events make the same record bytes each time."""
    chain = Chain(chain_id)
    logged = LOGGED_FROM if chain_id else time.time_ns()
    counters = {"failed": 0}
    for first in range(0, len(events), BATCH):
        sealed: list[SealedRecord] = []
        for event in events[first:first + BATCH]:
            sealed.append(chain.seal(event, logged))
            logged += 1
            if chain.size - chain.last_checkpoint_size >= every:
                yield sealed, chain.checkpoint(key, time.time_ns(), counters=counters)
                sealed = []
        if sealed:
            yield sealed, None
    yield [], chain.checkpoint(key, time.time_ns(), closed=True, counters=counters)


def _persist(writes: Iterable[Write], path: str, key: SigningKey) -> float:
    """Seconds to make `writes` to a new store (sealing too, if `writes` is lazy)."""
    with AuditStore(path) as store:
        store.put_public_key(key.key_id, key.public_pem)
        started = time.perf_counter()
        for records, checkpoint in writes:
            store.write(records, checkpoint)
        return time.perf_counter() - started


def _end_to_end(events: list[dict[str, Any]], path: str, key: SigningKey) -> tuple[float, float]:
    """Seconds from the first submit until close() returns, and the calling thread's CPU
    seconds per submit (waits for the GIL and for a full queue excluded)."""
    writer = AuditWriter(path, key, service_name="bench")
    started, cpu = time.perf_counter(), time.thread_time()
    for event in events:
        writer.submit(event)
    cpu = time.thread_time() - cpu
    if not writer.close(timeout=600):
        raise RuntimeError("the writer did not finish within 10 minutes")
    return time.perf_counter() - started, cpu / len(events)


def _raw_sqlite(writes: list[Write], path: str, key: SigningKey) -> float:
    """Seconds for plain sqlite3 to make `writes` to a new store: the same schema and pragmas
    (the store makes the file, then plain sqlite3 inserts with `executemany`), the same
    transactions, nothing else. The floor of what an append can cost on this machine."""
    with AuditStore(path) as store:
        store.put_public_key(key.key_id, key.public_pem)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous = NORMAL")
        started = time.perf_counter()
        for records, checkpoint in writes:
            if checkpoint is not None:
                db.execute("PRAGMA synchronous = FULL")
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)", records)
            if checkpoint is not None:
                db.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?)",
                           (checkpoint.chain_id, checkpoint.index, checkpoint.size,
                            checkpoint.key_id, checkpoint.payload, checkpoint.signature))
            db.execute("COMMIT")
            if checkpoint is not None:
                db.execute("PRAGMA synchronous = NORMAL")
        return time.perf_counter() - started
    finally:
        db.close()


def _bytes_on_disk(path: str) -> int:
    """Size of the store and its WAL once the WAL is checkpointed into the file."""
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return sum(os.path.getsize(path + suffix) for suffix in ("", "-wal", "-shm")
               if os.path.exists(path + suffix))


def _checkpoint_costs(events: list[dict[str, Any]], key: SigningKey) -> tuple[float, float, float]:
    """Microseconds to sign one checkpoint, to check one, and for Chain.checkpoint."""
    chain = Chain()
    for logged, event in enumerate(events):
        chain.seal(event, logged)
    template = chain.checkpoint(key, time.time_ns(), counters={"failed": 0})
    base = Checkpoint.from_payload(template.payload)
    checkpoints = [dataclasses.replace(base, index=index, issued_at_ns=base.issued_at_ns + index,
                                       prev_checkpoint=payload_hash(template.payload))
                   for index in range(1, CHECKPOINTS + 1)]
    public_key = key.public_key

    def sign() -> list[tuple[bytes, bytes]]:
        return [(payload, sign_payload(key, payload))
                for payload in (checkpoint.payload() for checkpoint in checkpoints)]

    signed = sign()

    def check() -> None:
        for payload, signature in signed:
            Checkpoint.from_payload(payload)
            if not signature_valid(public_key, payload, signature):
                raise RuntimeError("a benchmark checkpoint does not verify")

    def full() -> None:
        for _ in range(CHECKPOINTS):
            chain.checkpoint(key, time.time_ns(), counters={"failed": 0})

    sign_us, check_us, full_us = (_best(action) / CHECKPOINTS * 1e6
                                  for action in (sign, check, full))
    return sign_us, check_us, full_us


def _policies(events: list[dict[str, Any]], key: SigningKey,
              paths: Iterator[str]) -> dict[int, float]:
    """records/s of seal + persist per checkpoint interval, the intervals interleaved."""
    seconds: dict[int, list[float]] = {every: [] for every in POLICIES}
    for _ in range(REPEATS):
        for every in POLICIES:
            path = next(paths)
            seconds[every].append(_persist(_writes(events, key, every), path, key))
            _remove(path)
    return {every: _rate(len(events), times) for every, times in seconds.items()}


def _best(action: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def _rate(count: int, seconds: list[float]) -> float:
    return count / min(seconds)


def _spread(count: int, seconds: list[float]) -> str:
    return (f"best of {len(seconds)}; median {count / statistics.median(seconds):,.0f}, "
            f"worst {count / max(seconds):,.0f}")


def _remove(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        if path and os.path.exists(path + suffix):
            os.remove(path + suffix)
