"""The relational store: incidents, their timeline, window aggregates, dead letters, pipeline
counters and users, on SQLite (the embedded default) or PostgreSQL (the system of record).

SQLAlchemy Core with portable types only. The schema is created by Alembic
(``connectors/migrations``; ``Store.migrate``), never by ``metadata.create_all``.

Concurrency. One dataflow process writes while the API reads and writes:

* SQLite runs in WAL mode with a busy timeout, and every write transaction starts with
  ``BEGIN IMMEDIATE``, so writers queue for the single write lock up front instead of failing
  on a lock upgrade half way through, and a read-then-insert (dedup) cannot interleave.
* PostgreSQL takes a transaction-scoped advisory lock per (tenant, fingerprint) before the
  dedup read, because a unique index "where status != 'resolved'" is not portable.

Replay. ``write_windows`` upserts by (tenant, series, window_start_ns). ``apply_incident_updates``
remembers per incident the end of the last builder window it applied (``applied_until_ns``). The
builder emits a fingerprint's windows in order, so an update whose window ends at or before the
latest one applied for its fingerprint (over all its incidents, resolved ones included) has been
applied already and is skipped: replaying a batch changes nothing at all, not even counters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Dialect, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

from incidents.automation import SecretTransform, map_action_secrets
from incidents.classification import classify
from incidents.config import Settings
from incidents.fingerprint import fingerprint as compute_fingerprint
from incidents.fingerprint import tag_identity
from incidents.records import (
    Incident,
    IncidentEvent,
    IncidentQuery,
    TimelineEntry,
    TimelineType,
    User,
    WindowRecord,
    higher_severity,
    ns_to_datetime,
    utc,
    utc_now,
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
    split_series,
)
from incidents.security import SecretUnavailable, derive_key, open_secret, seal_secret

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 15_000
AUTO_ACTOR = "auto"
_WRITE_OPTION = "incidents_write"
_MIGRATION_LOCK_KEY = 0x1AC1DE47  # arbitrary constant: serialises concurrent `migrate()` on PG
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


class StoreError(Exception):
    """Base of the store's domain errors (not raised for I/O failures: those stay SQLAlchemy's)."""


class IncidentConflict(StoreError):
    """The requested change contradicts the incident's state (e.g. acknowledging a resolved one)."""


SEALING_KEY = "incidents_sealing_key"
"""The attribute of a Store's SQLAlchemy dialect that holds its ``ENCRYPTION_KEY`` (or None)."""
UNREADABLE_URL = "https://unreadable-secret.invalid/"


def _sealing_transform(key: bytes) -> SecretTransform:
    return lambda _field, text: seal_secret(text, key)


def _open_transform(key: bytes | None) -> SecretTransform:
    def open_one(field_name: str, text: str) -> str:
        try:
            return open_secret(text, key)
        except SecretUnavailable as exc:
            log.warning("%s: the action's %s is left unusable", exc, field_name)
            return UNREADABLE_URL if field_name == "url" else ""

    return open_one


class SealedActionsJSON(sa.TypeDecorator[Any]):
    """JSON of stored actions (``shape="actions"``: a list of them; ``"levels"``: escalation
    levels holding them) whose secrets are sealed with the store's ``ENCRYPTION_KEY``.

    Without a key they are stored as they are; a sealed secret that cannot be opened (no key, or
    another one) comes back unusable — an empty header, an ``.invalid`` URL — so the action fails
    visibly instead of the read failing.
    """

    impl = sa.JSON
    cache_ok = True

    def __init__(self, shape: str = "actions") -> None:
        super().__init__()
        self.shape = shape

    def _map(self, value: Any, transform: SecretTransform) -> Any:
        if self.shape == "levels":
            return [
                {**level, "actions": [map_action_secrets(a, transform) for a in level["actions"]]}
                for level in value
            ]
        return [map_action_secrets(a, transform) for a in value]

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        key = getattr(dialect, SEALING_KEY, None)
        return value if value is None or key is None else self._map(value, _sealing_transform(key))

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        key = getattr(dialect, SEALING_KEY, None)
        return None if value is None else self._map(value, _open_transform(key))


class UTCDateTime(sa.TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always hands back aware UTC datetimes.

    SQLite keeps no zone, so values are stored as naive UTC there and re-tagged on the way out.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else utc(value)


metadata = sa.MetaData()


def serial_id_column() -> sa.Column[int]:
    """An auto-incrementing 64-bit ``id`` (a plain INTEGER on SQLite, where only that is a
    rowid alias)."""
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def incident_id_column() -> sa.Column[str]:
    """``incident_id``, deleted with its incident."""
    return sa.Column(
        "incident_id",
        sa.String(36),
        sa.ForeignKey("incidents.id", ondelete="CASCADE"),
        nullable=False,
    )


incidents_table = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False),
    sa.Column("fingerprint", sa.String(128), nullable=False),
    sa.Column("title", sa.String(500), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("category", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("source", sa.String(128), nullable=False),
    sa.Column("series", sa.String(1024), nullable=True),
    sa.Column("meta", sa.JSON, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("score", sa.Float, nullable=True),
    sa.Column("peak_score", sa.Float, nullable=True),
    sa.Column("repeat_count", sa.Integer, nullable=False),
    sa.Column("window_start_ns", sa.BigInteger, nullable=True),
    sa.Column("window_end_ns", sa.BigInteger, nullable=True),
    sa.Column("applied_until_ns", sa.BigInteger, nullable=True),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("acknowledged_at", UTCDateTime, nullable=True),
    sa.Column("acknowledged_by", sa.String(128), nullable=True),
    sa.Column("resolved_at", UTCDateTime, nullable=True),
    sa.Column("resolved_by", sa.String(128), nullable=True),
    sa.Column("resolution", sa.Text, nullable=True),
    sa.Column("parent_id", sa.String(36), nullable=True),
    sa.Column("group_key", sa.String(64), nullable=True),
    sa.Column("child_count", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_incidents_tenant_fingerprint", "tenant", "fingerprint"),
    sa.Index("ix_incidents_tenant_status", "tenant", "status"),
    sa.Index("ix_incidents_tenant_first_seen", "tenant", "first_seen"),
    sa.Index("ix_incidents_tenant_parent", "tenant", "parent_id"),
    sa.Index("ix_incidents_tenant_group", "tenant", "group_key", "first_seen"),
)

silences_table = sa.Table(
    "silences",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False),
    sa.Column("matchers", sa.JSON, nullable=False),
    sa.Column("starts_at", UTCDateTime, nullable=False),
    sa.Column("ends_at", UTCDateTime, nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_silences_tenant_ends_at", "tenant", "ends_at"),
)

incident_events_table = sa.Table(
    "incident_events",
    metadata,
    serial_id_column(),
    incident_id_column(),
    sa.Column("tenant", sa.String(128), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Index("ix_incident_events_incident_id", "incident_id", "id"),
)

window_aggregates_table = sa.Table(
    "window_aggregates",
    metadata,
    sa.Column("tenant", sa.String(128), primary_key=True),
    sa.Column("series", sa.String(1024), primary_key=True),
    sa.Column("window_start_ns", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("window_end_ns", sa.BigInteger, nullable=False),
    sa.Column("measurement", sa.String(256), nullable=False),
    sa.Column("field", sa.String(256), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("mean", sa.Float, nullable=True),
    sa.Column("minimum", sa.Float, nullable=True),
    sa.Column("maximum", sa.Float, nullable=True),
    sa.Column("std", sa.Float, nullable=True),
    sa.Column("last", sa.Float, nullable=True),
    sa.Column("anomaly_score", sa.Float, nullable=True),
    sa.Column("is_anomaly", sa.Boolean, nullable=False),
    sa.Column("components", sa.JSON, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_window_aggregates_tenant_start", "tenant", "window_start_ns"),
    sa.Index("ix_window_aggregates_tenant_measurement", "tenant", "measurement"),
)

dead_letters_table = sa.Table(
    "dead_letters",
    metadata,
    serial_id_column(),
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("source", sa.String(128), nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Index("ix_dead_letters_received_at", "received_at"),
)

pipeline_stats_table = sa.Table(
    "pipeline_stats",
    metadata,
    sa.Column("worker", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

users_table = sa.Table(
    "users",
    metadata,
    sa.Column("username", sa.String(128), primary_key=True),
    sa.Column("password_hash", sa.String(512), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("tenant", sa.String(128), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

TimelineWriter = Callable[
    [Connection, Incident, TimelineType, str, Mapping[str, Any], datetime], None
]
"""``Store._add_timeline``: (conn, incident, type, actor, details, at)."""

INCIDENT_EDITABLE = frozenset(
    {"title", "description", "severity", "category", "metadata", "tags", "status", "resolution"}
)


# --- pure helpers ---------------------------------------------------------------------------


def engine_url(url: str) -> URL:
    """``postgresql://`` / ``postgres://`` use psycopg 3; everything else is taken as given."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _is_memory_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def finite(value: float | None) -> float | None:
    """A float the database and JSON can hold: NaN and infinities become NULL."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def clamp_ns(value: int) -> int:
    """Keep nanosecond bounds inside BIGINT so a far-future ``until`` is not a database error."""
    return max(INT64_MIN, min(INT64_MAX, value))


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf floats as None (PostgreSQL JSON rejects them), tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _json_dumps(value: object) -> str:
    """JSON column serialiser: never fails on NaN, and stringifies unknown objects."""
    return json.dumps(json_safe(value), default=str, allow_nan=False)


def _incident_columns(values: Mapping[str, Any]) -> dict[str, Any]:
    """Incident attribute names to column names (only ``metadata`` differs)."""
    out = dict(values)
    if "metadata" in out:
        out["meta"] = out.pop("metadata")
    if "tags" in out:
        out["tags"] = list(out["tags"])
    for name in ("severity", "category", "status", "kind"):
        if name in out and out[name] is not None:
            out[name] = str(out[name])
    return out


def _incident_from_row(row: sa.Row[Any]) -> Incident:
    m = row._mapping
    return Incident(
        id=m["id"],
        fingerprint=m["fingerprint"],
        tenant=m["tenant"],
        title=m["title"],
        description=m["description"],
        severity=Severity(m["severity"]),
        category=Category(m["category"]),
        status=IncidentStatus(m["status"]),
        kind=IncidentKind(m["kind"]),
        source=m["source"],
        series=m["series"],
        metadata=dict(m["meta"] or {}),
        score=m["score"],
        peak_score=m["peak_score"],
        repeat_count=m["repeat_count"],
        first_seen=m["first_seen"],
        last_seen=m["last_seen"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        tags=tuple(m["tags"] or ()),
        window_start_ns=m["window_start_ns"],
        window_end_ns=m["window_end_ns"],
        acknowledged_at=m["acknowledged_at"],
        acknowledged_by=m["acknowledged_by"],
        resolved_at=m["resolved_at"],
        resolved_by=m["resolved_by"],
        resolution=m["resolution"],
        parent_id=m["parent_id"],
        group_key=m["group_key"],
        child_count=m["child_count"] or 0,
    )


def _window_from_row(row: sa.Row[Any]) -> WindowRecord:
    m = row._mapping
    return WindowRecord(
        tenant=m["tenant"],
        series=m["series"],
        measurement=m["measurement"],
        field=m["field"],
        window_start_ns=m["window_start_ns"],
        window_end_ns=m["window_end_ns"],
        count=m["count"],
        mean=m["mean"],
        minimum=m["minimum"],
        maximum=m["maximum"],
        std=m["std"],
        last=m["last"],
        anomaly_score=m["anomaly_score"],
        is_anomaly=bool(m["is_anomaly"]),
        components=dict(m["components"] or {}),
    )


def _user_from_row(row: sa.Row[Any]) -> User:
    m = row._mapping
    return User(
        username=m["username"],
        password_hash=m["password_hash"],
        role=m["role"],
        tenant=m["tenant"],
        disabled=bool(m["disabled"]),
    )


def _window_row(scored: AnomalyScore, now: datetime) -> dict[str, Any]:
    agg = scored.aggregate
    components = {str(k): finite(v) for k, v in scored.components.items()}
    return {
        "tenant": agg.tenant,
        "series": agg.series,
        "window_start_ns": agg.window_start_ns,
        "window_end_ns": agg.window_end_ns,
        "measurement": agg.measurement,
        "field": agg.field,
        "count": agg.count,
        "mean": finite(agg.mean),
        "minimum": finite(agg.minimum),
        "maximum": finite(agg.maximum),
        "std": finite(agg.std),
        "last": finite(agg.last),
        "anomaly_score": finite(scored.score),
        "is_anomaly": bool(scored.is_anomaly),
        "components": components,
        "updated_at": now,
    }


WINDOW_KEYS = ("tenant", "series", "window_start_ns")
WINDOW_COLUMNS = tuple(c.name for c in window_aggregates_table.columns)
WINDOW_STAGING = "window_aggregates_in"


def _window_values(scored: AnomalyScore, now: datetime) -> tuple[Any, ...]:
    """The row of ``_window_row`` as a tuple in ``WINDOW_COLUMNS`` order, JSON pre-encoded.

    Runs once per window on the PostgreSQL path, hence the inlined finiteness checks.
    """
    agg = scored.aggregate
    measurement, _, field = split_series(agg.series)
    mean, low, high, std, last, score = (
        agg.mean,
        agg.minimum,
        agg.maximum,
        agg.std,
        agg.last,
        scored.score,
    )
    return (
        agg.tenant,
        agg.series,
        agg.window_start_ns,
        agg.window_end_ns,
        measurement,
        field,
        agg.count,
        float(mean) if mean - mean == 0.0 else None,
        float(low) if low - low == 0.0 else None,
        float(high) if high - high == 0.0 else None,
        float(std) if std - std == 0.0 else None,
        float(last) if last - last == 0.0 else None,
        float(score) if score - score == 0.0 else None,
        bool(scored.is_anomaly),
        components_json(scored.components),
        now,
    )


def components_json(components: Mapping[str, float]) -> str:
    """``json.dumps({k: finite(v)})`` (compact), built directly: it runs once per window."""
    parts = []
    for key, value in components.items():
        number = float(value)
        parts.append(_json_key(str(key)) + (repr(number) if number - number == 0.0 else "null"))
    return "{" + ",".join(parts) + "}"


@lru_cache(maxsize=1024)
def _json_key(key: str) -> str:
    return json.dumps(key) + ":"


def _copy_upsert_windows(conn: Connection, items: Iterable[AnomalyScore], now: datetime) -> None:
    """PostgreSQL: COPY the rows into a session-local staging table, then one INSERT … SELECT …
    ON CONFLICT DO UPDATE. About 10x faster than an executemany of the upsert, which cost a
    third of the dataflow's time. The keys must be unique within ``items``."""
    from psycopg import sql

    columns = sql.SQL(", ").join(map(sql.Identifier, WINDOW_COLUMNS))
    staging = sql.Identifier(WINDOW_STAGING)
    updates = sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name))
        for name in WINDOW_COLUMNS
        if name not in WINDOW_KEYS
    )
    driver = conn.connection.driver_connection
    with driver.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DELETE ROWS"
            ).format(staging, sql.Identifier(window_aggregates_table.name))
        )
        with cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(staging, columns)) as copy:
            for item in items:
                copy.write_row(_window_values(item, now))
        cursor.execute(
            sql.SQL(
                "INSERT INTO {table} ({columns}) SELECT {columns} FROM {staging} "
                "ON CONFLICT ({keys}) DO UPDATE SET {updates}"
            ).format(
                table=sql.Identifier(window_aggregates_table.name),
                columns=columns,
                staging=staging,
                keys=sql.SQL(", ").join(map(sql.Identifier, WINDOW_KEYS)),
                updates=updates,
            )
        )


def detected_description(update: IncidentUpdate) -> str:
    given = update.metadata.get("description")
    if isinstance(given, str) and given:
        return given
    return (
        f"Anomalous window on {update.series}: score {update.score:.2f}, "
        f"observed {update.observed:g}"
    )


def auto_resolution(update: IncidentUpdate) -> str:
    """The resolution text of an auto-resolve: the builder's own words if it sent any."""
    given = update.metadata.get("resolution")
    if isinstance(given, str) and given:
        return given
    windows = update.metadata.get("normal_windows")
    if isinstance(windows, int) and not isinstance(windows, bool):
        return f"auto-resolved after {windows} normal windows"
    return "auto-resolved: the series returned to normal"


def _detected_kind(update: IncidentUpdate) -> IncidentKind:
    """``detected`` unless the builder marks a forecast-based incident as ``predicted``."""
    try:
        return IncidentKind(update.metadata.get("kind", IncidentKind.DETECTED))
    except ValueError:
        return IncidentKind.DETECTED


def _prediction_came_true(incident: Incident, update: IncidentUpdate) -> bool:
    """A predicted incident whose builder now reports the limit reached (``kind: detected``)."""
    return (
        incident.kind is IncidentKind.PREDICTED and _detected_kind(update) is IncidentKind.DETECTED
    )


def _score_values(incident: Incident, update: IncidentUpdate) -> dict[str, Any]:
    """Changes of an UPDATED/OPENED step to an open incident: severity and peak only go up."""
    end = ns_to_datetime(update.window_end_ns)
    candidates = [
        s
        for s in map(finite, (incident.peak_score, update.peak_score, update.score))
        if s is not None
    ]
    return {
        "score": finite(update.score),
        "peak_score": max(candidates) if candidates else None,
        "severity": higher_severity(incident.severity, update.severity),
        "last_seen": max(incident.last_seen, end),
        "window_end_ns": max(incident.window_end_ns or update.window_end_ns, update.window_end_ns),
        "metadata": json_safe(
            {**incident.metadata, **update.metadata, "observed": update.observed}
        ),
    }


def _update_details(update: IncidentUpdate) -> dict[str, Any]:
    return {
        "score": finite(update.score),
        "peak_score": finite(update.peak_score),
        "severity": str(update.severity),
        "window_start_ns": update.window_start_ns,
        "window_end_ns": update.window_end_ns,
        "observed": finite(update.observed),
    }


def status_values(
    incident: Incident,
    status: IncidentStatus,
    *,
    actor: str,
    now: datetime,
    resolution: str | None = None,
) -> dict[str, Any]:
    """Column changes that move ``incident`` to ``status`` (empty when it is already there)."""
    if status == incident.status:
        return {}
    if status is IncidentStatus.OPEN:
        return {
            "status": status,
            "acknowledged_at": None,
            "acknowledged_by": None,
            "resolved_at": None,
            "resolved_by": None,
            "resolution": None,
        }
    if status is IncidentStatus.ACKNOWLEDGED:
        return {
            "status": status,
            "acknowledged_at": now,
            "acknowledged_by": actor,
            "resolved_at": None,
            "resolved_by": None,
            "resolution": None,
        }
    return {"status": status, "resolved_at": now, "resolved_by": actor, "resolution": resolution}


def _timeline_type_for(old: IncidentStatus, new: IncidentStatus) -> TimelineType:
    if new is IncidentStatus.RESOLVED:
        return TimelineType.RESOLVED
    if new is IncidentStatus.ACKNOWLEDGED and old is IncidentStatus.OPEN:
        return TimelineType.ACKNOWLEDGED
    return TimelineType.REOPENED


def _coerce_change(name: str, value: Any) -> Any:
    if name == "severity":
        return Severity(value)
    if name == "category":
        return Category(value)
    if name == "status":
        return IncidentStatus(value)
    if name == "tags":
        return tuple(str(t) for t in value)
    if name == "metadata":
        return json_safe(value)
    return value


def _edit_details(incident: Incident, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Timeline details of an edit: from/to for scalars, key lists for metadata (may be large)."""
    details: dict[str, Any] = {}
    for name, new in changes.items():
        old = getattr(incident, name)
        if name == "metadata":
            details[name] = {"from_keys": sorted(old), "to_keys": sorted(new)}
        elif name == "tags":
            details[name] = {"from": list(old), "to": list(new)}
        else:
            details[name] = {"from": str(old), "to": str(new)}
    return details


def _advisory_key(*parts: str) -> int:
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# --- the store ------------------------------------------------------------------------------


class IncidentIntake(Protocol):
    """Decisions taken inside the transaction that inserts a new incident (silences, grouping;
    ``connectors.grouping_store.IntakeRules``)."""

    def prepare(self, conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
        """The row to insert, with whatever the rules add (metadata, parent, group)."""
        ...

    def record(self, conn: Connection, incident: Incident, add_timeline: TimelineWriter) -> None:
        """Timeline entries for what ``prepare`` decided (after the ``created`` entry)."""
        ...


class Store:
    """SQLite/PostgreSQL persistence; implements ``incidents.interfaces.PipelineSink``.

    ``intake`` (set by ``from_settings``) applies silences and grouping to new incidents; a
    bare ``Store(url)`` inserts incidents as they come.
    """

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        intake: IncidentIntake | None = None,
        encryption_key: bytes | None = None,
    ) -> None:
        self.intake = intake
        self.url = engine_url(url)
        kwargs: dict[str, Any] = {"echo": echo, "json_serializer": _json_dumps}
        if self.url.get_backend_name() == "sqlite":
            if _is_memory_sqlite(self.url):
                kwargs["poolclass"] = StaticPool
                kwargs["connect_args"] = {"check_same_thread": False}
            elif self.url.database:
                Path(self.url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = sa.create_engine(self.url, **kwargs)
        if self.url.get_backend_name() == "sqlite":
            _install_sqlite_hooks(self.engine)
        setattr(self.engine.dialect, SEALING_KEY, encryption_key)
        self._writer = self.engine.execution_options(**{_WRITE_OPTION: True})

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        from connectors.grouping_store import IntakeRules  # it builds on this module

        key = settings.encryption_key
        return cls(
            settings.database_url,
            intake=IntakeRules(settings.grouping_policy),
            encryption_key=derive_key(key.get_secret_value()) if key else None,
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def __repr__(self) -> str:
        return f"Store({self.url.render_as_string(hide_password=True)!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    def migrate(self) -> None:
        """``alembic upgrade head`` on this store's database (safe to run from two processes)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
        with self._writer.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except (SQLAlchemyError, OSError) as exc:
            log.warning("database ping failed: %s", type(exc).__name__)
            return False
        return True

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._writer.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    # -- pipeline sink -----------------------------------------------------------------------

    def write_windows(self, scored: Iterable[AnomalyScore]) -> None:
        """Upsert scored windows in one transaction; a replayed window overwrites its row."""
        now = utc_now()
        latest: dict[tuple[str, str, int], AnomalyScore] = {}
        for item in scored:
            agg = item.aggregate
            latest[(agg.tenant, agg.series, agg.window_start_ns)] = item
        if not latest:
            return
        with self._write() as conn:
            if conn.dialect.name == "postgresql":
                _copy_upsert_windows(conn, latest.values(), now)
                return
            stmt = _upsert(conn, window_aggregates_table, WINDOW_KEYS)
            conn.execute(stmt, [_window_row(item, now) for item in latest.values()])

    def write_dead_letters(self, letters: Iterable[DeadLetter]) -> None:
        now = utc_now()
        rows = [
            {"raw": bytes(d.raw), "reason": d.reason, "source": d.source, "received_at": now}
            for d in letters
        ]
        if rows:
            with self._write() as conn:
                conn.execute(sa.insert(dead_letters_table), rows)

    def dead_letter_count(self) -> int:
        with self._read() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(dead_letters_table)
                ).scalar_one()
            )

    def record_pipeline_stats(self, worker: str, counters: Mapping[str, float]) -> None:
        """Store one worker's cumulative counters (each call replaces that worker's values)."""
        now = utc_now()
        rows = [
            {"worker": worker, "name": name, "value": finite(value) or 0.0, "updated_at": now}
            for name, value in counters.items()
        ]
        if rows:
            with self._write() as conn:
                conn.execute(_upsert(conn, pipeline_stats_table, ("worker", "name")), rows)

    def pipeline_stats(self) -> dict[str, float]:
        """Counters summed over workers."""
        t = pipeline_stats_table
        with self._read() as conn:
            rows = conn.execute(sa.select(t.c.name, sa.func.sum(t.c.value)).group_by(t.c.name))
            return {name: float(total or 0.0) for name, total in rows}

    def apply_incident_updates(self, updates: Iterable[IncidentUpdate]) -> list[Incident]:
        """Apply the incident builder's steps in one transaction; return the incidents changed.

        * OPENED: repeat of the open incident with this fingerprint (same id, ``repeat_count``
          + 1), else a new ``detected`` incident.
        * UPDATED: score, peak, last_seen follow; severity only goes up. With no open incident
          (a person resolved it while the anomaly went on) it opens a new one, like OPENED.
        * RESOLVED: resolves the open incident as ``auto``; nothing if none is open.

        Replay: see the module docstring — an already applied step is skipped entirely.
        """
        changed: dict[str, Incident] = {}
        with self._write() as conn:
            for update in updates:
                incident = self._apply_update(conn, update)
                if incident is not None:
                    changed.pop(incident.id, None)
                    changed[incident.id] = incident
        return list(changed.values())

    def _apply_update(self, conn: Connection, update: IncidentUpdate) -> Incident | None:
        t = incidents_table
        self._lock(conn, update.tenant, update.fingerprint)
        applied_until = conn.execute(
            sa.select(sa.func.max(t.c.applied_until_ns)).where(
                t.c.tenant == update.tenant, t.c.fingerprint == update.fingerprint
            )
        ).scalar_one()
        if applied_until is not None and update.window_end_ns <= applied_until:
            return None
        now = utc_now()
        current = self._open_incident(conn, update.tenant, update.fingerprint)
        kind = IncidentEventType(update.type)
        if kind is IncidentEventType.RESOLVED:
            if current is None:
                return None
            resolution = auto_resolution(update)
            values = status_values(
                current, IncidentStatus.RESOLVED, actor=AUTO_ACTOR, now=now, resolution=resolution
            )
            values["applied_until_ns"] = update.window_end_ns
            incident = self._update(conn, current, values, now)
            self._add_timeline(
                conn,
                incident,
                TimelineType.RESOLVED,
                AUTO_ACTOR,
                {"resolution": resolution, "window_end_ns": update.window_end_ns},
                now,
            )
            return incident
        if current is None:
            return self._insert_detected(conn, update, now)
        values = _score_values(current, update)
        values["applied_until_ns"] = update.window_end_ns
        entry_type = TimelineType.SCORE_UPDATED
        details = _update_details(update)
        if kind is IncidentEventType.OPENED:
            values["repeat_count"] = current.repeat_count + 1
            entry_type = TimelineType.REPEATED
        elif _prediction_came_true(current, update):
            values.update(kind=IncidentKind.DETECTED, title=update.title)
            entry_type = TimelineType.BREACHED
            details["kind"] = str(IncidentKind.DETECTED)
        incident = self._update(conn, current, values, now)
        self._add_timeline(conn, incident, entry_type, AUTO_ACTOR, details, now)
        return incident

    def _insert_detected(self, conn: Connection, update: IncidentUpdate, now: datetime) -> Incident:
        scores = [s for s in map(finite, (update.peak_score, update.score)) if s is not None]
        row = {
            "id": str(uuid.uuid4()),
            "tenant": update.tenant,
            "fingerprint": update.fingerprint,
            "title": update.title,
            "description": detected_description(update),
            "severity": Severity(update.severity),
            "category": Category(update.category),
            "status": IncidentStatus.OPEN,
            "kind": _detected_kind(update),
            "source": "detector",
            "series": update.series,
            "metadata": json_safe({**update.metadata, "observed": update.observed}),
            "tags": (),
            "score": finite(update.score),
            "peak_score": max(scores) if scores else None,
            "repeat_count": 0,
            "window_start_ns": update.window_start_ns,
            "window_end_ns": update.window_end_ns,
            "applied_until_ns": update.window_end_ns,
            "first_seen": ns_to_datetime(update.window_start_ns),
            "last_seen": ns_to_datetime(update.window_end_ns),
            "created_at": now,
            "updated_at": now,
        }
        incident = self._insert(conn, row)
        details = {"kind": str(incident.kind), **_update_details(update)}
        self._add_timeline(conn, incident, TimelineType.CREATED, AUTO_ACTOR, details, now)
        self._after_insert(conn, incident)
        return incident

    # -- incidents ---------------------------------------------------------------------------

    def create_incident(
        self, event: IncidentEvent, *, tenant: str, actor: str
    ) -> tuple[Incident, bool]:
        """Create, or fold into the open incident with the same fingerprint; bool = created.

        ``tenant`` is authoritative (the API passes the caller's); ``event.tenant`` is ignored.
        Without ``event.fingerprint`` the fingerprint is (tenant, source, title, tags). A duplicate
        counts a repeat, bumps ``last_seen`` and may raise the severity, never lower it.
        """
        now = utc_now()
        fp = event.fingerprint or compute_fingerprint(
            tenant, event.source, event.title, tag_identity(event.tags)
        )
        category = event.category or classify(
            title=event.title, description=event.description, metadata=event.metadata
        )
        with self._write() as conn:
            self._lock(conn, tenant, fp)
            current = self._open_incident(conn, tenant, fp)
            if current is not None:
                values = {
                    "repeat_count": current.repeat_count + 1,
                    "last_seen": max(current.last_seen, now),
                    "severity": higher_severity(current.severity, event.severity),
                }
                incident = self._update(conn, current, values, now)
                details = {"source": event.source, "severity": str(event.severity)}
                self._add_timeline(conn, incident, TimelineType.REPEATED, actor, details, now)
                return incident, False
            row = {
                "id": str(uuid.uuid4()),
                "tenant": tenant,
                "fingerprint": fp,
                "title": event.title,
                "description": event.description,
                "severity": event.severity,
                "category": category,
                "status": IncidentStatus.OPEN,
                "kind": event.kind,
                "source": event.source,
                "series": None,
                "metadata": json_safe(event.metadata),
                "tags": tuple(event.tags),
                "score": None,
                "peak_score": None,
                "repeat_count": 0,
                "first_seen": now,
                "last_seen": now,
                "created_at": now,
                "updated_at": now,
            }
            incident = self._insert(conn, row)
            details = {"kind": str(incident.kind), "source": event.source}
            self._add_timeline(conn, incident, TimelineType.CREATED, actor, details, now)
            self._after_insert(conn, incident)
            return incident, True

    def get_incident(self, tenant: str, incident_id: str) -> Incident | None:
        with self._read() as conn:
            return self._get(conn, tenant, incident_id)

    def list_incidents(self, tenant: str, query: IncidentQuery) -> tuple[list[Incident], int]:
        """One page of the tenant's incidents matching ``query`` and the total number matching."""
        t = incidents_table
        conditions: list[sa.ColumnElement[bool]] = [t.c.tenant == tenant]
        for name in ("status", "severity", "category", "kind"):
            value = getattr(query, name)
            if value is not None:
                conditions.append(t.c[name] == str(value))
        if query.series is not None:
            conditions.append(t.c.series == query.series)
        if query.parent_id is not None:
            conditions.append(t.c.parent_id == query.parent_id)
        if query.since is not None:
            conditions.append(t.c.last_seen >= query.since)
        if query.until is not None:
            conditions.append(t.c.first_seen <= query.until)
        if query.order == "newest":
            order = (t.c.first_seen.desc(), t.c.id.desc())
        else:
            order = (t.c.first_seen.asc(), t.c.id.asc())
        with self._read() as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(t).where(*conditions)
            ).scalar_one()
            rows = conn.execute(
                sa.select(t)
                .where(*conditions)
                .order_by(*order)
                .limit(query.limit)
                .offset(query.offset)
            )
            return [_incident_from_row(r) for r in rows], int(total)

    def update_incident(
        self, tenant: str, incident_id: str, changes: Mapping[str, Any], *, actor: str
    ) -> Incident | None:
        """Edit fields and/or move the status; ``None`` if there is no such incident.

        Allowed keys: ``INCIDENT_EDITABLE``. Unchanged values write nothing. Reopening (status
        ``open``/``acknowledged`` on a resolved incident) raises ``IncidentConflict`` when
        another open incident already has the same fingerprint.
        """
        unknown = set(changes) - INCIDENT_EDITABLE
        if unknown:
            raise ValueError(f"fields cannot be changed: {sorted(unknown)}")
        coerced = {k: _coerce_change(k, v) for k, v in changes.items() if v is not None}
        now = utc_now()
        with self._write() as conn:
            current = self._get(conn, tenant, incident_id)
            if current is None:
                return None
            edits = {
                k: v
                for k, v in coerced.items()
                if k not in {"status", "resolution"} and v != getattr(current, k)
            }
            status: IncidentStatus | None = coerced.get("status")
            resolution: str | None = coerced.get("resolution")
            status_changed = status is not None and status != current.status
            resolution_edit = (
                not status_changed
                and current.is_resolved
                and resolution is not None
                and resolution != current.resolution
            )
            values: dict[str, Any] = dict(edits)
            if status_changed and status is not None:
                if current.is_resolved:
                    self._check_can_reopen(conn, current)
                values.update(
                    status_values(current, status, actor=actor, now=now, resolution=resolution)
                )
            if resolution_edit:
                values["resolution"] = resolution
            if not values:
                return current
            incident = self._update(conn, current, values, now)
            if edits or resolution_edit:
                details = _edit_details(current, edits)
                if resolution_edit:
                    details["resolution"] = {"from": current.resolution, "to": resolution}
                self._add_timeline(conn, incident, TimelineType.EDITED, actor, details, now)
            if status_changed and status is not None:
                entry = _timeline_type_for(current.status, status)
                details = {"from": str(current.status), "to": str(status)}
                if status is IncidentStatus.RESOLVED:
                    details["resolution"] = resolution
                self._add_timeline(conn, incident, entry, actor, details, now)
            return incident

    def _check_can_reopen(self, conn: Connection, incident: Incident) -> None:
        self._lock(conn, incident.tenant, incident.fingerprint)
        if self._open_incident(conn, incident.tenant, incident.fingerprint) is not None:
            raise IncidentConflict(
                "another open incident has the same fingerprint; this one cannot be reopened"
            )

    def acknowledge(self, tenant: str, incident_id: str, *, actor: str) -> Incident | None:
        """Open -> acknowledged; acknowledging again is a no-op; a resolved one is a conflict."""
        now = utc_now()
        with self._write() as conn:
            current = self._get(conn, tenant, incident_id)
            if current is None or current.status is IncidentStatus.ACKNOWLEDGED:
                return current
            if current.is_resolved:
                raise IncidentConflict("the incident is resolved; reopen it before acknowledging")
            values = status_values(current, IncidentStatus.ACKNOWLEDGED, actor=actor, now=now)
            incident = self._update(conn, current, values, now)
            self._add_timeline(conn, incident, TimelineType.ACKNOWLEDGED, actor, {}, now)
            return incident

    def resolve(
        self, tenant: str, incident_id: str, *, actor: str, resolution: str | None
    ) -> Incident | None:
        """Resolve; resolving a resolved incident is a no-op (its resolution stays)."""
        now = utc_now()
        with self._write() as conn:
            current = self._get(conn, tenant, incident_id)
            if current is None or current.is_resolved:
                return current
            return self._resolve(conn, current, actor, resolution, now)

    def _resolve(
        self, conn: Connection, current: Incident, actor: str, resolution: str | None, now: datetime
    ) -> Incident:
        values = status_values(
            current, IncidentStatus.RESOLVED, actor=actor, now=now, resolution=resolution
        )
        incident = self._update(conn, current, values, now)
        details = {"from": str(current.status), "resolution": resolution}
        self._add_timeline(conn, incident, TimelineType.RESOLVED, actor, details, now)
        return incident

    def resolve_open_detected(self, *, actor: str, resolution: str) -> int:
        """Resolve every unresolved detected incident (all tenants); returns how many.

        A dataflow that starts without recovery state has no memory of the incidents it opened
        before, so it would never auto-resolve them: the local run calls this at start.
        """
        now = utc_now()
        t = incidents_table
        resolved = 0
        with self._write() as conn:
            rows = conn.execute(
                sa.select(t.c.tenant, t.c.id).where(
                    t.c.kind == str(IncidentKind.DETECTED),
                    t.c.status != str(IncidentStatus.RESOLVED),
                )
            ).all()
            for tenant, incident_id in rows:
                current = self._get(conn, tenant, incident_id)
                if current is not None:
                    self._resolve(conn, current, actor, resolution, now)
                    resolved += 1
        return resolved

    def timeline(self, tenant: str, incident_id: str) -> list[TimelineEntry]:
        e = incident_events_table
        with self._read() as conn:
            rows = conn.execute(
                sa.select(e)
                .where(e.c.tenant == tenant, e.c.incident_id == incident_id)
                .order_by(e.c.id)
            )
            return [
                TimelineEntry(
                    incident_id=r.incident_id,
                    at=r.at,
                    type=TimelineType(r.type),
                    actor=r.actor,
                    details=dict(r.details or {}),
                )
                for r in rows
            ]

    def incident_counts(self) -> list[tuple[str, str, str, int]]:
        """(tenant, severity, status, count) over all tenants, for the Prometheus collector."""
        t = incidents_table
        with self._read() as conn:
            rows = conn.execute(
                sa.select(t.c.tenant, t.c.severity, t.c.status, sa.func.count())
                .group_by(t.c.tenant, t.c.severity, t.c.status)
                .order_by(t.c.tenant, t.c.severity, t.c.status)
            )
            return [(tenant, sev, status, int(n)) for tenant, sev, status, n in rows]

    # -- metrics -----------------------------------------------------------------------------

    def latest_windows(
        self, tenant: str, *, measurement: str | None = None, limit: int = 100
    ) -> list[WindowRecord]:
        """The newest window of each series of the tenant, ordered by series."""
        w = window_aggregates_table
        latest = sa.select(w.c.series, sa.func.max(w.c.window_start_ns).label("start")).where(
            w.c.tenant == tenant
        )
        if measurement is not None:
            latest = latest.where(w.c.measurement == measurement)
        newest = latest.group_by(w.c.series).subquery()
        stmt = (
            sa.select(w)
            .join(
                newest,
                sa.and_(w.c.series == newest.c.series, w.c.window_start_ns == newest.c.start),
            )
            .where(w.c.tenant == tenant)
            .order_by(w.c.series)
            .limit(limit)
        )
        with self._read() as conn:
            return [_window_from_row(r) for r in conn.execute(stmt)]

    def window_history(
        self,
        tenant: str,
        series: str,
        start_ns: int | None = None,
        end_ns: int | None = None,
        limit: int = 1000,
    ) -> list[WindowRecord]:
        """The newest ``limit`` windows of a series starting in [start_ns, end_ns), oldest first."""
        w = window_aggregates_table
        conditions = [w.c.tenant == tenant, w.c.series == series]
        if start_ns is not None:
            conditions.append(w.c.window_start_ns >= clamp_ns(start_ns))
        if end_ns is not None:
            conditions.append(w.c.window_start_ns < clamp_ns(end_ns))
        stmt = sa.select(w).where(*conditions).order_by(w.c.window_start_ns.desc()).limit(limit)
        with self._read() as conn:
            records = [_window_from_row(r) for r in conn.execute(stmt)]
        records.reverse()
        return records

    def anomalous_windows(
        self,
        tenant: str,
        start_ns: int | None = None,
        end_ns: int | None = None,
        min_score: float = 0.0,
        limit: int = 100,
    ) -> list[WindowRecord]:
        """Windows scoring at least ``min_score`` starting in [start_ns, end_ns), newest first."""
        w = window_aggregates_table
        conditions = [w.c.tenant == tenant, w.c.anomaly_score >= min_score]
        if start_ns is not None:
            conditions.append(w.c.window_start_ns >= clamp_ns(start_ns))
        if end_ns is not None:
            conditions.append(w.c.window_start_ns < clamp_ns(end_ns))
        stmt = (
            sa.select(w)
            .where(*conditions)
            .order_by(w.c.window_start_ns.desc(), w.c.series)
            .limit(limit)
        )
        with self._read() as conn:
            return [_window_from_row(r) for r in conn.execute(stmt)]

    # -- users -------------------------------------------------------------------------------

    def upsert_user(self, user: User) -> None:
        now = utc_now()
        row = {
            "username": user.username,
            "password_hash": user.password_hash,
            "role": str(user.role),
            "tenant": user.tenant,
            "disabled": bool(user.disabled),
            "created_at": now,
            "updated_at": now,
        }
        with self._write() as conn:
            stmt = _upsert(conn, users_table, ("username",), keep=("created_at",))
            conn.execute(stmt, [row])

    def get_user(self, username: str) -> User | None:
        u = users_table
        with self._read() as conn:
            row = conn.execute(sa.select(u).where(u.c.username == username)).first()
            return None if row is None else _user_from_row(row)

    # -- internals ---------------------------------------------------------------------------

    def _lock(self, conn: Connection, tenant: str, fp: str) -> None:
        """Serialise dedup per fingerprint. SQLite needs nothing: BEGIN IMMEDIATE already did."""
        if conn.dialect.name == "postgresql":
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"),
                {"key": _advisory_key(tenant, fp)},
            )

    def _get(self, conn: Connection, tenant: str, incident_id: str) -> Incident | None:
        t = incidents_table
        row = conn.execute(sa.select(t).where(t.c.tenant == tenant, t.c.id == incident_id)).first()
        return None if row is None else _incident_from_row(row)

    def _open_incident(self, conn: Connection, tenant: str, fp: str) -> Incident | None:
        t = incidents_table
        row = conn.execute(
            sa.select(t)
            .where(
                t.c.tenant == tenant,
                t.c.fingerprint == fp,
                t.c.status != str(IncidentStatus.RESOLVED),
            )
            .order_by(t.c.created_at.desc())
            .limit(1)
        ).first()
        return None if row is None else _incident_from_row(row)

    def _insert(self, conn: Connection, row: Mapping[str, Any]) -> Incident:
        if self.intake is not None:
            row = self.intake.prepare(conn, dict(row))
        columns = _incident_columns(row)
        conn.execute(sa.insert(incidents_table), [columns])
        fields = {k: v for k, v in row.items() if k != "applied_until_ns"}
        return Incident(**fields)

    def _after_insert(self, conn: Connection, incident: Incident) -> None:
        if self.intake is not None:
            self.intake.record(conn, incident, self._add_timeline)

    def _update(
        self, conn: Connection, incident: Incident, values: Mapping[str, Any], now: datetime
    ) -> Incident:
        values = {**values, "updated_at": now}
        conn.execute(
            sa.update(incidents_table)
            .where(incidents_table.c.id == incident.id)
            .values(**_incident_columns(values))
        )
        fields = {k: v for k, v in values.items() if k != "applied_until_ns"}
        return dataclasses.replace(incident, **fields)

    def _add_timeline(
        self,
        conn: Connection,
        incident: Incident,
        entry_type: TimelineType,
        actor: str,
        details: Mapping[str, Any],
        now: datetime,
    ) -> None:
        insert_timeline_entry(conn, incident.tenant, incident.id, entry_type, actor, details, now)


def name_taken(
    conn: Connection, table: sa.Table, tenant: str, name: str, except_id: str | None
) -> bool:
    """Whether another row of ``table`` (columns ``id``, ``tenant``, ``name``) in the tenant
    has this name (rules and escalation policies are unique by name per tenant)."""
    stmt = sa.select(table.c.id).where(table.c.tenant == tenant, table.c.name == name)
    if except_id is not None:
        stmt = stmt.where(table.c.id != except_id)
    return conn.execute(stmt).first() is not None


def insert_timeline_entry(
    conn: Connection,
    tenant: str,
    incident_id: str,
    entry_type: TimelineType,
    actor: str,
    details: Mapping[str, Any],
    at: datetime,
) -> None:
    """One entry on an incident's timeline (every writer of the timeline goes through here; the
    automation engine follows these entries by id)."""
    conn.execute(
        sa.insert(incident_events_table).values(
            incident_id=incident_id,
            tenant=tenant,
            at=at,
            type=str(entry_type),
            actor=actor,
            details=json_safe(dict(details)),
        )
    )


def _upsert(
    conn: Connection, table: sa.Table, keys: Iterable[str], keep: Iterable[str] = ()
) -> sa.Insert:
    """INSERT … ON CONFLICT (keys) DO UPDATE every other column except ``keep``."""
    key_set, keep_set = set(keys), set(keep)
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table)
    updates = {
        c.name: stmt.excluded[c.name]
        for c in table.columns
        if c.name not in key_set and c.name not in keep_set
    }
    return stmt.on_conflict_do_update(index_elements=list(keys), set_=updates)


def _install_sqlite_hooks(engine: Engine) -> None:
    """WAL + busy timeout on each connection; BEGIN IMMEDIATE for write transactions.

    pysqlite's own transaction handling is switched off (``isolation_level = None``) and
    SQLAlchemy's ``begin`` event emits BEGIN itself: the SQLAlchemy-documented recipe, which also
    makes SQLite DDL transactional for Alembic.
    """

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_MS)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


__all__ = [
    "INCIDENT_EDITABLE",
    "IncidentConflict",
    "Store",
    "StoreError",
    "UTCDateTime",
    "metadata",
    "silences_table",
]
