"""Deterministic metrics simulator: Telegraf-like line protocol for many hosts, with ground truth.

Every series follows ``base + daily sine + shorter cycle + Gaussian noise``; after ``warmup_s`` of
event time one anomaly (spike, level shift, flatline or drift) starts every ``anomaly_every_s`` on
a random series, and is recorded in :attr:`MetricsSimulator.injected`.

With ``filling_disks=n`` the root disks of the first ``n`` hosts fill up instead: ``used_percent``
climbs steadily from ``FILL_FROM`` to ``FILL_TO`` over ``FILL_CYCLE_S`` and drops back (a
cleanup), again and again: the scenario of a predicted incident (``FORECAST_LIMITS``).

Generation is pure and random-access: tick ``k`` depends only on the constructor arguments and
``k`` (noise and anomalies come from generators seeded with ``(seed, k)``), so a simulator rebuilt
with ``start_tick=k`` continues exactly where another one stopped. Nothing here sleeps; pacing is
the job of the source that drives it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from incidents.parsing import format_key
from incidents.schemas import TENANT_TAG, Tags, series_key

NS_PER_S = 1_000_000_000
DAY_S = 86_400.0
ANOMALY_KINDS: tuple[str, ...] = ("spike", "level_shift", "flatline", "drift")
SERVICES: tuple[str, ...] = ("api", "web", "auth", "search", "billing", "checkout")
DEFAULT_BACKFILL_S = 7_200.0
FILL_FROM, FILL_TO = 55.0, 98.0
FILL_CYCLE_S = 14_400.0
FILL_LEAD_S = 1_800.0
"""The fill is this far into its cycle at the simulator's start: with the default two hours of
backfill, a live run starts with the disk at about 82 % and reaches 95 % about 73 minutes of event
time later."""
FILL_SIGMA = 0.15


@dataclass(frozen=True)
class InjectedAnomaly:
    """Ground truth of one injected anomaly.

    ``end_ns`` is exclusive and covers only the affected points: a spike's few points, the full
    duration for the other kinds.
    """

    series: str
    kind: str
    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class SeriesProfile:
    """The normal behaviour of one series."""

    measurement: str
    tags: Tags
    field: str
    base: float
    daily_amplitude: float
    daily_phase: float
    cycle_amplitude: float
    cycle_period_s: float
    cycle_phase: float
    sigma: float
    upper: float | None
    integer: bool

    @property
    def series(self) -> str:
        return series_key(self.measurement, self.tags, self.field)

    def seasonal(self, t_s: float) -> float:
        """Noise-free value at event time ``t_s`` (seconds since the epoch)."""
        daily = math.sin(2.0 * math.pi * t_s / DAY_S + self.daily_phase)
        cycle = math.sin(2.0 * math.pi * t_s / self.cycle_period_s + self.cycle_phase)
        return self.base + self.daily_amplitude * daily + self.cycle_amplitude * cycle

    def clamp(self, value: float) -> float:
        value = max(value, 0.0)
        return value if self.upper is None else min(value, self.upper)

    def headroom_up(self, offset: float) -> bool:
        """Whether ``offset`` above the seasonal peak still fits under the upper bound."""
        peak = self.base + self.daily_amplitude + self.cycle_amplitude
        return self.upper is None or peak + offset <= self.upper


@dataclass(frozen=True, slots=True)
class _Anomaly:
    index: int
    series_index: int
    kind: str
    start_tick: int
    ticks: int
    magnitude: float
    """Offset in units of the series' sigma, signed (spike, level shift, final drift)."""
    flat_value: float

    def offset(self, tick: int, sigma: float) -> float:
        if self.kind == "drift":
            return self.magnitude * sigma * (tick - self.start_tick + 1) / self.ticks
        return self.magnitude * sigma


@dataclass(frozen=True, slots=True)
class _Line:
    """One line per (host, measurement) per tick, like Telegraf: a key and its fields."""

    prefix: str
    series_indices: tuple[int, ...]


# (measurement, extra tags, field, integer, upper bound)
_FIELD_SPECS: tuple[tuple[str, tuple[tuple[str, str], ...], str, bool, float | None], ...] = (
    ("cpu", (("cpu", "cpu-total"),), "usage_user", False, 100.0),
    ("cpu", (("cpu", "cpu-total"),), "usage_system", False, 100.0),
    ("mem", (), "used_percent", False, 100.0),
    ("disk", (("path", "/"),), "used_percent", False, 100.0),
    ("net", (("interface", "eth0"),), "bytes_recv", False, None),
    ("http", (), "latency_ms", False, None),
    ("http", (), "requests", True, None),
    ("postgresql", (("db", "app"),), "connections", True, None),
    ("postgresql", (("db", "app"),), "query_time_ms", False, None),
)


def _profile_numbers(
    measurement: str, field: str, rng: random.Random
) -> tuple[float, float, float, float]:
    """(base, daily amplitude, shorter-cycle amplitude, noise sigma) with room for anomalies."""
    if field == "usage_user":
        base = rng.uniform(15.0, 35.0)
        return base, 0.25 * base, 0.08 * base, rng.uniform(1.0, 2.0)
    if field == "usage_system":
        base = rng.uniform(3.0, 8.0)
        return base, 0.25 * base, 0.08 * base, rng.uniform(0.3, 0.6)
    if measurement == "mem":
        base = rng.uniform(35.0, 60.0)
        return base, 4.0, 1.0, rng.uniform(0.5, 1.0)
    if measurement == "disk":
        base = rng.uniform(30.0, 70.0)
        return base, 0.5, 0.2, rng.uniform(0.1, 0.2)
    if field == "bytes_recv":
        base = rng.uniform(2e5, 2e6)
        return base, 0.4 * base, 0.08 * base, 0.04 * base
    if field == "latency_ms":
        base = rng.uniform(40.0, 120.0)
        return base, 0.2 * base, 0.05 * base, 0.04 * base
    if field == "requests":
        base = rng.uniform(200.0, 1000.0)
        return base, 0.5 * base, 0.08 * base, 0.04 * base
    if field == "connections":
        base = rng.uniform(30.0, 80.0)
        return base, 0.3 * base, 0.05 * base, 2.0
    base = rng.uniform(3.0, 15.0)
    return base, 0.2 * base, 0.05 * base, 0.06 * base


def _root_disks(profiles: Sequence[SeriesProfile]) -> list[int]:
    return [
        i for i, p in enumerate(profiles) if p.measurement == "disk" and p.field == "used_percent"
    ]


def _rng(seed: int, *purpose: object) -> random.Random:
    """An independent, reproducible stream per purpose (simulation only, not for secrets)."""
    return random.Random(":".join(map(str, (seed, *purpose))))  # noqa: S311  # nosec B311


def _host_tags(host: str, tenant: str | None) -> tuple[tuple[str, str], ...]:
    tags: tuple[tuple[str, str], ...] = (("host", host),)
    return tags + ((TENANT_TAG, tenant),) if tenant is not None else tags


def _build_series(
    hosts: int, tenants: Sequence[str], seed: int
) -> tuple[list[SeriesProfile], list[_Line]]:
    rng = _rng(seed, "profiles")
    width = max(2, len(str(hosts)))
    profiles: list[SeriesProfile] = []
    lines: list[_Line] = []
    for host_index in range(hosts):
        host = f"host-{host_index + 1:0{width}d}"
        tenant = tenants[host_index % len(tenants)] if len(tenants) > 1 else None
        service = SERVICES[host_index % len(SERVICES)]
        daily_phase = rng.uniform(0.0, 2.0 * math.pi)
        by_measurement: dict[tuple[str, Tags], list[int]] = {}
        for measurement, extra, field, integer, upper in _FIELD_SPECS:
            extra_tags = (("service", service),) if measurement == "http" else extra
            tags = tuple(sorted(_host_tags(host, tenant) + extra_tags))
            base, daily, cycle, sigma = _profile_numbers(measurement, field, rng)
            profiles.append(
                SeriesProfile(
                    measurement=measurement,
                    tags=tags,
                    field=field,
                    base=base,
                    daily_amplitude=daily,
                    daily_phase=daily_phase,
                    cycle_amplitude=cycle,
                    cycle_period_s=rng.uniform(900.0, 3_600.0),
                    cycle_phase=rng.uniform(0.0, 2.0 * math.pi),
                    sigma=sigma,
                    upper=upper,
                    integer=integer,
                )
            )
            by_measurement.setdefault((measurement, tags), []).append(len(profiles) - 1)
        for (measurement, tags), indices in by_measurement.items():
            lines.append(_Line(format_key(measurement, tags), tuple(indices)))
    return profiles, lines


def _format_value(value: float, integer: bool) -> str:
    return f"{round(value)}i" if integer else repr(round(value, 3))


def default_start_ns(interval_ns: int, backfill_s: float = DEFAULT_BACKFILL_S) -> int:
    """``now - backfill_s``, floored to a multiple of the interval."""
    start = time.time_ns() - round(backfill_s * NS_PER_S)
    return start - start % interval_ns


class MetricsSimulator:
    """Seeded generator of Telegraf-like metrics for ``hosts`` hosts with injected anomalies."""

    def __init__(
        self,
        *,
        hosts: int = 8,
        interval_s: float = 10.0,
        start_ns: int | None = None,
        seed: int = 7,
        anomaly_every_s: float = 900.0,
        anomaly_duration_s: float = 300.0,
        warmup_s: float = 1800.0,
        tenants: Sequence[str] = ("default",),
        lines_per_message: int = 50,
        start_tick: int = 0,
        filling_disks: int = 0,
    ) -> None:
        """``anomaly_every_s <= 0`` disables anomalies; ``start_tick`` resumes a run mid-way."""
        if not 0 <= filling_disks <= hosts:
            raise ValueError(f"filling_disks must be in 0..hosts, got {filling_disks}")
        if hosts < 1:
            raise ValueError(f"hosts must be at least 1, got {hosts}")
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        if lines_per_message < 1:
            raise ValueError(f"lines_per_message must be at least 1, got {lines_per_message}")
        if not tenants or len(set(tenants)) != len(tenants) or not all(tenants):
            raise ValueError(f"tenants must be distinct non-empty names, got {tenants!r}")
        if anomaly_every_s > 0 and not anomaly_duration_s > 0:
            raise ValueError(f"anomaly_duration_s must be positive, got {anomaly_duration_s}")
        if warmup_s < 0 or start_tick < 0:
            raise ValueError("warmup_s and start_tick must not be negative")
        self.seed = seed
        self.interval_ns = max(1, round(interval_s * NS_PER_S))
        self.start_ns = default_start_ns(self.interval_ns) if start_ns is None else start_ns
        self.lines_per_message = lines_per_message
        self._anomaly_every_ns = round(anomaly_every_s * NS_PER_S)
        self._anomaly_ticks = max(1, round(anomaly_duration_s * NS_PER_S / self.interval_ns))
        self._warmup_ns = round(warmup_s * NS_PER_S)
        self._kind_offset = _rng(seed, "kinds").randrange(len(ANOMALY_KINDS))
        self._profiles, self._lines = _build_series(hosts, tuple(tenants), seed)
        self._filling = _root_disks(self._profiles)[:filling_disks]
        if self._filling:
            fill_start = min(self._profiles[i].base for i in self._filling)
            self._profiles = [
                replace(p, base=fill_start) if i in self._filling else p
                for i, p in enumerate(self._profiles)
            ]
        self._tick = start_tick
        self._next_anomaly = 0
        self._active: list[_Anomaly] = []
        self.injected: list[InjectedAnomaly] = []
        """Ground truth of every anomaly started so far (before :attr:`now_ns`)."""
        self._catch_up_anomalies(start_tick - 1)

    # ------------------------------------------------------------------ properties

    @property
    def now_ns(self) -> int:
        """Event time of the next tick."""
        return self.start_ns + self._tick * self.interval_ns

    @property
    def tick_index(self) -> int:
        """How many ticks have been generated (the next tick's index)."""
        return self._tick

    @property
    def series(self) -> list[str]:
        return [profile.series for profile in self._profiles]

    @property
    def profiles(self) -> list[SeriesProfile]:
        return list(self._profiles)

    @property
    def lines_per_tick(self) -> int:
        return len(self._lines)

    def messages_per_tick(self) -> int:
        return -(-len(self._lines) // self.lines_per_message)

    # ------------------------------------------------------------------ anomalies

    def _anomaly_start_tick(self, index: int) -> int:
        start_offset = self._warmup_ns + index * self._anomaly_every_ns
        return -(-start_offset // self.interval_ns)

    def _anomaly(self, index: int) -> _Anomaly:
        """The ``index``-th anomaly: a pure function of the seed and ``index``."""
        rng = _rng(self.seed, "anomaly", index)
        kind = ANOMALY_KINDS[(index + self._kind_offset) % len(ANOMALY_KINDS)]
        series_index = rng.randrange(len(self._profiles))
        profile = self._profiles[series_index]
        start_tick = self._anomaly_start_tick(index)
        ticks = self._anomaly_ticks
        magnitude = rng.uniform(6.0, 10.0)
        if kind == "spike":
            ticks = min(ticks, rng.randint(1, 3))
            magnitude = rng.uniform(8.0, 15.0)
        elif kind == "drift":
            magnitude = rng.uniform(8.0, 12.0)
        if not profile.headroom_up(magnitude * profile.sigma):
            magnitude = -magnitude
        start_s = (self.start_ns + start_tick * self.interval_ns) / NS_PER_S
        flat_value = round(profile.clamp(profile.seasonal(start_s)), 3)
        return _Anomaly(index, series_index, kind, start_tick, ticks, magnitude, flat_value)

    def _record(self, anomaly: _Anomaly) -> None:
        start_ns = self.start_ns + anomaly.start_tick * self.interval_ns
        self.injected.append(
            InjectedAnomaly(
                series=self._profiles[anomaly.series_index].series,
                kind=anomaly.kind,
                start_ns=start_ns,
                end_ns=start_ns + anomaly.ticks * self.interval_ns,
            )
        )

    def _catch_up_anomalies(self, last_tick: int) -> None:
        """Start every anomaly due at or before ``last_tick``; drop those over by the next."""
        if self._anomaly_every_ns > 0:
            while self._anomaly_start_tick(self._next_anomaly) <= last_tick:
                anomaly = self._anomaly(self._next_anomaly)
                self._record(anomaly)
                self._active.append(anomaly)
                self._next_anomaly += 1
        self._active = [a for a in self._active if a.start_tick + a.ticks > self._tick]

    # ------------------------------------------------------------------ generation

    def _values(self, tick: int) -> list[float]:
        t_s = (self.start_ns + tick * self.interval_ns) / NS_PER_S
        rng = _rng(self.seed, "noise", tick)
        gauss = rng.gauss
        values = [p.seasonal(t_s) + gauss(0.0, p.sigma) for p in self._profiles]
        for index in self._filling:
            values[index] = self._fill_level(t_s) + gauss(0.0, FILL_SIGMA)
        for anomaly in self._active:
            if anomaly.start_tick <= tick < anomaly.start_tick + anomaly.ticks:
                profile = self._profiles[anomaly.series_index]
                if anomaly.kind == "flatline":
                    values[anomaly.series_index] = anomaly.flat_value
                else:
                    values[anomaly.series_index] += anomaly.offset(tick, profile.sigma)
        return [p.clamp(v) for p, v in zip(self._profiles, values, strict=True)]

    def _fill_level(self, t_s: float) -> float:
        position = (t_s - self.start_ns / NS_PER_S + FILL_LEAD_S) % FILL_CYCLE_S
        return FILL_FROM + (FILL_TO - FILL_FROM) * position / FILL_CYCLE_S

    @property
    def filling_series(self) -> list[str]:
        """The series of the disks that fill up (see ``filling_disks``)."""
        return [self._profiles[i].series for i in self._filling]

    def tick(self) -> list[bytes]:
        """All series' points of the next interval as line-protocol messages, then advance."""
        self._catch_up_anomalies(self._tick)
        values = self._values(self._tick)
        timestamp = self.now_ns
        profiles = self._profiles
        lines = []
        for line in self._lines:
            fields = ",".join(
                f"{profiles[i].field}={_format_value(values[i], profiles[i].integer)}"
                for i in line.series_indices
            )
            lines.append(f"{line.prefix} {fields} {timestamp}\n")
        self._tick += 1
        size = self.lines_per_message
        return ["".join(lines[i : i + size]).encode() for i in range(0, len(lines), size)]
