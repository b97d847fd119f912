"""The SQL store on a real SQLite file: schema, dedup, replay-safe writes, queries, isolation."""

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from hypothesis import given
from hypothesis import strategies as st

import connectors.classifier_store  # noqa: F401  (its table is part of the schema)
from connectors.store import (
    MIGRATIONS_DIR,
    IncidentConflict,
    Store,
    components_json,
    finite,
    metadata,
)
from incidents.config import DEFAULT_SEVERITY_THRESHOLDS
from incidents.lifecycle import IncidentBuilder, detected_fingerprint
from incidents.prediction import ForecastLimit, PredictedBreach, PredictionBuilder
from incidents.records import (
    IncidentEvent,
    IncidentQuery,
    Role,
    TimelineType,
    User,
    ns_to_datetime,
)
from incidents.schemas import (
    AnomalyScore,
    Category,
    DeadLetter,
    IncidentEventType,
    IncidentKind,
    IncidentStatus,
    IncidentUpdate,
    Severity,
    WindowAggregate,
)

S = 1_000_000_000
W = 60 * S
SERIES = "postgresql,host=db-1 connections"


def window(
    i: int,
    score: float = 0.1,
    *,
    series: str = SERIES,
    tenant: str = "acme",
    mean: float = 10.0,
) -> AnomalyScore:
    agg = WindowAggregate(series, tenant, i * W, (i + 1) * W, 6, mean, 9.0, 11.0, 0.5, mean)
    return AnomalyScore(agg, score, score >= 0.95, {"ecod": score})


def update(
    kind: IncidentEventType,
    i: int,
    *,
    score: float = 0.97,
    severity: Severity = Severity.HIGH,
    tenant: str = "acme",
    series: str = SERIES,
    metadata: dict | None = None,
) -> IncidentUpdate:
    return IncidentUpdate(
        type=kind,
        fingerprint=detected_fingerprint(tenant, series),
        tenant=tenant,
        series=series,
        title=f"Anomalous {series}",
        category=Category.DATABASE,
        severity=severity,
        score=score,
        peak_score=score,
        window_start_ns=i * W,
        window_end_ns=(i + 1) * W,
        observed=42.0,
        metadata=metadata or {},
    )


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


def migration_head() -> str:
    """The newest revision of connectors/migrations (the revisions are re-chained on merges)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    s.migrate()
    yield s
    s.close()


def all_incidents(store: Store, tenant: str = "acme", **filters) -> list:
    items, total = store.list_incidents(tenant, IncidentQuery(limit=500, **filters))
    assert total == len(items)
    return items


# --- schema ---------------------------------------------------------------------------------


def test_migrate_is_idempotent_and_matches_the_table_definitions(db_url):
    store = Store(db_url)
    store.migrate()
    store.migrate()  # second run is a no-op, not an error
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one()
    store.close()
    assert diff == []
    assert version == migration_head()


def test_sqlite_uses_wal_and_a_busy_timeout(store):
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 5000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1


def test_postgres_urls_use_psycopg3_and_repr_hides_the_password():
    store = Store("postgresql://app:s3cret@localhost:5432/incidents")  # no connection is made
    try:
        assert store.engine.dialect.name == "postgresql"
        assert store.engine.dialect.driver == "psycopg"
        assert "s3cret" not in repr(store)
    finally:
        store.close()


def test_ping_reports_an_unreachable_database(tmp_path):
    (tmp_path / "adir").mkdir()
    broken = Store(f"sqlite:///{tmp_path / 'adir'}")  # a directory cannot be opened as a db
    assert broken.ping() is False
    broken.close()


def test_missing_parent_directory_is_created(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'var' / 'deep' / 'x.db'}")
    s.migrate()
    assert s.ping()
    s.close()
    assert (tmp_path / "var" / "deep" / "x.db").exists()


# --- windows --------------------------------------------------------------------------------


def test_replayed_window_updates_in_place_never_duplicates(store):
    store.write_windows([window(0, 0.2), window(1, 0.3)])
    store.write_windows([window(1, 0.99, mean=99.0)])  # replay of window 1 with a new score
    history = store.window_history("acme", SERIES)
    assert [w.window_start_ns for w in history] == [0, W]
    assert history[1].anomaly_score == pytest.approx(0.99)
    assert history[1].mean == pytest.approx(99.0)
    assert history[1].is_anomaly is True


def test_duplicates_inside_one_batch_keep_the_last(store):
    store.write_windows([window(0, 0.2), window(0, 0.5)])
    (only,) = store.window_history("acme", SERIES)
    assert only.anomaly_score == pytest.approx(0.5)


def test_a_large_batch_is_written_in_one_call(store):
    batch = [window(i, series=f"cpu,host=h{i % 50} usage_user") for i in range(5000)]
    store.write_windows(batch)
    latest = store.latest_windows("acme", limit=1000)
    assert len(latest) == 50
    assert sum(len(store.window_history("acme", w.series, limit=10_000)) for w in latest) == 5000


def test_non_finite_values_are_stored_as_null(store):
    agg = WindowAggregate(SERIES, "acme", 0, W, 1, float("nan"), 1.0, float("inf"), 0.0, 1.0)
    store.write_windows([AnomalyScore(agg, float("nan"), False, {"x": float("nan"), "y": 0.5})])
    (w,) = store.window_history("acme", SERIES)
    assert w.mean is None and w.maximum is None and w.anomaly_score is None
    assert w.components == {"x": None, "y": 0.5}


def test_non_finite_metadata_from_the_builder_is_stored_as_null(store):
    odd = update(IncidentEventType.OPENED, 1, metadata={"window_mean": float("nan"), "x": (1, 2)})
    (incident,) = store.apply_incident_updates([odd])
    stored = store.get_incident("acme", incident.id)
    assert stored == incident
    assert stored.metadata["window_mean"] is None
    assert stored.metadata["x"] == [1, 2]


def test_latest_window_per_series_with_measurement_filter_and_tenants(store):
    store.write_windows(
        [window(i, series="cpu,host=a usage_user") for i in range(3)]
        + [window(i, series="mem,host=a used_percent") for i in range(5)]
        + [window(9, series="cpu,host=a usage_user", tenant="globex")]
    )
    latest = store.latest_windows("acme")
    assert [(w.series, w.window_start_ns) for w in latest] == [
        ("cpu,host=a usage_user", 2 * W),
        ("mem,host=a used_percent", 4 * W),
    ]
    assert latest[0].measurement == "cpu" and latest[0].field == "usage_user"
    only_mem = store.latest_windows("acme", measurement="mem")
    assert [w.series for w in only_mem] == ["mem,host=a used_percent"]
    assert [w.window_start_ns for w in store.latest_windows("globex")] == [9 * W]
    assert store.latest_windows("nobody") == []


def test_window_history_range_limit_and_order(store):
    store.write_windows([window(i) for i in range(10)])
    ranged = store.window_history("acme", SERIES, 2 * W, 6 * W, 100)
    assert [w.window_start_ns // W for w in ranged] == [2, 3, 4, 5]
    newest_three = store.window_history("acme", SERIES, None, None, 3)
    assert [w.window_start_ns // W for w in newest_three] == [7, 8, 9]
    far_future = store.window_history("acme", SERIES, 0, 10**30, 100)  # clamped, not an error
    assert len(far_future) == 10


def test_anomalous_windows_by_score_and_range(store):
    scores = [0.1, 0.96, 0.5, 0.99, 0.97]
    store.write_windows([window(i, s) for i, s in enumerate(scores)])
    store.write_windows([window(3, 0.999, tenant="globex")])
    found = store.anomalous_windows("acme", None, None, 0.95, 100)
    assert [w.window_start_ns // W for w in found] == [4, 3, 1]  # newest first
    assert [
        w.window_start_ns // W for w in store.anomalous_windows("acme", 2 * W, 4 * W, 0.9, 10)
    ] == [3]
    assert store.anomalous_windows("acme", None, None, 0.995, 10) == []


# --- detected incidents ---------------------------------------------------------------------


def test_builder_updates_open_update_and_auto_resolve(store):
    builder = IncidentBuilder(
        threshold=0.95, resolve_after_windows=2, severity_thresholds=DEFAULT_SEVERITY_THRESHOLDS
    )
    scores = [0.1, 0.96, 0.999, 0.97, 0.2, 0.2]
    updates = builder.run([window(i, s) for i, s in enumerate(scores)])
    changed = store.apply_incident_updates(updates)
    (incident,) = all_incidents(store)
    assert [c.id for c in changed] == [incident.id]
    assert changed[0] == incident
    assert incident.kind is IncidentKind.DETECTED
    assert incident.source == "detector"
    assert incident.series == SERIES
    assert incident.status is IncidentStatus.RESOLVED
    assert incident.resolved_by == "auto"
    assert incident.resolution == "auto-resolved after 2 normal windows"
    assert incident.peak_score == pytest.approx(0.999)
    assert incident.first_seen == ns_to_datetime(1 * W)
    assert incident.last_seen == ns_to_datetime(4 * W)  # end of the last anomalous window
    types = [e.type for e in store.timeline("acme", incident.id)]
    assert types == [
        TimelineType.CREATED,
        TimelineType.SCORE_UPDATED,
        TimelineType.SCORE_UPDATED,
        TimelineType.RESOLVED,
    ]


def test_a_predicted_incident_that_comes_true_becomes_detected(store):
    limit = ForecastLimit("disk", "used_percent", "above", 95.0)
    builder = PredictionBuilder(resolve_after_windows=1)
    disk = "disk,host=web-1 used_percent"

    def disk_window(i: int, mean: float) -> WindowAggregate:
        return WindowAggregate(disk, "acme", i * W, (i + 1) * W, 6, mean, mean, mean, 0.0, mean)

    breach = PredictedBreach(3, 5 * W, 94.0, 95.2, 0.4, 0.5)
    opened = builder.step(disk_window(1, 90.0), limit, breach)
    store.apply_incident_updates([opened])
    (predicted,) = all_incidents(store, kind=IncidentKind.PREDICTED)
    assert predicted.title == "Predicted disk.used_percent > 95 on web-1"
    assert predicted.metadata["predicted_breach_time"] == ns_to_datetime(5 * W).isoformat()
    assert predicted.status is IncidentStatus.OPEN
    store.apply_incident_updates([builder.step(disk_window(5, 96.0), limit, None)])
    assert all_incidents(store, kind=IncidentKind.PREDICTED) == []
    (real,) = all_incidents(store, kind=IncidentKind.DETECTED)
    assert real.id == predicted.id
    assert real.title == "disk.used_percent > 95 on web-1"
    assert real.severity is Severity.CRITICAL
    store.apply_incident_updates([builder.step(disk_window(6, 50.0), limit, None)])
    (resolved,) = all_incidents(store)
    assert resolved.status is IncidentStatus.RESOLVED
    assert resolved.resolution == "back within disk.used_percent > 95 for 1 windows"
    entries = store.timeline("acme", resolved.id)
    assert [e.type for e in entries] == [
        TimelineType.CREATED,
        TimelineType.BREACHED,
        TimelineType.RESOLVED,
    ]
    assert entries[0].details["kind"] == "predicted"


def test_replaying_updates_changes_nothing(store):
    updates = [
        update(IncidentEventType.OPENED, 1),
        update(IncidentEventType.UPDATED, 2, score=0.99),
        update(IncidentEventType.RESOLVED, 5, metadata={"normal_windows": 3}),
    ]
    store.apply_incident_updates(updates)
    (before,) = all_incidents(store)
    timeline_before = store.timeline("acme", before.id)
    assert store.apply_incident_updates(updates) == []
    assert store.apply_incident_updates(updates[:1]) == []
    (after,) = all_incidents(store)
    assert after == before
    assert store.timeline("acme", before.id) == timeline_before
    assert after.resolution == "auto-resolved after 3 normal windows"


def test_opened_for_an_open_fingerprint_counts_a_repeat(store):
    (first,) = store.apply_incident_updates([update(IncidentEventType.OPENED, 1)])
    (again,) = store.apply_incident_updates([update(IncidentEventType.OPENED, 4, score=0.98)])
    assert again.id == first.id
    assert again.repeat_count == 1
    assert again.score == pytest.approx(0.98)
    assert len(all_incidents(store)) == 1


def test_severity_only_goes_up_and_peak_is_kept(store):
    store.apply_incident_updates(
        [
            update(IncidentEventType.OPENED, 1, score=0.99, severity=Severity.CRITICAL),
            update(IncidentEventType.UPDATED, 2, score=0.96, severity=Severity.LOW),
        ]
    )
    (incident,) = all_incidents(store)
    assert incident.severity is Severity.CRITICAL
    assert incident.peak_score == pytest.approx(0.99)
    assert incident.score == pytest.approx(0.96)  # the latest window's score
    assert incident.last_seen == ns_to_datetime(3 * W)


def test_new_anomaly_after_auto_resolve_opens_a_new_incident(store):
    store.apply_incident_updates(
        [update(IncidentEventType.OPENED, 1), update(IncidentEventType.RESOLVED, 4)]
    )
    store.apply_incident_updates([update(IncidentEventType.OPENED, 10)])
    incidents = all_incidents(store, order="oldest")
    assert [i.status for i in incidents] == [IncidentStatus.RESOLVED, IncidentStatus.OPEN]
    assert incidents[0].id != incidents[1].id


def test_update_after_a_person_resolved_opens_a_new_incident(store):
    (opened,) = store.apply_incident_updates([update(IncidentEventType.OPENED, 1)])
    store.resolve("acme", opened.id, actor="alice", resolution="fixed by hand")
    (reopened,) = store.apply_incident_updates([update(IncidentEventType.UPDATED, 2)])
    assert reopened.id != opened.id
    assert reopened.status is IncidentStatus.OPEN


def test_resolved_without_an_open_incident_is_a_no_op(store):
    assert store.apply_incident_updates([update(IncidentEventType.RESOLVED, 3)]) == []
    assert all_incidents(store) == []


def test_updates_are_tenant_scoped(store):
    store.apply_incident_updates(
        [update(IncidentEventType.OPENED, 1), update(IncidentEventType.OPENED, 1, tenant="globex")]
    )
    assert len(all_incidents(store, "acme")) == 1
    assert len(all_incidents(store, "globex")) == 1


# --- manual incidents -----------------------------------------------------------------------


def event(title: str = "Datenbank-Verbindungs-Timeout", **kw) -> IncidentEvent:
    base = {
        "description": "Mehrere Datenbank-Verbindungs-Timeouts erkannt",
        "severity": "high",
        "source": "monitoring",
        "metadata": {"database": "primary", "timeout_count": 15},
    }
    return IncidentEvent(title=title, **{**base, **kw})


def test_create_classifies_and_dedups_open_incidents(store):
    first, created = store.create_incident(event(), tenant="acme", actor="alice")
    assert created is True
    assert first.category is Category.DATABASE
    assert first.kind is IncidentKind.MANUAL
    second, created_again = store.create_incident(
        event(severity="critical"), tenant="acme", actor="bob"
    )
    assert created_again is False
    assert second.id == first.id
    assert second.repeat_count == 1
    assert second.severity is Severity.CRITICAL
    third, _ = store.create_incident(event(severity="low"), tenant="acme", actor="bob")
    assert third.severity is Severity.CRITICAL  # never lowered by a duplicate
    assert [e.type for e in store.timeline("acme", first.id)] == [
        TimelineType.CREATED,
        TimelineType.REPEATED,
        TimelineType.REPEATED,
    ]


def test_dedup_uses_explicit_fingerprint_and_skips_resolved(store):
    a, _ = store.create_incident(event("A", fingerprint="fp-1"), tenant="acme", actor="x")
    b, created = store.create_incident(event("B", fingerprint="fp-1"), tenant="acme", actor="x")
    assert (b.id, created) == (a.id, False)
    store.resolve("acme", a.id, actor="x", resolution=None)
    c, created = store.create_incident(event("C", fingerprint="fp-1"), tenant="acme", actor="x")
    assert created is True and c.id != a.id
    other, created = store.create_incident(
        event("A", fingerprint="fp-1"), tenant="globex", actor="x"
    )
    assert created is True and other.id not in {a.id, c.id}


def test_concurrent_duplicate_reports_create_one_incident(db_url, store):
    """Two connections (like the API and the dataflow) race on the same fingerprint."""
    stores = [Store(db_url) for _ in range(4)]
    results: list[bool] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def report(s: Store) -> None:
        try:
            barrier.wait()
            for _ in range(5):
                results.append(s.create_incident(event(), tenant="acme", actor="t")[1])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=report, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert errors == []
    assert results.count(True) == 1
    (incident,) = all_incidents(store)
    assert incident.repeat_count == 19


def test_get_is_tenant_scoped(store):
    incident, _ = store.create_incident(event(), tenant="acme", actor="x")
    assert store.get_incident("acme", incident.id) == incident
    assert store.get_incident("globex", incident.id) is None
    assert store.acknowledge("globex", incident.id, actor="x") is None
    assert store.resolve("globex", incident.id, actor="x", resolution=None) is None
    assert store.update_incident("globex", incident.id, {"title": "t"}, actor="x") is None
    assert store.timeline("globex", incident.id) == []


def test_list_filters_pagination_and_total(store):
    for i in range(7):
        disk = event(f"disk full {i}", severity="low", description="", metadata={})
        store.create_incident(disk, tenant="acme", actor="x")
    db, _ = store.create_incident(event("replica lag"), tenant="acme", actor="x")
    store.acknowledge("acme", db.id, actor="x")
    store.apply_incident_updates([update(IncidentEventType.OPENED, 1)])
    store.create_incident(event("disk full 0"), tenant="globex", actor="x")

    pages = [store.list_incidents("acme", IncidentQuery(limit=4, offset=o)) for o in (0, 4, 8)]
    assert [len(p[0]) for p in pages] == [4, 4, 1]
    assert {p[1] for p in pages} == {9}
    ids = [i.id for p in pages for i in p[0]]
    assert len(set(ids)) == 9
    oldest = [i.id for i in store.list_incidents("acme", IncidentQuery(order="oldest"))[0]]
    assert oldest == ids[::-1]

    assert len(all_incidents(store, severity=Severity.LOW)) == 7
    assert len(all_incidents(store, category=Category.STORAGE)) == 7
    assert [i.id for i in all_incidents(store, status=IncidentStatus.ACKNOWLEDGED)] == [db.id]
    (detected,) = all_incidents(store, kind=IncidentKind.DETECTED)
    assert all_incidents(store, series=SERIES) == [detected]
    assert len(all_incidents(store, "globex")) == 1


def test_since_until_select_overlapping_incidents(store):
    store.apply_incident_updates(
        [
            update(IncidentEventType.OPENED, 10, series="a x"),  # [10W, 11W]
            update(IncidentEventType.OPENED, 20, series="b x"),  # [20W, 21W]
            update(IncidentEventType.UPDATED, 30, series="b x"),  # -> [20W, 31W]
        ]
    )

    def series(since: int | None, until: int | None) -> set[str]:
        q = {
            "since": ns_to_datetime(since * W) if since is not None else None,
            "until": ns_to_datetime(until * W) if until is not None else None,
        }
        return {i.series for i in all_incidents(store, **q)}

    assert series(None, None) == {"a x", "b x"}
    assert series(25, None) == {"b x"}  # still going on at 25
    assert series(None, 15) == {"a x"}
    assert series(10, 20) == {"a x", "b x"}
    assert series(12, 19) == set()


def test_update_edits_fields_and_moves_status(store):
    incident, _ = store.create_incident(event(), tenant="acme", actor="x")
    edited = store.update_incident(
        "acme",
        incident.id,
        {"title": "Primary DB down", "severity": "critical", "tags": ["db"], "metadata": {"a": 1}},
        actor="alice",
    )
    assert edited.title == "Primary DB down"
    assert edited.severity is Severity.CRITICAL
    assert edited.tags == ("db",)
    assert edited.metadata == {"a": 1}
    assert store.get_incident("acme", incident.id) == edited
    same = store.update_incident("acme", incident.id, {"title": "Primary DB down"}, actor="x")
    assert same.updated_at == edited.updated_at  # no change, nothing written
    resolved = store.update_incident(
        "acme", incident.id, {"status": "resolved", "resolution": "failover"}, actor="alice"
    )
    assert resolved.status is IncidentStatus.RESOLVED
    assert (resolved.resolved_by, resolved.resolution) == ("alice", "failover")
    reopened = store.update_incident("acme", incident.id, {"status": "open"}, actor="alice")
    assert reopened.status is IncidentStatus.OPEN and reopened.resolution is None
    entries = store.timeline("acme", incident.id)
    assert [e.type for e in entries] == [
        TimelineType.CREATED,
        TimelineType.EDITED,
        TimelineType.RESOLVED,
        TimelineType.REOPENED,
    ]
    assert entries[1].details["severity"] == {"from": "high", "to": "critical"}
    assert entries[1].actor == "alice"
    with pytest.raises(ValueError, match="fingerprint"):
        store.update_incident("acme", incident.id, {"fingerprint": "x"}, actor="x")


def test_reopening_conflicts_with_an_open_duplicate(store):
    old, _ = store.create_incident(event(), tenant="acme", actor="x")
    store.resolve("acme", old.id, actor="x", resolution=None)
    store.create_incident(event(), tenant="acme", actor="x")  # new open one, same fingerprint
    with pytest.raises(IncidentConflict):
        store.update_incident("acme", old.id, {"status": "open"}, actor="x")
    assert store.get_incident("acme", old.id).status is IncidentStatus.RESOLVED


def test_acknowledge_and_resolve_are_idempotent(store):
    incident, _ = store.create_incident(event(), tenant="acme", actor="x")
    acked = store.acknowledge("acme", incident.id, actor="alice")
    assert acked.status is IncidentStatus.ACKNOWLEDGED
    assert acked.acknowledged_by == "alice"
    assert acked.acknowledged_at >= acked.created_at
    again = store.acknowledge("acme", incident.id, actor="bob")
    assert (again.acknowledged_by, again.acknowledged_at) == ("alice", acked.acknowledged_at)
    resolved = store.resolve("acme", incident.id, actor="bob", resolution="restarted pool")
    assert resolved.resolved_by == "bob"
    twice = store.resolve("acme", incident.id, actor="carol", resolution="other")
    assert (twice.resolved_by, twice.resolution) == ("bob", "restarted pool")
    with pytest.raises(IncidentConflict):
        store.acknowledge("acme", incident.id, actor="x")
    types = [e.type for e in store.timeline("acme", incident.id)]
    assert types == [TimelineType.CREATED, TimelineType.ACKNOWLEDGED, TimelineType.RESOLVED]
    assert store.acknowledge("acme", "00000000-0000-4000-8000-000000000000", actor="x") is None


def test_timestamps_are_aware_utc(store):
    incident, _ = store.create_incident(event(), tenant="acme", actor="x")
    got = store.get_incident("acme", incident.id)
    assert got.created_at.tzinfo is not None
    assert got.created_at.utcoffset() == timedelta(0)
    assert abs(got.created_at - datetime.now(UTC)) < timedelta(minutes=1)


def test_incident_counts_by_tenant_severity_status(store):
    for i in range(3):
        store.create_incident(event(f"t{i}", severity="high"), tenant="acme", actor="x")
    inc, _ = store.create_incident(event("low one", severity="low"), tenant="acme", actor="x")
    store.resolve("acme", inc.id, actor="x", resolution=None)
    store.create_incident(event("g"), tenant="globex", actor="x")
    assert store.incident_counts() == [
        ("acme", "high", "open", 3),
        ("acme", "low", "resolved", 1),
        ("globex", "high", "open", 1),
    ]


# --- dead letters, pipeline stats, users ----------------------------------------------------


def test_dead_letters_keep_the_original_bytes(store):
    raw = b"cpu,host=a usage=\xff\x00 not-a-number"
    store.write_dead_letters([DeadLetter(raw, "bad field value"), DeadLetter(b"{", "bad json")])
    store.write_dead_letters([])
    assert store.dead_letter_count() == 2
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT raw, reason, source FROM dead_letters ORDER BY id"
        ).all()
    assert rows[0] == (raw, "bad field value", "metrics")


def test_pipeline_stats_replace_per_worker_and_sum_over_workers(store):
    store.record_pipeline_stats("w0", {"points": 10, "windows": 2})
    store.record_pipeline_stats("w1", {"points": 5, "dead_letters": 1})
    store.record_pipeline_stats("w0", {"points": 30, "windows": 3})  # cumulative counters
    assert store.pipeline_stats() == {"points": 35.0, "windows": 3.0, "dead_letters": 1.0}


def test_users_upsert_and_get(store):
    assert store.get_user("alice") is None
    store.upsert_user(User("alice", "hash-1", Role.VIEWER, "acme"))
    store.upsert_user(User("alice", "hash-2", Role.RESPONDER, "acme", disabled=True))
    alice = store.get_user("alice")
    assert (alice.password_hash, alice.role, alice.tenant, alice.disabled) == (
        "hash-2",
        Role.RESPONDER,
        "acme",
        True,
    )
    assert "hash-2" not in repr(alice)


def test_resolve_open_detected_closes_orphans_of_an_earlier_run(tmp_path):
    from incidents.lifecycle import IncidentBuilder
    from incidents.schemas import AnomalyScore, IncidentStatus, WindowAggregate

    store = Store(f"sqlite:///{tmp_path / 'orphans.db'}")
    store.migrate()
    agg = WindowAggregate("cpu,host=a usage", "default", 0, 60, 6, 99.0, 90.0, 99.0, 1.0, 99.0)
    builder = IncidentBuilder(
        threshold=0.95, resolve_after_windows=3, severity_thresholds={"critical": 0.9}
    )
    store.apply_incident_updates(builder.run([AnomalyScore(agg, 1.0, True)]))
    assert store.resolve_open_detected(actor="system", resolution="restart") == 1
    items, total = store.list_incidents("default", IncidentQuery())
    assert total == 1 and items[0].status is IncidentStatus.RESOLVED
    assert items[0].resolution == "restart"
    assert store.timeline("default", items[0].id)[-1].actor == "system"
    assert store.resolve_open_detected(actor="system", resolution="restart") == 0


@given(
    st.dictionaries(st.text(max_size=6), st.floats(allow_nan=True, allow_infinity=True), max_size=4)
)
def test_components_json_equals_json_dumps_of_finite_values(components):
    expected = json.dumps({k: finite(v) for k, v in components.items()}, separators=(",", ":"))
    assert components_json(components) == expected
