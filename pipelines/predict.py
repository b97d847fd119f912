"""The forecasting step of the detection dataflow: predicted incidents from configured limits.

Only series with a ``FORECAST_LIMITS`` entry are forecast, each by its own
``models.forecasting.SeriesForecaster`` (SARIMAX, order selected once on the first
``min_fit`` windows, refit every ``refit_every`` windows, a Kalman update per window between
refits). Every closed window of such a series updates its forecaster, then the forecast of the
next ``horizon`` windows is checked against the limit and handed to ``PredictionBuilder``.
"""

from __future__ import annotations

from collections.abc import Sequence

from bytewax.operators import StatefulLogic

from incidents.prediction import (
    ForecastLimit,
    PredictedBreach,
    PredictionBuilder,
    limit_for,
)
from incidents.schemas import IncidentEventType, IncidentUpdate, WindowAggregate
from incidents.telemetry import PipelineCounters
from models.forecasting import Breach, ForecasterConfig, SeriesForecaster, breach_forecast
from pipelines.operators import snapshot_of


def predicted_breach(breach: Breach, fallback_time_ns: int) -> PredictedBreach:
    time_ns = fallback_time_ns if breach.time is None else round(breach.time * 1e9)
    return PredictedBreach(
        steps_ahead=breach.step,
        time_ns=time_ns,
        forecast_value=breach.value,
        bound=breach.bound,
        probability=breach.probability,
        max_probability=breach.max_probability,
    )


class LimitForecasts:
    """The forecasters and predicted-incident state of one shard's limited series."""

    def __init__(
        self,
        limits: Sequence[ForecastLimit],
        *,
        horizon: int,
        level: float,
        resolve_after_windows: int,
        config: ForecasterConfig | None = None,
    ) -> None:
        if horizon < 1:
            raise ValueError("horizon must be >= 1")
        self.limits = tuple(limits)
        self.horizon = horizon
        self.level = level
        self.config = config or ForecasterConfig(level=level)
        self.forecasters: dict[tuple[str, str], SeriesForecaster] = {}
        self.builder = PredictionBuilder(resolve_after_windows=resolve_after_windows)
        self._limit_of: dict[str, ForecastLimit | None] = {}
        """Per series seen, its limit: most series have none, and this spares parsing the key."""

    def __getstate__(self) -> dict[str, object]:
        """The snapshot leaves the limit cache out: it holds every series of the shard."""
        return {**self.__dict__, "_limit_of": {}}

    def step(self, windows: Sequence[WindowAggregate]) -> list[IncidentUpdate]:
        updates: list[IncidentUpdate] = []
        for aggregate in windows:
            try:
                limit = self._limit_of[aggregate.series]
            except KeyError:
                limit = self._limit_of[aggregate.series] = limit_for(self.limits, aggregate)
            if limit is None:
                continue
            breach = self._learn_and_forecast(aggregate, limit)
            update = self.builder.step(aggregate, limit, breach)
            if update is not None:
                updates.append(update)
        return updates

    def _learn_and_forecast(
        self, aggregate: WindowAggregate, limit: ForecastLimit
    ) -> PredictedBreach | None:
        key = (aggregate.tenant, aggregate.series)
        forecaster = self.forecasters.get(key)
        if forecaster is None:
            forecaster = self.forecasters[key] = SeriesForecaster(self.config)
        forecaster.update(aggregate.mean, aggregate.window_start_ns / 1e9)
        if forecaster.history_length < self.config.min_fit:
            return None
        forecast = forecaster.forecast(self.horizon, self.level)
        found = breach_forecast(forecast, limit.value, limit.direction)
        if found is None:
            return None
        step_ns = aggregate.window_end_ns - aggregate.window_start_ns
        return predicted_breach(found, aggregate.window_start_ns + found.step * step_ns)


class ForecastLogic(StatefulLogic[list[WindowAggregate], list[IncidentUpdate], bytes]):
    """Bytewax stateful logic around one shard's ``LimitForecasts``."""

    def __init__(self, forecasts: LimitForecasts, counters: PipelineCounters) -> None:
        self.forecasts = forecasts
        self.counters = counters

    def on_item(self, value: list[WindowAggregate]) -> tuple[list[list[IncidentUpdate]], bool]:
        updates = self.forecasts.step(value)
        opened = sum(1 for u in updates if u.type is IncidentEventType.OPENED)
        self.counters.add("predicted_incidents", opened)
        return ([updates] if updates else []), StatefulLogic.RETAIN

    def snapshot(self) -> bytes:
        return snapshot_of(self.forecasts)
