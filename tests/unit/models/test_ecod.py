from __future__ import annotations

import numpy as np
import pytest
from pyod.models.ecod import ECOD
from scipy.stats import skew

from models.ecod import count_sorted, ecod_scores, ecod_training_scores, tail_sum

SERIES, ROWS, FEATURES = 6, 60, 5


def training_stack(seed: int, dtype: type = np.float64) -> np.ndarray:
    """(series, rows, features): continuous, heavy-tailed and tie-rich (integer) columns."""
    rng = np.random.default_rng(seed)
    stack = np.empty((SERIES, ROWS, FEATURES))
    for s in range(SERIES):
        stack[s, :, 0] = rng.normal(10.0 * s, 1.0 + s, ROWS)
        stack[s, :, 1] = rng.exponential(2.0, ROWS)
        stack[s, :, 2] = rng.integers(0, 4, ROWS)  # many ties
        stack[s, :, 3] = np.round(rng.standard_cauchy(ROWS), 1)
        stack[s, :, 4] = rng.poisson(1.0, ROWS)  # ties, skewed
    return stack.astype(dtype)


def assert_skewed(matrix: np.ndarray) -> None:
    """PyOD adds both tails where a feature's skewness is exactly 0; ECOD here never does."""
    assert np.all(np.sign(skew(matrix.astype(np.float64), axis=0)) != 0.0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_training_scores_equal_pyod(dtype: type) -> None:
    training = training_stack(1, dtype)
    got = ecod_training_scores(training)
    assert got.shape == (SERIES, ROWS)
    for s in range(SERIES):
        assert_skewed(training[s])
        expected = ECOD().fit(training[s]).decision_scores_
        assert got[s] == pytest.approx(expected, rel=1e-10)


def sorted_stack(training: np.ndarray, slots: int | None = None) -> np.ndarray:
    """Each series' rows sorted per feature column, padded with garbage to ``slots``."""
    series, rows, features = training.shape
    ordered = np.full((series, slots or rows, features), np.nan, dtype=training.dtype)
    ordered[:, :rows] = np.sort(training, axis=1)
    return ordered


def test_new_row_scores_equal_pyod() -> None:
    training = training_stack(2)
    rng = np.random.default_rng(3)
    new = training[np.arange(SERIES), rng.integers(0, ROWS, SERIES)].copy()  # ties with history
    new[0] = [100.0, 0.0, 2.0, 0.0, 1.0]  # far outside in one feature
    new[1, :] = training[1].min(axis=0) - 1.0  # below everything
    new[2, :] = training[2].max(axis=0)  # at the maximum
    new[3, 0] += 0.5  # between training values
    series = np.arange(SERIES)
    got = ecod_scores(sorted_stack(training), series, np.full(SERIES, ROWS), new)
    assert got.shape == (SERIES,)
    for s in range(SERIES):
        detector = ECOD().fit(training[s])
        assert_skewed(np.vstack([training[s], new[s]]))
        expected = detector.decision_function(new[s][None, :])[0]
        assert got[s] == pytest.approx(expected, rel=1e-10)
    assert got[0] > got[3]
    assert got[1] > np.quantile(ecod_training_scores(training[1:2])[0], 0.99)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_size_excludes_slots_and_series_may_repeat(dtype: type) -> None:
    training = training_stack(4, dtype)
    rng = np.random.default_rng(5)
    size = np.array([ROWS, 30, 1, 45, 59, 3])
    ordered = np.empty((SERIES, ROWS + 4, FEATURES), dtype=dtype)
    for s in range(SERIES):
        ordered[s, : size[s]] = np.sort(training[s, : size[s]], axis=0)
        ordered[s, size[s] :] = rng.choice([np.nan, 1e9, -1e9, 0.0], (ROWS + 4 - size[s], 1))
    # Several new rows per series, in any order; one series not scored at all.
    series = np.array([3, 0, 3, 1, 2, 5, 4, 3, 1, 0])
    new = (training.mean(axis=1)[series] + rng.normal(size=(len(series), FEATURES))).astype(dtype)
    new[2] = training[3, 7]  # ties in every feature
    got = ecod_scores(ordered, series, size[series], new)
    assert got.shape == (len(series),)
    for i, s in enumerate(series.tolist()):
        rows = training[s, : size[s]]
        if size[s] > 1:
            expected = ECOD().fit(rows).decision_function(new[i][None, :])[0]
        else:  # PyOD needs two rows to fit. The rule: log 2 per feature that differs.
            expected = np.log(2.0) * np.sum(rows[0] != new[i])
        assert got[i] == pytest.approx(expected, rel=1e-10)


def test_count_sorted_equals_brute_force_counts() -> None:
    rng = np.random.default_rng(8)
    training = rng.integers(-3, 4, size=(4, 33, 3)).astype(np.float32)
    size = np.array([33, 0, 17, 5])
    ordered = np.full((4, 40, 3), np.nan, dtype=np.float32)
    for s in range(4):
        ordered[s, : size[s]] = np.sort(training[s, : size[s]], axis=0)
    series = np.array([0, 1, 2, 3, 2, 0])
    values = rng.integers(-4, 5, size=(6, 3)).astype(np.float32)
    for strict in (False, True):
        got = count_sorted(ordered, series, size[series], values, strict=strict)
        for i, s in enumerate(series.tolist()):
            rows = training[s, : size[s]]
            below = rows < values[i] if strict else rows <= values[i]
            assert got[i].tolist() == below.sum(axis=0).tolist()


def test_no_training_rows_scores_zero() -> None:
    training = training_stack(6)
    series = np.arange(SERIES)
    got = ecod_scores(sorted_stack(training), series, np.zeros(SERIES, dtype=int), training[:, 0])
    assert got.tolist() == [0.0] * SERIES


def test_constant_feature_that_stays_constant_adds_nothing() -> None:
    rng = np.random.default_rng(7)
    training = rng.normal(size=(2, 40, 2))
    training[:, :, 1] = 3.0
    varied = training[:, :, :1]
    new = np.array([[0.1, 3.0], [5.0, 3.0]])
    series, size = np.arange(2), np.full(2, 40)
    with_constant = ecod_scores(sorted_stack(training), series, size, new)
    assert with_constant == pytest.approx(
        ecod_scores(sorted_stack(varied), series, size, new[:, :1]), rel=1e-12
    )
    assert ecod_training_scores(training) == pytest.approx(ecod_training_scores(varied), rel=1e-12)
    changed = ecod_scores(sorted_stack(training), series, size, np.array([[0.1, 3.5], [5.0, 2.0]]))
    assert np.all(changed > with_constant)


def test_tail_sum() -> None:
    n = np.array([[10.0], [4.0]])
    at_most = np.array([[1.0, 10.0], [2.0, 4.0]])
    at_least = np.array([[10.0, 5.0], [3.0, 1.0]])
    expected = [np.log(10.0) + np.log(2.0), np.log(2.0) + np.log(4.0)]
    assert tail_sum(n, at_most, at_least) == pytest.approx(expected, rel=1e-12)
