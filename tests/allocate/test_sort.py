"""The kernel's allocation-free stable argsort (kernel.stable_argsort) gives np.argsort's stable order."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from station.allocate.kernel import SORT_RUN, stable_argsort

KEYS = st.one_of(st.sampled_from([0.0, 1.0, 2.0, math.inf, -math.inf, math.nan]), st.floats(allow_nan=True))


@given(st.lists(KEYS, max_size=5 * SORT_RUN + 3), st.data())
def test_stable_argsort_orders_like_numpy(keys: list[float], data: st.DataObject) -> None:
    """Ties (many repeated keys) keep index order, NaN goes last, and only keys[:count] are sorted."""
    arr = np.array(keys, dtype=np.float64)
    count = data.draw(st.integers(0, len(keys)))
    order = np.full(len(keys) + 1, -1, dtype=np.int64)
    tmp = np.full(len(keys) + 1, -1, dtype=np.int64)
    stable_argsort(arr, count, order, tmp)
    assert order[:count].tolist() == np.argsort(arr[:count], kind="stable").tolist()
