from __future__ import annotations

import numpy as np
import pytest

from incidents.schemas import WindowAggregate
from models.features import FEATURE_NAMES, FeatureRing, is_finite_features, window_features


def window(
    mean: float,
    *,
    count: int = 1,
    minimum: float | None = None,
    maximum: float | None = None,
    std: float = 0.0,
    last: float | None = None,
) -> WindowAggregate:
    return WindowAggregate(
        series="cpu,host=a usage",
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


def features_dict(row: np.ndarray) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, (float(v) for v in row), strict=True))


def test_multi_point_window_features() -> None:
    row = window(10.0, count=5, minimum=4.0, maximum=19.0, std=3.0, last=12.0)
    f = features_dict(window_features(row, previous_mean=7.5))
    assert f == {"mean": 10.0, "std": 3.0, "range": 15.0, "last": 12.0, "delta_mean": 2.5}


def test_single_point_window_degenerates_to_zero_spread() -> None:
    f = features_dict(window_features(window(3.25, std=0.7), previous_mean=None))
    assert f["std"] == 0.0
    assert f["range"] == 0.0
    assert f["mean"] == f["last"] == 3.25
    assert f["delta_mean"] == 0.0


def test_features_are_float32_and_delta_uses_rounded_mean() -> None:
    first = window_features(window(0.1), previous_mean=None)
    second = window_features(window(0.1), previous_mean=float(first[0]))
    assert first.dtype == np.float32
    assert second[FEATURE_NAMES.index("delta_mean")] == 0.0


def test_non_finite_features_are_detected() -> None:
    assert is_finite_features(window_features(window(1.0), None))
    assert not is_finite_features(window_features(window(float("nan")), None))


def test_ring_keeps_newest_rows_in_order() -> None:
    ring = FeatureRing(capacity=4, width=1)
    for v in range(10):
        ring.append(np.array([v], dtype=np.float32))
    assert ring.total == 10
    assert len(ring) == 4
    assert ring.rows()[:, 0].tolist() == [6.0, 7.0, 8.0, 9.0]
    assert ring.rows(size=2)[:, 0].tolist() == [8.0, 9.0]
    assert ring.column(0, 3).tolist() == [7.0, 8.0, 9.0]


def test_ring_rows_by_absolute_end_clip_to_what_is_held() -> None:
    ring = FeatureRing(capacity=4, width=1)
    for v in range(10):
        ring.append(np.array([v], dtype=np.float32))
    assert ring.rows(end=9, size=2)[:, 0].tolist() == [7.0, 8.0]
    assert ring.rows(end=8, size=10)[:, 0].tolist() == [6.0, 7.0]
    assert ring.rows(end=5, size=2).shape == (0, 1)


def test_ring_before_wrapping_and_invalid_capacity() -> None:
    ring = FeatureRing(capacity=8)
    assert ring.rows().shape == (0, len(FEATURE_NAMES))
    ring.append(np.ones(len(FEATURE_NAMES), dtype=np.float32))
    assert len(ring) == 1
    with pytest.raises(ValueError):
        FeatureRing(capacity=0)
