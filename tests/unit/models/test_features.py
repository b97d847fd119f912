from __future__ import annotations

import numpy as np

from incidents.schemas import WindowAggregate
from models.features import FEATURE_DTYPE, FEATURE_NAMES, MEAN, window_features

DELTA = FEATURE_NAMES.index("delta_mean")
NAN = float("nan")


def window(
    mean: float,
    *,
    count: int = 1,
    minimum: float | None = None,
    maximum: float | None = None,
    std: float = 0.0,
    last: float | None = None,
    series: str = "cpu,host=a usage",
) -> WindowAggregate:
    return WindowAggregate(
        series=series,
        tenant="default",
        window_start_ns=0,
        window_end_ns=60,
        count=count,
        mean=mean,
        minimum=mean if minimum is None else minimum,
        maximum=mean if maximum is None else maximum,
        std=std,
        last=mean if last is None else last,
    )


def as_dicts(rows: np.ndarray) -> list[dict[str, float]]:
    return [dict(zip(FEATURE_NAMES, (float(v) for v in row), strict=True)) for row in rows]


def test_feature_order() -> None:
    assert FEATURE_NAMES == ("mean", "std", "range", "last", "delta_mean")
    assert FEATURE_NAMES[MEAN] == "mean"


def test_multi_point_window_features_in_a_batch() -> None:
    windows = [
        window(10.0, count=5, minimum=4.0, maximum=19.0, std=3.0, last=12.0),
        window(-2.0, count=2, minimum=-3.0, maximum=-1.0, std=1.5, last=-1.0, series="b"),
    ]
    rows = window_features(windows, np.array([7.5, -4.0]))
    assert rows.shape == (2, len(FEATURE_NAMES))
    assert rows.dtype == FEATURE_DTYPE
    assert as_dicts(rows) == [
        {"mean": 10.0, "std": 3.0, "range": 15.0, "last": 12.0, "delta_mean": 2.5},
        {"mean": -2.0, "std": 1.5, "range": 2.0, "last": -1.0, "delta_mean": 2.0},
    ]


def test_single_point_window_degenerates_to_zero_spread() -> None:
    # A single point with a (bogus) std and spread: both are forced to 0, mean equals last.
    rows = window_features(
        [window(3.25, std=0.7, minimum=1.0, maximum=9.0), window(8.0, count=3, std=0.5)],
        np.array([NAN, 6.0]),
    )
    single, multi = as_dicts(rows)
    assert single == {"mean": 3.25, "std": 0.0, "range": 0.0, "last": 3.25, "delta_mean": 0.0}
    assert multi["std"] == 0.5
    assert multi["delta_mean"] == 2.0


def test_delta_mean_is_zero_for_a_new_series_only() -> None:
    windows = [window(5.0), window(5.0, series="b"), window(5.0, series="c")]
    rows = window_features(windows, np.array([NAN, 4.0, 5.0], dtype=np.float32))
    assert rows[:, DELTA].tolist() == [0.0, 1.0, 0.0]


def test_empty_batch() -> None:
    rows = window_features([], np.array([], dtype=np.float32))
    assert rows.shape == (0, len(FEATURE_NAMES))


def test_features_are_float32_and_delta_uses_the_rounded_mean() -> None:
    values = [0.1, 1e7 + 0.3, -123.456789, 3.3333333333]
    windows = [window(v, series=str(i)) for i, v in enumerate(values)]
    first = window_features(windows, np.full(len(values), np.nan, dtype=np.float32))
    assert first.dtype == np.float32
    assert first[:, MEAN].tolist() == np.array(values, dtype=np.float32).tolist()
    # Feeding the stored (rounded) mean back as the previous mean gives exactly zero change,
    # whether the previous mean is held as float32 or float64.
    assert window_features(windows, first[:, MEAN])[:, DELTA].tolist() == [0.0] * len(values)
    as64 = first[:, MEAN].astype(np.float64)
    assert window_features(windows, as64)[:, DELTA].tolist() == [0.0] * len(values)


def test_non_finite_values_propagate() -> None:
    windows = [
        window(NAN),
        window(1.0, count=4, minimum=0.0, maximum=float("inf"), std=1.0),
        window(1.0, count=4, std=NAN),
        window(1e39),  # beyond float32
        window(2.0, series="fine"),
    ]
    rows = window_features(windows, np.array([1.0, 1.0, 1.0, 1.0, 1.0]))
    finite = np.isfinite(rows)
    assert not finite[0, MEAN] and not finite[0, DELTA]
    assert not finite[1, FEATURE_NAMES.index("range")]
    assert not finite[2, FEATURE_NAMES.index("std")]
    assert not finite[3, MEAN]
    assert finite.all(axis=1).tolist() == [False, False, False, False, True]
    assert as_dicts(rows[4:])[0] == {
        "mean": 2.0,
        "std": 0.0,
        "range": 0.0,
        "last": 2.0,
        "delta_mean": 1.0,
    }
