"""The journal: where a durable caller's records are acknowledged before the store commits them.

A `process` durable decision must survive a SIGKILL of the process the moment the model call
returns. A SQLite commit per decision gives that, at about 100 µs of CPU each (three B-tree
pages written to the write-ahead log: the record and its two indexes). Appending the sealed
records to this file with one `write()` gives the same guarantee, since a killed process's
writes stay in the kernel, for a few µs; the writer thread then commits what the journal holds to
the store in batches (one transaction for many decisions) and empties the file. With `fsync`
durability the append is followed by `fdatasync`, and the store commit that empties the file
is fsynced too, so nothing acknowledged depends on an unsynced write.

One file per chain, beside the store: `<store>.<chain id>.journal`, mode 0600 (it holds what
the store will hold), with an exclusive `flock` held for the life of the writer. A journal
nobody holds a lock on was left by a process that ended before committing it: `recover` moves
its records into the store (the next process that opens the store for writing does it, and
`otel-ai-audit recover STORE`), and until then `unrecovered` lists it, which `verify` reports.

Format: frames of `kind (1 byte) | body length (u32) | CRC-32 of body (u32) | body`. A record's
body (`D`) is its canonical bytes alone: the columns the store indexes it by are read back from
them on replay, which keeps the caller's append to one small frame per decision. Other bodies
are the lengths of their fields (u32 each; the kind says how many) followed by the fields; `R`,
a record with its columns written out, is still read from journals left by earlier versions. A
unit (what one caller's commit adds) ends with an `E` frame: only whole units are replayed, so
a write cut short by the kill (never acknowledged) is ignored. Replaying is idempotent: records
and checkpoints already in the store are left as they are.
"""

from __future__ import annotations

import fcntl
import glob
import logging
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from otel_ai_audit.integrity.chain import SealedRecord
from otel_ai_audit.integrity.checkpoint import SignedCheckpoint
from otel_ai_audit.record.schema import parse_record, record_columns
from otel_ai_audit.store.sqlite import AuditStore, HeldRecord, StoreError

logger = logging.getLogger(__name__)

SUFFIX = ".journal"
_FRAME = struct.Struct(">cII")
_DATA, _RECORD, _HELD, _RELEASED, _CHECKPOINT, _END = b"D", b"R", b"H", b"X", b"C", b"E"
_LENGTHS = {kind: struct.Struct(f">{count}I") for kind, count in
            ((_RECORD, 6), (_HELD, 5), (_RELEASED, 1), (_CHECKPOINT, 6), (_END, 0))}


class Unit(NamedTuple):
    """What one store write holds: records, held and released decisions, checkpoints."""

    records: Sequence[SealedRecord]
    held: Sequence[HeldRecord] = ()
    released: Sequence[str] = ()
    checkpoints: Sequence[SignedCheckpoint] = ()


class Unrecovered(NamedTuple):
    """A journal left by a process that ended before its records reached the store."""

    path: str
    records: int


def journal_path(store_path: str, chain_id: str) -> str:
    return f"{store_path}.{chain_id}{SUFFIX}"


class Journal:
    """One chain's journal, owned (locked) by the writer of that chain."""

    def __init__(self, path: str) -> None:
        self.path = path
        while True:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _same_file(self._fd, path):
                    break
            except BaseException:
                os.close(self._fd)
                raise
            os.close(self._fd)  # a recovery took the new, empty file for an orphan and removed it
        self.empty = os.fstat(self._fd).st_size == 0

    def append(self, unit: Unit, *, sync: bool) -> None:
        """Write `unit` in one `write()` (fdatasync'd if `sync`); raises OSError (disk full...)
        with nothing a replay would take: a unit counts only once its end frame is written."""
        view = memoryview(encode(unit))
        self.empty = False  # a failed write may leave part of it: `clear` must cut it off
        while view:
            view = view[os.write(self._fd, view):]
        if sync:
            os.fdatasync(self._fd)

    def clear(self) -> None:
        """Empty the file: everything in it is committed to the store."""
        if not self.empty:
            os.ftruncate(self._fd, 0)
            self.empty = True

    def close(self) -> None:
        """Close the descriptor (and so the lock); the file stays for `recover` if not empty."""
        os.close(self._fd)

    def remove(self) -> None:
        os.unlink(self.path)
        self.close()


def _same_file(fd: int, path: str) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def encode(unit: Unit) -> bytes:
    frames = [b"".join((_FRAME.pack(_DATA, len(record.data), zlib.crc32(record.data)),
                        record.data)) for record in unit.records]
    frames += [_frame(_HELD, held.record_id.encode(), held.chain_id.encode(),
                      str(held.held_at).encode(), str(held.expires).encode(), held.data)
               for held in unit.held]
    frames += [_frame(_RELEASED, record_id.encode()) for record_id in unit.released]
    frames += [_frame(_CHECKPOINT, each.payload, each.signature, each.key_id.encode(),
                      each.chain_id.encode(), str(each.index).encode(), str(each.size).encode())
               for each in unit.checkpoints]
    frames.append(_END_FRAME)
    return b"".join(frames)


def _frame(kind: bytes, *fields: bytes) -> bytes:
    body = b"".join((_LENGTHS[kind].pack(*map(len, fields)), *fields))
    return b"".join((_FRAME.pack(kind, len(body), zlib.crc32(body)), body))


_END_FRAME = _frame(_END)


def decode(data: bytes) -> Iterator[Unit]:
    """The whole units in `data`, in order; stops at the first torn or damaged frame."""
    records: list[SealedRecord] = []
    held: list[HeldRecord] = []
    released: list[str] = []
    checkpoints: list[SignedCheckpoint] = []
    offset = 0
    while offset + _FRAME.size <= len(data):
        kind, length, crc = _FRAME.unpack_from(data, offset)
        body = data[offset + _FRAME.size:offset + _FRAME.size + length]
        if len(body) < length or zlib.crc32(body) != crc:
            return
        offset += _FRAME.size + length
        if kind == _DATA:
            sealed = _sealed_record(body)
            if sealed is None:
                return
            records.append(sealed)
            continue
        fields = _fields(kind, body)
        if fields is None:
            return
        if kind == _RECORD:
            chain_id, seq, time, type_, record_id, record = fields
            records.append(SealedRecord(chain_id.decode(), int(seq), time.decode(),
                                        type_.decode(), record_id.decode(), record))
        elif kind == _HELD:
            record_id, chain_id, held_at, expires, record = fields
            held.append(HeldRecord(record_id.decode(), chain_id.decode(), int(held_at),
                                   int(expires), record))
        elif kind == _RELEASED:
            released.append(fields[0].decode())
        elif kind == _CHECKPOINT:
            payload, signature, key_id, chain_id, index, size = fields
            checkpoints.append(SignedCheckpoint(payload, signature, key_id.decode(),
                                                chain_id.decode(), int(index), int(size)))
        else:
            yield Unit(records, held, released, checkpoints)
            records, held, released, checkpoints = [], [], [], []


def _sealed_record(data: bytes) -> SealedRecord | None:
    """The record of canonical bytes `data`, its columns read from them; None if they are not a
    record (a frame written by a broken writer: replay stops there, as at a damaged frame)."""
    try:
        record = parse_record(data)
        chain = record["chain"]
        return SealedRecord(chain["id"], chain["seq"], *record_columns(record["event"]), data)
    except (ValueError, KeyError, TypeError):
        return None


def _fields(kind: bytes, body: bytes) -> list[bytes] | None:
    """The fields of a frame's body; None for an unknown kind or lengths that do not add up."""
    lengths = _LENGTHS.get(kind)
    if lengths is None or len(body) < lengths.size:
        return None
    fields, offset = [], lengths.size
    for length in lengths.unpack_from(body):
        fields.append(body[offset:offset + length])
        offset += length
    return fields if offset == len(body) else None


def _orphans(store_path: str) -> Iterator[tuple[str, int]]:
    """(path, open descriptor holding a lock) of each journal whose writer is gone: nobody
    else holds its lock. The caller closes the descriptor."""
    for path in sorted(glob.glob(glob.escape(store_path) + ".*" + SUFFIX)):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue  # removed meanwhile by its writer or another recovery
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a live writer's journal: its records reach the store by themselves
        yield path, fd


def _read(fd: int) -> list[Unit]:
    size = os.fstat(fd).st_size
    return list(decode(os.pread(fd, size, 0))) if size else []


def unrecovered(store_path: str) -> list[Unrecovered]:
    """Journals left by processes that ended before committing them, with their record counts
    (read only: `verify` reports them)."""
    found = []
    for path, fd in _orphans(store_path):
        try:
            units = _read(fd)
        finally:
            os.close(fd)
        count = sum(len(unit.records) for unit in units)
        if count:
            found.append(Unrecovered(path, count))
    return found


def recover(store: AuditStore, store_path: str) -> int:
    """Commit to `store` what journals left by ended processes hold, then remove them; the
    number of records recovered. A journal whose replay fails stays for the next attempt."""
    recovered = 0
    for path, fd in _orphans(store_path):
        try:
            units = _read(fd)
            if units:
                store.write([record for unit in units for record in unit.records],
                            [each for unit in units for each in unit.checkpoints],
                            hold=[each for unit in units for each in unit.held],
                            release=[each for unit in units for each in unit.released],
                            sync=True, replay=True)
            os.unlink(path)
        except FileNotFoundError:
            continue  # recovered meanwhile by another process
        except (OSError, StoreError) as error:
            logger.error("otel-ai-audit: could not recover the journal %s: %s", path, error)
            continue
        finally:
            os.close(fd)
        count = sum(len(unit.records) for unit in units)
        recovered += count
        if count:
            logger.warning("otel-ai-audit: recovered %d acknowledged records from %s, left by a "
                           "process that ended before committing them", count, path)
    return recovered
