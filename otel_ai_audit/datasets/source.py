"""A data file as lineage names it: its file name and the SHA-256 of its bytes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks so large files need no memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class DataSource:
    """Where data came from, as a reviewer checks it: a file name and the SHA-256 of the
    original bytes (for a compressed copy, of the bytes it decompresses to)."""

    name: str
    sha256: str

    @classmethod
    def of(cls, source: str | Path | DataSource) -> DataSource:
        if isinstance(source, DataSource):
            return source
        return cls(name=Path(source).name, sha256=sha256_of(source))
