"""MTTA/MTTR arithmetic with known durations."""

from datetime import UTC, datetime, timedelta

from incidents.summary import DurationStats, duration_stats

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_mean_of_known_durations():
    pairs = [
        (T0, T0 + timedelta(seconds=60)),
        (T0, T0 + timedelta(seconds=120)),
        (T0, T0 + timedelta(minutes=10)),
    ]
    assert duration_stats(pairs) == DurationStats(count=3, mean_seconds=260.0)


def test_microseconds_are_exact_and_negative_counts_as_zero():
    pairs = [
        (T0, T0 + timedelta(microseconds=1)),
        (T0 + timedelta(seconds=5), T0),
    ]
    assert duration_stats(pairs) == DurationStats(count=2, mean_seconds=0.5e-6)


def test_nothing_gives_none():
    assert duration_stats([]) == DurationStats(count=0, mean_seconds=None)
