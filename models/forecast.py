"""Forecast-residual member: ARIMA(1, 1, 1) one-step forecasts of the window mean, many series
at once, with a robust z-score fallback.

The coefficients are estimated by Hannan-Rissanen (a long autoregression by Yule-Walker gives
innovation estimates; one least-squares regression on the lagged difference and lagged
innovation gives AR and MA coefficients). It is linear algebra only, so the fits of every series
due at the same window run as one batch: about 100x cheaper than statsmodels' maximum-likelihood
ARIMA per series, which capped the dataflow at 6,500 points/s. ``tests/unit/models/
test_forecast.py`` checks the coefficients against ``statsmodels.tsa.arima.estimators.
hannan_rissanen`` (without its optional bias-correction step, which is left out here).

The model is on the first difference ``d_t = m_t - m_{t-1}`` of the window means, with drift
``mu`` (the mean difference)::

    d_t - mu = phi (d_{t-1} - mu) + e_t + theta e_{t-1}

so the forecast of the next mean is ``m_t + mu + phi (d_t - mu) + theta e_t``. The innovations
``e`` are the member's own one-step residuals; the in-sample ones calibrate the tail at each refit
and the online ones continue the same recursion.

When ARIMA cannot be used (too little or flat history, a singular regression) the member falls
back to a robust z-score of the mean against the median and MAD of the history.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
from scipy.special import erfc

MIN_FIT_VALUES = 16
BURN_IN = 9
"""Leading in-sample residuals left out of calibration (the zero pre-sample start distorts them)."""
MAX_COEFFICIENT = 0.99
"""|phi| and |theta| are clipped below 1: a stationary, invertible model whose residual
recursion cannot blow up."""
MAD_TO_SIGMA = 1.4826
MEAN_ABS_DEV_TO_SIGMA = 1.2533
FLOAT32_EPS = float(np.finfo(np.float32).eps)
FLOAT32_TINY = float(np.finfo(np.float32).tiny)


def resolution(values: np.ndarray) -> np.ndarray:
    """Per row, the smallest meaningful difference between stored (float32) values of this size."""
    biggest = np.abs(values).max(axis=1) if values.shape[1] else np.zeros(len(values))
    return np.maximum(4.0 * FLOAT32_EPS * biggest, FLOAT32_TINY)


def long_ar_order(n_differences: int) -> int:
    """statsmodels' default order of the initial long autoregression."""
    return max(int(math.floor(math.log(n_differences) ** 2)), 2)


def yule_walker(x: np.ndarray, order: int) -> np.ndarray:
    """AR(``order``) coefficients per row of the demeaned ``x`` (Yule-Walker, "mle" divisor)."""
    n = x.shape[1]
    autocov = np.stack([(x[:, k:] * x[:, : n - k]).sum(axis=1) / n for k in range(order + 1)], 1)
    lags = np.abs(np.subtract.outer(np.arange(order), np.arange(order)))
    toeplitz = autocov[:, lags]
    toeplitz[:, np.arange(order), np.arange(order)] *= 1.0 + 1e-12
    # Constant rows (flat series, exact counters) are common: give them an identity system and
    # NaN coefficients up front instead of making the whole batch fail.
    constant = ~(autocov[:, 0] > 0.0)
    toeplitz[constant] = np.eye(order)
    try:
        ar = np.linalg.solve(toeplitz, autocov[:, 1:, None])[:, :, 0]
        ar[constant] = np.nan
        return ar
    except np.linalg.LinAlgError:
        # A singular row (a constant x) must not spoil the others: solve row by row, NaN there.
        ar = np.full((len(x), order), np.nan)
        for row in range(len(x)):
            with contextlib.suppress(np.linalg.LinAlgError):
                ar[row] = np.linalg.solve(toeplitz[row], autocov[row, 1:])
        return ar


def hannan_rissanen(differences: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mu, phi, theta)`` per row of ``differences`` (series, n); NaN where no fit exists."""
    n = differences.shape[1]
    mu = differences.mean(axis=1)
    x = differences - mu[:, None]
    m = long_ar_order(n)
    if n - m < 3:
        nan = np.full(len(x), np.nan)
        return mu, nan, nan
    with np.errstate(all="ignore"):
        try:
            ar = yule_walker(x, m)
        except np.linalg.LinAlgError:
            nan = np.full(len(x), np.nan)
            return mu, nan, nan
        innovations = x[:, m:].copy()
        for k in range(1, m + 1):
            innovations -= ar[:, k - 1, None] * x[:, m - k : n - k]
        y, lagged, lagged_innovation = x[:, m + 1 :], x[:, m : n - 1], innovations[:, :-1]
        a11 = (lagged * lagged).sum(axis=1)
        a12 = (lagged * lagged_innovation).sum(axis=1)
        a22 = (lagged_innovation * lagged_innovation).sum(axis=1)
        b1 = (lagged * y).sum(axis=1)
        b2 = (lagged_innovation * y).sum(axis=1)
        det = a11 * a22 - a12 * a12
        singular = ~(np.abs(det) > 1e-12 * np.maximum(a11 * a22, TINY_SQUARE))
        phi = np.where(singular, np.nan, (a22 * b1 - a12 * b2) / det)
        theta = np.where(singular, np.nan, (a11 * b2 - a12 * b1) / det)
    return mu, phi, theta


TINY_SQUARE = 1e-300


def arma_residuals(
    differences: np.ndarray, mu: np.ndarray, phi: np.ndarray, theta: np.ndarray
) -> np.ndarray:
    """One-step residuals of ``differences`` per row, pre-sample terms taken as zero."""
    x = differences - mu[:, None]
    residuals = np.empty_like(x)
    previous_x = np.zeros(len(x))
    previous_e = np.zeros(len(x))
    for t in range(x.shape[1]):
        residuals[:, t] = x[:, t] - phi * previous_x - theta * previous_e
        previous_x, previous_e = x[:, t], residuals[:, t]
    return residuals


def robust_level(values: np.ndarray, min_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and robust sigma per row: the fallback "forecast" and its scale."""
    location = np.median(values, axis=1)
    deviation = np.abs(values - location[:, None])
    scale = MAD_TO_SIGMA * np.median(deviation, axis=1)
    scale = np.where(scale > 0.0, scale, MEAN_ABS_DEV_TO_SIGMA * deviation.mean(axis=1))
    return location, np.maximum(scale, min_scale)


def two_sided_normal_tail(z: np.ndarray) -> np.ndarray:
    return erfc(np.abs(z) / math.sqrt(2.0))
