"""ECOD (Li et al., 2022), the PyOD detector, scored for many series at once.

ECOD scores a row by how far into the tails of each feature's empirical distribution it lies:
per feature ``max(-log F(x), -log S(x))`` with ``F``/``S`` the empirical CDF / survival
function, summed over features. PyOD's ``ECOD`` computes exactly this for one training matrix
per call (about 1 ms per series and call); the dataflow needs the score of one new window for
each of a few hundred series per call, so here the same rule runs on a stack of per-series
training matrices. ``tests/unit/models/test_ecod.py`` checks the results against
``pyod.models.ecod.ECOD`` itself.

PyOD also has a skewness-dependent term; it never exceeds the maximum of the two tails unless a
feature's skewness is exactly zero, where it adds them. Here the two-sided maximum is always
used, so a constant feature that stays constant scores 0 (PyOD returns NaN there).
"""

from __future__ import annotations

import numpy as np


def ecod_scores(
    ordered: np.ndarray, series: np.ndarray, size: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """Score new rows, each against the training rows of its series.

    ``ordered`` is (all series, slots, features): each series' training rows sorted per
    feature column, the first ``size`` slots in use; ``series`` picks the series of each new
    row, ``size`` is their training size and ``rows`` (new rows, features) the rows to score.
    As in PyOD's ``decision_function``, the new row is part of the empirical distribution it is
    scored against. The counts come from a binary search per column: O(log n) per score.
    """
    at_most = count_sorted(ordered, series, size, rows, strict=False) + 1.0
    at_least = size[:, None] - count_sorted(ordered, series, size, rows, strict=True) + 1.0
    return tail_sum(size[:, None] + 1.0, at_most, at_least)


def count_sorted(
    ordered: np.ndarray, series: np.ndarray, size: np.ndarray, values: np.ndarray, *, strict: bool
) -> np.ndarray:
    """Per (new row, feature): how many of the first ``size`` sorted entries of its series are
    ``< value`` (``strict``) or ``<= value``; one binary search run on all columns at once."""
    slots = ordered.shape[1]
    count, features = values.shape
    low = np.zeros((count, features), dtype=np.int64)
    high = np.broadcast_to(size[:, None], (count, features)).astype(np.int64)
    row = np.asarray(series)[:, None]
    column = np.arange(features)[None, :]
    for _ in range(max(int(slots), 1).bit_length()):
        middle = (low + high) >> 1
        probe = ordered[row, np.minimum(middle, slots - 1), column]
        below = probe < values if strict else probe <= values
        below &= middle < high
        low = np.where(below, middle + 1, low)
        high = np.where(below, high, middle)
    return low


def ecod_training_scores(training: np.ndarray) -> np.ndarray:
    """In-sample scores of every training row (PyOD's ``decision_scores_``), (series, rows).

    ``training`` is (series, rows, features) with all rows valid. Ties count fully on both sides
    (``#{x_j <= x_i}`` and ``#{x_j >= x_i}``), found from one sort per feature column.
    """
    series, n, _ = training.shape
    order = np.argsort(training, axis=1, kind="stable")
    ordered = np.take_along_axis(training, order, axis=1)
    slot = np.arange(n)[None, :, None]
    changes = ordered[:, 1:] != ordered[:, :-1]
    edge = np.ones((series, 1, training.shape[2]), dtype=bool)
    last_of_run = np.concatenate([changes, edge], axis=1)
    first_of_run = np.concatenate([edge, changes], axis=1)
    run_end = np.minimum.accumulate(np.where(last_of_run, slot, n)[:, ::-1], axis=1)[:, ::-1]
    run_start = np.maximum.accumulate(np.where(first_of_run, slot, -1), axis=1)
    at_most = np.empty(training.shape)
    at_least = np.empty(training.shape)
    np.put_along_axis(at_most, order, run_end + 1.0, axis=1)
    np.put_along_axis(at_least, order, float(n) - run_start, axis=1)
    return tail_sum(np.float64(n), at_most, at_least)


def tail_sum(n: np.ndarray | np.float64, at_most: np.ndarray, at_least: np.ndarray) -> np.ndarray:
    """Sum over the last axis of ``max(-log(at_most / n), -log(at_least / n))``."""
    smaller = np.minimum(at_most, at_least)
    return (np.log(n) - np.log(smaller)).sum(axis=-1)
