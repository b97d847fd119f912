"""Nearest-neighbour distance of the newest sub-sequence, for many series at once.

A window is unusual in context when the last ``dim`` values (ending with it) look like nothing
the series did before: its distance to the nearest earlier sub-sequence of the same length is
large compared with the distances the series usually has (calibrated by ``models.calibration``).
That catches what a value's marginal distribution cannot: a daily pattern that goes flat, a
spike pattern that changes rhythm, a level shift inside the normal range. It is the idea of the
KNN-CAD and contextual detectors on the NAB benchmark, kept online and bounded: each series keeps
its last ``span + dim`` values.

Distances use ``|a - b|^2 = |a|^2 + |b|^2 - 2 a.b`` with running sums of squares, so one batch
costs one matrix-vector product per series; values are centred on the current sub-sequence's
mean first, so large offsets (byte counters) do not cancel the small differences away.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def nearest_distances(
    history: np.ndarray,
    learned: np.ndarray,
    current: np.ndarray,
    dims: tuple[int, ...],
    span: int,
) -> np.ndarray:
    """(series, len(dims)): distance from each series' newest sub-sequence of each length in
    ``dims`` to its nearest earlier one.

    ``history`` is (series, length), oldest first, the last ``learned[i]`` entries of row ``i``
    valid (the rest any finite filler); ``current`` the new values. Candidates are the
    sub-sequences starting at most ``span`` steps before the newest one and ending before it
    begins (no overlap). NaN where a series has no candidate yet.
    """
    rows, length = history.shape
    total = length + 1
    sequence = np.empty((rows, total))
    sequence[:, :length] = history
    sequence[:, length] = current
    valid_from = total - 1 - np.minimum(learned, length)
    longest = max(dims)
    sequence -= sequence[:, total - longest :].mean(axis=1, keepdims=True)
    if (valid_from > 0).any():
        sequence[np.arange(total)[None, :] < valid_from[:, None]] = 0.0
    squares = np.zeros((rows, total + 1))
    np.cumsum(sequence * sequence, axis=1, out=squares[:, 1:])
    out = np.full((rows, len(dims)), np.nan)
    for k, dim in enumerate(dims):
        newest = total - dim
        first, last = max(newest - span, 0), newest - dim
        if last < first:
            continue
        recent = sequence[:, newest:]
        windows = sliding_window_view(sequence, dim, axis=1)[:, first : last + 1]
        starts = np.arange(first, last + 1)
        squared = squares[:, starts + dim] - squares[:, starts]
        squared += (squares[:, total] - squares[:, newest])[:, None]
        squared -= 2.0 * np.einsum("rcd,rd->rc", windows, recent)
        squared[starts[None, :] < valid_from[:, None]] = np.inf
        nearest = squared.min(axis=1)
        out[:, k] = np.where(np.isfinite(nearest), np.sqrt(np.maximum(nearest, 0.0)), np.nan)
    return out
