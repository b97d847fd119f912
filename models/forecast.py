"""Forecast-residual member: ARIMA one-step forecasts of the window mean, robust z-score fallback.

statsmodels fits the ARIMA parameters at each refit (~10 ms for 256 points, so only every
``forecast_refit_every`` windows). Between refits the one-step forecast is computed here from the
fitted coefficients, the last ``p + d`` means and the last ``q`` innovations: a few multiplications
per window. The innovations are the member's own one-step residuals, so the residuals used to
calibrate (in-sample, at refit) and the ones scored online come from the same recursion.

When ARIMA cannot be used (too little or flat history, a statsmodels error, non-finite
parameters) the member falls back to a robust z-score of the mean against the median and MAD of
the history; it never raises.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter
from statsmodels.tsa.arima.model import ARIMA
from threadpoolctl import threadpool_limits

from models.calibration import TailCalibrator
from models.features import MEAN, FeatureRing

log = logging.getLogger(__name__)

ArimaOrder = tuple[int, int, int]

MAD_TO_SIGMA = 1.4826
MEAN_ABS_DEV_TO_SIGMA = 1.2533
FLOAT32_EPS = float(np.finfo(np.float32).eps)
FLOAT32_TINY = float(np.finfo(np.float32).tiny)


@dataclass(frozen=True, slots=True)
class ArimaParams:
    """ARIMA(p, d, q) coefficients in the series' own units.

    ``mean`` is the mean of the ``d``-times differenced series (0 when ``d > 0``: no drift).
    """

    order: ArimaOrder
    mean: float
    ar: tuple[float, ...]
    ma: tuple[float, ...]

    @property
    def lags_needed(self) -> int:
        return self.order[0] + self.order[1]


def minimum_fit_size(order: ArimaOrder) -> int:
    p, d, q = order
    return max(16, 3 * (p + d + q) + d + 1)


def resolution(values: np.ndarray) -> float:
    """The smallest meaningful difference between stored (float32) values of this size."""
    biggest = float(np.max(np.abs(values))) if values.size else 0.0
    return max(4.0 * FLOAT32_EPS * biggest, FLOAT32_TINY)


def single_threaded_blas() -> threadpool_limits:
    """BLAS threads only slow down the Kalman filter's tiny matrices (3x slower on a busy host)."""
    return threadpool_limits(limits=1, user_api="blas")


def fit_arima(values: np.ndarray, order: ArimaOrder) -> ArimaParams | None:
    """Fit ARIMA on ``values`` with statsmodels; ``None`` instead of any failure or warning storm.

    The series is standardised before fitting (the optimiser behaves on unit-scale data) and
    the constant is mapped back to the original units afterwards.
    """
    p, d, q = order
    if values.size < minimum_fit_size(order) or not np.isfinite(values).all():
        return None
    with np.errstate(all="ignore"):
        center = float(np.median(values))
        scale = float(np.std(values))
    if not math.isfinite(scale) or scale <= resolution(values):
        return None
    trend = "c" if d == 0 else "n"
    try:
        with single_threaded_blas(), warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            standardised = (values - center) / scale
            model = ARIMA(standardised, order=order, trend=trend, concentrate_scale=True)
            result = model.fit(cov_type="none")
        fitted = dict(zip(model.param_names, map(float, result.params), strict=True))
    except Exception as exc:  # statsmodels raises many types (LinAlgError, ValueError, ...)
        log.debug("ARIMA%s fit failed: %s", order, exc)
        return None
    ar = tuple(fitted.get(f"ar.L{i}", 0.0) for i in range(1, p + 1))
    ma = tuple(fitted.get(f"ma.L{j}", 0.0) for j in range(1, q + 1))
    mean = center + scale * fitted.get("const", 0.0) if d == 0 else 0.0
    if not all(math.isfinite(v) for v in (*ar, *ma, mean)):
        return None
    return ArimaParams(order=order, mean=mean, ar=ar, ma=ma)


def arma_residuals(params: ArimaParams, values: np.ndarray) -> np.ndarray:
    """One-step residuals of ``values`` (length ``n - d``), pre-sample terms taken as zero."""
    d = params.order[1]
    y = np.diff(values, n=d) - params.mean
    return np.asarray(lfilter(np.r_[1.0, -np.asarray(params.ar)], np.r_[1.0, params.ma], y))


def burn_in(params: ArimaParams, n_residuals: int) -> int:
    """Leading residuals to skip: the zero pre-sample start distorts the first ones."""
    p, _, q = params.order
    return min(p + 8 * q, n_residuals // 2)


def one_step_forecast(params: ArimaParams, recent: np.ndarray, innovations: np.ndarray) -> float:
    """Forecast of the next value from the last ``p + d`` values and the last ``q`` innovations.

    ``recent`` and ``innovations`` are oldest first; ``innovations`` has exactly ``q`` entries.
    """
    p, d, q = params.order
    y = np.diff(recent, n=d)[-p:] - params.mean if p else np.empty(0)
    forecast = params.mean
    forecast += float(np.dot(params.ar, y[::-1])) if p else 0.0
    forecast += float(np.dot(params.ma, innovations[::-1])) if q else 0.0
    for k in range(1, d + 1):
        forecast -= math.comb(d, k) * (-1) ** k * float(recent[-k])
    return forecast


@dataclass(frozen=True, slots=True)
class RobustLevel:
    """Median and robust sigma of a history: the fallback "forecast" and its two-sided tail."""

    location: float
    scale: float

    @classmethod
    def fit(cls, values: np.ndarray, min_scale: float) -> RobustLevel:
        if values.size == 0:
            return cls(0.0, max(min_scale, FLOAT32_TINY))
        location = float(np.median(values))
        deviation = np.abs(values - location)
        scale = MAD_TO_SIGMA * float(np.median(deviation))
        if scale <= 0.0:
            scale = MEAN_ABS_DEV_TO_SIGMA * float(np.mean(deviation))
        return cls(location, max(scale, min_scale))

    def tail_probability(self, value: float) -> float:
        z = abs(value - self.location) / self.scale
        return math.erfc(z / math.sqrt(2.0))


class ForecastMember:
    """Ensemble member scoring how far a window's mean is from its one-step forecast."""

    def __init__(
        self,
        name: str,
        order: ArimaOrder,
        window: int,
        refit_every: int,
        tail_fraction: float,
    ) -> None:
        self.name = name
        self.order = order
        self.window = window
        self.refit_every = refit_every
        self.tail_fraction = tail_fraction
        self.params: ArimaParams | None = None
        self.fallback: RobustLevel | None = None
        self._calibrator: TailCalibrator | None = None
        self._innovations = np.zeros(order[2])

    @property
    def uses_arima(self) -> bool:
        return self.params is not None

    @property
    def innovations(self) -> np.ndarray:
        """The last ``q`` one-step residuals, oldest first (a copy)."""
        return self._innovations.copy()

    def refit(self, history: FeatureRing) -> None:
        values = history.column(MEAN, self.window)
        floor = resolution(values)
        self.params = fit_arima(values, self.order)
        if self.params is None:
            self.fallback = RobustLevel.fit(values, floor)
            self._calibrator = None
            self._innovations = np.zeros(self.order[2])
            return
        residuals = arma_residuals(self.params, values)
        start = burn_in(self.params, residuals.size)
        self._calibrator = TailCalibrator.fit(np.abs(residuals[start:]), floor, self.tail_fraction)
        self._innovations = residuals[residuals.size - self.order[2] :].copy()
        self.fallback = None

    def residual(self, features: np.ndarray, history: FeatureRing) -> float:
        value = float(features[MEAN])
        if self.params is not None:
            recent = history.column(MEAN, self.params.lags_needed)
            return value - one_step_forecast(self.params, recent, self._innovations)
        if self.fallback is not None:
            return value - self.fallback.location
        return 0.0

    def tail_probability(self, features: np.ndarray, history: FeatureRing) -> float:
        if self.params is not None and self._calibrator is not None:
            return self._calibrator.tail_probability(abs(self.residual(features, history)))
        if self.fallback is not None:
            return self.fallback.tail_probability(float(features[MEAN]))
        return 1.0

    def observe(self, features: np.ndarray, history: FeatureRing) -> None:
        """Advance the innovations by the window about to be learned (before it is stored)."""
        if self.params is None or self.order[2] == 0:
            return
        innovation = self.residual(features, history)
        self._innovations = np.r_[self._innovations[1:], innovation]
