"""The detection dataflow: raw metric messages in, windows, scores and incidents out.

Run it on Bytewax's own runner (contract 7 of ARCHITECTURE.md)::

    python -m bytewax.run "pipelines.detect:build_flow()" -w 2

All configuration comes from the environment (``incidents.config.Settings``). Read top to bottom,
the flow is::

    metrics_in -> parse_and_combine -> split_dead_letters -> dead_letters_out
                                    \\-> windows -> detect -> incident_builder -> incidents_out
                                               |         \\-> windows_out            /
                                               \\-> forecast_limits (FORECAST_LIMITS) -/
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import DynamicSink, Sink

from incidents.config import Settings, get_settings
from incidents.interfaces import BatchDetector, PipelineSink
from incidents.lifecycle import IncidentBuilder
from incidents.telemetry import COUNTERS, PipelineCounters
from incidents.windowing import WindowBook
from pipelines.operators import (
    DetectLogic,
    IncidentLogic,
    ParseAndCombine,
    ShardDetectors,
    WindowLogic,
    is_dead_letter,
    restore,
)

if TYPE_CHECKING:
    from pipelines.predict import LimitForecasts

DEFAULT_SHARDS = 64
SIMULATOR_BACKFILL_S = 7200.0


Sinks = Sink | Mapping[str, Sink]
"""One sink, or several by name (e.g. ``{"store": ..., "influx": ...}``): each gets all items."""


@dataclass
class FlowParts:
    """What a flow is built from; tests swap the source and sinks for Bytewax's testing ones."""

    source: Source
    windows_sink: Sinks
    incidents_sink: Sinks
    dead_letters_sink: Sinks
    detector_factory: Callable[[], BatchDetector]
    """Makes the detectors of one shard (``models.detector.build_bank``, or
    ``pipelines.operators.per_series`` around a one-series detector)."""
    counters: PipelineCounters = field(default_factory=lambda: COUNTERS)


def _output_all(step_id: str, stream: op.Stream, sinks: Sinks) -> None:
    if isinstance(sinks, Sink):
        op.output(step_id, stream, sinks)
        return
    for name, sink in sinks.items():
        op.output(f"{step_id}_{name}", stream, sink)


def build_detection_flow(
    settings: Settings, parts: FlowParts, shards: int = DEFAULT_SHARDS
) -> Dataflow:
    counters = parts.counters
    flow = Dataflow("incident_detection")

    messages = op.input("metrics_in", flow, parts.source)
    parsed = op.flat_map_batch(
        "parse_and_combine", messages, ParseAndCombine(settings.window_ns, shards, counters)
    )
    routed = op.branch("split_dead_letters", parsed, is_dead_letter)
    _output_all("dead_letters_out", routed.trues, parts.dead_letters_sink)

    window_ns, lateness_ns = settings.window_ns, settings.allowed_lateness_ns
    idle_close_s = float(settings.window_seconds + settings.allowed_lateness_seconds)
    closed = op.stateful(
        "windows",
        routed.falses,
        lambda snapshot: WindowLogic(
            restore(snapshot, lambda: WindowBook(window_ns, lateness_ns)), counters, idle_close_s
        ),
    )
    scored = op.stateful(
        "detect",
        closed,
        lambda snapshot: DetectLogic(
            ShardDetectors(restore(snapshot, parts.detector_factory), settings.anomaly_threshold),
            counters,
        ),
    )
    _output_all("windows_out", scored, parts.windows_sink)

    updates = op.stateful(
        "incident_builder",
        scored,
        lambda snapshot: IncidentLogic(
            restore(snapshot, lambda: _incident_builder(settings)), counters
        ),
    )
    limits = settings.forecast_limit_rules
    if limits:
        from pipelines.predict import ForecastLogic

        predicted = op.stateful(
            "forecast_limits",
            closed,
            lambda snapshot: ForecastLogic(
                restore(snapshot, lambda: _limit_forecasts(settings)), counters
            ),
        )
        updates = op.merge("detected_and_predicted", updates, predicted)
    _output_all("incidents_out", updates, parts.incidents_sink)
    return flow


def _limit_forecasts(settings: Settings) -> LimitForecasts:
    from pipelines.predict import LimitForecasts

    return LimitForecasts(
        settings.forecast_limit_rules,
        horizon=settings.forecast_horizon_windows,
        level=settings.forecast_level,
        resolve_after_windows=settings.resolve_after_windows,
    )


def _incident_builder(settings: Settings) -> IncidentBuilder:
    return IncidentBuilder(
        threshold=settings.anomaly_threshold,
        resolve_after_windows=settings.resolve_after_windows,
        severity_thresholds=settings.severity_thresholds,
    )


def default_parts(settings: Settings) -> FlowParts:
    """Wire the configured source, sinks and detector for a real run.

    Always the SQL store (SQLite locally, PostgreSQL in development/production); with Kafka
    configured, dead letters and incident updates also go to their topics; with InfluxDB
    configured, windows and incident annotations also go there.
    """
    from connectors.background import BackgroundSink
    from connectors.sinks import StoreSink, TelemetryReporter
    from connectors.store import Store
    from models.detector import DetectorConfig, build_bank

    store = Store.from_settings(settings)
    store.migrate()
    store.close()

    def open_store() -> PipelineSink:
        return Store.from_settings(settings)

    reporter = TelemetryReporter(COUNTERS, open_store)
    # Window aggregates are the bulk of the output: written on background threads, made
    # durable at each epoch (connectors.background), so the dataflow does not wait for them.
    windows: dict[str, Sink] = {"store": BackgroundSink(StoreSink(open_store, "windows", reporter))}
    # Incident updates cost several round trips each: off the dataflow's thread as well.
    incidents: dict[str, Sink] = {"store": BackgroundSink(StoreSink(open_store, "incidents"))}
    dead_letters: dict[str, DynamicSink] = {"store": StoreSink(open_store, "dead_letters")}
    if settings.uses_kafka:
        from connectors.kafka import (
            KafkaDeadLetterSink,
            KafkaIncidentSink,
            ensure_topics,
            settings_topics,
        )

        ensure_topics(settings.kafka_bootstrap_servers or "", settings_topics(settings))
        dead_letters["kafka"] = KafkaDeadLetterSink.from_settings(settings)
        incidents["kafka"] = KafkaIncidentSink.from_settings(settings)
    if settings.uses_influx:
        from connectors.influx import InfluxIncidentSink, InfluxWindowSink

        windows["influx"] = BackgroundSink(InfluxWindowSink(settings))
        incidents["influx"] = InfluxIncidentSink(settings)
    return FlowParts(
        source=metrics_source(settings),
        windows_sink=windows,
        incidents_sink=incidents,
        dead_letters_sink=dead_letters,
        detector_factory=partial(
            build_bank, DetectorConfig(members=settings.detector_member_names)
        ),
    )


def metrics_source(settings: Settings) -> Source:
    """The configured input: Kafka when configured, a replay file when ``REPLAY_FILE`` is set,
    else the simulator."""
    from connectors.sources import ReplaySource, SimulatorSource
    from models.detector import DetectorConfig

    if settings.uses_kafka:
        from connectors.kafka import KafkaMetricsSource

        return KafkaMetricsSource.from_settings(settings)
    if settings.replay_file:
        return ReplaySource(settings.replay_file)
    # Two hours of history are replayed at full speed first; anomalies start only after the
    # detectors' warm-up (DetectorConfig.min_history windows), so the first ones are caught.
    warmup_s = (DetectorConfig().min_history + 4) * settings.window_seconds
    return SimulatorSource(
        hosts=settings.simulator_hosts,
        seed=settings.simulator_seed,
        speed=settings.simulator_speed,
        backfill_s=max(SIMULATOR_BACKFILL_S, warmup_s + 1200),
        warmup_s=warmup_s,
        filling_disks=min(settings.simulator_filling_disks, settings.simulator_hosts),
    )


GC_YOUNG_THRESHOLD = 100_000


def tune_garbage_collector() -> None:
    """Collect cycles every 100,000 allocations instead of CPython's default 700.

    The dataflow allocates millions of short-lived objects (points, partials, windows), none in
    reference cycles, while it keeps a large heap of open windows and detector state alive. With
    the default thresholds the collector ran thousands of times per second and its older
    generations rescanned that heap: about a third of the dataflow's time. ``gc.freeze`` moves
    what exists at start (modules, settings) out of every later scan.
    """
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)


def build_flow(settings: Settings | None = None) -> Dataflow:
    """Entry point for ``python -m bytewax.run "pipelines.detect:build_flow()"``."""
    tune_garbage_collector()
    settings = settings or get_settings()
    return build_detection_flow(settings, default_parts(settings))
