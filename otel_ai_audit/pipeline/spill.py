"""The spill file: where the overflow of a full queue waits on disk, in submission order.

With `OTEL_AI_AUDIT_QUEUE_FULL_POLICY=spill`, a caller that finds the writer's queue full does
not wait: it builds its events (the work the writer thread would have done), appends them here
as one line (`{"events": [...], "logged": "<ns>"}`) and returns. The writer thread reads the
file back in order (`AuditWriter` keeps everything after the first spilled entry spilled until
the file is drained, so order and monotonic `logged` times hold) and removes it once drained.

Durability: entries are written with `pwrite` and not fsynced, so they survive a crash of the
process (the kernel holds them) but not a power loss. That is no weaker than the in-memory
queue they stand in for, and an fsync per entry would cost the caller the milliseconds spilling
exists to spare it; the durability boundary stays the fsynced checkpoint. A file left behind by
a crashed process is not read back: its chain ends unclosed and verification reports it.
The file is created mode 0600: it holds what the store will hold.
"""

from __future__ import annotations

import json
import os
from typing import Any

from otel_ai_audit.record.canonical import canonical_json

READ_BYTES = 4 << 20
"""How much the writer reads back at a time (more if one entry is larger)."""


class SpillFile:
    """One chain's spill file. Appends come from callers holding the writer's queue lock; reads
    come from the writer thread and only ever cover entries whose append has completed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        self._written = 0
        self._read = 0

    @property
    def drained(self) -> bool:
        return self._read >= self._written

    def append(self, logged_ns: int, events: list[dict[str, Any]]) -> None:
        """Write one entry (JSON data); raises OSError (disk full, ...) having written nothing
        a reader would see: the end offset only moves once the whole line is written."""
        line = canonical_json({"events": events, "logged": str(logged_ns)}) + b"\n"
        view, offset = memoryview(line), self._written
        while view:
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written
        self._written = offset

    def read(self) -> list[tuple[list[dict[str, Any]], int]]:
        """The next entries not yet read, as (events, logged ns), oldest first."""
        end = self._written
        if self._read >= end:
            return []
        data = os.pread(self._fd, min(end - self._read, READ_BYTES), self._read)
        cut = data.rfind(b"\n")
        if cut < 0:  # one entry larger than READ_BYTES: every entry ends before `end`
            data = os.pread(self._fd, end - self._read, self._read)
            cut = data.find(b"\n")
        entries = []
        for line in data[:cut].split(b"\n"):
            entry = json.loads(line)
            entries.append((entry["events"], int(entry["logged"])))
        self._read += cut + 1
        return entries

    def close(self) -> None:
        """Close the descriptor and leave the file (a forked child does this with its
        parent's)."""
        os.close(self._fd)

    def remove(self) -> None:
        self.close()
        os.unlink(self.path)
