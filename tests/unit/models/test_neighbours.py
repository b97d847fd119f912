"""The nearest-neighbour distances and the knn member."""

from __future__ import annotations

import math

import numpy as np
import pytest

from incidents.schemas import WindowAggregate
from models.detector import DetectorConfig, build_detector
from models.neighbours import nearest_distances


def brute_force(history, learned, current, dim, span):
    out = []
    for row, n, value in zip(history, learned, current, strict=True):
        sequence = np.r_[row[len(row) - n :], value]
        newest = len(sequence) - dim
        best = math.inf
        for start in range(max(newest - span, 0), newest - dim + 1):
            gap = sequence[start : start + dim] - sequence[newest:]
            best = min(best, math.sqrt(float((gap * gap).sum())))
        out.append(best if math.isfinite(best) else math.nan)
    return np.array(out)


@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_distances_equal_brute_force_for_young_and_full_series(offset):
    rng = np.random.default_rng(3)
    history = rng.normal(offset, 1.0, size=(7, 90))
    learned = np.array([90, 90, 60, 41, 30, 10, 0])
    current = rng.normal(offset, 1.0, size=7)
    got = nearest_distances(history, learned, current, (4, 15), 60)
    for k, dim in enumerate((4, 15)):
        expected = brute_force(history, learned, current, dim, 60)
        np.testing.assert_allclose(got[:, k], expected, rtol=1e-6, equal_nan=True)


def test_a_repeated_pattern_is_at_distance_zero():
    cycle = np.tile([1.0, 5.0, 2.0, 8.0], 20)
    got = nearest_distances(cycle[None, :-1], np.array([79]), cycle[-1:], (4, 8), 60)
    np.testing.assert_allclose(got, 0.0, atol=1e-9)


def window(value: float, index: int) -> WindowAggregate:
    start = index * 60_000_000_000
    return WindowAggregate(
        "s", "t", start, start + 60_000_000_000, 1, value, value, value, 0.0, value
    )


def daily(n: int, flat_from: int | None = None) -> list[float]:
    rng = np.random.default_rng(5)
    values = [10 + 5 * math.sin(2 * math.pi * i / 48) + rng.normal(0, 0.2) for i in range(n)]
    if flat_from is not None:
        for i in range(flat_from, n):
            values[i] = 10 + rng.normal(0, 0.2)  # inside the usual range, but the rhythm is gone
    return values


def scores_of(values, members):
    detector = build_detector(DetectorConfig(members=members))
    return [detector.score_and_learn(window(v, i))[0] for i, v in enumerate(values)]


def test_knn_sees_a_lost_rhythm_that_the_value_distribution_does_not():
    flat_from = 1200
    values = daily(1300, flat_from)
    knn = scores_of(values, ("knn",))
    assert max(knn[flat_from : flat_from + 48]) >= 0.9
    assert max(knn[400:flat_from]) < max(knn[flat_from : flat_from + 48])


def test_onset_damping_reports_a_level_shift_once():
    values = [10.0 + 0.1 * math.sin(i) for i in range(400)] + [30.0] * 20
    scores = scores_of(values, ("arima",))
    assert scores[400] >= 0.9
    damped = DetectorConfig().onset_damping
    assert all(s <= max(scores[400] * damped, 0.9) for s in scores[401:410])
