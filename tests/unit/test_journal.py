"""The journal a durable caller's records are acknowledged in: its format survives a torn tail,
recovery commits exactly what a killed writer left (once, however often it runs), a live
writer's journal is never taken, and `verify` / `recover` say what waits."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from otel_ai_audit.cli import main
from otel_ai_audit.integrity.chain import Chain, SealedRecord
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.pipeline.writer import AuditWriter
from otel_ai_audit.record.schema import EventType, new_event
from otel_ai_audit.store.journal import (
    Journal,
    Unit,
    decode,
    encode,
    journal_path,
    recover,
    unrecovered,
)
from otel_ai_audit.store.sqlite import AuditStore, HeldRecord
from otel_ai_audit.verify.verifier import Verifier


def sealed(chain: Chain, count: int) -> list[SealedRecord]:
    return [chain.seal(new_event(EventType.INFERENCE, model={"name": "m"}, output={"y": index}),
                       time.time_ns()) for index in range(count)]


def test_units_round_trip_and_a_torn_tail_is_left_out() -> None:
    chain, key = Chain(), SigningKey.generate()
    records = sealed(chain, 3)
    checkpoint = chain.checkpoint(key, time.time_ns(), closed=False, counters={})
    held = HeldRecord("r-1", chain.chain_id, 5, 9, b'{"x":"\\u00e9"}')
    units = [Unit(records[:2], [held], ["r-0"], [checkpoint]), Unit(records[2:], [], [], [])]
    data = encode(units[0]) + encode(units[1])
    assert list(decode(data)) == units
    for cut in range(len(encode(units[0])), len(data)):  # the second unit torn anywhere
        assert list(decode(data[:cut])) == units[:1]
    damaged = bytearray(data)
    damaged[-20] ^= 1
    assert list(decode(bytes(damaged))) == units[:1]


def test_a_record_frame_is_its_bytes_alone_and_earlier_journals_still_replay() -> None:
    chain = Chain()
    records = sealed(chain, 2)
    data = encode(Unit(records[:1]))
    assert data.count(records[0].data) == 1
    assert len(data) - len(records[0].data) <= 2 * 9  # its frame header and the end frame
    # A unit as journals written before record frames carried only the bytes: an `R` frame
    # with the columns beside the bytes, then the end frame.
    record = records[1]
    fields = [record.chain_id.encode(), str(record.seq).encode(), record.time.encode(),
              record.type.encode(), record.record_id.encode(), record.data]
    body = struct.pack(">6I", *map(len, fields)) + b"".join(fields)
    earlier = (struct.pack(">cII", b"R", len(body), zlib.crc32(body)) + body
               + struct.pack(">cII", b"E", 0, zlib.crc32(b"")))
    assert list(decode(earlier + data)) == [Unit(records[1:], [], [], []),
                                            Unit(records[:1], [], [], [])]


def test_recovery_commits_a_dead_writers_journal_once(tmp_path: Path) -> None:
    store_path = str(tmp_path / "audit.db")
    chain = Chain()
    records = sealed(chain, 5)
    with AuditStore(store_path) as store:
        store.write(records[:2])  # committed before the kill: replaying them changes nothing
    journal = Journal(journal_path(store_path, chain.chain_id))
    journal.append(Unit(records[:2]), sync=False)
    journal.append(Unit(records[2:]), sync=True)
    assert unrecovered(store_path) == []  # its writer holds it: not an orphan
    journal.close()  # the writer is gone
    assert [each.records for each in unrecovered(store_path)] == [5]
    with AuditStore(store_path) as store:
        assert recover(store, store_path) == 5
        assert recover(store, store_path) == 0
        assert [data for _, data in store.records(chain.chain_id)] == [
            record.data for record in records]
    assert not os.path.exists(journal_path(store_path, chain.chain_id))


def test_a_killed_durable_process_is_recovered_by_the_next_writer(tmp_path: Path) -> None:
    """A process acknowledges `process` durable decisions, then dies without committing them:
    its journal holds them; `verify` says so; the next writer on the store commits them."""
    store_path = str(tmp_path / "audit.db")
    key = SigningKey.generate()
    key.save(tmp_path / "k.pem", tmp_path / "k.pub.pem")
    script = f"""
import os, time
from otel_ai_audit.integrity.keys import SigningKey
from otel_ai_audit.pipeline.writer import AuditWriter
from otel_ai_audit.record.schema import EventType, new_event
writer = AuditWriter({store_path!r}, SigningKey.load({str(tmp_path / "k.pem")!r}),
                     flush_interval=3600)
writer.flush()
for index in range(40):
    writer.submit(new_event(EventType.INFERENCE, output={{"y": index}}), durability="process")
print(writer.chain.chain_id, flush=True)
os._exit(0)  # like SIGKILL: no close, no flush, the writer thread never commits again
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)
    chain_id = done.stdout.strip()
    (pending,) = unrecovered(store_path)
    assert pending.path == journal_path(store_path, chain_id)
    assert pending.records == 39  # the first waited for the chain to open: the writer stored it
    verified = CliRunner().invoke(main, ["verify", store_path, "--public-key",
                                         str(tmp_path / "k.pub.pem"), "--json"])
    assert verified.exit_code == 1
    assert "unrecovered_journal" in {each["kind"] for each in
                                     json.loads(verified.output)["findings"]}
    writer = AuditWriter(store_path, key)  # the service started again
    writer.submit(new_event(EventType.INFERENCE, output={"y": "after"}))
    assert writer.close()
    assert unrecovered(store_path) == []
    with AuditStore(store_path, create=False, readonly=True) as store:
        outputs = [json.loads(data)["event"]["output"]["y"] for _, data in store.records(chain_id)
                   if json.loads(data)["event"]["type"] == "inference"]
        report = Verifier({key.key_id: key.public_key}).verify(store)
    assert outputs == list(range(40))
    assert {finding.kind.value for finding in report.findings} == {"chain_not_closed"}


def test_recover_command(tmp_path: Path) -> None:
    store_path = str(tmp_path / "audit.db")
    chain = Chain()
    with AuditStore(store_path):
        pass
    journal = Journal(journal_path(store_path, chain.chain_id))
    journal.append(Unit(sealed(chain, 3)), sync=False)
    journal.close()
    runner = CliRunner()
    result = runner.invoke(main, ["recover", store_path])
    assert result.exit_code == 0, result.output
    assert "recovered 3 records from 1 journals" in result.output
    again = runner.invoke(main, ["recover", store_path])
    assert again.exit_code == 0 and "no journal to recover" in again.output


@pytest.mark.parametrize("durability", ["process", "fsync"])
def test_durable_callers_are_acknowledged_by_the_journal(tmp_path: Path,
                                                         durability: str) -> None:
    """With a writer thread that never wakes by itself, a durable submit returns at once (its
    records are in the journal) and `flush()` still puts them in the store."""
    store_path = str(tmp_path / "audit.db")
    writer = AuditWriter(store_path, SigningKey.generate(), flush_interval=3600)
    writer.flush()
    writer.submit(new_event(EventType.INFERENCE, output={"y": 0}), durability=durability)
    started = time.monotonic()
    for index in range(1, 20):
        writer.submit(new_event(EventType.INFERENCE, output={"y": index}),
                      durability=durability)
    assert time.monotonic() - started < 3600  # returned without the writer thread
    path = journal_path(store_path, writer.chain.chain_id)
    assert os.path.getsize(path) > 0
    assert writer.flush()
    assert os.path.getsize(path) == 0
    assert writer.close()
    assert not os.path.exists(path)
