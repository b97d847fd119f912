"""Silences in the relational store: create, list, read, expire (per tenant).

Validation is ``incidents.silences.validate_silence``; matching happens at intake
(``connectors.grouping_store``).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa

from connectors.grouping_store import silence_from_row
from connectors.store import Store, silences_table
from incidents.records import utc, utc_now
from incidents.silences import (
    Matcher,
    Silence,
    SilenceState,
    expired_times,
    validate_silence,
)


class SilenceStore:
    """Silences in a ``Store``'s database, in its transactions (``_write`` takes SQLite's write
    lock up front, like every write of the store)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(
        self,
        tenant: str,
        matchers: Iterable[Matcher],
        *,
        starts_at: datetime | None,
        ends_at: datetime,
        comment: str,
        created_by: str,
        now: datetime | None = None,
    ) -> Silence:
        """Validate and store a silence; ``SilenceError`` when it is not acceptable."""
        now = now or utc_now()
        start = utc(starts_at) if starts_at is not None else now
        end = utc(ends_at)
        checked = validate_silence(matchers, start, end, now)
        silence = Silence(
            id=str(uuid.uuid4()),
            tenant=tenant,
            matchers=checked,
            starts_at=start,
            ends_at=end,
            comment=comment,
            created_by=created_by,
            created_at=now,
            updated_at=now,
        )
        with self.store._write() as conn:
            conn.execute(
                sa.insert(silences_table),
                [
                    {
                        "id": silence.id,
                        "tenant": tenant,
                        "matchers": [m.as_dict() for m in checked],
                        "starts_at": start,
                        "ends_at": end,
                        "comment": comment,
                        "created_by": created_by,
                        "created_at": now,
                        "updated_at": now,
                    }
                ],
            )
        return silence

    def get(self, tenant: str, silence_id: str) -> Silence | None:
        s = silences_table
        with self.store._read() as conn:
            row = conn.execute(
                sa.select(s).where(s.c.tenant == tenant, s.c.id == silence_id)
            ).first()
        return None if row is None else silence_from_row(row)

    def list(
        self,
        tenant: str,
        state: SilenceState | None = None,
        *,
        limit: int = 100,
        now: datetime | None = None,
    ) -> list[Silence]:
        """The tenant's silences, newest first, optionally only those in ``state`` at ``now``."""
        now = now or utc_now()
        s = silences_table
        conditions: list[sa.ColumnElement[bool]] = [s.c.tenant == tenant]
        if state is SilenceState.ACTIVE:
            conditions += [s.c.starts_at <= now, s.c.ends_at > now]
        elif state is SilenceState.PENDING:
            conditions.append(s.c.starts_at > now)
        elif state is SilenceState.EXPIRED:
            conditions.append(s.c.ends_at <= now)
        with self.store._read() as conn:
            rows = conn.execute(
                sa.select(s)
                .where(*conditions)
                .order_by(s.c.created_at.desc(), s.c.id.desc())
                .limit(limit)
            )
            return [silence for r in rows if (silence := silence_from_row(r)) is not None]

    def expire(
        self, tenant: str, silence_id: str, *, now: datetime | None = None
    ) -> Silence | None:
        """End the silence now (a no-op on an expired one); None when there is no such silence."""
        now = now or utc_now()
        s = silences_table
        with self.store._write() as conn:
            row = conn.execute(
                sa.select(s).where(s.c.tenant == tenant, s.c.id == silence_id)
            ).first()
            if row is None:
                return None
            silence = silence_from_row(row)
            if silence is None:  # unreadable matchers: end it all the same
                conn.execute(sa.update(s).where(s.c.id == silence_id).values(ends_at=now))
                return None
            starts_at, ends_at = expired_times(silence, now)
            if (starts_at, ends_at) == (silence.starts_at, silence.ends_at):
                return silence
            conn.execute(
                sa.update(s)
                .where(s.c.id == silence_id)
                .values(starts_at=starts_at, ends_at=ends_at, updated_at=now)
            )
            return dataclasses.replace(
                silence, starts_at=starts_at, ends_at=ends_at, updated_at=now
            )
