"""Costs of lossless delivery: holding sampled-out decisions, sampling, spilling, promoting.

* Holding: bytes on disk per held decision beside a chained record's, and the writer thread's
  cost per decision (canonical JSON + insert into the holding table, vs seal + insert).
* The writer end to end at sampling rate 1.0 and 0.1 on the same events (about a fifth of them
  high-risk, so kept whatever the rate).
* Spilling: what a caller pays per entry it spills, and how fast the writer reads entries back.
* Promotion: what a dispute of a held decision costs the writer thread (persist what is pending,
  look the decision up, seal it, seal the dispute, persist).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Any

from benchmarks import Result
from benchmarks.bench_core import BATCH, CHECKPOINT_EVERY, _bytes_on_disk, _persist, _writes
from benchmarks.bench_core import inference_events as _inference_events
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.pipeline.sampling import SamplingPolicy
from otel_ai_audit.pipeline.spill import SpillFile
from otel_ai_audit.pipeline.writer import AuditWriter
from otel_ai_audit.record.canonical import canonical_json
from otel_ai_audit.record.schema import EventType, new_event
from otel_ai_audit.store.sqlite import AuditStore, HeldRecord

RECORDS = 50_000
REPEATS = 3
DISPUTES = 500
HOLD_NS = 72 * 3600 * 10**9


def run() -> list[Result]:
    key = SigningKey.generate()
    events = _inference_events(RECORDS, time.time_ns())
    with tempfile.TemporaryDirectory(prefix="otel-ai-audit-bench-") as folder:
        paths = (os.path.join(folder, f"store-{n}.db") for n in range(10**6))
        empty = next(paths)
        AuditStore(empty).close()
        baseline = _bytes_on_disk(empty)

        chained_s, held_s = [], []
        for _ in range(REPEATS):
            chained_path, held_path = next(paths), next(paths)
            chained_s.append(_persist(_writes(events, key, CHECKPOINT_EVERY), chained_path, key))
            held_s.append(_hold(events, held_path))
        chained_bytes = (_bytes_on_disk(chained_path) - baseline) / RECORDS
        held_bytes = (_bytes_on_disk(held_path) - baseline) / RECORDS
        canonical_bytes = statistics.fmean(len(canonical_json(event)) for event in events)

        end_to_end = {rate: min(_end_to_end(events, next(paths), key, rate)
                                for _ in range(REPEATS)) for rate in (1.0, 0.1)}
        append_us, read_rate = _spill(events, os.path.join(folder, "bench.spill"))
        dispute_us = _disputes(events, next(paths), key)

    kept = sum(1 for e in events if e["risk"]["level"] == "high") / RECORDS
    return [
        Result("hold: bytes per held decision (db+WAL)", held_bytes, "B",
               note=f"canonical event {canonical_bytes:.0f} B; a chained record takes "
                    f"{chained_bytes:.0f} B (chain header, time and record-id indexes)"),
        Result("hold: writer cost per held decision", min(held_s) / RECORDS * 1e6, "us",
               note=f"canonical JSON + insert; chaining costs {min(chained_s) / RECORDS * 1e6:.1f}"
                    " us (seal + insert + checkpoints)"),
        Result("writer end to end, sampling rate 1.0", RECORDS / end_to_end[1.0], "records/s"),
        Result("writer end to end, sampling rate 0.1", RECORDS / end_to_end[0.1], "decisions/s",
               note=f"{kept:.0%} of the events are high-risk and kept at any rate; the others "
                    "go to the holding table"),
        Result("spill: caller cost per spilled entry", append_us, "us",
               note="one event per entry: canonical JSON + pwrite, no fsync"),
        Result("spill: writer read-back", read_rate, "entries/s"),
        Result("dispute of a held decision: writer cost", dispute_us, "us",
               note="persist pending, look up chain + hold, promote, seal the dispute; one "
                    "transaction per dispute"),
    ]


def _hold(events: list[dict[str, Any]], path: str) -> float:
    """Seconds to hold `events` as the writer does: canonical JSON, then batched inserts."""
    with AuditStore(path) as store:
        started = time.perf_counter()
        logged = time.time_ns()
        for first in range(0, len(events), BATCH):
            store.write([], hold=[
                HeldRecord(event["id"], "0" * 32, logged, logged + HOLD_NS,
                           canonical_json(event))
                for event in events[first:first + BATCH]])
        return time.perf_counter() - started


def _end_to_end(events: list[dict[str, Any]], path: str, key: SigningKey, rate: float) -> float:
    writer = AuditWriter(path, key, sampling=SamplingPolicy(rate=rate))
    started = time.perf_counter()
    for event in events:
        writer.submit(event)
    if not writer.close(timeout=600):
        raise RuntimeError("the writer did not finish within 10 minutes")
    return time.perf_counter() - started


def _spill(events: list[dict[str, Any]], path: str) -> tuple[float, float]:
    """(caller µs per appended entry, entries read back per second)."""
    appends, reads = [], []
    for _ in range(REPEATS):
        spill = SpillFile(path)
        started = time.perf_counter()
        for logged, event in enumerate(events):
            spill.append(logged, [event])
        appends.append(time.perf_counter() - started)
        started = time.perf_counter()
        count = 0
        while entries := spill.read():
            count += len(entries)
        reads.append(time.perf_counter() - started)
        spill.remove()
        if count != len(events):
            raise RuntimeError(f"read back {count} spilled entries of {len(events)}")
    return min(appends) / len(events) * 1e6, len(events) / min(reads)


def _disputes(events: list[dict[str, Any]], path: str, key: SigningKey) -> float:
    """Writer-thread µs per dispute whose decision is held (everything sampled out)."""
    writer = AuditWriter(path, key, sampling=SamplingPolicy(rate=0.0, keep_risk=()))
    for event in events:
        writer.submit(event)
    writer.flush(timeout=600)
    disputes = [new_event(EventType.DISPUTE, decision_id=event["id"], reason="bench")
                for event in events[:DISPUTES]]
    started = time.perf_counter()
    for dispute in disputes:
        writer.submit(dispute)
    writer.flush(timeout=600)
    seconds = time.perf_counter() - started
    writer.close()
    if writer.stats().persisted != 1 + 2 * DISPUTES:
        raise RuntimeError("not every dispute promoted its decision")
    return seconds / DISPUTES * 1e6
