"""The models behind ``incidents.analyzers`` (its ``AnalysisBackend``), registered under the
entry-point group ``incidents.analyzers`` as ``default``.

- anomaly scores: the dataflow's online detector (``models.detector.build_detector``), one point
  per window, each scored before it is learned (``models.scoring.score_values``, as the
  ``incidents score`` command does);
- breaches: ``models.forecasting.SeriesForecaster`` fitted to the history, its forecast and
  ``breach_forecast`` per limit.

It implements the protocol structurally: ``models`` imports nothing from ``incidents`` but its
schemas.
"""

from __future__ import annotations

from collections.abc import Sequence

from models.detector import DetectorConfig
from models.forecasting import Breach, ForecasterConfig, SeriesForecaster, breach_forecast
from models.scoring import score_values


class ModelBackend:
    def __init__(
        self,
        detector_config: DetectorConfig | None = None,
        forecaster_config: ForecasterConfig | None = None,
    ) -> None:
        self.detector_config = detector_config
        self.forecaster_config = forecaster_config

    def anomaly_scores(self, values: Sequence[float], times_ns: Sequence[int]) -> list[float]:
        if len(values) != len(times_ns):
            raise ValueError("values and times_ns must have the same length")
        pairs = zip((float(v) for v in values), (int(t) for t in times_ns), strict=True)
        return list(score_values(pairs, self.detector_config))

    def forecast_breaches(
        self,
        values: Sequence[float],
        limits: Sequence[tuple[float, str]],
        horizon: int,
        level: float,
    ) -> list[Breach]:
        forecaster = SeriesForecaster(self.forecaster_config).fit(values)
        forecast = forecaster.forecast(horizon, level)
        found = []
        for limit, direction in limits:
            if direction not in ("above", "below"):
                raise ValueError(f"direction must be 'above' or 'below', not {direction!r}")
            breach = breach_forecast(forecast, limit, "above" if direction == "above" else "below")
            if breach is not None:
                found.append(breach)
        return found
