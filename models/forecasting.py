"""Per-series ARIMA forecasts (statsmodels SARIMAX) with prediction intervals and breach times.

``SeriesForecaster`` holds one series. Its life:

1. **Order selection, once**, when it first has ``min_fit`` finite values (or on ``fit(history)``)
   and once more when its bounded history first fills up, if the first selection saw less:

   - *season* ``s``: the period the caller declares (``ForecasterConfig.period``), else the lag of
     the highest autocorrelation peak of the linearly detrended history up to ``max_period``
     (``detect_period``). Three *seasonal treatments* compete: none; a seasonal difference
     ``y_t - y_{t-s}`` (SARIMA ``(0, 1, 0)_s``, done before the state space and integrated back
     exactly in the forecast); or Fourier terms (a regression on ``k`` harmonics, ``k`` by BIC,
     estimated by least squares on each fit window and subtracted). A seasonal polynomial inside
     SARIMAX would put ``s`` lags into the state vector (288 for a daily cycle of 5-minute
     windows) and make every filter step and fit two orders slower.
   - *differencing* ``d`` in 0..``max_d``: by the KPSS test on the seasonally treated series (as
     ``auto.arima`` does).
   - *p, q* in 0..``max_p`` x 0..``max_q``: the treatment whose ARIMA(1, d, 1) has the lowest
     AIC, then the lowest AIC over the p, q grid of that treatment, with an intercept
     (``d = 0``) or a drift (``d = 1`` or a seasonal difference); then the winner without that
     drift.

   The AICs compare the same thing whatever the treatment, differencing and scaling: the
   log-likelihood of the window's observations after its first ``s + 1`` (each given the earlier
   ones), in the data's own units.

2. **Refits** every ``refit_every`` observations on the last ``history`` values (same order,
   Fourier and ARIMA coefficients re-estimated, the optimiser started at the previous
   parameters). A refit re-anchors the state: the fitted model's filter over the window gives the
   predicted state and covariance, nothing older is kept.

3. **Updates** between refits are one Kalman-filter step on the fitted model's own state-space
   matrices (``SARIMAX.ssm``), with the parameters fixed: exactly what statsmodels'
   ``results.extend``/``append(refit=False)`` compute, at a fraction of the cost (those build a
   new model and results object per observation; ``bench/forecast_accuracy.py`` measures both),
   and the state stays bounded: the history ring, the matrices, one state mean and covariance.

Values are standardised per fit window (seasonally treated, then centred and divided by the
spread of the first differences) so that the optimiser sees unit-scale data whatever the metric's
units. Observations are assumed evenly spaced: a missing window should be passed as NaN (it is
skipped by the filter and keeps the seasonal phase).

**Outliers and breaks**: an observation more than ``BREAK_SIGMAS`` standard deviations off its
one-step forecast is an outlier: the filter treats it as missing (one spike does not drag the
state, and the forecasts after it, along). ``BREAK_RUN`` outliers in a row are a structural
break: they restart the model from the first of them (a fitted trend with an
MA coefficient near -1 would otherwise hardly move after a level shift); until ``min_fit``
observations follow, the forecast is the drift fallback over the observations since the break.

Data never raises: NaN and infinite values are missing observations; when there is no usable
ARIMA (fewer than ``min_fit`` finite values, a constant history, a failed fit) the forecast is
the random walk with drift (``method="drift"``; a constant series gets a zero-width interval),
and with no finite value at all the forecast is NaN (``method="none"``).

Fits run with BLAS limited to one thread (``threadpoolctl``): the state-space matrices are tiny,
and OpenBLAS's thread pool made every fit 4-10x slower on two cores. Pure logic, no I/O.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from scipy.special import ndtr, ndtri
from threadpoolctl import ThreadpoolController

DRIFT, ARIMA, NONE = "drift", "arima", "none"
Direction = Literal["above", "below"]
STEP_SAMPLES = 16
"""How many recent timestamp differences give the step of the forecast times (their median)."""
BREAK_SIGMAS = 6.0
BREAK_RUN = 3
"""``BREAK_RUN`` observations in a row this many standard deviations off the one-step forecast
are a structural break (a disk cleaned up, a service redeployed): the history before them is
forgotten and the order selected afresh once ``min_fit`` observations follow the break."""

_blas: ThreadpoolController | None = None


def one_blas_thread():
    """A context limiting BLAS to one thread (the controller is made once, after statsmodels has
    loaded scipy's BLAS; entering it costs microseconds)."""
    global _blas
    if _blas is None:
        import statsmodels.tsa.statespace.sarimax  # noqa: F401  (loads scipy's BLAS)

        _blas = ThreadpoolController()
    return _blas.limit(limits=1, user_api="blas")


@dataclass(frozen=True, slots=True)
class ForecasterConfig:
    history: int = 1024
    """Bounded fit window (observations); also bounds the state (one float64 each)."""
    refit_every: int = 256
    min_fit: int = 48
    """Fewer finite values than this: the drift fallback."""
    max_p: int = 2
    max_d: int = 1
    max_q: int = 2
    period: int | None = None
    """Declared seasonal period in observations; ``None`` detects it, ``0`` or ``1`` means none."""
    max_period: int | None = None
    """Longest period ``detect_period`` considers; ``None`` = half the history (two cycles)."""
    max_harmonics: int = 8
    level: float = 0.95
    """Default prediction-interval level."""
    maxiter: int = 50
    """Optimiser iterations per order-selection fit (statsmodels' L-BFGS)."""
    refit_maxiter: int = 20
    """Optimiser iterations per refit; it starts at the previous parameters."""

    def __post_init__(self) -> None:
        problems = []
        if self.min_fit < 8:
            problems.append("min_fit must be >= 8")
        if self.history < self.min_fit:
            problems.append("history must be >= min_fit")
        if self.maxiter < 1 or self.refit_maxiter < 1:
            problems.append("maxiter and refit_maxiter must be >= 1")
        if self.refit_every < 1:
            problems.append("refit_every must be >= 1")
        if min(self.max_p, self.max_d, self.max_q) < 0 or self.max_d > 1:
            problems.append("max_p and max_q must be >= 0 and max_d in 0..1")
        if self.period is not None and self.period < 0:
            problems.append("period must be >= 0")
        if self.max_harmonics < 1:
            problems.append("max_harmonics must be >= 1")
        if not 0.0 < self.level < 1.0:
            problems.append("level must be in (0, 1)")
        if problems:
            raise ValueError("invalid ForecasterConfig: " + "; ".join(problems))

    @property
    def period_bound(self) -> int:
        return self.max_period if self.max_period is not None else self.history // 2


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What order selection chose: ARIMA(p, d, q) with intercept/drift on the series after its
    seasonal treatment (``seasonal_difference`` or ``harmonics`` Fourier terms of ``period``)."""

    p: int
    d: int
    q: int
    trend: bool
    period: int = 0
    harmonics: int = 0
    seasonal_difference: bool = False

    @property
    def order(self) -> tuple[int, int, int]:
        return (self.p, self.d, self.q)

    @property
    def treatment(self) -> str:
        if self.seasonal_difference:
            return "difference"
        return "fourier" if self.harmonics else "none"

    def __str__(self) -> str:
        text = f"ARIMA({self.p},{self.d},{self.q})"
        if self.seasonal_difference:
            text += f"(0,1,0)[{self.period}]"
        if self.trend:
            text += " + drift" if self.d or self.seasonal_difference else " + intercept"
        if self.harmonics:
            text += f" + {self.harmonics} harmonics of period {self.period}"
        return text


@dataclass(frozen=True, slots=True, eq=False)
class Forecast:
    """``horizon`` steps ahead of the last observation: step ``k`` is ``mean[k - 1]``.

    ``times`` are the predicted times (last time + k * step) when the observations had times.
    """

    mean: np.ndarray
    std: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float
    method: str
    times: np.ndarray | None = None

    @property
    def horizon(self) -> int:
        return len(self.mean)


@dataclass(frozen=True, slots=True)
class Breach:
    """The first step at which the forecast's interval reaches a limit.

    ``bound`` is the interval's upper (``above``) or lower (``below``) bound there, ``value`` the
    forecast mean; ``probability`` the forecast's probability of being past the limit at that
    step and ``max_probability`` its highest over the horizon (Gaussian predictive).
    """

    step: int
    time: float | None
    limit: float
    direction: Direction
    value: float
    bound: float
    probability: float
    max_probability: float


def breach_forecast(
    forecast: Forecast, limit: float, direction: Direction = "above"
) -> Breach | None:
    """The first step whose interval bound is at or past ``limit`` (``above``: upper >= limit,
    ``below``: lower <= limit), or None."""
    if direction not in ("above", "below"):
        raise ValueError(f"direction must be 'above' or 'below', not {direction!r}")
    bound = forecast.upper if direction == "above" else forecast.lower
    with np.errstate(invalid="ignore"):
        crossed = bound >= limit if direction == "above" else bound <= limit
    if not crossed.any():
        return None
    k = int(np.argmax(crossed))
    probabilities = exceedance_probabilities(forecast, limit, direction)
    time_k = None if forecast.times is None else float(forecast.times[k])
    return Breach(
        step=k + 1,
        time=time_k,
        limit=float(limit),
        direction=direction,
        value=float(forecast.mean[k]),
        bound=float(bound[k]),
        probability=float(probabilities[k]),
        max_probability=float(np.nanmax(probabilities)),
    )


def exceedance_probabilities(forecast: Forecast, limit: float, direction: Direction) -> np.ndarray:
    """Per step, the Gaussian predictive probability of being at or past ``limit``."""
    sign = 1.0 if direction == "above" else -1.0
    margin = sign * (forecast.mean - limit)  # > 0: past the limit
    with np.errstate(divide="ignore", invalid="ignore"):
        probability = ndtr(margin / forecast.std)
        exact = np.where(margin >= 0.0, 1.0, 0.0)
    return np.where(forecast.std > 0.0, probability, np.where(np.isnan(margin), np.nan, exact))


# --- pieces of order selection ----------------------------------------------------------------


def interpolate_missing(values: np.ndarray) -> np.ndarray:
    """``values`` with NaN filled linearly between finite neighbours (constant at the ends)."""
    finite = np.isfinite(values)
    if finite.all() or not finite.any():
        return values.copy()
    positions = np.arange(len(values))
    return np.interp(positions, positions[finite], values[finite])


def detect_period(
    values: np.ndarray, max_period: int, min_correlation: float = 0.3, min_prominence: float = 0.1
) -> int | None:
    """The seasonal period: the lag (2..``max_period``, at most half the finite length) of the
    highest local peak of the autocorrelation of the linearly detrended series, if that peak is
    at least ``min_correlation`` and rises ``min_prominence`` above the lowest autocorrelation
    at a shorter lag; else None."""
    from statsmodels.tsa.stattools import acf

    x = interpolate_missing(np.asarray(values, dtype=float))
    x = x[np.isfinite(x)]
    bound = min(max_period, len(x) // 2)
    if bound < 2:
        return None
    t = np.arange(len(x), dtype=float)
    x = x - np.polyval(np.polyfit(t, x, 1), t)
    if not np.std(x) > 1e-12 * max(1.0, float(np.max(np.abs(x)))):
        return None
    r = acf(x, nlags=bound, fft=True)
    best, best_r = None, min_correlation
    for lag in range(2, bound + 1):
        right = r[lag + 1] if lag < bound else -np.inf
        peak = r[lag] >= r[lag - 1] and r[lag] >= right
        if peak and r[lag] >= best_r and r[lag] - r[1:lag].min() >= min_prominence:
            best, best_r = lag, r[lag]
    return best


def fourier_terms(index: np.ndarray, period: int, harmonics: int) -> np.ndarray:
    """Columns sin/cos(2 pi k t / period), k = 1..harmonics (a sine that is always zero is left
    out), at observation numbers ``index``."""
    if harmonics <= 0 or period < 2:
        return np.zeros((len(index), 0))
    phase = 2.0 * np.pi * (np.asarray(index) % period) / period
    columns = []
    for k in range(1, harmonics + 1):
        if 2 * k != period:
            columns.append(np.sin(k * phase))
        columns.append(np.cos(k * phase))
    return np.column_stack(columns)


def seasonal_fit(
    values: np.ndarray, index: np.ndarray, period: int, harmonics: int
) -> tuple[np.ndarray, float]:
    """Least-squares Fourier coefficients of ``values`` (with intercept and linear trend) and the
    regression's BIC (Gaussian, up to a constant)."""
    finite = np.isfinite(values)
    x = fourier_terms(index[finite], period, harmonics)
    t = index[finite].astype(float)
    design = np.column_stack([np.ones(len(t)), t - t.mean(), x])
    coefficients, *_ = np.linalg.lstsq(design, values[finite], rcond=None)
    residual = values[finite] - design @ coefficients
    n = int(finite.sum())
    variance = max(float(residual @ residual) / n, 1e-300)
    return coefficients[2:], n * math.log(variance) + math.log(n) * design.shape[1]


def select_harmonics(
    values: np.ndarray, index: np.ndarray, period: int, max_harmonics: int
) -> tuple[int, np.ndarray]:
    """The number of harmonics (1..``max_harmonics``, at most period / 2) with the lowest BIC
    (the regression errors are autocorrelated, so AIC would take too many)."""
    coefficients, best_bic = seasonal_fit(values, index, period, 1)
    best = (1, coefficients)
    for k in range(2, min(max_harmonics, period // 2) + 1):
        coefficients, bic = seasonal_fit(values, index, period, k)
        if bic < best_bic:
            best, best_bic = (k, coefficients), bic
    return best


def kpss_differences(values: np.ndarray, max_d: int, alpha: float = 0.05) -> int:
    """0 if the KPSS test does not reject level stationarity at ``alpha`` (or ``max_d`` is 0),
    else 1."""
    from statsmodels.tsa.stattools import kpss

    x = interpolate_missing(values)
    x = x[np.isfinite(x)]
    if max_d == 0 or len(x) < 8 or not np.ptp(x) > 0.0:
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            p_value = kpss(x, regression="c", nlags="auto")[1]
        except (ValueError, np.linalg.LinAlgError, ZeroDivisionError):
            return 0
    return 1 if p_value < alpha else 0


# --- the fitted state -------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Filter:
    """A fitted SARIMAX's time-invariant state space and its current predicted state."""

    design: np.ndarray  # (m,)
    transition: np.ndarray  # (m, m)
    intercept: np.ndarray  # (m,) state intercept (the drift/constant)
    disturbance: np.ndarray  # (m, m) R Q R'
    obs_variance: float
    state: np.ndarray  # a_{t+1|t}
    covariance: np.ndarray  # P_{t+1|t}

    def step(self, z: float) -> None:
        """One step of the conventional Kalman filter, as statsmodels runs it (NaN: missing)."""
        a, p = self.state, self.covariance
        if math.isfinite(z):
            pz = p @ self.design
            f = float(self.design @ pz) + self.obs_variance
            if f > 0.0:
                gain = pz / f
                a = a + gain * (z - float(self.design @ a))
                p = p - np.outer(gain, pz)
        self.state = self.transition @ a + self.intercept
        p = self.transition @ p @ self.transition.T + self.disturbance
        self.covariance = 0.5 * (p + p.T)

    def forecast(self, horizon: int, covariances: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Means of the next ``horizon`` observations and their forecast-error variances, or
        (``covariances``) the full error covariance matrix: for ``i < j``,
        ``cov(e_i, e_j) = Z T^(j-i) P_i Z'``."""
        mean = np.empty(horizon)
        cov = np.zeros((horizon, horizon)) if covariances else np.empty(horizon)
        a, p = self.state, self.covariance
        for i in range(horizon):
            mean[i] = self.design @ a
            pz = p @ self.design
            variance = float(self.design @ pz) + self.obs_variance
            if covariances:
                cov[i, i] = variance
                v = pz
                for j in range(i + 1, horizon):
                    v = self.transition @ v
                    cov[i, j] = cov[j, i] = self.design @ v
            else:
                cov[i] = variance
            a = self.transition @ a + self.intercept
            p = self.transition @ p @ self.transition.T + self.disturbance
        return mean, cov

    def one_step_error(self, z: float) -> tuple[float, float]:
        """The error of the one-step forecast of ``z`` and that forecast's variance."""
        pz = self.covariance @ self.design
        return z - float(self.design @ self.state), float(self.design @ pz) + self.obs_variance

    def healthy(self) -> bool:
        return bool(np.isfinite(self.state).all() and np.isfinite(self.covariance).all())


@dataclass(slots=True, eq=False)
class _Fit:
    spec: ModelSpec
    params: np.ndarray
    location: float
    scale: float
    seasonal: np.ndarray  # Fourier coefficients (empty without)
    filter: _Filter
    start: int  # observation number of the window's first value
    aic: float


@dataclass(slots=True)
class FitStats:
    """Counts and timings (seconds) of the forecaster's fits."""

    selection_seconds: float = 0.0
    selections: int = 0
    fits: int = 0
    """SARIMAX maximum-likelihood fits, selection grids included."""
    refits: int = 0
    refit_seconds: float = 0.0
    breaks: int = 0
    """Structural breaks that restarted the model (see ``BREAK_SIGMAS``)."""
    last_error: str | None = field(default=None)


class SeriesForecaster:
    """Online ARIMA forecaster of one series; see the module docstring.

    ``update(value, time)`` one observation (refits when due), ``fit(values, times)`` a whole
    history at once (selects the order), ``forecast(h)`` the next ``h`` steps. Times are plain
    numbers (e.g. epoch seconds); the forecast's times continue them at their median step.
    """

    def __init__(self, config: ForecasterConfig | None = None) -> None:
        self.config = config or ForecasterConfig()
        self.stats = FitStats()
        self._reset()

    def _reset(self) -> None:
        self._values = np.full(self.config.history, np.nan)
        self._count = 0  # observations seen (the next one gets this number)
        self._times_last: float | None = None
        self._steps = np.full(STEP_SAMPLES, np.nan)
        self._step_count = 0
        self._fit: _Fit | None = None
        self._selected_on = 0
        self._period = 0
        self._next_fit_at = self.config.min_fit
        self._origin = 0  # the first observation the history holds since the last break
        self._off_run = 0  # observations in a row far off their one-step forecast

    # --- observations ---------------------------------------------------------------------

    @property
    def observations(self) -> int:
        return self._count

    @property
    def spec(self) -> ModelSpec | None:
        """The fitted model (None while the forecast is the drift fallback)."""
        return None if self._fit is None else self._fit.spec

    @property
    def period(self) -> int:
        """The season order selection worked with (declared or detected; 0 = none), whichever
        seasonal treatment won."""
        return self._period

    @property
    def method(self) -> str:
        if self._fit is not None:
            return ARIMA
        return DRIFT if np.isfinite(self.window()).any() else NONE

    @property
    def params(self) -> np.ndarray | None:
        """The SARIMAX parameters of the current fit (on the standardised scale)."""
        return None if self._fit is None else self._fit.params.copy()

    @property
    def fit_start(self) -> int | None:
        """The observation number of the current fit window's first value."""
        return None if self._fit is None else self._fit.start

    @property
    def history_length(self) -> int:
        """Observations in the history: at most ``history``, fewer after a start or a break."""
        return min(self._count - self._origin, self.config.history)

    def window(self) -> np.ndarray:
        """The stored history, oldest first (at most ``history`` values, NaN = missing)."""
        n = self.history_length
        head = self._count % self.config.history
        if self._count < self.config.history:
            return self._values[self._count - n : self._count].copy()
        ring = np.concatenate([self._values[head:], self._values[:head]])
        return ring[len(ring) - n :]

    def update(self, value: float, time: float | None = None) -> None:
        """Learn one observation (NaN/inf = missing); refit or select when due."""
        self._push(_as_float(value), time)
        fit = self._fit
        if fit is not None:
            z = self._latest_z(fit)
            if self._is_far_off(fit.filter, z):
                if self._off_run >= BREAK_RUN:
                    self._restart_at(self._count - BREAK_RUN)
                else:
                    fit.filter.step(math.nan)  # an outlier, until a run of them is a break
            else:
                fit.filter.step(z)
                if not fit.filter.healthy():
                    self._fit = None
                    self._next_fit_at = self._count
        if self._count >= self._next_fit_at:
            self._refit()

    def _is_far_off(self, fitted: _Filter, z: float) -> bool:
        """Whether ``z`` lies more than ``BREAK_SIGMAS`` off its one-step forecast (counted)."""
        if not math.isfinite(z):
            return False
        error, variance = fitted.one_step_error(z)
        far = variance > 0.0 and error * error > BREAK_SIGMAS * BREAK_SIGMAS * variance
        self._off_run = self._off_run + 1 if far else 0
        return far

    def _restart_at(self, number: int) -> None:
        """Forget the fit and every observation before ``number``."""
        self._origin = number
        self._off_run = 0
        self._fit = None
        self._selected_on = 0
        self._next_fit_at = number + self.config.min_fit
        self.stats.breaks += 1

    def extend(self, values: Iterable[float], times: Iterable[float] | None = None) -> None:
        if times is None:
            for value in values:
                self.update(value)
        else:
            for value, time in zip(values, times, strict=True):
                self.update(value, time)

    def fit(
        self, values: Sequence[float], times: Sequence[float] | None = None
    ) -> SeriesForecaster:
        """Start afresh on a history: keep its last ``history`` values, select the order, fit."""
        self._reset()
        if times is not None and len(times) != len(values):
            raise ValueError("values and times must have the same length")
        for i, value in enumerate(values):
            self._push(_as_float(value), None if times is None else times[i])
        self._refit()
        return self

    def _push(self, value: float, time: float | None) -> None:
        self._values[self._count % self.config.history] = value
        self._count += 1
        time = _as_float(time) if time is not None else math.nan
        if math.isfinite(time):
            if self._times_last is not None and time > self._times_last:
                self._steps[self._step_count % STEP_SAMPLES] = time - self._times_last
                self._step_count += 1
            self._times_last = time

    def _value_at(self, number: int) -> float:
        """The stored value of observation ``number`` (NaN once it left the history)."""
        if not self._count - self.config.history <= number < self._count:
            return math.nan
        return float(self._values[number % self.config.history])

    def _latest_z(self, fit: _Fit) -> float:
        number = self._count - 1
        y = self._value_at(number)
        spec = fit.spec
        if spec.seasonal_difference:
            x = y - self._value_at(number - spec.period)
        elif spec.harmonics:
            x = y - float(
                fourier_terms(np.array([number]), spec.period, spec.harmonics)[0] @ fit.seasonal
            )
        else:
            x = y
        return (x - fit.location) / fit.scale

    # --- fitting --------------------------------------------------------------------------

    def _refit(self) -> None:
        config = self.config
        window = self.window()
        start = self._count - len(window)
        full = len(window) >= config.history
        self._next_fit_at = self._count + config.refit_every
        if not full:
            self._next_fit_at = min(self._next_fit_at, self._origin + config.history)
        finite = np.isfinite(window)
        if finite.sum() < config.min_fit or not np.ptp(window[finite]) > 0.0:
            return
        started = time.perf_counter()
        try:
            with one_blas_thread():
                fitted = self._fit_or_select(window, start, full, started)
        except Exception as exc:  # a fit must never take the series down
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            return
        if fitted is not None and fitted.filter.healthy():
            self._fit = fitted

    def _fit_or_select(
        self, window: np.ndarray, start: int, full: bool, started: float
    ) -> _Fit | None:
        config = self.config
        if self._fit is None or (self._selected_on < config.history and full):
            fitted = self._select(window, start)
            self.stats.selections += 1
            self.stats.selection_seconds += time.perf_counter() - started
            if fitted is not None:
                self._selected_on = len(window)
            return fitted
        fitted = self._fit_spec(
            window, start, self._fit.spec, self._fit.params, config.refit_maxiter
        )
        self.stats.refits += 1
        self.stats.refit_seconds += time.perf_counter() - started
        return fitted

    def _select(self, window: np.ndarray, start: int) -> _Fit | None:
        config = self.config
        index = np.arange(start, start + len(window))
        period = config.period
        if period is None:
            period = detect_period(window, config.period_bound) or 0
        period = period if 2 <= period <= len(window) // 2 else 0
        self._period = period
        burn = period + 1
        treatments = [ModelSpec(1, 0, 1, True)]
        if period:
            harmonics, _ = select_harmonics(window, index, period, config.max_harmonics)
            treatments.append(ModelSpec(1, 0, 1, True, period, harmonics=harmonics))
            treatments.append(ModelSpec(1, 0, 1, True, period, seasonal_difference=True))
        best: _Fit | None = None
        for treatment in treatments:
            d = kpss_differences(self._treated(window, index, treatment)[0], config.max_d)
            spec = replace(treatment, d=d)
            best = _better(best, self._fit_spec(window, start, spec, burn=burn))
        if best is None:
            return None
        tried = {best.spec}
        for p in range(config.max_p + 1):
            for q in range(config.max_q + 1):
                spec = replace(best.spec, p=p, q=q)
                if spec not in tried:
                    tried.add(spec)
                    best = _better(best, self._fit_spec(window, start, spec, burn=burn))
        if best.spec.d or best.spec.seasonal_difference:
            spec = replace(best.spec, trend=False)
            best = _better(best, self._fit_spec(window, start, spec, burn=burn))
        return best

    def _treated(
        self, window: np.ndarray, index: np.ndarray, spec: ModelSpec
    ) -> tuple[np.ndarray, np.ndarray]:
        """The series the ARIMA models (aligned with the window's end) and the Fourier
        coefficients."""
        if spec.seasonal_difference:
            return window[spec.period :] - window[: -spec.period], np.zeros(0)
        if spec.harmonics:
            seasonal, _ = seasonal_fit(window, index, spec.period, spec.harmonics)
            return window - fourier_terms(index, spec.period, spec.harmonics) @ seasonal, seasonal
        return window, np.zeros(0)

    def model_for(self, values: np.ndarray, start: int):
        """The current model as a statsmodels ``SARIMAX`` on ``values`` (whose first value is
        observation number ``start``), treated and standardised as the current fit does: its
        ``filter(forecaster.params)`` is what the forecaster's own filter computes (for a
        seasonal difference, the first ``period`` values only serve to difference)."""
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        fit = self._fit
        if fit is None:
            raise ValueError("no fitted ARIMA model")
        values = np.asarray(values, dtype=float)
        spec = fit.spec
        if spec.seasonal_difference:
            x = values[spec.period :] - values[: -spec.period]
        else:
            index = np.arange(start, start + len(values))
            x = values - fourier_terms(index, spec.period, spec.harmonics) @ fit.seasonal
        z = (x - fit.location) / fit.scale
        return SARIMAX(z, order=spec.order, trend="c" if spec.trend else "n")

    def _fit_spec(
        self,
        window: np.ndarray,
        start: int,
        spec: ModelSpec,
        start_params: np.ndarray | None = None,
        maxiter: int | None = None,
        burn: int = 0,
    ) -> _Fit | None:
        """Fit ``spec`` on the window; its AIC counts the observations from window position
        ``burn`` on (see the module docstring)."""
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        index = np.arange(start, start + len(window))
        x, seasonal = self._treated(window, index, spec)
        finite = x[np.isfinite(x)]
        if len(finite) < self.config.min_fit // 2:
            return None
        spread = np.std(np.diff(finite)) if spec.d else np.std(finite)
        if not spread > 0.0:
            spread = np.std(finite)
        if not spread > 0.0:
            return None
        location = float(np.mean(finite))
        z = (x - location) / spread
        model = SARIMAX(z, order=spec.order, trend="c" if spec.trend else "n")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params = model.fit(
                start_params=start_params,
                disp=False,
                maxiter=maxiter or self.config.maxiter,
                return_params=True,
            )
            self.stats.fits += 1
            if not np.isfinite(params).all():
                return None
            result = model.filter(params, cov_type="none")
        # Log-likelihood of the observations from window position ``burn`` on, each given the
        # earlier ones, in the data's units (the standardisation's Jacobian taken out): the same
        # quantity whatever the treatment, differencing and scale, so the AICs compare.
        offset = len(window) - len(x)
        llf_obs = np.asarray(result.llf_obs)[max(burn - offset, 0) :]
        used = np.isfinite(z[max(burn - offset, 0) :])
        llf = float(llf_obs[used].sum()) - int(used.sum()) * math.log(spread)
        if not math.isfinite(llf):
            return None
        return _Fit(
            spec=spec,
            params=np.asarray(params, dtype=float),
            location=location,
            scale=float(spread),
            seasonal=seasonal,
            filter=_filter_of(model.ssm, result.filter_results),
            start=start,
            aic=-2.0 * llf + 2.0 * (len(params) + len(seasonal)),
        )

    # --- forecasting ----------------------------------------------------------------------

    def forecast(self, horizon: int, level: float | None = None) -> Forecast:
        """Mean, standard deviation and ``level`` interval of the next ``horizon`` steps."""
        if horizon < 1:
            raise ValueError("horizon must be >= 1")
        level = self.config.level if level is None else float(level)
        if not 0.0 < level < 1.0:
            raise ValueError("level must be in (0, 1)")
        if self._fit is not None:
            mean, std = self._arima_forecast(self._fit, horizon)
            method = ARIMA
        else:
            mean, std = drift_forecast(self.window(), horizon)
            method = DRIFT if np.isfinite(mean).all() else NONE
        half = float(ndtri(0.5 + level / 2.0)) * std
        return Forecast(
            mean=mean,
            std=std,
            lower=mean - half,
            upper=mean + half,
            level=level,
            method=method,
            times=self._future_times(horizon),
        )

    def _arima_forecast(self, fit: _Fit, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        spec = fit.spec
        s = spec.period
        seasonal_difference = spec.seasonal_difference
        z_mean, z_cov = fit.filter.forecast(
            horizon, covariances=seasonal_difference and horizon > s
        )
        x_mean = z_mean * fit.scale + fit.location
        if not seasonal_difference:
            season = fourier_terms(np.arange(self._count, self._count + horizon), s, spec.harmonics)
            return x_mean + season @ fit.seasonal, np.sqrt(np.maximum(z_cov, 0.0)) * fit.scale
        # y_{n+h} = x_{n+h} + y_{n+h-s}: the last season observed (gaps filled), then forecasts.
        last_season = interpolate_missing(self.window()[-s:])
        mean = np.empty(horizon)
        for h in range(horizon):
            mean[h] = x_mean[h] + (last_season[h] if h < s else mean[h - s])
        if horizon <= s:
            return mean, np.sqrt(np.maximum(z_cov, 0.0)) * fit.scale
        variance = np.empty(horizon)
        for h in range(horizon):
            terms = np.arange(h, -1, -s)  # the errors of x at h, h - s, ... add up
            variance[h] = z_cov[np.ix_(terms, terms)].sum()
        return mean, np.sqrt(np.maximum(variance, 0.0)) * fit.scale

    def _future_times(self, horizon: int) -> np.ndarray | None:
        if self._times_last is None:
            return None
        steps = self._steps[np.isfinite(self._steps)]
        step = float(np.median(steps)) if len(steps) else 1.0
        return self._times_last + step * np.arange(1, horizon + 1)


def drift_forecast(values: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Random walk with drift on the finite values (FPP 5.2): mean ``last + k * drift``,
    standard deviation ``sigma * sqrt(k (1 + k / (n - 1)))``; a constant series has sigma 0;
    one value gives the naive forecast with sigma 0; none gives NaN."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    steps = np.arange(1, horizon + 1, dtype=float)
    if len(finite) == 0:
        nan = np.full(horizon, np.nan)
        return nan, nan.copy()
    if len(finite) == 1:
        return np.full(horizon, finite[-1]), np.zeros(horizon)
    differences = np.diff(finite)
    drift = float(differences.mean())
    sigma = float(differences.std(ddof=1)) if len(differences) > 1 else 0.0
    n = len(finite)
    std = sigma * np.sqrt(steps * (1.0 + steps / (n - 1)))
    return finite[-1] + drift * steps, std


def _better(best: _Fit | None, candidate: _Fit | None) -> _Fit | None:
    if candidate is None:
        return best
    if best is None or candidate.aic < best.aic:
        return candidate
    return best


def _filter_of(ssm, filtered) -> _Filter:
    """Our one-step filter from a SARIMAX's (time-invariant) state space after ``filter``.

    SARIMAX's trend makes ``state_intercept`` time-varying in shape only: a constant (``"c"``)
    repeats the same column, which is all this class supports.
    """
    design = np.asarray(ssm["design"])
    selection = np.asarray(ssm["selection"])
    intercept = np.asarray(ssm["state_intercept"])
    if intercept.ndim == 2:
        intercept = intercept[:, 0]
    return _Filter(
        design=np.array(design[0]),
        transition=np.array(ssm["transition"]),
        intercept=np.array(intercept),
        disturbance=selection @ np.asarray(ssm["state_cov"]) @ selection.T,
        obs_variance=float(np.asarray(ssm["obs_cov"])[0, 0]),
        state=np.array(filtered.predicted_state[:, -1]),
        covariance=np.array(filtered.predicted_state_cov[:, :, -1]),
    )


def _as_float(value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan
