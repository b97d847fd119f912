from __future__ import annotations

import math
import pickle
import time

import numpy as np
import pytest
from statsmodels.tsa.arima_process import arma_generate_sample

from models.forecasting import (
    ARIMA,
    DRIFT,
    NONE,
    Forecast,
    ForecasterConfig,
    SeriesForecaster,
    breach_forecast,
    detect_period,
    drift_forecast,
    fourier_terms,
)

SMALL_GRID = {"max_p": 1, "max_q": 1}


def ar1(n: int, phi: float, mean: float, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.empty(n)
    y[0] = mean
    for t in range(1, n):
        y[t] = mean + phi * (y[t - 1] - mean) + sigma * rng.standard_normal()
    return y


def seasonal(n: int, period: int, seed: int, noise: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    shape = 10.0 * np.sin(2 * np.pi * t / period) + 4.0 * np.cos(4 * np.pi * t / period)
    noise_part = arma_generate_sample([1, -0.5], [1], n, scale=noise, distrvs=rng.standard_normal)
    return 100.0 + shape + noise_part, shape


# --- order selection ---------------------------------------------------------------------------


def test_order_selection_on_ar_data_is_stationary_with_ar_terms() -> None:
    y = ar1(600, 0.7, 50.0, 1.0, seed=1)
    forecaster = SeriesForecaster().fit(y)
    spec = forecaster.spec
    assert spec is not None and forecaster.method == ARIMA
    assert spec.d == 0 and spec.p >= 1 and spec.treatment == "none"
    assert forecaster.period == 0
    assert forecaster.stats.selections == 1
    assert 9 <= forecaster.stats.fits <= 11  # the p, q grid plus the treatment candidates


def test_order_selection_differences_a_random_walk() -> None:
    rng = np.random.default_rng(2)
    y = 100.0 + np.cumsum(rng.standard_normal(500))
    spec = SeriesForecaster(ForecasterConfig(**SMALL_GRID)).fit(y).spec
    assert spec is not None and spec.d == 1


def test_order_selection_finds_the_season() -> None:
    y, _ = seasonal(24 * 30, 24, seed=3)
    forecaster = SeriesForecaster(ForecasterConfig(**SMALL_GRID)).fit(y)
    assert forecaster.period == 24
    assert forecaster.spec is not None and forecaster.spec.treatment in ("fourier", "difference")


def test_declared_period_is_used() -> None:
    y, _ = seasonal(24 * 20, 24, seed=4)
    forecaster = SeriesForecaster(ForecasterConfig(period=24, **SMALL_GRID)).fit(y)
    assert forecaster.period == 24


def test_detect_period() -> None:
    y, _ = seasonal(24 * 20, 24, seed=5)
    assert detect_period(y, 200) == 24
    rng = np.random.default_rng(5)
    assert detect_period(rng.standard_normal(500), 200) is None
    assert detect_period(ar1(500, 0.8, 0.0, 1.0, seed=6), 200) is None
    assert detect_period(np.full(100, 3.0), 40) is None
    assert detect_period(np.array([1.0, 2.0]), 40) is None


def test_fourier_terms_drop_the_always_zero_sine() -> None:
    x = fourier_terms(np.arange(12), 12, 6)
    assert x.shape == (12, 11)
    assert np.abs(x).sum(axis=0).min() > 1.0


# --- forecasts ---------------------------------------------------------------------------------


def test_ar1_forecast_is_close_to_the_true_conditional_mean() -> None:
    phi, mean, sigma = 0.7, 20.0, 2.0
    y = ar1(1500, phi, mean, sigma, seed=7)
    forecast = SeriesForecaster(ForecasterConfig(**SMALL_GRID)).fit(y).forecast(5)
    truth = mean + phi ** np.arange(1, 6) * (y[-1] - mean)
    # the estimated mean is off by about sigma / (1 - phi) / sqrt(n) = 0.17 sigma (one SE)
    assert np.abs(forecast.mean - truth).max() < 0.3 * sigma
    assert forecast.std[0] == pytest.approx(sigma, rel=0.1)
    true_std = sigma * np.sqrt(np.cumsum(phi ** (2 * np.arange(5))))
    np.testing.assert_allclose(forecast.std, true_std, rtol=0.15)
    assert np.all(forecast.lower < forecast.mean) and np.all(forecast.mean < forecast.upper)


def test_intervals_cover_about_the_nominal_rate() -> None:
    rng = np.random.default_rng(8)
    y = 50.0 + arma_generate_sample([1, -0.6], [1, 0.3], 1800, distrvs=rng.standard_normal)
    config = ForecasterConfig(level=0.9, **SMALL_GRID)
    forecaster = SeriesForecaster(config).fit(y[:600])
    hits = {1: [], 10: []}
    for t in range(600, len(y) - 10):
        forecast = forecaster.forecast(10)
        for h in hits:
            hits[h].append(forecast.lower[h - 1] <= y[t + h - 1] <= forecast.upper[h - 1])
        forecaster.update(y[t])
    assert forecaster.stats.refits >= 3
    assert np.mean(hits[1]) == pytest.approx(0.9, abs=0.04)
    assert np.mean(hits[10]) == pytest.approx(0.9, abs=0.07)


def test_seasonal_forecast_follows_the_season() -> None:
    period = 24
    y, shape = seasonal(period * 30 + period, period, seed=9, noise=0.3)
    forecaster = SeriesForecaster(ForecasterConfig(**SMALL_GRID)).fit(y[:-period])
    forecast = forecaster.forecast(period)
    assert np.corrcoef(forecast.mean, shape[-period:])[0, 1] > 0.95
    assert np.abs(forecast.mean - y[-period:]).mean() < 1.5


# --- updates between refits --------------------------------------------------------------------


def fresh_filter_forecast(
    forecaster: SeriesForecaster, y: np.ndarray, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """statsmodels' own forecast from filtering everything since the fit window's start with
    the fitted parameters (no refit), mapped back to the data's units."""
    start = forecaster.fit_start
    assert start is not None
    result = forecaster.model_for(y[start:], start).filter(forecaster.params)
    predicted = result.get_forecast(horizon)
    fit = forecaster._fit
    season = fourier_terms(np.arange(len(y), len(y) + horizon), fit.spec.period, fit.spec.harmonics)
    mean = predicted.predicted_mean * fit.scale + fit.location + season @ fit.seasonal
    return mean, np.sqrt(predicted.var_pred_mean) * fit.scale


def treated_data(kind: str) -> tuple[np.ndarray, ForecasterConfig]:
    """Data whose selection ends in the seasonal treatment ``kind``, and a config without
    refits."""
    rng = np.random.default_rng(10)
    if kind == "none":
        y = 5.0 + arma_generate_sample([1, -0.5], [1, 0.4], 750, distrvs=rng.standard_normal)
        return y, ForecasterConfig(refit_every=10_000, **SMALL_GRID)
    if kind == "fourier":
        y, _ = seasonal(24 * 30 + 150, 24, seed=10)
        return y, ForecasterConfig(refit_every=10_000, period=24, max_d=0, **SMALL_GRID)
    # a jagged daily pattern on a wandering level: the seasonal difference fits it best
    y = 50.0 + np.tile(rng.normal(0.0, 5.0, 24), 40) + np.cumsum(rng.normal(0.0, 0.3, 960))
    return y[:750], ForecasterConfig(refit_every=10_000, period=24, **SMALL_GRID)


@pytest.mark.parametrize("kind", ["none", "fourier", "difference"])
def test_updates_equal_a_fresh_filter_with_the_same_params(kind: str) -> None:
    y, config = treated_data(kind)
    forecaster = SeriesForecaster(config).fit(y[:600])
    assert forecaster.spec is not None and forecaster.spec.treatment == kind
    fits = forecaster.stats.fits
    spent = []
    for value in y[600:]:
        started = time.perf_counter()
        forecaster.update(value)
        spent.append(time.perf_counter() - started)
    assert forecaster.stats.fits == fits  # no refit happened
    assert float(np.mean(spent)) < 2e-3  # a Kalman step, not a fit (~20 us here)
    forecast = forecaster.forecast(6)
    if kind == "difference":
        # y_{n+h} = x_{n+h} + y_{n+h-s} for h <= s, x the seasonally differenced series
        start, fit = forecaster.fit_start, forecaster._fit
        predicted = forecaster.model_for(y[start:], start).filter(forecaster.params)
        predicted = predicted.get_forecast(6)
        s = fit.spec.period
        mean = predicted.predicted_mean * fit.scale + fit.location + y[len(y) - s : len(y) - s + 6]
        std = np.sqrt(predicted.var_pred_mean) * fit.scale
    else:
        mean, std = fresh_filter_forecast(forecaster, y, 6)
    np.testing.assert_allclose(forecast.mean, mean, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(forecast.std, std, rtol=1e-9)


def test_seasonal_difference_beyond_one_season_matches_simulation() -> None:
    y, config = treated_data("difference")
    forecaster = SeriesForecaster(config).fit(y)
    fit, s, horizon = forecaster._fit, forecaster.spec.period, 60
    forecast = forecaster.forecast(horizon)
    start = forecaster.fit_start
    result = forecaster.model_for(y[start:], start).filter(forecaster.params)
    np.random.seed(1)  # statsmodels 0.14 and 0.15 name the generator argument differently
    x = result.simulate(horizon, repetitions=3000, anchor="end")
    x = np.asarray(x).reshape(horizon, -1) * fit.scale + fit.location
    paths = np.empty_like(x)
    for h in range(horizon):
        paths[h] = x[h] + (y[len(y) - s + h] if h < s else paths[h - s])
    np.testing.assert_allclose(forecast.mean, paths.mean(axis=1), atol=0.15 * forecast.std.max())
    np.testing.assert_allclose(forecast.std, paths.std(axis=1), rtol=0.08)


def test_refit_reanchors_on_the_bounded_window() -> None:
    config = ForecasterConfig(history=200, refit_every=50, min_fit=40, **SMALL_GRID)
    y = ar1(700, 0.6, 10.0, 1.0, seed=11)
    forecaster = SeriesForecaster(config)
    forecaster.extend(y)
    assert forecaster.stats.selections == 2  # at min_fit, and again when the history filled
    assert forecaster.stats.refits >= 8
    assert forecaster.fit_start >= len(y) - 200 - 50
    assert len(forecaster.window()) == 200
    np.testing.assert_array_equal(forecaster.window(), y[-200:])
    mean, std = fresh_filter_forecast(forecaster, y, 3)
    np.testing.assert_allclose(forecaster.forecast(3).mean, mean, rtol=1e-9)


def test_state_stays_bounded() -> None:
    config = ForecasterConfig(history=128, refit_every=64, min_fit=32, **SMALL_GRID)
    y = ar1(1500, 0.5, 0.0, 1.0, seed=12)
    forecaster = SeriesForecaster(config)
    forecaster.extend(y[:300])
    size_early = len(pickle.dumps(forecaster))
    forecaster.extend(y[300:])
    size_late = len(pickle.dumps(forecaster))
    assert forecaster.observations == 1500
    assert abs(size_late - size_early) <= 200
    assert size_late < 128 * 8 + 4000
    clone = pickle.loads(pickle.dumps(forecaster))
    np.testing.assert_array_equal(clone.forecast(4).mean, forecaster.forecast(4).mean)


def test_a_level_break_restarts_the_model_on_the_data_after_it() -> None:
    config = ForecasterConfig(history=200, refit_every=50, min_fit=40, **SMALL_GRID)
    rng = np.random.default_rng(21)
    trend = 70.0 + 0.2 * np.arange(300) + rng.normal(0.0, 0.15, 300)
    after = ar1(80, 0.5, 40.0, 0.5, seed=22)
    forecaster = SeriesForecaster(config)
    forecaster.extend(trend)
    assert forecaster.stats.breaks == 0 and forecaster.method == ARIMA
    forecaster.extend(after[:3])
    assert forecaster.stats.breaks == 1
    np.testing.assert_array_equal(forecaster.window(), after[:3])
    assert forecaster.method == DRIFT
    assert abs(forecaster.forecast(1).mean[0] - after[2]) < 5.0
    forecaster.extend(after[3:])
    assert forecaster.history_length == 80
    assert forecaster.method == ARIMA
    assert abs(forecaster.forecast(1).mean[0] - 40.0) < 3.0
    assert forecaster.stats.breaks == 1


def test_single_outliers_are_no_break() -> None:
    config = ForecasterConfig(history=200, refit_every=50, min_fit=40, **SMALL_GRID)
    y = ar1(400, 0.5, 10.0, 1.0, seed=23)
    y[[100, 150, 151, 300]] += 50.0
    forecaster = SeriesForecaster(config)
    forecaster.extend(y)
    assert forecaster.stats.breaks == 0
    assert forecaster.history_length == 200


# --- awkward data ------------------------------------------------------------------------------


def test_constant_series_gives_a_flat_zero_width_forecast() -> None:
    forecaster = SeriesForecaster().fit(np.full(200, 7.5))
    forecast = forecaster.forecast(4)
    assert forecast.method == DRIFT and forecaster.spec is None
    np.testing.assert_array_equal(forecast.mean, 7.5)
    np.testing.assert_array_equal(forecast.upper - forecast.lower, 0.0)


def test_no_finite_value_gives_nan_and_no_breach() -> None:
    for history in ([], [math.nan] * 50, [math.inf, -math.inf, None, "x"]):
        forecaster = SeriesForecaster().fit(history)
        forecast = forecaster.forecast(3)
        assert forecast.method == NONE
        assert np.isnan(forecast.mean).all()
        assert breach_forecast(forecast, 0.0) is None


def test_short_series_falls_back_to_drift() -> None:
    forecast = SeriesForecaster().fit([1.0, 2.0, 3.0, 4.0]).forecast(3)
    assert forecast.method == DRIFT
    np.testing.assert_allclose(forecast.mean, [5.0, 6.0, 7.0])
    single = SeriesForecaster().fit([3.0]).forecast(2)
    np.testing.assert_array_equal(single.mean, 3.0)
    np.testing.assert_array_equal(single.std, 0.0)


def test_drift_forecast_matches_fpp() -> None:
    values = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    mean, std = drift_forecast(values, 2)
    sigma = np.diff(values).std(ddof=1)
    np.testing.assert_allclose(mean, [4.75, 5.5])
    np.testing.assert_allclose(std, sigma * np.sqrt([1 * (1 + 1 / 4), 2 * (1 + 2 / 4)]))


def test_missing_values_are_skipped() -> None:
    y = ar1(500, 0.6, 30.0, 1.0, seed=13)
    y[np.random.default_rng(13).random(500) < 0.1] = np.nan
    forecaster = SeriesForecaster(ForecasterConfig(**SMALL_GRID)).fit(y)
    assert forecaster.method == ARIMA
    for value in (math.nan, math.inf, None, 31.0):
        forecaster.update(value)
    forecast = forecaster.forecast(3)
    assert np.isfinite(forecast.mean).all() and np.isfinite(forecast.std).all()


def test_a_series_that_starts_flat_gets_a_model_later() -> None:
    config = ForecasterConfig(history=256, refit_every=64, min_fit=32, **SMALL_GRID)
    forecaster = SeriesForecaster(config)
    forecaster.extend(np.full(40, 1.0))
    assert forecaster.method == DRIFT
    forecaster.extend(ar1(200, 0.5, 1.0, 0.2, seed=14))
    assert forecaster.method == ARIMA


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="ForecasterConfig"):
        ForecasterConfig(history=10)
    with pytest.raises(ValueError, match="level"):
        ForecasterConfig(level=1.0)
    with pytest.raises(ValueError, match="horizon"):
        SeriesForecaster().forecast(0)
    with pytest.raises(ValueError, match="same length"):
        SeriesForecaster().fit([1.0, 2.0], times=[1.0])


# --- breaches ----------------------------------------------------------------------------------


def made_forecast(mean: list[float], std: list[float], times: list[float] | None = None):
    mean_a, std_a = np.array(mean), np.array(std)
    return Forecast(
        mean=mean_a,
        std=std_a,
        lower=mean_a - 2 * std_a,
        upper=mean_a + 2 * std_a,
        level=0.9545,
        method=ARIMA,
        times=None if times is None else np.array(times),
    )


def test_breach_forecast_takes_the_first_interval_crossing() -> None:
    forecast = made_forecast([80, 85, 90, 95, 100], [1, 1, 2, 2, 2], [60, 120, 180, 240, 300])
    above = breach_forecast(forecast, 93.0)
    assert above is not None
    assert (above.step, above.time, above.value, above.bound) == (3, 180.0, 90.0, 94.0)
    assert 0.0 < above.probability < 0.5 < above.max_probability
    assert breach_forecast(forecast, 200.0) is None
    below = breach_forecast(forecast, 79.0, "below")
    assert below is not None and below.step == 1 and below.time == 60.0
    exact = breach_forecast(made_forecast([5.0, 6.0], [0.0, 0.0]), 6.0)
    assert exact is not None and exact.step == 2 and exact.probability == 1.0
    with pytest.raises(ValueError, match="direction"):
        breach_forecast(forecast, 1.0, "sideways")


def test_breach_on_a_linear_trend_comes_at_the_right_step() -> None:
    rng = np.random.default_rng(15)
    t = np.arange(300)
    y = 10.0 + 0.5 * t + rng.normal(0.0, 0.2, len(t))
    times = 1_700_000_000.0 + 60.0 * t
    forecaster = SeriesForecaster(ForecasterConfig(**SMALL_GRID)).fit(y, times)
    forecast = forecaster.forecast(40)
    limit = 10.0 + 0.5 * (299 + 20)  # the trend reaches it 20 steps after the last point
    breach = breach_forecast(forecast, limit)
    assert breach is not None
    assert 16 <= breach.step <= 20
    assert breach.time == times[-1] + 60.0 * breach.step
    assert breach.value == pytest.approx(limit, abs=0.5 * 5)
    falling = SeriesForecaster(ForecasterConfig(**SMALL_GRID)).fit(-y).forecast(40)
    down = breach_forecast(falling, -limit, "below")
    assert down is not None and 16 <= down.step <= 20
