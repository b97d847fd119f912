from __future__ import annotations

import math
import pickle
from collections.abc import Sequence

import numpy as np
import pytest

from incidents.interfaces import BatchDetector, SeriesDetector
from incidents.schemas import WindowAggregate
from models.detector import (
    MEMBERS,
    DetectorBank,
    DetectorConfig,
    SingleSeriesDetector,
    build_bank,
    build_detector,
)

SPIKE_AT = 900
SERIES = "cpu,host=a usage"
MINUTE_NS = 60_000_000_000


def point(value: float, index: int, series: str = SERIES) -> WindowAggregate:
    return WindowAggregate(
        series=series,
        tenant="default",
        window_start_ns=index * MINUTE_NS,
        window_end_ns=(index + 1) * MINUTE_NS,
        count=1,
        mean=value,
        minimum=value,
        maximum=value,
        std=0.0,
        last=value,
    )


def multi(mean: float, index: int, series: str = SERIES, spread: float = 3.0) -> WindowAggregate:
    return WindowAggregate(
        series=series,
        tenant="default",
        window_start_ns=index * MINUTE_NS,
        window_end_ns=(index + 1) * MINUTE_NS,
        count=6,
        mean=mean,
        minimum=mean - spread,
        maximum=mean + 1.5 * spread,
        std=spread / 2,
        last=mean + spread / 4,
    )


def run(values: Sequence[float], detector: SingleSeriesDetector | None = None) -> list[float]:
    """The ``SeriesDetector`` protocol: score each window, then learn it."""
    detector = detector or build_detector()
    scores = []
    for i, v in enumerate(values):
        window = point(float(v), i)
        scores.append(detector.score_one(window))
        detector.learn_one(window)
    return scores


def noisy_sinusoid(n: int, seed: int = 11) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 50.0 + 10.0 * np.sin(2 * np.pi * t / 48) + rng.normal(0.0, 1.0, n)


@pytest.fixture(scope="module")
def spiked() -> tuple[np.ndarray, list[float]]:
    values = noisy_sinusoid(1000)
    values[SPIKE_AT] += 20.0
    return values, run(values)


# --- one series ---------------------------------------------------------------------------


def test_factories_implement_the_protocols() -> None:
    detector = build_detector()
    assert isinstance(detector, SeriesDetector)
    assert detector.config == DetectorConfig()
    bank = build_bank()
    assert isinstance(bank, BatchDetector)
    assert bank.config == DetectorConfig()
    assert len(bank) == 0
    custom = DetectorConfig(min_history=10, history=64)
    assert build_detector(custom).config is custom
    assert build_bank(custom).config is custom


def test_scores_are_in_unit_interval_on_heavy_tailed_data() -> None:
    values = np.random.default_rng(2).standard_cauchy(600)
    scores = run(values)
    assert all(0.0 <= s <= 1.0 and math.isfinite(s) for s in scores)
    assert max(scores) > 0.5


def test_warm_up_scores_zero_until_min_history(spiked: tuple[np.ndarray, list[float]]) -> None:
    _, scores = spiked
    min_history = DetectorConfig().min_history
    assert scores[:min_history] == [0.0] * min_history
    assert all(math.copysign(1.0, s) == 1.0 for s in scores[:min_history])  # not -0.0
    assert any(s > 0.0 for s in scores[min_history : min_history + 50])


def test_warm_up_components_are_zero() -> None:
    detector = build_detector(DetectorConfig(min_history=10))
    for i in range(9):
        detector.learn_one(point(float(i), i))
    assert detector.score_components(point(1e6, 9)) == dict.fromkeys(MEMBERS, 0.0)
    assert detector.score_one(point(1e6, 9)) == 0.0
    detector.learn_one(point(9.0, 9))
    assert detector.learned == 10
    assert detector.score_one(point(1e6, 10)) > 0.9


def test_clear_spike_scores_high_and_normal_points_stay_low(
    spiked: tuple[np.ndarray, list[float]],
) -> None:
    _, scores = spiked
    normal = np.array(scores[100:SPIKE_AT])
    assert scores[SPIKE_AT] >= 0.95
    assert np.percentile(normal, 95) < 0.6
    assert scores[SPIKE_AT] > normal.max()


def test_spike_components_name_each_member() -> None:
    values = noisy_sinusoid(400)
    detector = build_detector()
    run(values, detector)
    components = detector.score_components(point(float(values[-1]) + 25.0, 400))
    assert set(components) == set(MEMBERS)
    assert all(0.0 <= c <= 1.0 for c in components.values())
    assert components["arima"] > 0.999
    usual = detector.score_components(point(float(values[-1]), 400))
    assert usual["arima"] < components["arima"]


def test_level_shift_scores_high_at_its_start() -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(10.0, 1.0, 700)
    values[600:] += 8.0
    scores = run(values)
    assert scores[600] >= 0.95
    assert np.percentile(scores[100:600], 95) < 0.6


def test_constant_series_is_quiet_and_a_change_scores_high() -> None:
    values = [3.0] * 300 + [3.5] + [3.0] * 50
    scores = run(values)
    assert all(math.isfinite(s) for s in scores)
    assert max(scores[:300]) == 0.0
    assert scores[300] >= 0.95


def test_constant_zero_series_with_multi_point_windows() -> None:
    detector = build_detector()
    for i in range(200):
        window = point(0.0, i)
        assert detector.score_one(window) == 0.0
        detector.learn_one(window)
    burst = WindowAggregate(SERIES, "default", 200, 201, 5, 2.0, -1.0, 9.0, 3.0, 1.0)
    assert detector.score_one(burst) >= 0.95


def test_score_only_depends_on_the_past() -> None:
    base = noisy_sinusoid(500, seed=3)
    altered = base.copy()
    altered[300:] = altered[300:] * 3 + 40
    a, b = run(base), run(altered)
    assert a[:300] == b[:300]
    assert a[300:] != b[300:]


def test_scoring_does_not_change_state() -> None:
    values = noisy_sinusoid(300, seed=4)
    plain = run(values)
    probed = build_detector()
    scores = []
    for i, v in enumerate(values):
        probed.score_one(point(1e9, i))
        probed.score_components(point(-5.0, i))
        window = point(float(v), i)
        scores.append(probed.score_one(window))
        probed.learn_one(window)
    assert scores == plain


def test_score_and_learn_equals_score_one_then_learn_one() -> None:
    values = noisy_sinusoid(300, seed=10)
    values[250] += 30.0
    detector = build_detector()
    combined = [detector.score_and_learn(point(float(v), i)) for i, v in enumerate(values)]
    assert [score for score, _ in combined] == run(values)
    assert detector.learned == 300
    assert set(combined[250][1]) == set(MEMBERS)


def test_components_then_score_matches_a_single_evaluation() -> None:
    values = noisy_sinusoid(200, seed=6)
    detector = build_detector()
    run(values[:-1], detector)
    fresh = build_detector()
    run(values[:-1], fresh)
    last = point(float(values[-1]), 199)
    detector.score_components(last)
    assert detector.score_one(last) == fresh.score_one(last)


def test_deterministic_across_instances(spiked: tuple[np.ndarray, list[float]]) -> None:
    values, scores = spiked
    assert run(values) == scores


def test_non_finite_window_scores_zero_and_is_not_learned() -> None:
    detector = build_detector()
    values = noisy_sinusoid(120)
    run(values[:100], detector)
    learned = detector.learned
    assert learned == 100
    nan_window = point(float("nan"), 100)
    assert detector.score_one(nan_window) == 0.0
    assert detector.score_components(nan_window) == dict.fromkeys(MEMBERS, 0.0)
    assert detector.score_and_learn(point(float("inf"), 100)) == (
        0.0,
        dict.fromkeys(MEMBERS, 0.0),
    )
    detector.learn_one(point(float("inf"), 100))
    detector.learn_one(WindowAggregate(SERIES, "default", 0, 1, 3, 1.0, 0.0, 2.0, math.nan, 1.0))
    assert detector.learned == learned
    # The bad windows left no trace: the detector continues like one that never saw them.
    clean = build_detector()
    run(values[:100], clean)
    tail = [point(float(v), i) for i, v in enumerate(values[100:], start=100)]
    assert [detector.score_and_learn(w) for w in tail] == [clean.score_and_learn(w) for w in tail]


@pytest.mark.parametrize("members", [("ecod",), ("arima",), ("arima", "ecod")])
def test_member_subsets(members: tuple[str, ...]) -> None:
    values = noisy_sinusoid(300, seed=12)
    values[280] += 40.0
    detector = build_detector(DetectorConfig(members=members, min_history=24))
    scores = run(values, detector)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[280] == max(scores)
    # ECOD alone saturates at the edge of its training range (a p-value near 1 / (n + 1));
    # with the forecast residual the spike is certain.
    assert scores[280] >= (0.9 if "arima" in members else 0.5)
    assert np.percentile(scores[50:280], 95) < 0.6
    components = detector.score_components(point(50.0, 300))
    assert tuple(components) == members


def test_member_subsets_differ_from_the_ensemble() -> None:
    values = noisy_sinusoid(200, seed=13)
    by_members = {
        members: run(values, build_detector(DetectorConfig(members=members)))
        for members in [("ecod",), ("arima",), ("ecod", "arima")]
    }
    assert by_members[("ecod",)] != by_members[("arima",)]
    assert by_members[("ecod",)] != by_members[("ecod", "arima")]
    assert by_members[("arima",)] != by_members[("ecod", "arima")]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"members": ("iforest",)},
        {"members": ("hbos", "arima")},
        {"members": ()},
        {"members": ("ecod", "ecod")},
        {"min_history": 1},
        {"history": 10, "min_history": 24},
        {"refit_every": 0},
        {"forecast_refit_every": 0},
        {"tail_fraction": 1.0},
        {"tail_fraction": 0.0},
        {"score_decades": 0.0},
    ],
)
def test_invalid_config_is_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="invalid DetectorConfig"):
        DetectorConfig(**kwargs)  # type: ignore[arg-type]


# --- many series ----------------------------------------------------------------------------


def series_values(k: int, n: int) -> np.ndarray:
    """Varied series: noise, seasonality, a flat line, a counter, heavy tails, spikes, shifts."""
    rng = np.random.default_rng(100 + k)
    kind = k % 7
    if kind == 0:
        values = noisy_sinusoid(n, seed=k)
    elif kind == 1:
        values = np.full(n, float(k))
    elif kind == 2:
        values = np.arange(n, dtype=float) + k  # an exact counter: constant differences
    elif kind == 3:
        values = rng.standard_cauchy(n)
    elif kind == 4:
        values = 1_000.0 + np.cumsum(rng.normal(0.5, 2.0, n))  # drifting random walk
    elif kind == 5:
        values = rng.normal(10.0, 1.0, n)
        values[n // 2 :] += 8.0
    else:
        values = rng.poisson(3.0, n).astype(float)
    if k % 5 == 0:
        values[rng.integers(30, n, 3)] += 50.0
    return values


def windows_of(k: int, n: int) -> list[WindowAggregate]:
    values = series_values(k, n)
    series = f"s{k}"
    out = [
        multi(float(v), i, series) if k % 3 == 0 and i % 4 else point(float(v), i, series)
        for i, v in enumerate(values)
    ]
    if k % 4 == 1:  # an occasional bad aggregate
        out[n // 3] = point(float("nan"), n // 3, series)
    return out


def interleaved(per_series: list[list[WindowAggregate]], starts: list[int]) -> list[list[int]]:
    """Per tick, the series that have a window then: series k starts at tick ``starts[k]``."""
    ticks = max(s + len(w) for s, w in zip(starts, per_series, strict=True))
    return [
        [k for k, s in enumerate(starts) if s <= t < s + len(per_series[k])] for t in range(ticks)
    ]


def test_bank_equals_separate_single_series_detectors() -> None:
    count, n = 50, 200
    per_series = [windows_of(k, n) for k in range(count)]
    starts = [(k * 7) % 60 for k in range(count)]  # series join at different times
    bank = build_bank()
    got: list[list[tuple[float, dict[str, float]]]] = [[] for _ in range(count)]
    for tick, active in enumerate(interleaved(per_series, starts)):
        order = active[::-1] if tick % 2 else active
        batch = [per_series[k][tick - starts[k]] for k in order]
        for k, result in zip(order, bank.score_batch(batch), strict=True):
            got[k].append(result)
    assert len(bank) == count
    for k in range(count):
        single = build_detector()
        expected = []
        for window in per_series[k]:
            if k % 5:
                expected.append(single.score_and_learn(window))
            else:  # the SeriesDetector protocol
                expected.append((single.score_one(window), dict(single.score_components(window))))
                single.learn_one(window)
        assert got[k] == expected, f"series {k} differs"
        assert bank.learned(f"s{k}") == single.learned
    assert bank.learned("never seen") == 0


def test_several_windows_of_one_series_in_a_batch_equal_one_at_a_time() -> None:
    per_series = [windows_of(k, 150) for k in range(4)]
    one_at_a_time = build_bank()
    expected = [[one_at_a_time.score_batch([w])[0] for w in windows] for windows in per_series]
    batched = build_bank()
    got: list[list[tuple[float, dict[str, float]]]] = [[] for _ in per_series]
    chunk = 0
    while chunk < 150:
        size = 1 + chunk % 9  # chunks of 1..9 windows per series, the series interleaved
        batch, owners = [], []
        for i in range(chunk, min(chunk + size, 150)):
            for k in (2, 0, 3, 1):
                batch.append(per_series[k][i])
                owners.append(k)
        for k, result in zip(owners, batched.score_batch(batch), strict=True):
            got[k].append(result)
        chunk += size
    assert got == expected
    assert [batched.learned(f"s{k}") for k in range(4)] == [
        one_at_a_time.learned(f"s{k}") for k in range(4)
    ]


def test_growing_past_capacity_keeps_earlier_series() -> None:
    early = [windows_of(k, 300) for k in (0, 4)]
    late = [windows_of(k, 150) for k in range(10, 30)]
    small = DetectorBank(capacity=2)
    roomy = DetectorBank(capacity=64)
    for i in range(300):
        batch = [w[i] for w in early]
        if i >= 150:
            batch += [w[i - 150] for w in late]
        assert small.score_batch(batch) == roomy.score_batch(batch)
    assert small.capacity >= 22
    assert len(small) == 22
    assert small.learned("s0") == roomy.learned("s0") == 300
    assert small.learned("s10") == 150


def test_bank_evaluate_does_not_change_state() -> None:
    per_series = [windows_of(k, 120) for k in range(5)]
    plain, probed = build_bank(), build_bank()
    for i in range(120):
        batch = [w[i] for w in per_series]
        probed.evaluate([point(1e9, i, w.series) for w in batch])
        probed.evaluate(batch)
        assert probed.evaluate(batch) == plain.evaluate(batch)
        assert probed.score_batch(batch) == plain.score_batch(batch)


def test_bank_learn_then_score_equals_score_batch() -> None:
    per_series = [windows_of(k, 100) for k in range(3)]
    scored, learned = build_bank(), build_bank()
    for i in range(99):
        batch = [w[i] for w in per_series]
        scored.score_batch(batch)
        learned.learn(batch)
    last = [w[99] for w in per_series]
    assert learned.evaluate(last) == scored.evaluate(last)
    assert learned.score_batch(last) == scored.score_batch(last)


def test_bank_pickle_round_trip_continues_identically() -> None:
    per_series = [windows_of(k, 700) for k in range(6)]
    newcomers = [windows_of(k, 183) for k in (40, 41, 42)]
    original = build_bank()
    for i in range(517):
        original.score_batch([w[i] for w in per_series])
    restored = pickle.loads(pickle.dumps(original))
    assert len(restored) == len(original)
    for i in range(517, 700):
        batch = [w[i] for w in per_series] + [w[i - 517] for w in newcomers]
        assert restored.score_batch(batch) == original.score_batch(batch)
    assert restored.learned("s40") == original.learned("s40") == 183


def test_single_series_pickle_round_trip_continues_identically() -> None:
    values = noisy_sinusoid(700, seed=8)
    original = build_detector()
    run(values[:517], original)
    restored = pickle.loads(pickle.dumps(original))
    windows = [point(float(v), i) for i, v in enumerate(values[517:], start=517)]
    assert [restored.score_and_learn(w) for w in windows] == [
        original.score_and_learn(w) for w in windows
    ]


def test_pickled_size_stays_bounded() -> None:
    count = 12
    per_series = [windows_of(k, 600) for k in range(count)]
    bank = DetectorBank(capacity=64)
    for i in range(300):
        bank.score_batch([w[i] for w in per_series])
    size_at_300 = len(pickle.dumps(bank))
    # The module documents about 37 KB per series: ECOD's ring and sorted training rows, two
    # calibration samples, the knn member's value ring and distance rings, some coefficients.
    assert size_at_300 < 38_000 * count  # knn keeps 1,020 values + 2 x 1,000 distances
    for i in range(300, 600):
        bank.learn([w[i] for w in per_series])
    assert len(pickle.dumps(bank)) <= size_at_300 + 64
    # Unused capacity is not pickled.
    tight = DetectorBank(capacity=count)
    for i in range(600):
        tight.learn([w[i] for w in per_series])
    assert abs(len(pickle.dumps(tight)) - len(pickle.dumps(bank))) <= 64


def test_non_finite_window_in_a_batch_affects_only_its_series() -> None:
    per_series = [windows_of(k, 100) for k in range(3)]
    plain, spoiled = build_bank(), build_bank()
    for i in range(100):
        batch = [w[i] for w in per_series]
        expected = plain.score_batch(batch)
        bad = point(float("nan"), i, "s0")
        got = spoiled.score_batch([bad, *batch, bad])
        assert got[0] == got[-1] == (0.0, dict.fromkeys(MEMBERS, 0.0))
        assert got[1:-1] == expected
    assert spoiled.learned("s0") == plain.learned("s0") == 100


def test_bank_evaluate_of_an_unseen_series_scores_zero_and_adds_no_row() -> None:
    bank = build_bank()
    bank.score_batch(windows_of(0, 40))
    before = pickle.dumps(bank)
    scored = bank.evaluate([point(1e9, 41, series="never-seen")])
    assert scored == [(0.0, dict.fromkeys(MEMBERS, 0.0))]
    assert len(bank) == 1
    assert pickle.dumps(bank) == before


def test_single_series_detector_ignores_series_names() -> None:
    named, renamed = build_detector(), build_detector()
    values = noisy_sinusoid(80)
    for i, v in enumerate(values):
        assert named.score_and_learn(point(float(v), i)) == renamed.score_and_learn(
            point(float(v), i, series=f"name-{i % 3}")
        )
    assert renamed.learned == len(values)
