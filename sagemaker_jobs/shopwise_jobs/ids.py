"""Ids as indices: the user and item ids of interactions coded into the index of a sorted universe, by Arrow.

The data set's id columns are Arrow-backed strings (pandas' default string type); coding them through pandas'
``get_indexer`` or NumPy string arrays makes Python objects of every id, and the training job did that in every
part of a fit: at 100,000 shoppers most of the final fit's time was string conversion and hashing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

# a column is coded in slices, a slice a thread (Arrow's kernels release the GIL), of at least this many rows: below
# it the threads' start and the merge cost more than they save. Each slice's lookup builds its own hash table of the
# universe (10 M shoppers: about half a GB), so at most CODE_THREADS slices however many cores: on the training
# instance the served fit's ids, codes and kind weights were 0.22 h of one core at the envelope (make scale)
CODE_SLICE_ROWS = 1 << 20
CODE_THREADS = min(int(os.environ.get("SHOPWISE_FIT_THREADS", "0")) or os.cpu_count() or 1, 16)


def _arrow(values: Any) -> Any:
    """A column (or array) of ids as an Arrow large-string array (pandas' own string type: no copy when the column
    is one)."""
    import pyarrow as pa

    array = pa.array(values, from_pandas=True) if not isinstance(values, pa.Array | pa.ChunkedArray) else values
    return array if pa.types.is_large_string(array.type) else array.cast(pa.large_string())


def _sliced(array: Any, work: Callable[[Any], Any]) -> list[Any]:
    """``work`` of each slice of an Arrow array, in order: slices of at least CODE_SLICE_ROWS rows, at most
    CODE_THREADS of them, a thread each."""
    pieces = max(1, min(CODE_THREADS, len(array) // CODE_SLICE_ROWS))
    if pieces == 1:
        return [work(array)]
    step = -(-len(array) // pieces)
    with ThreadPoolExecutor(pieces) as pool:
        return list(pool.map(work, [array.slice(start, step) for start in range(0, len(array), step)]))


def _indices(found: Any) -> np.ndarray:
    import pyarrow.compute as pc

    return np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def codes_in(values: Any, universe: Any, through: np.ndarray | None = None) -> np.ndarray:
    """Each value's index in ``universe`` (-1: not in it), hashed by Arrow: a tenth of the time of pandas'
    ``get_indexer`` on the data set's Arrow-backed string columns (0.06 against 0.61 s for 2 M ids:
    ``tests/bench/bench_training.py --parts ids``), which re-coded the ids in every part of the fit. In slices
    on threads (``_sliced``).

    ``universe``: ids as ``_arrow`` takes them — a NumPy array or list, or an Arrow-backed pandas index or column
    (taken as it is, no NumPy strings).
    ``through``: a table each slice's indices are read through before the slices are joined (its last entry for a
    value not in the universe): the column joined is the table's width, and each slice's int64 indices are freed
    as it finishes (without it the joined int64 column is a second copy of them).

    Every call hashes the whole universe, so code a column in one call, never chunk by chunk: the segment lists
    coded each chunk's sessions against every referred session, a hash table of them a chunk on every thread (at
    the envelope some 160 M sessions, 650 chunks, 96 threads at once)."""
    import pyarrow.compute as pc

    value_set = _arrow(universe)

    def piece(values_there: Any) -> np.ndarray:
        found = _indices(pc.index_in(values_there, value_set=value_set))
        return found if through is None else through[found]

    return np.concatenate(_sliced(_arrow(values), piece))


def unique_ids(*columns: Any) -> np.ndarray:
    """The sorted distinct ids of the columns (what ``np.unique`` of their strings gives, without the strings; a
    missing id left out): ``distinct``'s, sorted."""
    return np.sort(np.asarray(distinct(*columns).to_numpy(zero_copy_only=False), dtype=str))


def nonblank(column: Any) -> np.ndarray:
    """Each row: whether its value is a non-empty string (a missing value is blank), by Arrow in slices on threads
    (``_sliced``)."""
    import pyarrow.compute as pc

    def piece(values: Any) -> np.ndarray:
        filled = pc.fill_null(pc.greater(pc.binary_length(values), 0), False)
        return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool)

    return np.concatenate([np.zeros(0, dtype=bool), *_sliced(_arrow(column), piece)])


def distinct(*columns: Any) -> Any:
    """The distinct values of the columns (a missing value left out) in the order they first appear, as an Arrow
    array: each slice's on threads (``_sliced``), then those in slice order, so a value's first slice names it
    first. For one column pandas' ``factorize`` gives the same order, on one thread."""
    import pyarrow as pa
    import pyarrow.compute as pc

    seen = [d for c in columns for d in _sliced(_arrow(c), lambda piece: pc.drop_null(pc.unique(piece)))]
    return pc.unique(pa.chunked_array(seen, type=pa.large_string()))


def first_of_each(keys: Any, values: Any, rows: np.ndarray) -> tuple[Any, Any]:
    """Among ``rows`` (row numbers, in the order that decides which is first), each distinct key (a missing key left
    out) and the value at its first row: two Arrow arrays, the keys in the order ``rows`` first reaches them. Only
    ``rows``' keys are hashed, and neither column becomes Python or NumPy strings (pandas' sort and group-by of a
    frame of those rows did both, on one thread)."""
    import pyarrow.compute as pc

    taken = _arrow(keys).take(rows)
    encoded = pc.dictionary_encode(taken.combine_chunks() if hasattr(taken, "combine_chunks") else taken)
    codes = _indices(encoded.indices)  # first-seen order: a key's first row is where its code passes every before it
    first = np.flatnonzero(codes > np.maximum.accumulate(np.concatenate([[-1], codes[:-1]])))
    return encoded.dictionary, _arrow(values).take(rows[first])


def weights_of(kinds: Any, weights: dict[str, float]) -> np.ndarray:
    """Each row's kind weight (0 for a kind without one, or none): its index among the weighted kinds, looked up by
    Arrow in slices on threads (``_sliced``), the weight taken by index — ``Series.map`` of the strings cost 0.3 s
    per 2 M rows, three times a fit, and pandas' ``factorize`` of them held the GIL (0.44 s for 12 M rows, 0.13 by
    Arrow on one core)."""
    import pyarrow.compute as pc

    names = _arrow(np.asarray(list(weights), dtype=str))
    table = np.array([float(w) for w in weights.values()] + [0.0])  # the last: a kind without a weight
    found = np.concatenate(_sliced(_arrow(kinds), lambda piece: _indices(pc.index_in(piece, value_set=names))))
    return table[found]  # -1: the last
