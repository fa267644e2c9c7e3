"""What unit tests share: one native thread for their models, and one written store.

The store: `key`, `template` (a store of `STORE_EVENTS` events written once by the real
`AuditWriter`, checkpointed every 4 records and closed) and `store`, a fresh copy of it to
tamper with. Writing a store costs a writer thread; copying one costs a file copy.

Thread pools: unit tests run their models' native thread pools (OpenMP, BLAS) on one thread.

On a busy machine the pools' spinning workers wait for cores other processes hold: a
20-row `predict_proba` of a small gradient-boosting model took up to 2 s instead of 2 ms.
The models' results do not depend on the thread count, and the instrumentation under test
runs in the calling thread either way.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

from otel_ai_audit.integrity.keys import SigningKey
from tests.audit_fixtures import write_store


@pytest.fixture(autouse=True, scope="package")
def one_native_thread() -> Iterator[None]:
    """Limits the pools of the libraries loaded by then (collection has imported them), until
    the last unit test: the integration tests run their services' clients as users do."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="session")
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory, key: SigningKey) -> Path:
    """The written store; tests use copies of it (`store`), never the file itself."""
    path = tmp_path_factory.mktemp("template") / "audit.db"
    write_store(path, key)
    return path


@pytest.fixture
def store(tmp_path: Path, template: Path) -> Path:
    """A copy of `template` of this test's own, to tamper with."""
    path = tmp_path / "audit.db"
    shutil.copy(template, path)
    return path
