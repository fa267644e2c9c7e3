"""Verifying with worker processes finds what verifying in one process finds, byte for byte.

Each tampered store is verified with `jobs=1` (every chain read in this process) and with
`jobs=2` and the thresholds lowered so the 21-record chain of the shared store (checkpoints of
sizes 4, 8, ..., 20, 21) is cut into three ranges at its checkpoints, each read by a worker
process: the reports must be equal, findings in the same order with the same details, and so
must what pass 1 read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from otel_ai_audit.cli import main
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.integrity.merkle import merkle_root
from otel_ai_audit.record.schema import seal
from otel_ai_audit.store.sqlite import AuditStore
from otel_ai_audit.verify import parallel
from otel_ai_audit.verify.reading import ChainData, Pass1, read_chain
from otel_ai_audit.verify.verifier import Verifier
from tests.audit_fixtures import (
    chain_ids,
    checkpoints,
    edit_event,
    inference_event,
    leaf,
    put_row,
    rows,
    set_data,
    tamper,
    write_store,
)
from tests.unit.profiles import property_settings

SIZE = 21


@pytest.fixture
def in_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thresholds low enough that the shared store is read by workers in three ranges."""
    monkeypatch.setattr(parallel, "PARALLEL_MIN", 0)
    monkeypatch.setattr(parallel, "SEGMENT_MIN", 4)


def data_at(path: Path, chain_id: str, seq: int) -> bytes:
    return next(row["data"] for row in rows(path, chain_id) if row["seq"] == seq)


def altered(path: Path, chain_id: str) -> None:
    set_data(path, chain_id, 9, edit_event(data_at(path, chain_id, 9), output={"score": 0.99}))


def deleted(path: Path, chain_id: str) -> None:
    tamper(path, "DELETE FROM records WHERE chain_id = ? AND seq = 9", (chain_id,))


def reordered(path: Path, chain_id: str) -> None:
    first, second = data_at(path, chain_id, 5), data_at(path, chain_id, 12)
    set_data(path, chain_id, 5, second)
    set_data(path, chain_id, 12, first)


def truncated(path: Path, chain_id: str) -> None:
    tamper(path, "DELETE FROM records WHERE chain_id = ? AND seq >= 18", (chain_id,))


def bad_checkpoint(path: Path, chain_id: str) -> None:
    payload = checkpoints(path, chain_id)[2].payload
    tamper(path, "UPDATE checkpoints SET payload = ? WHERE chain_id = ? AND idx = 2",
           (payload.replace(b'"size":12', b'"size":13'), chain_id))


def replayed(path: Path, chain_id: str) -> None:
    row = next(r for r in rows(path, chain_id) if r["seq"] == 9)
    put_row(path, {**row, "seq": SIZE})


def reserialised(path: Path, chain_id: str) -> None:
    record = json.loads(data_at(path, chain_id, 9))
    set_data(path, chain_id, 9, json.dumps(record, sort_keys=True, indent=1).encode())


def rewritten(path: Path, chain_id: str) -> None:
    """Record 9 changed and every later record re-sealed: only the checkpoints tell."""
    prev = leaf(data_at(path, chain_id, 8))
    for row in rows(path, chain_id)[9:]:
        record = json.loads(row["data"])
        if row["seq"] == 9:
            record["event"]["output"]["score"] = 0.99
        data = seal(record["event"], chain_id, row["seq"], prev,
                    int(record["chain"]["logged"]))
        set_data(path, chain_id, row["seq"], data)
        prev = leaf(data)


def shifted_column(path: Path, chain_id: str) -> None:
    """A record stored under another seq (and a forged one in a range's middle)."""
    tamper(path, "UPDATE records SET seq = 40 WHERE chain_id = ? AND seq = 10", (chain_id,))
    event = inference_event(99)
    put_row(path, {"chain_id": chain_id, "seq": 11.5, "time": event["time"],
                   "type": event["type"], "record_id": event["id"],
                   "data": b"not a record at all"})


def text_column(path: Path, chain_id: str) -> None:
    """A seq column an attacker stored as text sorts after every number: into the last range."""
    tamper(path, "UPDATE records SET seq = 'x' WHERE chain_id = ? AND seq = 3", (chain_id,))


def spliced(path: Path, chain_id: str, key: SigningKey) -> None:
    write_store(path, key)
    (other,) = set(chain_ids(path)) - {chain_id}
    for row in rows(path, other)[5:7]:
        set_data(path, chain_id, row["seq"], row["data"])


TAMPERING: dict[str, Callable[[Path, str], None]] = {
    "clean": lambda path, chain_id: None, "altered": altered, "deleted": deleted,
    "reordered": reordered, "truncated": truncated, "bad-checkpoint": bad_checkpoint,
    "replayed": replayed, "reserialised": reserialised, "rewritten": rewritten,
    "shifted-column": shifted_column, "text-column": text_column,
}


def reports(path: Path, key: SigningKey) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON reports of one process and of workers, for the same store."""
    with AuditStore(path, create=False, readonly=True) as store:
        alone = Verifier({key.key_id: key.public_key}, jobs=1).verify(store).to_json()
        shared = Verifier({key.key_id: key.public_key}, jobs=2).verify(store).to_json()
    return alone, shared


def assert_same_data(path: Path) -> None:
    """Pass 1 through workers holds exactly what one pass read."""
    with AuditStore(path, create=False, readonly=True) as store:
        ids = store.chain_ids()
        shared = dict(parallel.read_chains(store, ids, 2, lambda chain_id: []))
        for chain_id in ids:
            alone = read_chain(store, chain_id)
            assert same(alone, shared[chain_id]), chain_id


def same(one: ChainData, other: ChainData) -> bool:
    arrays = ("columns", "seqs", "logged", "states", "leaves", "prevs")
    return all(np.array_equal(getattr(one, name), getattr(other, name)) for name in arrays) and (
        (one.rotations, one.forks, one.corrupt) == (other.rotations, other.forks, other.corrupt))


@pytest.mark.usefixtures("in_ranges")
@pytest.mark.parametrize("how", TAMPERING)
def test_workers_find_what_one_process_finds(store: Path, key: SigningKey, how: str) -> None:
    (chain_id,) = chain_ids(store)
    TAMPERING[how](store, chain_id)
    alone, shared = reports(store, key)
    assert shared == alone
    assert alone["ok"] == (how == "clean")
    assert_same_data(store)


@pytest.mark.usefixtures("in_ranges")
def test_workers_find_splicing_across_chains(store: Path, key: SigningKey) -> None:
    (chain_id,) = chain_ids(store)
    spliced(store, chain_id, key)
    alone, shared = reports(store, key)
    assert shared == alone
    assert {finding["kind"] for finding in alone["findings"]} >= {"spliced"}
    assert_same_data(store)


@pytest.mark.usefixtures("in_ranges")
def test_torn_unclosed_chain(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "audit.db"
    chain_id = write_store(path, key, 30, close=False).chain.chain_id
    set_data(path, chain_id, 30, data_at(path, chain_id, 30)[:250])
    alone, shared = reports(path, key)
    assert shared == alone
    assert {finding["kind"] for finding in alone["findings"]} == {"torn_record",
                                                                  "chain_not_closed"}


@pytest.mark.usefixtures("in_ranges")
def test_ranges_are_read_by_workers_and_join_into_the_signed_trees(store: Path) -> None:
    """The trees at every signed size come from the workers' subtrees joined at the seams."""
    with AuditStore(store, create=False, readonly=True) as audit:
        (chain_id,) = audit.chain_ids()
        (plan,) = parallel._plan(audit, [chain_id], 2, lambda chain_id: [])
        assert [(task.low, task.high) for task in plan.ranges] == [(None, 8), (8, 16),
                                                                    (16, None)]
        ((_, data),) = parallel.read_chains(audit, [chain_id], 2, lambda chain_id: [])
    leaves = [data.leaves[position].tobytes() for position in range(data.size)]
    for size in (4, 8, 12, 16, 20, 21):
        assert data.prefix[size].root() == merkle_root(leaves[:size])


def test_small_stores_are_read_in_this_process(store: Path) -> None:
    with AuditStore(store, create=False, readonly=True) as audit:
        assert parallel._plan(audit, audit.chain_ids(), 8, lambda chain_id: []) is None


def test_jobs_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(parallel.JOBS_ENV, "3")
    assert parallel.resolve_jobs() == 3 and parallel.resolve_jobs(1) == 1
    for wrong in ("0", "two"):
        monkeypatch.setenv(parallel.JOBS_ENV, wrong)
        with pytest.raises(ValueError, match="OTEL_AI_AUDIT_VERIFY_JOBS|1 or more"):
            parallel.resolve_jobs()


# --- the fixed-position header reader against HEADER_PATTERN ------------------------------

HEADER_BYTES = st.sampled_from(list(b'0123456789abcdef",:{}v\x00 '))


@property_settings(0.5)
@given(data=st.data())
def test_fixed_layout_reads_what_the_pattern_reads(template: Path, data: st.DataObject) -> None:
    """Headers with fields of other lengths and bytes changed anywhere in them: each record
    the fixed layout reads gets the values `HEADER_PATTERN` gives it."""
    (chain_id,) = chain_ids(template)
    originals = [row["data"] for row in rows(template, chain_id)][:6]
    records = []
    for original in originals:
        record = json.loads(original)
        chain = record["chain"]
        logged = data.draw(st.sampled_from([chain["logged"], "7", "1" * 20, "9" * 19]))
        seq = data.draw(st.sampled_from(["0", "7", "10", "05", "9" * 16, "1" * 17]))
        version = data.draw(st.sampled_from(["1", "2", "9", "10", "0"]))
        forged = original.replace(f'"logged":"{chain["logged"]}"'.encode(),
                                  f'"logged":"{logged}"'.encode()).replace(
            f'"seq":{chain["seq"]},"v":1'.encode(), f'"seq":{seq},"v":{version}'.encode())
        changed = bytearray(forged)
        for _ in range(data.draw(st.integers(0, 2))):
            changed[data.draw(st.integers(0, 210))] = data.draw(HEADER_BYTES)
        records.append(bytes(changed))
    reading = Pass1(chain_id)
    part = reading._batch([(column, record) for column, record in enumerate(records)])
    for position, record in enumerate(records):
        state, seq, logged, prev, _ = reading._header(record)
        assert (part.states[position], part.seqs[position], part.logged[position],
                part.prevs[position].tobytes()) == (state, seq, logged, prev)


@pytest.mark.usefixtures("in_ranges")
def test_cli_jobs(store: Path, key: SigningKey, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    public = tmp_path / "trusted.pub.pem"
    public.write_text(key.public_pem)
    runner = CliRunner()
    assert runner.invoke(main, ["verify", str(store), "--public-key", str(public),
                                "--jobs", "2"]).exit_code == 0
    monkeypatch.setenv(parallel.JOBS_ENV, "all")
    wrong = runner.invoke(main, ["verify", str(store), "--public-key", str(public)])
    assert wrong.exit_code == 2
    assert f"{parallel.JOBS_ENV}=all: not a number of processes" in wrong.stderr
