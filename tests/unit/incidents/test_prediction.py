"""Predicted incidents: limit parsing and the per-series state machine (pure, no forecaster)."""

import pytest

from incidents.prediction import (
    ForecastLimit,
    PredictedBreach,
    PredictionBuilder,
    limit_for,
    parse_forecast_limits,
    predicted_fingerprint,
)
from incidents.records import ns_to_datetime
from incidents.schemas import IncidentEventType, Severity, WindowAggregate

S = 1_000_000_000
T0 = 1_700_000_040 * S
DISK = "disk,host=web-1,path=/var used_percent"
DISK_LIMIT = ForecastLimit("disk", "used_percent", "above", 95.0)


def window(i: int, mean: float, series: str = DISK) -> WindowAggregate:
    start = T0 + i * 60 * S
    return WindowAggregate(series, "default", start, start + 60 * S, 6, mean, mean, mean, 0.0, mean)


def breach(at_window: int, probability: float = 0.6) -> PredictedBreach:
    return PredictedBreach(
        steps_ahead=3,
        time_ns=T0 + at_window * 60 * S,
        forecast_value=93.0,
        bound=95.5,
        probability=probability,
        max_probability=probability + 0.1,
    )


# --- FORECAST_LIMITS --------------------------------------------------------------------------


def test_limits_parse_direction_value_and_field_with_dots() -> None:
    limits = parse_forecast_limits(" disk.used_percent>95 , mem.available_percent< 5,x.a.b>-1e3,")
    assert limits == (
        DISK_LIMIT,
        ForecastLimit("mem", "available_percent", "below", 5.0),
        ForecastLimit("x", "a.b", "above", -1000.0),
    )
    assert str(limits[0]) == "disk.used_percent > 95"
    assert parse_forecast_limits("") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("disk>95", "bad forecast limit 'disk>95'"),
        ("disk.used_percent>=95", "bad forecast limit"),
        ("disk.used_percent>ninety", "bad forecast limit"),
        ("disk.used_percent", "bad forecast limit"),
        ("disk.used_percent>95,disk.used_percent<5", "two forecast limits for disk.used_percent"),
    ],
)
def test_bad_limits_are_refused_with_the_entry_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_forecast_limits(text)


def test_a_limit_applies_to_its_measurement_and_field_whatever_the_tags() -> None:
    limits = parse_forecast_limits("disk.used_percent>95")
    assert limit_for(limits, window(0, 1.0)) == DISK_LIMIT
    assert limit_for(limits, window(0, 1.0, "disk used_percent")) == DISK_LIMIT
    assert limit_for(limits, window(0, 1.0, "disk,host=a free")) is None
    assert limit_for(limits, window(0, 1.0, "diskio,host=a used_percent")) is None


def test_past_the_limit_is_inclusive_per_direction_and_never_for_nan() -> None:
    below = ForecastLimit("mem", "available_percent", "below", 5.0)
    assert DISK_LIMIT.is_past(95.0) and not DISK_LIMIT.is_past(94.9)
    assert below.is_past(5.0) and not below.is_past(5.1)
    assert not DISK_LIMIT.is_past(float("nan"))


# --- PredictionBuilder ------------------------------------------------------------------------


def test_a_predicted_breach_opens_a_predicted_incident_with_its_time() -> None:
    builder = PredictionBuilder(resolve_after_windows=2)
    assert builder.step(window(0, 80.0), DISK_LIMIT, None) is None
    update = builder.step(window(1, 85.0), DISK_LIMIT, breach(4))
    assert update is not None
    assert update.type is IncidentEventType.OPENED
    assert update.metadata["kind"] == "predicted"
    assert update.metadata["predicted_breach_time"] == ns_to_datetime(T0 + 4 * 60 * S).isoformat()
    assert update.metadata["steps_ahead"] == 3
    assert update.metadata["limit"] == 95.0
    assert update.title == "Predicted disk.used_percent > 95 on web-1"
    assert update.severity is Severity.HIGH
    assert update.score == pytest.approx(0.7)
    assert update.fingerprint == predicted_fingerprint("default", DISK, DISK_LIMIT)
    assert update.category == "storage"


def test_a_window_already_past_the_limit_opens_no_prediction() -> None:
    builder = PredictionBuilder(resolve_after_windows=2)
    assert builder.step(window(0, 96.0), DISK_LIMIT, breach(2)) is None
    assert builder.open == {}


def test_an_unchanged_predicted_time_is_quiet_and_a_moved_one_updates() -> None:
    builder = PredictionBuilder(resolve_after_windows=2)
    builder.step(window(0, 85.0), DISK_LIMIT, breach(5))
    assert builder.step(window(1, 86.0), DISK_LIMIT, breach(5)) is None
    moved = builder.step(window(2, 86.0), DISK_LIMIT, breach(7, probability=0.8))
    assert moved is not None
    assert moved.type is IncidentEventType.UPDATED
    assert moved.metadata["predicted_breach_time"] == ns_to_datetime(T0 + 7 * 60 * S).isoformat()
    assert moved.peak_score == pytest.approx(0.9)


def test_the_prediction_coming_true_turns_the_incident_detected_then_it_resolves() -> None:
    builder = PredictionBuilder(resolve_after_windows=2)
    opened = builder.step(window(0, 90.0), DISK_LIMIT, breach(3))
    assert opened is not None
    assert builder.step(window(1, 93.0), DISK_LIMIT, breach(3)) is None
    came_true = builder.step(window(3, 95.5), DISK_LIMIT, breach(4))
    assert came_true is not None
    assert came_true.type is IncidentEventType.UPDATED
    assert came_true.fingerprint == opened.fingerprint
    assert came_true.metadata["kind"] == "detected"
    assert came_true.title == "disk.used_percent > 95 on web-1"
    assert came_true.severity is Severity.CRITICAL
    assert builder.step(window(4, 97.0), DISK_LIMIT, breach(5)) is None
    assert builder.step(window(5, 90.0), DISK_LIMIT, breach(8)) is None
    resolved = builder.step(window(6, 90.0), DISK_LIMIT, None)
    assert resolved is not None
    assert resolved.type is IncidentEventType.RESOLVED
    assert resolved.metadata["resolution"] == "back within disk.used_percent > 95 for 2 windows"
    assert builder.open == {}


def test_a_prediction_that_fades_resolves_after_quiet_windows() -> None:
    builder = PredictionBuilder(resolve_after_windows=3)
    builder.step(window(0, 90.0), DISK_LIMIT, breach(30))
    assert builder.step(window(1, 80.0), DISK_LIMIT, None) is None
    assert builder.step(window(2, 80.0), DISK_LIMIT, None) is None
    resolved = builder.step(window(3, 80.0), DISK_LIMIT, None)
    assert resolved is not None and resolved.type is IncidentEventType.RESOLVED
    assert resolved.metadata["resolution"] == (
        "the forecast no longer reaches disk.used_percent > 95"
    )
    assert resolved.metadata["kind"] == "predicted"


def test_a_predicted_time_that_passes_without_breach_says_so() -> None:
    builder = PredictionBuilder(resolve_after_windows=1)
    builder.step(window(0, 90.0), DISK_LIMIT, breach(2))
    resolved = builder.step(window(2, 90.0), DISK_LIMIT, None)
    assert resolved is not None
    when = ns_to_datetime(T0 + 2 * 60 * S).isoformat()
    assert resolved.metadata["resolution"] == (
        f"predicted breach of disk.used_percent > 95 at {when} did not happen"
    )


def test_a_renewed_prediction_resets_the_quiet_count() -> None:
    builder = PredictionBuilder(resolve_after_windows=2)
    builder.step(window(0, 90.0), DISK_LIMIT, breach(10))
    assert builder.step(window(1, 80.0), DISK_LIMIT, None) is None
    builder.step(window(2, 90.0), DISK_LIMIT, breach(10))
    assert builder.step(window(3, 80.0), DISK_LIMIT, None) is None
    assert builder.open


def test_each_series_has_its_own_prediction() -> None:
    builder = PredictionBuilder(resolve_after_windows=2)
    other = "disk,host=web-2,path=/var used_percent"
    a = builder.step(window(0, 90.0), DISK_LIMIT, breach(3))
    b = builder.step(window(0, 90.0, other), DISK_LIMIT, breach(3))
    assert a is not None and b is not None and a.fingerprint != b.fingerprint
    assert len(builder.open) == 2


def test_resolve_after_windows_must_be_positive() -> None:
    with pytest.raises(ValueError):
        PredictionBuilder(resolve_after_windows=0)
