"""Incident analytics: mean time to acknowledge (MTTA) and to resolve (MTTR), and counts.

MTTA is the mean of ``acknowledged_at - created_at`` over the incidents acknowledged in the
period, MTTR the mean of ``resolved_at - created_at`` over those resolved in it. Both use the
wall-clock times of the system (``created_at`` is when the incident was recorded, not the
event time of the anomaly), so a backfilled or replayed anomaly does not count hours it spent
before anybody could have known about it. An incident resolved without being acknowledged
counts towards MTTR only; a reopened one counts with its latest acknowledgement/resolution.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class DurationStats:
    """Mean of some durations in seconds (None when there were none) and how many."""

    count: int = 0
    mean_seconds: float | None = None


def duration_stats(pairs: Iterable[tuple[datetime, datetime]]) -> DurationStats:
    """Mean of ``end - start`` over (start, end) pairs; a negative duration counts as 0.

    Summed in exact ``timedelta`` arithmetic, so the mean does not drift with many incidents.
    """
    count = 0
    total_us = 0
    for start, end in pairs:
        count += 1
        total_us += max((end - start) // _MICROSECOND, 0)
    if count == 0:
        return DurationStats()
    return DurationStats(count=count, mean_seconds=total_us / count / 1e6)


@dataclass(frozen=True, slots=True)
class IncidentSummary:
    total: int
    by_status: dict[str, int] = field(default_factory=dict)
    by_severity: dict[str, int] = field(default_factory=dict)
    by_category: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    acknowledged: DurationStats = DurationStats()
    resolved: DurationStats = DurationStats()
