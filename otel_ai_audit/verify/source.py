"""What the verifier reads a trail through: the embedded store, Elasticsearch, an export file.

Kept free of numpy, of any backend and (at run time) of the integrity modules, so a backend's
source can name the protocol it meets without loading the verifier.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from otel_ai_audit.integrity.checkpoint import SignedCheckpoint


class RecordSource(Protocol):
    """Where records are stored: the embedded store, Elasticsearch, an export file."""

    description: str

    def chain_ids(self) -> list[str]: ...

    def records(self, chain_id: str) -> Iterator[tuple[int, bytes]]:
        """(stored position/seq, canonical bytes) in stored order."""
        ...

    def record_at(self, chain_id: str, seq: int) -> bytes | None: ...

    def checkpoints(self, chain_id: str) -> list[SignedCheckpoint]: ...

    def public_keys(self) -> dict[str, str]: ...


class IndexedRecordSource(RecordSource, Protocol):
    """A source that indexes fields beside the canonical bytes (Elasticsearch): the verifier
    asks it where those fields disagree with the bytes."""

    def field_mismatches(self, chain_id: str) -> list[tuple[int, str]]:
        """(seq, what differs) for each record whose indexed fields contradict its bytes."""
        ...
