"""Unit tests run their models' native thread pools (OpenMP, BLAS) on one thread.

On a busy machine the pools' spinning workers wait for cores other processes hold: a
20-row `predict_proba` of a small gradient-boosting model took up to 2 s instead of 2 ms.
The models' results do not depend on the thread count, and the instrumentation under test
runs in the calling thread either way.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="package")
def one_native_thread() -> Iterator[None]:
    """Limits the pools of the libraries loaded by then (collection has imported them), until
    the last unit test: the integration tests run their services' clients as users do."""
    with threadpool_limits(limits=1):
        yield
