from __future__ import annotations

import math

import numpy as np
import pytest

from models.calibration import (
    TailCalibrator,
    combine_tail_probabilities,
    confidence,
    surprisal_score,
)


def test_body_is_the_conformal_empirical_survival() -> None:
    calibrator = TailCalibrator.fit(np.arange(1.0, 100.0), min_scale=1e-6)
    assert calibrator.tail_probability(0.0) == 1.0
    assert calibrator.tail_probability(50.0) == pytest.approx(51 / 100)
    assert calibrator.tail_probability(1.0) == pytest.approx(100 / 100)


def test_tail_keeps_falling_beyond_the_sample() -> None:
    scores = np.random.default_rng(0).exponential(size=256)
    calibrator = TailCalibrator.fit(scores, min_scale=1e-6)
    top = float(scores.max())
    at_max = calibrator.tail_probability(top)
    far = calibrator.tail_probability(3 * top)
    assert 0.0 < far < at_max < 0.05
    assert far < 1e-4


def test_tail_probability_is_monotone_and_continuous_at_the_threshold() -> None:
    scores = np.random.default_rng(1).normal(size=300)
    calibrator = TailCalibrator.fit(scores, min_scale=1e-6)
    grid = np.linspace(-4, 8, 2000)
    qs = np.array([calibrator.tail_probability(s) for s in grid])
    assert np.all(np.diff(qs) <= 1e-12)
    u = calibrator.threshold
    assert calibrator.tail_probability(u + 1e-9) == pytest.approx(
        calibrator.tail_probability(u), rel=1e-6
    )


def test_constant_sample_gives_zero_for_same_value_and_certainty_for_a_change() -> None:
    calibrator = TailCalibrator.fit(np.full(64, 5.0), min_scale=1e-6)
    assert calibrator.tail_probability(5.0) == 1.0
    assert calibrator.tail_probability(4.0) == 1.0
    assert calibrator.tail_probability(5.5) < 1e-100


def test_non_finite_inputs() -> None:
    calibrator = TailCalibrator.fit(np.array([1.0, np.nan, 2.0, np.inf, 3.0]), min_scale=1e-6)
    assert calibrator.size == 3
    assert calibrator.tail_probability(float("nan")) == 1.0
    empty = TailCalibrator.fit(np.array([]), min_scale=1e-6)
    assert math.isfinite(empty.tail_probability(1.0))


def test_score_mappings() -> None:
    assert confidence(0.01) == pytest.approx(0.99)
    assert confidence(1.5) == 0.0
    assert surprisal_score(1.0, 4.0) == 0.0
    assert surprisal_score(1e-2, 4.0) == pytest.approx(0.5)
    assert surprisal_score(1e-6, 4.0) == 1.0
    assert surprisal_score(0.0, 4.0) == 1.0


def test_bonferroni_combination() -> None:
    assert combine_tail_probabilities([0.5, 0.01]) == pytest.approx(0.02)
    assert combine_tail_probabilities([0.9, 0.8]) == 1.0
    assert combine_tail_probabilities([]) == 1.0
