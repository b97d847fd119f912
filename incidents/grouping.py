"""Grouping of related incidents under one parent, like Alertmanager's ``group_by``.

Incidents that have the same values for the group-by labels (``INCIDENT_GROUP_BY``, by
default ``service``) and start within ``INCIDENT_GROUP_WINDOW_SECONDS`` of the group's first
incident hang under that first incident (``parent_id``). The first one is the parent; later
ones are its children; a child never becomes a parent itself, and an incident outside every
window starts a new group. An incident lacking every group-by label is not grouped.

The window is measured in the incidents' own time (``first_seen``: event time for detected
incidents, the report time for others), so a replayed or backfilled burst groups the same way
as a live one. The decision is pure; ``connectors.grouping_store`` finds the candidates.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from incidents.labels import Labels, first_value

DEFAULT_GROUP_BY = ("service",)
DEFAULT_GROUP_WINDOW_SECONDS = 300


def parse_group_by(text: str) -> tuple[str, ...]:
    """``"service, host"`` -> ("service", "host"); empty text switches grouping off."""
    names = [part.strip() for part in text.split(",")]
    return tuple(dict.fromkeys(n for n in names if n))


@dataclass(frozen=True, slots=True)
class GroupingPolicy:
    group_by: tuple[str, ...] = DEFAULT_GROUP_BY
    window_seconds: int = DEFAULT_GROUP_WINDOW_SECONDS

    def __post_init__(self) -> None:
        if self.window_seconds < 0:
            raise ValueError("the group window must not be negative")

    @property
    def enabled(self) -> bool:
        return bool(self.group_by) and self.window_seconds > 0

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.window_seconds)


def group_key(policy: GroupingPolicy, labels: Labels) -> str | None:
    """Stable key of the incident's group (a hash of the group-by names and values), or None.

    A group-by label the incident lacks counts as empty, as in Alertmanager; lacking all of
    them means the incident is not grouped at all.
    """
    if not policy.enabled:
        return None
    values = [first_value(labels, name) or "" for name in policy.group_by]
    if not any(values):
        return None
    document = json.dumps(
        [list(policy.group_by), values], separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(document.encode("utf-8")).hexdigest()[:64]


@dataclass(frozen=True, slots=True)
class GroupCandidate:
    """A root incident (no parent) of the same group and tenant."""

    id: str
    first_seen: datetime


def choose_parent(
    policy: GroupingPolicy, candidates: Iterable[GroupCandidate], first_seen: datetime
) -> str | None:
    """The id of the parent for an incident starting at ``first_seen``, or None (a new group).

    The parent is the earliest root whose window ``[root.first_seen, + window]`` contains
    ``first_seen``; ties go to the smaller id so the choice does not depend on row order.
    """
    if not policy.enabled:
        return None
    inside: Sequence[GroupCandidate] = [
        c for c in candidates if c.first_seen <= first_seen <= c.first_seen + policy.window
    ]
    if not inside:
        return None
    return min(inside, key=lambda c: (c.first_seen, c.id)).id
