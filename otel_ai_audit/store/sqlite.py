"""The embedded store: one SQLite file, append-only, WAL mode.

It is the default sink and the write-ahead spool the shippers read from. Records and
checkpoints live in separate tables; the exact canonical bytes of each record are stored, so
verification hashes what was written and never depends on re-serialising anything.

Durability (measured in `make bench`): record batches commit with `synchronous=NORMAL`, which
survives a crash of the process but may lose the last batches on power loss; every checkpoint
commits with `synchronous=FULL`, which fsyncs the write-ahead log, so everything a signed
checkpoint covers is on disk before the checkpoint is. A power loss can only cost records
after the last checkpoint, and the verifier reports those chains as not closed.

Why one module: `AuditStore` owns the one connection, and its SQL, the schema with its
version check and the translation of SQLite errors into `StoreError`s must change together (a
column added is a schema change, a query and a row type at once).
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from otel_ai_audit.errors import StoreError as StoreError
from otel_ai_audit.integrity.chain import SealedRecord
from otel_ai_audit.integrity.checkpoint import SignedCheckpoint

STORE_SCHEMA_VERSION = 1
APPLICATION_ID = 0x4F414941  # "OAIA": marks the file as an otel-ai-audit store
DEFAULT_STORE_PATH = "otel-ai-audit.db"
STORE_ENV = "OTEL_AI_AUDIT_STORE"
BUSY_TIMEOUT = 30.0
"""Seconds a connection waits for another one's write (another process on the same store)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    chain_id  TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    time      TEXT    NOT NULL,
    type      TEXT    NOT NULL,
    record_id TEXT    NOT NULL,
    data      BLOB    NOT NULL,
    PRIMARY KEY (chain_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_time ON records (time);
CREATE INDEX IF NOT EXISTS records_by_id ON records (record_id);
CREATE TABLE IF NOT EXISTS checkpoints (
    chain_id  TEXT    NOT NULL,
    idx       INTEGER NOT NULL,
    size      INTEGER NOT NULL,
    key_id    TEXT    NOT NULL,
    payload   BLOB    NOT NULL,
    signature BLOB    NOT NULL,
    PRIMARY KEY (chain_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS public_keys (key_id TEXT PRIMARY KEY, pem TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS records_append_only_update BEFORE UPDATE ON records
    BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS records_append_only_delete BEFORE DELETE ON records
    BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_append_only_update BEFORE UPDATE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_append_only_delete BEFORE DELETE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
"""

_HOLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS held (
    record_id TEXT    PRIMARY KEY,
    chain_id  TEXT    NOT NULL,
    held_at   INTEGER NOT NULL,
    expires   INTEGER NOT NULL,
    data      BLOB    NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS held_by_expiry ON held (expires);
"""
"""Sampled-out decisions, held for a while so a dispute can still promote them into a chain
(see `otel_ai_audit.pipeline.sampling`). Not part of any chain: rows are deleted when they
expire or are promoted. Created on every writable open, so stores made before it get it too
(readers that do not know it ignore it: no schema version change)."""

_CURSOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS ship_cursors (
    sink     TEXT    NOT NULL,
    chain_id TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (sink, chain_id, kind)
) WITHOUT ROWID;
"""
"""How far each shipper has delivered each chain (`kind` "records": the last seq; "checkpoints":
the last checkpoint index). Not append-only, unlike records: a cursor only ever moves forward
(see `set_ship_cursor`). Created on every writable open, like the holding table."""


_ANCHOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS anchors (
    seq       INTEGER PRIMARY KEY,
    key_id    TEXT    NOT NULL,
    payload   BLOB    NOT NULL,
    signature BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS anchor_tokens (seq INTEGER PRIMARY KEY, token BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS anchor_published (
    seq        INTEGER NOT NULL,
    target     TEXT    NOT NULL,
    version_id TEXT    NOT NULL,
    PRIMARY KEY (seq, target)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS anchors_append_only_update BEFORE UPDATE ON anchors
    BEGIN SELECT RAISE(ABORT, 'anchors are append-only'); END;
CREATE TRIGGER IF NOT EXISTS anchors_append_only_delete BEFORE DELETE ON anchors
    BEGIN SELECT RAISE(ABORT, 'anchors are append-only'); END;
"""
"""The outbox of external anchors (see `otel_ai_audit.anchor`): each signed anchor, its RFC 3161
time-stamp token once the TSA answered, and where it was published. A local copy only: the
trust is in the published, retention-locked copies, which a rollback of this file cannot undo.
Created on every writable open, like the holding table."""


class StoredAnchor(NamedTuple):
    seq: int
    key_id: str
    payload: bytes
    signature: bytes
    token: bytes | None


class NotAStoreError(StoreError):
    """The file does not exist, is not SQLite, or is not an otel-ai-audit store."""


class SchemaTooNewError(StoreError):
    """The store was written by a newer otel-ai-audit than this one."""


class StoreFullError(StoreError):
    """The disk (or quota) holding the store is full: writes wait until space returns."""


class StoreCorruptError(StoreError):
    """SQLite reports the file as damaged (torn, truncated or overwritten pages)."""


class HeldRecord(NamedTuple):
    """A sampled-out decision in the holding table: its event's canonical JSON (unchained),
    the chain that sampled it out, when (`held_at`, the time it was sequenced) and until when
    it is held (Unix ns)."""

    record_id: str
    chain_id: str
    held_at: int
    expires: int
    data: bytes


def default_store_path() -> str:
    return os.environ.get(STORE_ENV) or DEFAULT_STORE_PATH


def _translate(error: sqlite3.DatabaseError, path: str) -> StoreError:
    message = str(error)
    if "disk is full" in message:
        return StoreFullError(f"{path}: disk full (errno {errno.ENOSPC}, {message})")
    if "malformed" in message or "disk image" in message:
        return StoreCorruptError(f"{path}: the SQLite file is damaged ({message})")
    if "not a database" in message or "file is encrypted" in message:
        return NotAStoreError(f"{path}: not an otel-ai-audit store (not an SQLite database)")
    return StoreError(f"{path}: {message}")


def _connect(uri: str) -> sqlite3.Connection:
    db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                         timeout=BUSY_TIMEOUT)
    db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
    return db


class AuditStore:
    """One connection to a store file; use one per process (and a new one after fork)."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True,
                 readonly: bool = False) -> None:
        self.path = str(path)
        self.description = self.path
        if not create and not Path(self.path).is_file():
            raise NotAStoreError(f"{self.path}: no such store file")
        self._scratch: str | None = None
        try:
            if readonly:
                self._db = self._open_readonly()
            else:
                self._db = _connect(f"file:{Path(self.path).absolute()}?mode=rwc")
            application_id, tables = self._identify()
            if not tables and not readonly and create:
                self._initialise()
            elif application_id != APPLICATION_ID or "records" not in tables:
                raise NotAStoreError(f"{self.path}: an SQLite file, but not an otel-ai-audit store")
            else:
                self._check_version()
                if not readonly:
                    self._use_wal()
            if not readonly:
                self._db.executescript(_HOLD_SCHEMA)
                self._db.executescript(_CURSOR_SCHEMA)
                self._db.executescript(_ANCHOR_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise _translate(error, self.path) from error

    def _open_readonly(self) -> sqlite3.Connection:
        """A read-only connection that writes nothing next to the store.

        SQLite opens a WAL-mode file read-only only if it can reach (or make) the `-shm` file
        beside it, which read-only media and a copy without it deny. Then: with no write-ahead
        log beside it, the file is complete and is read as immutable; with one, both files are
        copied to a private scratch folder (removed on close) and read there.
        """
        absolute = Path(self.path).absolute()
        db = _connect(f"file:{absolute}?mode=ro")
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError as error:
            db.close()
            if "disk I/O" not in str(error) and "unable to open" not in str(error):
                raise
        wal = Path(f"{absolute}-wal")
        if not wal.is_file() or wal.stat().st_size == 0:
            return _connect(f"file:{absolute}?mode=ro&immutable=1")
        self._scratch = tempfile.mkdtemp(prefix="otel-ai-audit-ro-")
        copy = Path(self._scratch) / absolute.name
        shutil.copyfile(absolute, copy)
        shutil.copyfile(wal, f"{copy}-wal")
        return _connect(f"file:{copy}?mode=ro")

    def _identify(self) -> tuple[int, set[str]]:
        """The file's application id and tables, read in one snapshot: a store another process
        is creating is seen either empty or complete, never half made."""
        self._db.execute("BEGIN")
        try:
            application_id = self._db.execute("PRAGMA application_id").fetchone()[0]
            tables = {row[0] for row in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            self._db.execute("COMMIT")
        return int(application_id), tables

    def _initialise(self) -> None:
        """Create the schema in one write transaction. Two processes (or the writer and a
        shipper) creating the same new store serialise on it; the second finds it all there."""
        # Rows are ~1 KB: 4 KB pages hold only four, wasting ~15% of each; 8 KB pages make the
        # file 7% smaller and appends a little faster (measured with `make bench`).
        self._db.execute("PRAGMA page_size = 8192")
        self._use_wal()
        try:
            self._db.executescript(
                f"BEGIN IMMEDIATE; PRAGMA application_id = {APPLICATION_ID}; {_SCHEMA}"
                f"INSERT OR IGNORE INTO meta VALUES ('schema_version', "
                f"'{STORE_SCHEMA_VERSION}'); COMMIT;")
        except sqlite3.DatabaseError:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _use_wal(self) -> None:
        """Switch to WAL. SQLite answers "locked" at once, without its busy handler, while
        another connection holds the file in the middle of the same switch: retry for as long
        as the busy timeout would have waited."""
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                self._db.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        self._db.execute("PRAGMA synchronous = NORMAL")

    def _check_version(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > STORE_SCHEMA_VERSION:
            raise SchemaTooNewError(
                f"{self.path}: store schema version {version} was written by a newer "
                f"otel-ai-audit; this one reads up to version {STORE_SCHEMA_VERSION}: upgrade it"
            )
        if version < 1:
            raise NotAStoreError(f"{self.path}: store has no schema version")

    def close(self) -> None:
        self._db.close()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing -------------------------------------------------------------------------

    def write(self, records: Iterable[SealedRecord],
              checkpoint: SignedCheckpoint | Sequence[SignedCheckpoint] | None = None, *,
              hold: Sequence[HeldRecord] = (), release: Sequence[str] = (),
              sync: bool = False, replay: bool = False) -> None:
        """Persist a batch, and optionally the checkpoint covering it (or several, in order:
        those of a write the writer had to retry), in one transaction.

        A batch with a checkpoint, or asked to (`sync`), is committed with a full fsync (see
        the module docstring).
        `hold` adds sampled-out decisions to the holding table and `release` removes promoted
        ones, in the same transaction: a checkpoint that counts a decision as sampled out is
        never on disk without the held decision, and a promoted decision is never both held
        and chained.
        `replay` (a journal's records, see `otel_ai_audit.store.journal`) leaves records and
        checkpoints already stored as they are.
        """
        verb = "INSERT OR IGNORE" if replay else "INSERT"
        checkpoints = [checkpoint] if isinstance(checkpoint, SignedCheckpoint) else checkpoint
        durable = sync or bool(checkpoints)
        try:
            if durable:
                self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    f"{verb} INTO records (chain_id, seq, time, type, record_id, data) "
                    "VALUES (?, ?, ?, ?, ?, ?)", records)
                if hold:  # a statement even with nothing to do costs a single-entry commit
                    self._db.executemany("INSERT OR IGNORE INTO held VALUES (?, ?, ?, ?, ?)",
                                         hold)
                if release:
                    self._db.executemany("DELETE FROM held WHERE record_id = ?",
                                         ((record_id,) for record_id in release))
                for each in checkpoints or ():
                    self._insert_checkpoint(each, verb)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # SQLite rolls back by itself on a full disk
                    self._db.execute("ROLLBACK")
                raise
            finally:
                if durable:
                    self._db.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as error:
            raise _translate(error, self.path) from error

    def _insert_checkpoint(self, checkpoint: SignedCheckpoint, verb: str) -> None:
        self._db.execute(
            f"{verb} INTO checkpoints (chain_id, idx, size, key_id, payload, signature) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (checkpoint.chain_id, checkpoint.index, checkpoint.size, checkpoint.key_id,
             checkpoint.payload, checkpoint.signature),
        )

    def held_record(self, record_id: str, now_ns: int) -> HeldRecord | None:
        """The held decision `record_id`, unless it has expired (purged or not)."""
        rows = self._rows("SELECT record_id, chain_id, held_at, expires, data FROM held "
                          "WHERE record_id = ? AND expires > ?", (record_id, now_ns))
        return HeldRecord(*rows[0]) if rows else None

    def purge_held(self, now_ns: int) -> int:
        """Delete the held decisions that expired by `now_ns`; how many there were."""
        try:
            return self._db.execute("DELETE FROM held WHERE expires <= ?", (now_ns,)).rowcount
        except sqlite3.DatabaseError as error:
            raise _translate(error, self.path) from error

    def put_public_key(self, key_id: str, pem: str) -> None:
        """Record a signing key's public half (self-asserted: verifiers decide whom to trust)."""
        try:
            self._db.execute("INSERT OR IGNORE INTO public_keys VALUES (?, ?)", (key_id, pem))
        except sqlite3.DatabaseError as error:
            raise _translate(error, self.path) from error

    # --- reading (the verifier's record source) -------------------------------------------

    def _batches(self, sql: str, params: tuple[object, ...] = ()) -> Iterator[list[Any]]:
        """Rows of a query in lists of up to 4096, with SQLite errors translated while stepping
        through them too: damage in a page is only met when the cursor reaches it, long after
        `execute`."""
        try:
            cursor = self._db.execute(sql, params)
            while rows := cursor.fetchmany(4096):
                yield rows
        except sqlite3.DatabaseError as error:
            raise _translate(error, self.path) from error

    def _stream(self, sql: str, params: tuple[object, ...] = ()) -> Iterator[Any]:
        for rows in self._batches(sql, params):
            yield from rows

    def _rows(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        return list(self._stream(sql, params))

    # The verifier's reads CAST every column to the type it expects: SQLite columns take any
    # type, and a value an attacker stored as TEXT where a BLOB belongs must reach the verifier
    # as bytes to hash (it is the same bytes), not crash it.

    def chain_ids(self) -> list[str]:
        """Every chain of records or checkpoints: a skip scan of each table's primary key (one
        index seek per chain, not a pass over every record; 1,000,000 records took 140 ms to
        list by DISTINCT, the anchoring thread's whole cost)."""
        rows = self._rows("""
            WITH RECURSIVE
                r(id) AS (SELECT (SELECT min(chain_id) FROM records) UNION ALL
                          SELECT (SELECT min(chain_id) FROM records WHERE chain_id > r.id)
                          FROM r WHERE r.id IS NOT NULL),
                c(id) AS (SELECT (SELECT min(chain_id) FROM checkpoints) UNION ALL
                          SELECT (SELECT min(chain_id) FROM checkpoints WHERE chain_id > c.id)
                          FROM c WHERE c.id IS NOT NULL)
            SELECT CAST(id AS TEXT) FROM (SELECT id FROM r UNION SELECT id FROM c)
            WHERE id IS NOT NULL ORDER BY 1""")
        return [row[0] for row in rows]

    def records(self, chain_id: str) -> Iterator[tuple[int, bytes]]:
        """(seq column, canonical bytes) of one chain in seq order."""
        for rows in self.record_batches(chain_id):
            yield from rows

    def record_batches(self, chain_id: str, low: int | None = None,
                       high: int | None = None) -> Iterator[list[tuple[int, bytes]]]:
        """`records` in lists of up to 4096, only those whose seq column is in [low, high)
        (None: unbounded), so processes can read a chain's ranges side by side.

        The ranges (-inf, b1), [b1, b2) ... [bk, +inf) read together are every row in the
        order `records` reads them: SQLite orders the column by the same comparison, and a
        value an attacker stored as TEXT or a BLOB sorts above every number, into the last.
        """
        bounds = [("seq >= ?", low), ("seq < ?", high)]
        where = "".join(f" AND {test}" for test, value in bounds if value is not None)
        params = (chain_id, *(value for _, value in bounds if value is not None))
        yield from self._batches(
            "SELECT CAST(seq AS INTEGER), CAST(data AS BLOB) FROM records WHERE chain_id = ?"
            f"{where} ORDER BY seq", params)

    def database_file(self) -> str:
        """The file this connection reads (a private copy of a live store opened read-only
        without its shared memory, see `_open_readonly`): what another process opens to read
        the same records."""
        return str(self._rows("SELECT file FROM pragma_database_list WHERE name = 'main'")[0][0])

    def record_at(self, chain_id: str, seq: int) -> bytes | None:
        rows = self._rows("SELECT CAST(data AS BLOB) FROM records WHERE chain_id = ? AND seq = ?",
                          (chain_id, seq))
        return bytes(rows[0][0]) if rows else None

    def find_record(self, record_id: str) -> tuple[str, int, bytes] | None:
        """(chain id, seq, bytes) of the record whose event id is `record_id`."""
        rows = self._rows("SELECT CAST(chain_id AS TEXT), seq, CAST(data AS BLOB) FROM records "
                          "WHERE record_id = ? ORDER BY chain_id, seq LIMIT 1", (record_id,))
        return (rows[0][0], int(rows[0][1]), bytes(rows[0][2])) if rows else None

    def indexed_columns(self, chain_id: str) -> Iterator[tuple[int, str, str, str]]:
        """(seq, time, type, record_id) columns of one chain in seq order."""
        yield from self._stream("SELECT seq, time, type, record_id FROM records "
                                "WHERE chain_id = ? ORDER BY seq", (chain_id,))

    def records_of_type(self, types: Iterable[str], start: str | None = None,
                        end: str | None = None) -> Iterator[bytes]:
        """Canonical bytes of the records of these event types whose event time is in
        [start, end) (RFC 3339 with nine fraction digits, as records hold them), any chain,
        in time order: what monitoring reads for a window."""
        kinds = list(types)
        sql = (f"SELECT CAST(data AS BLOB) FROM records WHERE type IN "
               f"({', '.join('?' * len(kinds))})")
        params: list[object] = list(kinds)
        if start is not None:
            sql += " AND time >= ?"
            params.append(start)
        if end is not None:
            sql += " AND time < ?"
            params.append(end)
        for (data,) in self._stream(sql + " ORDER BY time", tuple(params)):
            yield bytes(data)

    def checkpoints(self, chain_id: str, after: int = -1) -> list[SignedCheckpoint]:
        """The chain's checkpoints in index order (those after index `after`)."""
        rows = self._rows(
            "SELECT CAST(idx AS INTEGER), CAST(size AS INTEGER), CAST(key_id AS TEXT), "
            "CAST(payload AS BLOB), CAST(signature AS BLOB) FROM checkpoints "
            "WHERE chain_id = ? AND idx > ? ORDER BY idx", (chain_id, after))
        return [SignedCheckpoint(bytes(payload), bytes(signature), key_id, chain_id, idx, size)
                for idx, size, key_id, payload, signature in rows]

    def public_keys(self) -> dict[str, str]:
        return dict(self._rows("SELECT CAST(key_id AS TEXT), CAST(pem AS TEXT) "
                               "FROM public_keys"))

    def record_count(self) -> int:
        return int(self._rows("SELECT count(*) FROM records")[0][0])

    # --- shipping (the store as the shippers' write-ahead spool) ----------------------------

    def records_after(self, chain_id: str, seq: int, limit: int) -> list[SealedRecord]:
        """Up to `limit` records of one chain after `seq`, in seq order, as they were written."""
        rows = self._rows("SELECT chain_id, seq, time, type, record_id, CAST(data AS BLOB) "
                          "FROM records WHERE chain_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                          (chain_id, seq, limit))
        return [SealedRecord(*row) for row in rows]

    def unshipped_chains(self, sink: str) -> list[str]:
        """Chains holding records or checkpoints past `sink`'s cursors.

        A skip scan over the primary key, then index seeks per chain: it costs microseconds per
        chain however many records the store holds, so a shipper can ask every poll.
        """
        rows = self._rows("""
            WITH RECURSIVE chains(id) AS (
                SELECT (SELECT min(chain_id) FROM records)
                UNION ALL
                SELECT (SELECT min(chain_id) FROM records WHERE chain_id > chains.id)
                FROM chains WHERE chains.id IS NOT NULL)
            SELECT CAST(id AS TEXT) FROM chains WHERE id IS NOT NULL AND (
                (SELECT max(seq) FROM records WHERE chain_id = chains.id)
                > coalesce((SELECT seq FROM ship_cursors WHERE sink = ?1
                            AND chain_id = chains.id AND kind = 'records'), -1)
                OR coalesce((SELECT max(idx) FROM checkpoints WHERE chain_id = chains.id), -1)
                > coalesce((SELECT seq FROM ship_cursors WHERE sink = ?1
                            AND chain_id = chains.id AND kind = 'checkpoints'), -1))""",
                          (sink,))
        return [row[0] for row in rows]

    def ship_cursor(self, sink: str, chain_id: str, kind: str) -> int:
        """The last seq (or checkpoint index) of `kind` that `sink` delivered; -1 for none."""
        rows = self._rows("SELECT seq FROM ship_cursors WHERE sink = ? AND chain_id = ? "
                          "AND kind = ?", (sink, chain_id, kind))
        return int(rows[0][0]) if rows else -1

    def set_ship_cursor(self, sink: str, chain_id: str, kind: str, seq: int) -> None:
        """Move a cursor forward, never back: two shippers of one sink (two processes sharing
        the store) then only repeat work, which idempotent ids make harmless."""
        try:
            self._db.execute("INSERT INTO ship_cursors VALUES (?, ?, ?, ?) "
                             "ON CONFLICT DO UPDATE SET seq = max(seq, excluded.seq)",
                             (sink, chain_id, kind, seq))
        except sqlite3.DatabaseError as error:
            raise _translate(error, self.path) from error

    # --- anchors (the outbox of `otel_ai_audit.anchor`) --------------------------------------

    def store_id(self) -> str:
        """The store's random identity, made on first use: anchors name the store they
        describe, so the anchors of one store never vouch for another."""
        known = self.known_store_id()
        if known is not None:
            return known
        try:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('store_id', ?)",
                             (uuid.uuid4().hex,))
        except sqlite3.DatabaseError as error:
            raise _translate(error, self.path) from error
        return str(self._rows("SELECT value FROM meta WHERE key = 'store_id'")[0][0])

    def known_store_id(self) -> str | None:
        """The store's identity if it has one, without making one (for read-only opens)."""
        rows = self._rows("SELECT value FROM meta WHERE key = 'store_id'")
        return str(rows[0][0]) if rows else None

    def latest_checkpoints(self) -> dict[str, SignedCheckpoint | None]:
        """Every chain with its newest checkpoint (None for a chain that has none yet)."""
        latest: dict[str, SignedCheckpoint | None] = dict.fromkeys(self.chain_ids())
        rows = self._rows(
            "SELECT CAST(chain_id AS TEXT), CAST(idx AS INTEGER), CAST(size AS INTEGER), "
            "CAST(key_id AS TEXT), CAST(payload AS BLOB), CAST(signature AS BLOB) "
            "FROM checkpoints c WHERE idx = (SELECT max(idx) FROM checkpoints "
            "WHERE chain_id = c.chain_id)")
        for chain_id, idx, size, key_id, payload, signature in rows:
            latest[chain_id] = SignedCheckpoint(bytes(payload), bytes(signature), key_id,
                                                chain_id, idx, size)
        return latest

    def append_anchor(self, build: Callable[[StoredAnchor | None], tuple[str, bytes, bytes]],
                      ) -> StoredAnchor:
        """Add the next anchor, made by `build` from the previous one, in one write
        transaction: processes anchoring one store at the same moment serialise here, so the
        anchors form one chain."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                previous = self._last_anchor()
                seq = previous.seq + 1 if previous is not None else 1
                key_id, payload, signature = build(previous)
                self._db.execute("INSERT INTO anchors VALUES (?, ?, ?, ?)",
                                 (seq, key_id, payload, signature))
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as error:
            raise _translate(error, self.path) from error
        return StoredAnchor(seq, key_id, payload, signature, None)

    def _last_anchor(self) -> StoredAnchor | None:
        rows = self._rows("SELECT a.seq, a.key_id, CAST(a.payload AS BLOB), "
                          "CAST(a.signature AS BLOB), t.token FROM anchors a LEFT JOIN "
                          "anchor_tokens t USING (seq) ORDER BY a.seq DESC LIMIT 1")
        return _anchor_row(rows[0]) if rows else None

    def anchors(self, after: int = 0) -> list[StoredAnchor]:
        """The anchors after `after`, in order; none from a store made before anchoring."""
        if "anchors" not in self._tables():
            return []
        rows = self._rows("SELECT a.seq, a.key_id, CAST(a.payload AS BLOB), "
                          "CAST(a.signature AS BLOB), t.token FROM anchors a LEFT JOIN "
                          "anchor_tokens t USING (seq) WHERE a.seq > ? ORDER BY a.seq", (after,))
        return [_anchor_row(row) for row in rows]

    def unstamped_anchors(self) -> list[StoredAnchor]:
        rows = self._rows("SELECT seq, key_id, CAST(payload AS BLOB), CAST(signature AS BLOB), "
                          "NULL FROM anchors WHERE seq NOT IN (SELECT seq FROM anchor_tokens) "
                          "ORDER BY seq")
        return [_anchor_row(row) for row in rows]

    def set_anchor_token(self, seq: int, token: bytes) -> None:
        try:
            self._db.execute("INSERT OR IGNORE INTO anchor_tokens VALUES (?, ?)", (seq, token))
        except sqlite3.DatabaseError as error:
            raise _translate(error, self.path) from error

    def unpublished_anchors(self, target: str) -> list[StoredAnchor]:
        rows = self._rows("SELECT a.seq, a.key_id, CAST(a.payload AS BLOB), "
                          "CAST(a.signature AS BLOB), t.token FROM anchors a LEFT JOIN "
                          "anchor_tokens t USING (seq) WHERE a.seq NOT IN (SELECT seq FROM "
                          "anchor_published WHERE target = ?) ORDER BY a.seq", (target,))
        return [_anchor_row(row) for row in rows]

    def mark_anchor_published(self, seq: int, target: str, version_id: str) -> None:
        try:
            self._db.execute("INSERT OR IGNORE INTO anchor_published VALUES (?, ?, ?)",
                             (seq, target, version_id))
        except sqlite3.DatabaseError as error:
            raise _translate(error, self.path) from error

    def _tables(self) -> set[str]:
        return {row[0] for row in self._rows("SELECT name FROM sqlite_master "
                                             "WHERE type = 'table'")}


def _anchor_row(row: Any) -> StoredAnchor:
    seq, key_id, payload, signature, token = row
    return StoredAnchor(int(seq), str(key_id), bytes(payload), bytes(signature),
                        bytes(token) if token is not None else None)
