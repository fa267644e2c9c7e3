"""Creating a store is safe when several openers race for the same new file.

The writer and a shipper (or several worker processes) commonly open a store that does not
exist yet at the same moment; none may see it half made or fail.
"""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

from otel_ai_audit.store.sqlite import STORE_SCHEMA_VERSION, AuditStore

OPENERS = 6
ROUNDS = 15


def _open(path: str) -> str:
    try:
        with AuditStore(path) as store:
            store.chain_ids()
        return "ok"
    except Exception as error:  # noqa: BLE001 - the failure is the result
        return f"{type(error).__name__}: {error}"


def test_threads_creating_one_new_store_all_succeed(tmp_path: Path) -> None:
    failures: list[str] = []
    for round_ in range(ROUNDS):
        path = str(tmp_path / f"race-{round_}.db")
        barrier = threading.Barrier(OPENERS)

        def opener(path: str = path, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            outcome = _open(path)
            if outcome != "ok":
                failures.append(outcome)

        threads = [threading.Thread(target=opener) for _ in range(OPENERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []


def test_processes_creating_one_new_store_all_succeed(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(OPENERS) as pool:
        for round_ in range(ROUNDS // 3):
            path = str(tmp_path / f"race-{round_}.db")
            assert pool.map(_open, [path] * OPENERS) == ["ok"] * OPENERS
            with AuditStore(path, create=False, readonly=True) as store:
                version = store._db.execute(
                    "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            assert version == (str(STORE_SCHEMA_VERSION),)
