from __future__ import annotations

import math

import numpy as np
import pytest

from models.calibration import (
    DEFAULT_TAIL_FRACTION,
    MAX_TAIL_SHAPE,
    SMALL_SAMPLE_EXCEEDANCES,
    TailTable,
    combine_tail_probabilities,
    confidence,
    surprisal_score,
)


def padded(samples: list[np.ndarray]) -> np.ndarray:
    """Samples of different lengths as rows of one NaN-padded matrix (what ``fit`` accepts)."""
    width = max(len(s) for s in samples)
    out = np.full((len(samples), width), np.nan)
    for i, s in enumerate(samples):
        out[i, : len(s)] = s
    return out


def fitted(samples: list[np.ndarray], width: int = 512, min_scale: float = 1e-6) -> TailTable:
    table = TailTable(len(samples), width)
    table.fit(np.arange(len(samples)), padded(samples), min_scale)
    return table


def reference_q(sample: np.ndarray, score: float, min_scale: float) -> float:
    """The documented rule for one sample, written out with plain Python."""
    values = sorted(float(np.float32(v)) for v in sample if math.isfinite(v))
    n = len(values)
    if n == 0 or not math.isfinite(score):
        return 1.0
    cut = max(math.ceil((1.0 - DEFAULT_TAIL_FRACTION) * n) - 1, 0)
    threshold = values[cut]
    excess = [v - threshold for v in values if v > threshold]
    k = len(excess)
    mean_excess = sum(excess) / k if excess else 0.0
    variance = sum(e * e for e in excess) / k - mean_excess**2 if excess else 0.0
    shape = 0.0
    if k >= 2 and variance > 0:  # generalised Pareto shape by the method of moments
        shape = min(max(0.5 * (1.0 - mean_excess**2 / variance), 0.0), MAX_TAIL_SHAPE)
    shrinkage = 1.0 + SMALL_SAMPLE_EXCEEDANCES / max(k, 1)
    scale = max(mean_excess * (1.0 - shape) * shrinkage, min_scale)

    def survival(s: float) -> float:
        s32 = float(np.float32(s))
        return (sum(v >= s32 for v in values) + 1) / (n + 1)

    if score <= threshold:
        return survival(score)
    z = (score - threshold) / scale
    tail = (1.0 + shape * z) ** (-1.0 / shape) if shape > 0 else math.exp(-z)
    return survival(threshold) * tail


def test_body_is_the_conformal_empirical_survival() -> None:
    table = fitted([np.arange(1.0, 100.0), np.arange(1.0, 100.0) * 10.0])
    rows = np.array([0, 0, 0, 1, 1])
    q = table.tail_probability(rows, np.array([0.0, 50.0, 1.0, 500.0, 10.0]))
    assert q == pytest.approx([1.0, 51 / 100, 100 / 100, 51 / 100, 100 / 100])


def test_matches_the_documented_rule_row_by_row() -> None:
    rng = np.random.default_rng(7)
    samples = [
        rng.exponential(size=256),
        rng.normal(size=40),
        rng.integers(0, 4, size=100).astype(float),  # many ties
        np.array([2.0]),
        rng.pareto(2.0, size=300),
    ]
    table = fitted(samples)
    for row, sample in enumerate(samples):
        grid = np.r_[np.quantile(sample, [0.0, 0.3, 0.85, 0.9, 0.95, 1.0]), 1.5 * sample.max()]
        got = table.tail_probability(np.full(len(grid), row), grid)
        expected = [reference_q(sample, float(s), 1e-6) for s in grid]
        assert got == pytest.approx(expected, rel=1e-6)


def test_tail_keeps_falling_beyond_the_sample() -> None:
    rng = np.random.default_rng(0)
    samples = [rng.exponential(size=256), 5.0 * rng.exponential(size=200)]
    table = fitted(samples)
    tops = np.array([s.max() for s in samples])
    at_max = table.tail_probability(np.arange(2), tops)
    far = table.tail_probability(np.arange(2), 3 * tops)
    assert np.all(far > 0.0)
    assert np.all(far < at_max)
    assert np.all(at_max < 0.05)
    assert np.all(far < 1e-4)


def test_tail_probability_is_monotone_and_continuous_at_the_threshold() -> None:
    rng = np.random.default_rng(1)
    samples = [rng.normal(size=300), rng.normal(2.0, 3.0, size=150), rng.exponential(size=80)]
    table = fitted(samples)
    grid = np.linspace(-12, 20, 3000)
    for row in range(len(samples)):
        qs = table.tail_probability(np.full(len(grid), row), grid)
        assert np.all(np.diff(qs) <= 1e-12)
        assert np.all((qs > 0.0) & (qs <= 1.0))
    u = table.threshold
    rows = np.arange(len(samples))
    at = table.tail_probability(rows, u)
    just_above = table.tail_probability(rows, u + 1e-9)
    assert just_above == pytest.approx(at, rel=1e-6)
    assert at == pytest.approx(table.threshold_probability)


def test_constant_sample_gives_one_for_same_value_and_certainty_for_a_change() -> None:
    table = fitted([np.full(64, 5.0), np.full(10, -2.0)])
    rows = np.array([0, 0, 0, 1, 1])
    q = table.tail_probability(rows, np.array([5.0, 4.0, 5.5, -2.0, -1.0]))
    assert q[[0, 1, 3]].tolist() == [1.0, 1.0, 1.0]
    assert q[2] < 1e-100
    assert q[4] < 1e-100


def test_min_scale_floors_the_tail_per_row() -> None:
    table = TailTable(2, 16)
    table.fit(np.arange(2), np.full((2, 16), 5.0), np.array([1e-6, 1.0]))
    assert table.scale.tolist() == [1e-6, 1.0]
    q = table.tail_probability(np.arange(2), np.array([6.0, 6.0]))
    assert q[0] < 1e-100
    assert q[1] == pytest.approx(math.exp(-1.0))  # threshold probability 17/17


def test_non_finite_inputs() -> None:
    table = fitted([np.array([1.0, np.nan, 2.0, np.inf, 3.0]), np.array([np.nan, -np.inf])])
    assert table.size.tolist() == [3, 0]
    q = table.tail_probability(np.array([0, 0, 0, 1]), np.array([np.nan, np.inf, 2.0, 1.0]))
    assert q.tolist() == [1.0, 1.0, pytest.approx(3 / 4), 1.0]
    assert np.all(np.isfinite(q))


def test_unfitted_row_abstains() -> None:
    table = TailTable(3, 8)
    table.fit(np.array([1]), np.array([[1.0, 2.0, 3.0]]), 1e-6)
    q = table.tail_probability(np.array([0, 2, 1]), np.array([1e9, -1e9, 1e9]))
    assert q[0] == 1.0
    assert q[1] == 1.0
    assert q[2] < 1e-6


def test_rows_are_independent() -> None:
    rng = np.random.default_rng(3)
    samples = [rng.normal(size=50), rng.exponential(size=30), rng.uniform(size=64)]
    together = fitted(samples, width=64)
    apart = TailTable(3, 64)
    for row in (2, 0, 1):
        apart.fit(np.array([row]), padded([samples[row]]), 1e-6)
    grid = np.linspace(-3, 6, 50)
    for row in range(3):
        rows = np.full(len(grid), row)
        assert together.tail_probability(rows, grid).tolist() == pytest.approx(
            apart.tail_probability(rows, grid).tolist(), rel=1e-12
        )
    # Refitting one row leaves the others exactly as they were.
    before = together.tail_probability(np.array([0, 2]), np.array([0.5, 0.5]))
    together.fit(np.array([1]), np.array([[100.0, 200.0]]), 1e-6)
    assert together.tail_probability(np.array([0, 2]), np.array([0.5, 0.5])).tolist() == (
        before.tolist()
    )
    assert together.size.tolist() == [50, 2, 64]


def test_grow_and_head_keep_values() -> None:
    rng = np.random.default_rng(4)
    samples = [rng.normal(size=40), rng.exponential(size=20)]
    table = fitted(samples, width=40)
    grid = np.linspace(-2, 8, 25)
    before = [table.tail_probability(np.full(25, r), grid).tolist() for r in range(2)]

    table.grow(5)
    assert table.sample.shape == (5, 40)
    assert [table.tail_probability(np.full(25, r), grid).tolist() for r in range(2)] == before
    assert table.tail_probability(np.arange(2, 5), np.full(3, 1e9)).tolist() == [1.0] * 3
    table.grow(3)  # never shrinks
    assert table.sample.shape == (5, 40)

    head = table.head(1)
    assert head.sample.shape == (1, 40)
    assert head.width == 40
    assert head.tail_fraction == table.tail_fraction
    assert head.tail_probability(np.zeros(25, dtype=int), grid).tolist() == before[0]
    head.fit(np.array([0]), np.array([[9.0]]), 1e-6)  # a copy: the original is untouched
    assert table.tail_probability(np.zeros(25, dtype=int), grid).tolist() == before[0]


def test_sample_wider_than_the_table_is_rejected() -> None:
    table = TailTable(2, 4)
    with pytest.raises(ValueError, match="exceeds the width"):
        table.fit(np.array([0]), np.ones((1, 5)), 1e-6)
    table.fit(np.array([0]), np.ones((1, 4)), 1e-6)
    assert table.size.tolist() == [4, 0]


def test_score_mappings() -> None:
    assert confidence(np.array([0.01, 1.5, 0.0])) == pytest.approx([0.99, 0.0, 1.0])
    q = np.array([1.0, 1e-2, 1e-6, 0.0, 2.0])
    assert surprisal_score(q, 4.0).tolist() == [0.0, pytest.approx(0.5), 1.0, 1.0, 0.0]
    assert surprisal_score(np.array([1e-3]), 6.0) == pytest.approx([0.5])
    # Not -0.0 (log10(1) negated), which would print as "-0.000000".
    assert [math.copysign(1.0, s) for s in surprisal_score(np.array([1.0, 3.0]), 4.0)] == [1, 1]


def test_bonferroni_combination_over_members() -> None:
    qs = np.array([[0.5, 0.9, 1.0], [0.01, 0.8, 1.0]])
    assert combine_tail_probabilities(qs) == pytest.approx([0.02, 1.0, 1.0])
    three = np.array([[0.1], [0.2], [0.001]])
    assert combine_tail_probabilities(three) == pytest.approx([0.003])
    assert combine_tail_probabilities(np.ones((0, 4))).tolist() == [1.0] * 4


def test_a_heavy_tailed_sample_gets_a_slower_tail_than_a_light_one() -> None:
    rng = np.random.default_rng(11)
    light = rng.exponential(size=1000)
    heavy = rng.pareto(2.5, size=1000)
    table = fitted([light, heavy], width=1000)
    assert table.shape[0] == pytest.approx(0.0, abs=0.1)
    assert table.shape[1] > 0.15
    far = np.array([20.0 * light.std(), 20.0 * heavy.std()])
    q = table.tail_probability(np.array([0, 1]), far)
    assert q[1] > 100 * q[0]  # same distance in standard deviations, far less surprising
