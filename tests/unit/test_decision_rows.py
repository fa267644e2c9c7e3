"""`decisions.rows`: a model's input or output split into per-decision JSON data. Plain numeric
numpy arrays take a shorter path than every other value; it must give what the general path
gives, value for value (NaN, infinities, integers beyond 2**53, booleans, every shape)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from otel_ai_audit.decisions import rows
from tests.unit.profiles import property_settings


class _Subclass(np.ndarray):
    """An array the short path leaves to the general one (only exact ndarrays take it)."""


numeric_arrays = hnp.arrays(
    dtype=st.one_of(hnp.boolean_dtypes(), hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(),
                    hnp.floating_dtypes()),
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))


@property_settings()
@given(numeric_arrays)
def test_numeric_arrays_split_as_the_general_path_splits_them(array: np.ndarray[Any, Any]) -> None:
    general = array.view(_Subclass)
    for count in (None, 1, array.shape[0]):
        assert rows(array, count) == rows(general, count)
        # == takes True, 1 and 1.0 for one another; their text does not
        assert repr(rows(array, count)) == repr(rows(general, count))


def test_a_single_row_is_one_decision() -> None:
    assert rows(np.array([[1.5, np.nan, np.inf]]), 1) == [[1.5, "NaN", "Infinity"]]
    assert rows(np.array([2**60], dtype=np.uint64), 1) == [str(2**60)]
    assert rows(np.array([True]), 1) == [True]
