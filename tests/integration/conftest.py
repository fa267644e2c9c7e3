"""Fixtures the sink tests share: a signing key per test module, and a small closed store."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_ai_audit.integrity.keys import SigningKey
from tests.audit_fixtures import SMALL_STORE_EVENTS, saved_key, write_store


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> tuple[SigningKey, Path]:
    """A signing key and its public key file."""
    return saved_key(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def small_store(tmp_path: Path, key: tuple[SigningKey, Path]) -> Path:
    """A closed store of `SMALL_STORE_EVENTS` decisions signed by `key`."""
    path = tmp_path / "audit.db"
    write_store(path, key[0], SMALL_STORE_EVENTS)
    return path
