"""Core costs: appending records, verifying them, their size on disk, checkpoints, fsyncs.

Targets (from the issue): append >= 50,000 records/s on one core (canonicalise + hash + link +
persist) and verify >= 200,000 records/s. The machine is shared and noisy, so a throughput is
the best of a few repeats, and numbers meant to be compared with each other (the checkpoint
policies) are measured interleaved in one run. Stores are written under TMPDIR: put it on the
disk the stores will live on, since fsync costs depend on it.
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
from otel_ai_audit.integrity.chain import Chain
from otel_ai_audit.integrity.checkpoint import (
    Checkpoint,
    SignedCheckpoint,
    payload_hash,
    sign_payload,
    signature_valid,
)
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.pipeline.writer import AuditWriter
from otel_ai_audit.record.schema import EventType, new_event
from otel_ai_audit.store.sqlite import AuditStore, SealedRecord
from otel_ai_audit.verify.verifier import Verifier

RECORDS = 200_000
REPEATS = 3
APPEND_TARGET = 50_000.0
VERIFY_TARGET = 200_000.0
BATCH = 2048
"""The writer's default batch size."""
CHECKPOINT_EVERY = 1000
"""The writer's default checkpoint interval in records."""
POLICY_RECORDS = 50_000
POLICIES = (100, 1000, 10_000)
CHECKPOINTS = 2000

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

    # Append, as the writer's background thread does it: seal and persist interleaved.
    append_times, store_path = [], ""
    for _ in range(REPEATS):
        _remove(store_path)
        store_path = next(paths)
        append_times.append(_persist(_writes(events, key, CHECKPOINT_EVERY), store_path, key))
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
    end_to_end, submit_costs = [], []
    for _ in range(REPEATS):
        path = next(paths)
        seconds, submit_cost = _end_to_end(events, path, key)
        end_to_end.append(seconds)
        submit_costs.append(submit_cost)
        _remove(path)

    verify_times = [_verify(store_path, key, count) for _ in range(REPEATS)]
    disk_bytes = _bytes_on_disk(store_path)
    with AuditStore(store_path, create=False, readonly=True) as store:
        record_bytes = statistics.fmean(len(data) for _, data in store.records(
            store.chain_ids()[0]))
    sign_us, check_us, full_us = _checkpoint_costs(events[:CHECKPOINT_EVERY], key)
    policies = _policies(events[:POLICY_RECORDS], key, paths)

    seal_us = min(seal_times) / count * 1e6
    persist_us = min(persist_times) / count * 1e6
    results = [
        Result("append: seal + persist (writer's thread)", _rate(count, append_times),
               "records/s", APPEND_TARGET,
               note=f"{_spread(count, append_times)}; checkpoint every {CHECKPOINT_EVERY}, "
                    f"batches of {BATCH}; split: seal {seal_us:.1f} us + persist "
                    f"{persist_us:.1f} us per record"),
        Result("append: same, random event ids (uuid4-like)", _rate(count, random_id_times),
               "records/s", note="ids out of time order hit random pages of the record-id "
                                 "index: why new_event ids are UUIDv7"),
        Result("append: seal only (canonicalise+hash+link)", _rate(count, seal_times),
               "records/s"),
        Result("append: persist only (SQLite)", _rate(count, persist_times), "records/s"),
        Result("append: end to end (submit ... close)", _rate(count, end_to_end), "records/s",
               APPEND_TARGET,
               note=f"{_spread(count, end_to_end)}; AuditWriter defaults, caller and writer "
                    "thread share one interpreter"),
        Result("submit: caller's CPU per event", min(submit_costs) * 1e6, "us",
               note="calling thread's CPU time in the end-to-end run"),
        Result(f"verify: {count:,}-record closed store", _rate(count, verify_times),
               "records/s", VERIFY_TARGET, note=_spread(count, verify_times)),
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


def _writes(events: list[dict[str, Any]], key: SigningKey, every: int) -> Iterator[Write]:
    """The store writes the writer's thread makes for `events`: batches of BATCH, cut at a
    checkpoint every `every` records, then the closing checkpoint."""
    chain = Chain()
    logged = time.time_ns()
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


def _verify(path: str, key: SigningKey, count: int) -> float:
    verifier = Verifier({key.key_id: key.public_key})
    with AuditStore(path, create=False, readonly=True) as store:
        started = time.perf_counter()
        report = verifier.verify(store)
        seconds = time.perf_counter() - started
    if not report.ok or report.record_count != count:
        raise RuntimeError(f"the benchmark store does not verify: {report.findings[:3]}")
    return seconds


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
