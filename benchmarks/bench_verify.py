"""Verify against its floor: hashlib SHA-256 over the same canonical bytes, in the same run.

A 200,000-record closed store is written once by the real `AuditWriter`. Then, interleaved so
both see the same machine: the floor (every record's leaf-hash input, SHA-256(0x00 || bytes),
hashed in one process from memory, the bytes read beforehand and not timed) and `verify` of
the store with the default jobs (one process per CPU: reading, hashing, parsing, checking and
the start of its workers all timed) and with one job. Target (issue 15): verify >= 0.5x the
floor. Each figure is the best of a few repeats (the machine is shared); the load average is
printed beside them, since on two cores a busy neighbour takes a worker's core. Beside the
ratio, its bound: the ratio a verify would reach if it did only what any verify of the store
must, read every record from SQLite and hash it twice (its leaf, and its share of the Merkle
tree's nodes: a tree of n leaves has n - 1), shared perfectly over the jobs.
"""

from __future__ import annotations

import hashlib
import os
import resource
import tempfile
import time

from benchmarks import Result
from benchmarks.bench_core import inference_events
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.pipeline.writer import AuditWriter
from otel_ai_audit.store.sqlite import AuditStore
from otel_ai_audit.verify.parallel import resolve_jobs
from otel_ai_audit.verify.verifier import Verifier

RECORDS = 200_000
REPEATS = 5
TARGET = 0.5


def run() -> list[Result]:
    key = SigningKey.generate()
    with tempfile.TemporaryDirectory(prefix="otel-ai-audit-bench-") as directory:
        path = os.path.join(directory, "verify.db")
        writer = AuditWriter(path, key, service_name="bench")
        for event in inference_events(RECORDS - 1, time.time_ns()):
            writer.submit(event)
        if not writer.close(timeout=600):
            raise RuntimeError("the writer did not finish within 10 minutes")
        return _measure(path, key)


def _measure(path: str, key: SigningKey) -> list[Result]:
    with AuditStore(path, create=False, readonly=True) as store:
        inputs = [data for chain_id in store.chain_ids() for _, data in store.records(chain_id)]
    count = len(inputs)
    jobs = resolve_jobs()
    floor, floor_cpu, verify, alone, cpu, reads = [], [], [], [], [], []
    loads = []
    for _ in range(REPEATS):
        seconds, cpu_seconds = _hash(inputs)
        floor.append(seconds)
        floor_cpu.append(cpu_seconds)
        reads.append(_read(path))
        seconds, cpu_seconds = _verify(path, key, jobs, count)
        verify.append(seconds)
        cpu.append(cpu_seconds)
        alone.append(_verify(path, key, 1, count)[0])
        loads.append(os.getloadavg()[0])
    floor_rate, verify_rate, alone_rate = (count / min(times) for times in (floor, verify, alone))
    megabytes = sum(map(len, inputs)) / 1e6
    load = f"load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs"
    return [
        Result(f"verify: {count:,}-record store, {jobs} jobs", verify_rate, "records/s",
               note=f"best of {REPEATS}, worker start-up included; {load}; CPU "
                    f"{min(cpu) / count * 1e6:.2f} us a record (this process and its workers; "
                    f"the floor's {min(floor_cpu) / count * 1e6:.2f} us)"),
        Result(f"verify: {count:,}-record store, 1 job", alone_rate, "records/s"),
        Result("verify floor: SHA-256 of the same bytes", floor_rate, "records/s",
               note=f"hashlib, one process, {megabytes:.0f} MB of leaf-hash input from memory "
                    f"({megabytes / min(floor):.0f} MB/s)"),
        Result(f"verify / SHA-256 floor ({jobs} jobs)", verify_rate / floor_rate, "x", TARGET,
               note=f"1 job: {alone_rate / floor_rate:.2f}x"),
        Result(f"verify bound: reading and two hashes a record ({jobs} jobs)",
               min(floor) / ((min(reads) + 2 * min(floor)) / jobs), "x",
               note=f"reading the records alone takes {min(reads) / count * 1e6:.2f} us a "
                    f"record, hashing one {min(floor) / count * 1e6:.2f} us"),
    ]


def _hash(inputs: list[bytes]) -> tuple[float, float]:
    """Seconds and CPU seconds to hash every leaf-hash input."""
    sha256 = hashlib.sha256
    cpu, started = time.process_time(), time.perf_counter()
    for data in inputs:
        sha256(b"\x00" + data).digest()
    return time.perf_counter() - started, time.process_time() - cpu


def _read(path: str) -> float:
    """Seconds to read every record of the store in the batches verify reads them in."""
    with AuditStore(path, create=False, readonly=True) as store:
        started = time.perf_counter()
        for chain_id in store.chain_ids():
            for _ in store.record_batches(chain_id):
                pass
        return time.perf_counter() - started


def _verify(path: str, key: SigningKey, jobs: int, count: int) -> tuple[float, float]:
    """Seconds to verify the store, and the CPU seconds of this process and its workers (they
    are reaped when verify returns)."""
    verifier = Verifier({key.key_id: key.public_key}, jobs=jobs)
    with AuditStore(path, create=False, readonly=True) as store:
        cpu = time.process_time() + _children_cpu()
        started = time.perf_counter()
        report = verifier.verify(store)
        seconds = time.perf_counter() - started
        cpu = time.process_time() + _children_cpu() - cpu
    if not report.ok or report.record_count != count:
        raise RuntimeError(f"the benchmark store does not verify: {report.findings[:3]}")
    return seconds, cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
