"""Intake rules in the store: grouping under a parent, silences at creation, comments,
resolve by fingerprint, the analytics summary, and migration 0002 both ways."""

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import connectors.store as store_module
from connectors.grouping_store import IntakeRules
from connectors.intake_store import add_comment, resolve_by_fingerprint
from connectors.silence_store import SilenceStore
from connectors.store import MIGRATIONS_DIR, Store
from connectors.summary_store import incident_summary
from incidents.config import Settings
from incidents.grouping import GroupingPolicy
from incidents.lifecycle import detected_fingerprint
from incidents.records import IncidentEvent, IncidentQuery, TimelineType
from incidents.schemas import Category, IncidentEventType, IncidentUpdate, Severity
from incidents.silences import Matcher, SilenceError, SilenceState

S = 1_000_000_000
HOUR = timedelta(hours=1)


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'intake.db'}"


@pytest.fixture
def store(db_url):
    s = Store.from_settings(Settings(database_url=db_url))
    s.migrate()
    yield s
    s.close()


def create(store: Store, title: str, *tags: str, tenant: str = "acme", **metadata):
    incident, _ = store.create_incident(
        IncidentEvent(title=title, tags=tags, metadata=metadata), tenant=tenant, actor="alice"
    )
    return incident


def detected(series: str, start_s: int, kind=IncidentEventType.OPENED) -> IncidentUpdate:
    return IncidentUpdate(
        type=kind,
        fingerprint=detected_fingerprint("acme", series),
        tenant="acme",
        series=series,
        title=f"Anomalous {series}",
        category=Category.COMPUTE,
        severity=Severity.HIGH,
        score=0.99,
        peak_score=0.99,
        window_start_ns=start_s * S,
        window_end_ns=(start_s + 60) * S,
        observed=1.0,
    )


def timeline_types(store: Store, incident_id: str, tenant: str = "acme") -> list[str]:
    return [str(e.type) for e in store.timeline(tenant, incident_id)]


# --- grouping -----------------------------------------------------------------------------


def test_incidents_of_one_service_hang_under_the_first(store):
    parent = create(store, "db slow", "service=billing")
    child = create(store, "db errors", "service:billing")
    other_service = create(store, "web slow", "service=web")
    ungrouped = create(store, "no service", "host=a")
    assert parent.parent_id is None and parent.group_key is not None
    assert child.parent_id == parent.id
    assert other_service.parent_id is None
    assert ungrouped.parent_id is None and ungrouped.group_key is None
    assert store.get_incident("acme", parent.id).child_count == 1
    assert store.get_incident("acme", child.id).child_count == 0
    children, total = store.list_incidents("acme", IncidentQuery(parent_id=parent.id))
    assert ([c.id for c in children], total) == ([child.id], 1)
    assert timeline_types(store, parent.id) == ["created", "grouped"]
    assert timeline_types(store, child.id) == ["created", "grouped"]
    assert store.timeline("acme", parent.id)[1].details == {"child_id": child.id}
    assert store.timeline("acme", child.id)[1].details == {"parent_id": parent.id}


def test_a_repeat_is_not_a_new_child(store):
    parent = create(store, "db slow", "service=billing")
    again = create(store, "db slow", "service=billing")
    assert again.id == parent.id and again.repeat_count == 1
    assert store.get_incident("acme", parent.id).child_count == 0


def test_grouping_is_per_tenant(store):
    acme = create(store, "a", "service=billing")
    globex = create(store, "b", "service=billing", tenant="globex")
    assert globex.parent_id is None and acme.parent_id is None


def test_detected_incidents_group_by_series_tags_within_the_window_in_event_time(db_url):
    settings = Settings(database_url=db_url, incident_group_by="host")
    store = Store.from_settings(settings)
    store.migrate()
    t0 = 1_700_000_000
    first, second, late = store.apply_incident_updates(
        [
            detected("cpu,host=a usage_user", t0),
            detected("mem,host=a used_percent", t0 + 240),
            detected("disk,host=a used_percent", t0 + 301),  # outside the 300 s window
        ]
    )
    assert first.parent_id is None
    assert second.parent_id == first.id
    assert late.parent_id is None  # starts a group of its own
    following = store.apply_incident_updates([detected("net,host=a drops", t0 + 400)])[0]
    assert following.parent_id == late.id
    store.close()


def test_a_bare_store_does_not_group(db_url):
    bare = Store(db_url)
    bare.migrate()
    a = create(bare, "a", "service=billing")
    b = create(bare, "b", "service=billing")
    assert (a.parent_id, b.parent_id, a.group_key) == (None, None, None)
    bare.close()


def test_group_window_and_keys_come_from_the_rules(db_url):
    s = Store(db_url, intake=IntakeRules(GroupingPolicy(("team",), window_seconds=300)))
    s.migrate()
    a = create(s, "a", "team=x", "service=1")
    b = create(s, "b", "team=x", "service=2")
    assert b.parent_id == a.id
    s.close()


# --- silences at intake -------------------------------------------------------------------


def test_a_matching_active_silence_marks_new_incidents(store):
    silences = SilenceStore(store)
    silence = silences.create(
        "acme",
        [Matcher("service", "billing"), Matcher("env", "prod|staging", is_regex=True)],
        starts_at=None,
        ends_at=datetime.now(UTC) + HOUR,
        comment="maintenance",
        created_by="alice",
    )
    hit = create(store, "db slow", "service=billing", "env=prod")
    miss = create(store, "db slow 2", "service=billing", "env=dev")
    other_tenant = create(store, "db slow", "service=billing", "env=prod", tenant="globex")
    assert hit.metadata["silenced"] is True
    assert hit.metadata["silenced_by"] == silence.id
    assert store.get_incident("acme", hit.id).metadata["silenced_by"] == silence.id
    assert "silenced" not in miss.metadata
    assert "silenced" not in other_tenant.metadata
    entries = store.timeline("acme", hit.id)
    assert [str(e.type) for e in entries][:2] == ["created", "silenced"]
    assert entries[1].details == {"silence_id": silence.id}
    assert TimelineType.SILENCED not in {e.type for e in store.timeline("acme", miss.id)}


def test_metadata_keys_and_fields_are_matched(store):
    SilenceStore(store).create(
        "acme",
        [Matcher("database", "primary"), Matcher("category", "database")],
        starts_at=None,
        ends_at=datetime.now(UTC) + HOUR,
        comment="",
        created_by="alice",
    )
    hit = create(store, "Datenbank-Verbindungs-Timeout", database="primary")
    assert hit.category is Category.DATABASE
    assert hit.metadata["silenced"] is True


def test_pending_and_expired_silences_do_not_apply(store):
    silences = SilenceStore(store)
    now = datetime.now(UTC)
    silences.create(
        "acme",
        [Matcher("service", "billing")],
        starts_at=now + HOUR,
        ends_at=now + 2 * HOUR,
        comment="later",
        created_by="alice",
    )
    active = silences.create(
        "acme",
        [Matcher("service", "billing")],
        starts_at=None,
        ends_at=now + HOUR,
        comment="",
        created_by="alice",
    )
    expired = silences.expire("acme", active.id)
    assert expired is not None and expired.state(datetime.now(UTC)) is SilenceState.EXPIRED
    incident = create(store, "db slow", "service=billing")
    assert "silenced" not in incident.metadata


def test_detected_incidents_are_silenced_too(store):
    SilenceStore(store).create(
        "acme",
        [Matcher("host", "a")],
        starts_at=None,
        ends_at=datetime.now(UTC) + HOUR,
        comment="",
        created_by="alice",
    )
    (incident,) = store.apply_incident_updates([detected("cpu,host=a usage_user", 1000)])
    assert incident.metadata["silenced"] is True


# --- silence store ------------------------------------------------------------------------


def test_silence_store_lists_by_state_and_isolates_tenants(store):
    silences = SilenceStore(store)
    now = datetime.now(UTC)

    def make(start, end, tenant="acme"):
        return silences.create(
            tenant,
            [Matcher("service", "x")],
            starts_at=start,
            ends_at=end,
            comment="c",
            created_by="alice",
            now=now,
        )

    active = make(None, now + HOUR)
    pending = make(now + HOUR, now + 2 * HOUR)
    make(None, now + HOUR, tenant="globex")
    assert {s.id for s in silences.list("acme")} == {active.id, pending.id}
    assert [s.id for s in silences.list("acme", SilenceState.ACTIVE, now=now)] == [active.id]
    assert [s.id for s in silences.list("acme", SilenceState.PENDING, now=now)] == [pending.id]
    assert silences.list("acme", SilenceState.EXPIRED, now=now) == []
    assert silences.get("globex", active.id) is None
    assert silences.expire("globex", active.id) is None
    expired = silences.expire("acme", pending.id, now=now)
    assert expired is not None and (expired.starts_at, expired.ends_at) == (now, now)
    assert [s.id for s in silences.list("acme", SilenceState.EXPIRED, now=now)] == [pending.id]
    again = silences.expire("acme", pending.id, now=now + HOUR)
    assert again is not None and again.ends_at == now  # expiring twice changes nothing


def test_silence_store_validates(store):
    with pytest.raises(SilenceError, match="future"):
        SilenceStore(store).create(
            "acme",
            [Matcher("service", "x")],
            starts_at=datetime.now(UTC) - 2 * HOUR,
            ends_at=datetime.now(UTC) - HOUR,
            comment="",
            created_by="alice",
        )
    assert SilenceStore(store).list("acme") == []


# --- comments, resolve by fingerprint -----------------------------------------------------


def test_comments_go_to_the_timeline(store):
    incident = create(store, "db slow")
    entry = add_comment(store, "acme", incident.id, actor="bob", text="looking into it")
    assert entry is not None and entry.type is TimelineType.COMMENT
    last = store.timeline("acme", incident.id)[-1]
    assert (last.type, last.actor, last.details) == (
        TimelineType.COMMENT,
        "bob",
        {"text": "looking into it"},
    )
    assert add_comment(store, "globex", incident.id, actor="eve", text="x") is None


def test_resolve_by_fingerprint_resolves_only_the_open_one(store):
    incident, _ = store.create_incident(
        IncidentEvent(title="t", fingerprint="am:1"), tenant="acme", actor="alice"
    )
    resolved = resolve_by_fingerprint(store, "acme", "am:1", actor="am", resolution="gone")
    assert resolved is not None and resolved.id == incident.id
    assert (resolved.status.value, resolved.resolution, resolved.resolved_by) == (
        "resolved",
        "gone",
        "am",
    )
    assert resolve_by_fingerprint(store, "acme", "am:1", actor="am", resolution="x") is None
    assert resolve_by_fingerprint(store, "globex", "am:2", actor="am", resolution="x") is None


# --- summary ------------------------------------------------------------------------------


def test_summary_with_known_timestamps(store, monkeypatch):
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    clock = {"now": t0}
    monkeypatch.setattr(store_module, "utc_now", lambda: clock["now"])

    def at(seconds: float):
        clock["now"] = t0 + timedelta(seconds=seconds)

    at(0)
    a = create(store, "a")  # acked after 60 s, resolved after 600 s
    b = create(store, "b")  # acked after 180 s, still acknowledged
    at(30)
    c = create(store, "c")  # resolved after 90 s without acknowledgement
    d = create(store, "d")  # stays open
    at(60)
    store.acknowledge("acme", a.id, actor="alice")
    at(120)
    store.resolve("acme", c.id, actor="alice", resolution=None)
    at(180)
    store.acknowledge("acme", b.id, actor="alice")
    at(600)
    store.resolve("acme", a.id, actor="alice", resolution="fixed")
    create(store, "other tenant", tenant="globex")

    summary = incident_summary(store, "acme")
    assert summary.total == 4
    assert summary.by_status == {"open": 1, "acknowledged": 1, "resolved": 2}
    assert summary.by_kind == {"manual": 4}
    assert sum(summary.by_severity.values()) == 4
    assert (summary.acknowledged.count, summary.acknowledged.mean_seconds) == (2, 120.0)
    assert (summary.resolved.count, summary.resolved.mean_seconds) == (2, 345.0)

    # only the acknowledgement at 180 s and the resolution at 600 s fall in [150 s, 700 s)
    window = incident_summary(
        store, "acme", t0 + timedelta(seconds=150), t0 + timedelta(seconds=700)
    )
    assert window.total == 0  # nothing was recorded in that period
    assert (window.acknowledged.count, window.acknowledged.mean_seconds) == (1, 180.0)
    assert (window.resolved.count, window.resolved.mean_seconds) == (1, 600.0)
    assert d.status.value == "open"


# --- migration ----------------------------------------------------------------------------


def test_migration_0002_downgrades_and_upgrades_again(db_url, store):
    create(store, "kept", "service=billing")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", db_url)
    command.downgrade(config, "0001")
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        columns = {c["name"] for c in sa.inspect(conn).get_columns("incidents")}
    assert "silences" not in tables and "parent_id" not in columns
    command.upgrade(config, "head")
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT title, child_count, parent_id FROM incidents")).one()
    engine.dispose()
    assert tuple(row) == ("kept", 0, None)
