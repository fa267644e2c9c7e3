"""What happens when the writer falls behind: `block` makes the caller wait, `spill` sends its
events to disk. Neither loses a decision, and the chain keeps the order they were made in.

The writer is slowed for real: another connection holds the store's SQLite write lock, as a
busy disk or another process would, so the writer thread waits inside its write while a real
scikit-learn model keeps scoring into a queue of four entries. Queue policies are about
`async` durability (a `process` durable call waits for its commit whatever the queue holds), so
these decisions are made `async`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import otel_ai_audit
from otel_ai_audit.runtime import register_model
from tests.instrumentation_fixtures import AuditedProcess
from tests.pipeline_fixtures import audited_sklearn, signed_checkpoints, trained_model

HOLD = 1.5
"""Seconds the store stays locked by the other connection."""
CALLS = 40
ROWS = 5


@contextmanager
def store_write_locked(store: Path, seconds: float) -> Iterator[None]:
    """Hold the store's write lock from another connection for `seconds` (from a thread, so
    the test's own thread can be the one that blocks)."""
    locked = threading.Event()

    def hold() -> None:
        db = sqlite3.connect(store, isolation_level=None, timeout=30)
        try:
            db.execute("BEGIN IMMEDIATE")
            locked.set()
            time.sleep(seconds)
            db.execute("COMMIT")
        finally:
            db.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert locked.wait(10)
    try:
        yield
    finally:
        thread.join()


def score_while_the_store_is_locked(
        process: AuditedProcess, before_lock: list[str]) -> tuple[float, list[str], dict[str, int]]:
    """Score CALLS batch calls while the store is locked: (seconds the calls took, decision
    ids in the order they were made, permissions of the spill files seen after the calls)."""
    model, rows = trained_model(7)
    register_model(model, name="churn", risk="high")
    model.predict(rows[:1])  # opens the chain and the store
    before_lock.extend(otel_ai_audit.last_decision_ids())
    assert process.runtime.writer.flush()
    made: list[str] = []
    with store_write_locked(process.store, HOLD):
        started = time.monotonic()
        for call in range(CALLS):
            model.predict_proba(rows[call * ROWS:(call + 1) * ROWS])
            made.extend(otel_ai_audit.last_decision_ids())
        elapsed = time.monotonic() - started
        spill_files = {path.name: path.stat().st_mode & 0o777
                       for path in process.store.parent.glob("*.spill")}
    assert process.runtime.writer.flush()
    return elapsed, made, spill_files


def chained_decisions(process: AuditedProcess) -> list[str]:
    return [event["id"] for event in process.events("inference")]


def test_block_makes_the_caller_wait_and_loses_nothing(tmp_path: Path) -> None:
    with audited_sklearn(tmp_path, max_queue=4, queue_full_policy="block",
                         durability="async") as process:
        first: list[str] = []
        elapsed, made, spill_files = score_while_the_store_is_locked(process, first)
        stats = process.runtime.writer.stats()
        report = process.verify()
    assert report.ok, report.findings
    assert elapsed > HOLD / 2, "the caller waited for the writer"
    assert spill_files == {} and stats.spilled == 0
    assert chained_decisions(process) == first + made
    assert stats.queued == 2 + CALLS and stats.failed == 0  # with the fit and the first call
    assert stats.persisted == report.record_count


def test_spill_does_not_block_the_caller_and_loses_nothing(tmp_path: Path) -> None:
    with audited_sklearn(tmp_path, max_queue=4, queue_full_policy="spill",
                         durability="async") as process:
        first: list[str] = []
        elapsed, made, spill_files = score_while_the_store_is_locked(process, first)
        stats = process.runtime.writer.stats()
        report = process.verify()
    assert report.ok, report.findings
    assert elapsed < HOLD / 3, "the caller did not wait for the writer"
    chain_id = process.runtime.writer.chain.chain_id
    assert spill_files == {f"audit.db.{chain_id}.spill": 0o600}
    assert not list(tmp_path.glob("*.spill")), "removed once drained"
    assert CALLS - 8 <= stats.spilled < CALLS
    # Submission order and monotonic `logged` times (the verifier checks the latter too).
    assert chained_decisions(process) == first + made
    assert stats.queued == 2 + CALLS and stats.failed == 0  # with the fit and the first call
    closing = signed_checkpoints(process.store)[-1]
    assert closing.closed and closing.counters["failed"] == 0
    assert report.record_count == stats.persisted


def test_spill_onto_a_full_disk_counts_and_logs_what_it_loses(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with audited_sklearn(tmp_path, max_queue=4, queue_full_policy="spill",
                         durability="async") as process:
        writer = process.runtime.writer
        model, rows = trained_model(8)
        register_model(model, name="churn", risk="high")
        model.predict(rows[:1])
        assert writer.flush()
        # The spill file of this chain is /dev/full: every write fails with ENOSPC, for real.
        os.symlink("/dev/full", f"{process.store}.{writer.chain.chain_id}.spill")
        with caplog.at_level(logging.ERROR), store_write_locked(process.store, HOLD):
            for call in range(CALLS):
                model.predict_proba(rows[call * ROWS:(call + 1) * ROWS])
        assert writer.flush()
        stats = writer.stats()
        report = process.verify()
    lost = CALLS * ROWS + 1 - len(process.events("inference"))
    # The signed loss is a finding: verification fails and says how many, and why.
    assert [(f.kind.value, f"{lost} decision(s) lost" in f.detail, "spill: " in f.detail)
            for f in report.findings] == [("decisions_lost", True, True)]
    assert lost >= (CALLS - 8) * ROWS
    assert stats.failed == lost
    assert signed_checkpoints(process.store)[-1].counters["failed"] == lost
    messages = [r.getMessage() for r in caplog.records if "could not be spilled" in r.getMessage()]
    assert len(messages) == lost // ROWS and "No space left on device" in messages[0]
    assert not list(tmp_path.glob("*.spill"))


def test_unknown_queue_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="queue-full policy must be one of"):
        with audited_sklearn(tmp_path, queue_full_policy="drop"):
            pass
