from __future__ import annotations

import warnings

import numpy as np
import pytest
from statsmodels.tsa.arima.model import ARIMA

from models.features import FEATURE_NAMES, MEAN, FeatureRing
from models.forecast import (
    ArimaParams,
    ForecastMember,
    RobustLevel,
    arma_residuals,
    fit_arima,
    one_step_forecast,
)


def arma_series(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = rng.normal(size=n)
    y = np.zeros(n)
    for t in range(2, n):
        y[t] = 0.5 * y[t - 1] - 0.2 * y[t - 2] + e[t] + 0.4 * e[t - 1]
    return y


def statsmodels_fit(values: np.ndarray, order: tuple[int, int, int]) -> tuple[ArimaParams, float]:
    trend = "c" if order[1] == 0 else "n"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = ARIMA(values, order=order, trend=trend).fit()
    named = dict(zip(result.model.param_names, result.params, strict=True))
    params = ArimaParams(
        order=order,
        mean=float(named.get("const", 0.0)),
        ar=tuple(float(named[f"ar.L{i}"]) for i in range(1, order[0] + 1)),
        ma=tuple(float(named[f"ma.L{j}"]) for j in range(1, order[2] + 1)),
    )
    return params, float(result.forecast(1)[0])


@pytest.mark.parametrize(
    ("order", "integrate"),
    [((2, 0, 1), 0), ((1, 1, 1), 1), ((1, 2, 1), 2)],
)
def test_one_step_forecast_matches_statsmodels(order: tuple[int, int, int], integrate: int) -> None:
    values = 10.0 + arma_series(400)
    for _ in range(integrate):
        values = np.cumsum(values)
    params, expected = statsmodels_fit(values, order)
    residuals = arma_residuals(params, values)
    recent = values[-params.lags_needed :]
    innovations = residuals[residuals.size - order[2] :]
    assert one_step_forecast(params, recent, innovations) == pytest.approx(expected, rel=1e-9)


def test_fit_arima_recovers_coefficients_in_original_units() -> None:
    values = 1_000.0 + 50.0 * arma_series(600, seed=5)
    params = fit_arima(values, (2, 0, 1))
    assert params is not None
    assert params.mean == pytest.approx(1_000.0, abs=15.0)
    assert params.ar[0] == pytest.approx(0.5, abs=0.2)
    assert params.ma[0] == pytest.approx(0.4, abs=0.2)


@pytest.mark.parametrize(
    "values",
    [
        np.full(200, 7.0),
        np.arange(10, dtype=float),
        np.r_[np.ones(100), np.inf],
        np.r_[np.zeros(199), 1e300],
    ],
)
def test_fit_arima_never_raises(values: np.ndarray) -> None:
    params = fit_arima(values, (1, 1, 1))
    assert params is None or all(np.isfinite([*params.ar, *params.ma, params.mean]))


def test_fit_arima_refuses_flat_and_short_history() -> None:
    assert fit_arima(np.full(200, 7.0), (1, 1, 1)) is None
    assert fit_arima(np.arange(10, dtype=float), (1, 1, 1)) is None


def test_robust_level_tail() -> None:
    level = RobustLevel.fit(np.array([1.0, 2.0, 3.0, 4.0, 100.0]), min_scale=1e-9)
    assert level.location == 3.0
    assert level.tail_probability(3.0) == 1.0
    assert level.tail_probability(100.0) < 1e-10
    flat = RobustLevel.fit(np.full(50, 2.0), min_scale=1e-9)
    assert flat.tail_probability(2.0) == 1.0
    assert flat.tail_probability(2.001) == 0.0


def mean_rows(values: np.ndarray, capacity: int = 512) -> FeatureRing:
    ring = FeatureRing(capacity=capacity)
    for v in values:
        row = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
        row[MEAN] = v
        ring.append(row)
    return ring


def features_of(value: float) -> np.ndarray:
    row = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    row[MEAN] = value
    return row


def test_member_uses_arima_and_flags_a_far_value() -> None:
    values = 20.0 + arma_series(256)
    ring = mean_rows(values)
    member = ForecastMember("arima", (1, 1, 1), 256, 64, 0.1)
    member.refit(ring)
    assert member.uses_arima
    usual = member.tail_probability(features_of(float(values[-1])), ring)
    far = member.tail_probability(features_of(float(values[-1]) + 25.0), ring)
    assert usual > 0.05
    assert far < 1e-6


def test_member_falls_back_on_flat_history_and_flags_any_change() -> None:
    ring = mean_rows(np.full(100, 42.0))
    member = ForecastMember("arima", (1, 1, 1), 256, 64, 0.1)
    member.refit(ring)
    assert not member.uses_arima
    assert member.tail_probability(features_of(42.0), ring) == 1.0
    assert member.tail_probability(features_of(43.0), ring) < 1e-12


def test_member_innovations_equal_the_batch_recursion() -> None:
    values = 20.0 + arma_series(300)
    ring = mean_rows(values[:256])
    member = ForecastMember("arima", (2, 1, 2), 256, 64, 0.1)
    member.refit(ring)
    assert member.params is not None
    for v in values[256:]:
        member.observe(features_of(float(v)), ring)
        ring.append(features_of(float(v)))
    batch = arma_residuals(member.params, ring.column(MEAN))
    assert member.innovations == pytest.approx(batch[-2:], rel=1e-9, abs=1e-12)
