from incidents.config import DEFAULT_SEVERITY_THRESHOLDS
from incidents.lifecycle import IncidentBuilder, detected_fingerprint, severity_score
from incidents.schemas import (
    AnomalyScore,
    Category,
    IncidentEventType,
    Severity,
    WindowAggregate,
)

S = 1_000_000_000
SERIES = "postgresql,host=db-1 connections"


def scored(i: int, score: float, series: str = SERIES, tenant: str = "default") -> AnomalyScore:
    agg = WindowAggregate(
        series, tenant, i * 60 * S, (i + 1) * 60 * S, 6, 10.0, 9.0, 11.0, 0.5, 10.0
    )
    return AnomalyScore(agg, score, score >= 0.95, {"ecod": score})


def builder(resolve_after: int = 3) -> IncidentBuilder:
    return IncidentBuilder(
        threshold=0.95,
        resolve_after_windows=resolve_after,
        severity_thresholds=DEFAULT_SEVERITY_THRESHOLDS,
    )


def test_normal_windows_produce_nothing():
    assert builder().run([scored(i, 0.2) for i in range(10)]) == []


def test_open_update_and_auto_resolve_after_n_normal_windows():
    b = builder(resolve_after=3)
    scores = [0.1, 0.96, 0.999, 0.97, 0.2, 0.2, 0.2, 0.2]
    updates = b.run([scored(i, s) for i, s in enumerate(scores)])
    assert [u.type for u in updates] == [
        IncidentEventType.OPENED,
        IncidentEventType.UPDATED,
        IncidentEventType.UPDATED,
        IncidentEventType.RESOLVED,
    ]
    assert updates[-1].window_start_ns == 6 * 60 * S  # the third normal window
    assert updates[2].peak_score == 0.999 and updates[3].peak_score == 0.999
    assert len({u.fingerprint for u in updates}) == 1
    assert "auto-resolved after 3 normal windows" in updates[-1].metadata["resolution"]


def test_a_normal_window_in_between_resets_the_resolve_countdown():
    b = builder(resolve_after=2)
    updates = b.run([scored(i, s) for i, s in enumerate([0.99, 0.1, 0.99, 0.1, 0.1])])
    assert [u.type for u in updates] == [
        IncidentEventType.OPENED,
        IncidentEventType.UPDATED,
        IncidentEventType.RESOLVED,
    ]


def test_reopening_after_resolve_uses_the_same_fingerprint_for_dedup():
    b = builder(resolve_after=1)
    updates = b.run([scored(i, s) for i, s in enumerate([0.99, 0.1, 0.99])])
    assert [u.type for u in updates][-1] is IncidentEventType.OPENED
    assert updates[0].fingerprint == updates[-1].fingerprint


def test_series_are_independent_and_fingerprints_include_the_tenant():
    b = builder()
    other = "cpu,host=web-1 usage_user"
    updates = b.run([scored(0, 0.99), scored(0, 0.99, other), scored(0, 0.99, tenant="acme")])
    assert len({u.fingerprint for u in updates}) == 3
    assert detected_fingerprint("default", SERIES) != detected_fingerprint("acme", SERIES)


def test_category_title_and_severity_of_a_detected_incident():
    update = builder().run([scored(0, 0.999)])[0]
    assert update.category is Category.DATABASE
    assert update.title == "Anomalous postgresql.connections on db-1"
    assert update.severity is Severity.CRITICAL
    assert builder().run([scored(0, 0.96)])[0].severity is Severity.INFO


def test_severity_only_goes_up_while_open():
    updates = builder().run([scored(i, s) for i, s in enumerate([0.999, 0.96])])
    assert updates[1].severity is Severity.CRITICAL


def test_severity_score_rescales_the_part_above_the_threshold():
    assert severity_score(0.95, 0.95) == 0.0
    assert severity_score(1.0, 0.95) == 1.0
    assert abs(severity_score(0.975, 0.95) - 0.5) < 1e-9
    assert severity_score(0.5, 0.95) == 0.0
