"""Prometheus metrics of one app instance, in its own ``CollectorRegistry``.

* ``incidents_total{tenant}`` (counter) and ``incidents_by_severity{tenant,severity,status}``
  (gauge) are read from the store at scrape time by a custom collector, so they are right no
  matter which process (dataflow or API) wrote the incidents.
* ``response_time_seconds{severity}``: histogram of incident creation -> acknowledgement, observed
  by this API when it acknowledges an incident.
* ``automation_actions_total{type,outcome}`` (counter, outcome ok/error/not_configured) and
  ``automation_success_rate`` (gauge: ok / (ok + error), over all recorded actions), read from
  the store's action results at scrape time; the rate is NaN while no action has succeeded or
  failed (NaN is Prometheus' "no value", unlike 0 which would read as "always failing").
* ``pipeline_{points,dead_letters,late_points,windows,anomalies}_total``: the dataflow's
  counters from ``Store.pipeline_stats()``, summed over workers.
* ``http_request_duration_seconds{method,route,status}``: this API's own latency.
* ``incidents_store_up``: 1 when the scrape could read the store, else 0 (and the store-derived
  families are left out rather than reported as zero).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from connectors.automation_store import AutomationStore
from connectors.store import Store
from incidents.records import Incident

log = logging.getLogger(__name__)

PIPELINE_COUNTERS: dict[str, str] = {
    "points": "Metric points parsed by the detection dataflow.",
    "dead_letters": "Messages or lines sent to the dead-letter queue.",
    "late_points": "Points dropped because their window had already closed.",
    "windows": "Window aggregates closed and scored.",
    "anomalies": "Windows scored as anomalous.",
}

RESPONSE_TIME_BUCKETS = (
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    14_400.0,
    43_200.0,
    86_400.0,
)

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST


class StoreCollector(Collector):
    """Reads incident counts and pipeline counters from the store on every scrape."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.automation = AutomationStore(store)

    def describe(self) -> Iterable[Metric]:
        return []  # no store access at registration time (the schema may not exist yet)

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("incidents_store_up", "1 if the store could be read at scrape.")
        try:
            counts = self.store.incident_counts()
            stats = self.store.pipeline_stats()
            actions = self.automation.action_counts()
        except SQLAlchemyError as exc:
            log.warning("metrics scrape could not read the store: %s", type(exc).__name__)
            up.add_metric([], 0.0)
            yield up
            yield from automation_families([])
            return
        up.add_metric([], 1.0)
        yield up
        yield from incident_families(counts)
        yield from pipeline_families(stats)
        yield from automation_families(actions)


def incident_families(counts: Iterable[tuple[str, str, str, int]]) -> Iterable[Metric]:
    total = CounterMetricFamily("incidents", "Incidents recorded, by tenant.", labels=["tenant"])
    by_severity = GaugeMetricFamily(
        "incidents_by_severity",
        "Incidents by tenant, severity and status.",
        labels=["tenant", "severity", "status"],
    )
    per_tenant: dict[str, int] = {}
    for tenant, severity, status, n in counts:
        per_tenant[tenant] = per_tenant.get(tenant, 0) + n
        by_severity.add_metric([tenant, severity, status], float(n))
    for tenant, n in sorted(per_tenant.items()):
        total.add_metric([tenant], float(n))
    return [total, by_severity]


def success_rate(counts: Iterable[tuple[str, str, int]]) -> float:
    """ok / (ok + error) over all action types; NaN when nothing succeeded or failed yet
    (``not_configured`` actions did not try, so they count as neither)."""
    ok = sum(n for _, outcome, n in counts if outcome == "ok")
    failed = sum(n for _, outcome, n in counts if outcome == "error")
    return ok / (ok + failed) if ok + failed else float("nan")


def automation_families(counts: Iterable[tuple[str, str, int]]) -> Iterable[Metric]:
    counts = list(counts)
    total = CounterMetricFamily(
        "automation_actions",
        "Automated actions run, by action type and outcome (ok, error, not_configured).",
        labels=["type", "outcome"],
    )
    for kind, outcome, n in counts:
        total.add_metric([kind, outcome], float(n))
    rate = GaugeMetricFamily(
        "automation_success_rate",
        "Share of automated actions that succeeded (NaN: none has run yet).",
    )
    rate.add_metric([], success_rate(counts))
    return [total, rate]


def pipeline_families(stats: dict[str, float]) -> Iterable[Metric]:
    families = []
    for name, doc in PIPELINE_COUNTERS.items():
        family = CounterMetricFamily(f"pipeline_{name}", doc)
        family.add_metric([], float(stats.get(name, 0.0)))
        families.append(family)
    return families


class ApiMetrics:
    """The registry and instruments of one app (tests build many apps in one process)."""

    def __init__(self, store: Store) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.response_time = Histogram(
            "response_time_seconds",
            "Time from an incident's creation to its acknowledgement.",
            labelnames=["severity"],
            buckets=RESPONSE_TIME_BUCKETS,
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "Duration of HTTP requests served by the API.",
            labelnames=["method", "route", "status"],
            registry=self.registry,
        )
        self.registry.register(StoreCollector(store))

    def observe_acknowledged(self, incident: Incident) -> None:
        if incident.acknowledged_at is None:
            return
        seconds = (incident.acknowledged_at - incident.created_at).total_seconds()
        self.response_time.labels(severity=str(incident.severity)).observe(max(seconds, 0.0))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_duration.labels(method=method, route=route, status=str(status)).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
