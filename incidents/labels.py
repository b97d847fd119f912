"""An incident's labels: the name -> values view that silences and grouping match against.

Incidents carry their identifying facts in several places: tags (``"k=v"`` or ``"k:v"``
strings; a plain tag such as ``"db"`` means ``db="true"``), the tag dict of a detected
incident's series (``metadata["tags"]``), the labels of an Alertmanager/Grafana alert
(``metadata["labels"]``), other scalar metadata keys, and the incident's own fields
(severity, category, source, series, kind, title, status). One name may have several values
(a label ``severity="warning"`` from Alertmanager next to the field ``severity="medium"``); the
values are ordered from the most specific source to the most general one, so the first value
is what grouping uses, and a matcher matches when any value does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from incidents.schemas import split_series

Labels = dict[str, tuple[str, ...]]

FIELD_NAMES = ("severity", "category", "source", "series", "kind", "title", "status")
"""Incident fields that are labels too (always present)."""

LABEL_DICTS = ("labels", "tags")
"""Metadata keys whose dict values are label sets of their own (alert labels, series tags)."""

MAX_LABEL_VALUE = 4_096
"""Longer metadata values are not labels: nobody silences by a page of text."""


def parse_tag(tag: str) -> tuple[str, str]:
    """``"k=v"`` or ``"k:v"`` -> (k, v), splitting at the first ``=`` or ``:``; else (tag, "true").

    ``"url:http://x"`` splits at the ``:``: the first separator wins, whichever it is.
    """
    cut = min((i for i in (tag.find("="), tag.find(":")) if i > 0), default=-1)
    if cut < 0:
        return tag, "true"
    return tag[:cut], tag[cut + 1 :]


def scalar_text(value: Any) -> str | None:
    """A metadata value as label text, or None when it is not a (short) scalar."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        text = str(value)
        return text if len(text) <= MAX_LABEL_VALUE else None
    return None


def incident_labels(
    *,
    tags: Iterable[str] = (),
    metadata: Mapping[str, Any] | None = None,
    fields: Mapping[str, Any] | None = None,
) -> Labels:
    """All labels of an incident, most specific source first (see the module docstring)."""
    collected: dict[str, list[str]] = {}

    def add(name: str, value: str | None) -> None:
        if not value or not name:  # an empty label is an absent one, as in Alertmanager
            return
        values = collected.setdefault(name, [])
        if value not in values:
            values.append(value)

    for tag in tags:
        add(*parse_tag(str(tag)))
    meta = metadata or {}
    for dict_key in LABEL_DICTS:
        nested = meta.get(dict_key)
        if isinstance(nested, Mapping):
            for name, value in nested.items():
                add(str(name), scalar_text(value))
    series = (fields or {}).get("series")
    if isinstance(series, str) and series:
        try:
            measurement, series_tags, field_name = split_series(series)
        except ValueError:
            series_tags, measurement, field_name = {}, None, None
        for name, value in series_tags.items():
            add(name, value)
        add("measurement", measurement)
        add("field", field_name)
    for name, value in meta.items():
        if name not in LABEL_DICTS:
            add(str(name), scalar_text(value))
    for name in FIELD_NAMES:
        value = (fields or {}).get(name)
        if value is not None:
            add(name, str(value))
    return {name: tuple(values) for name, values in collected.items()}


def first_value(labels: Labels, name: str) -> str | None:
    """The most specific value of a label, or None when the incident does not have it."""
    values = labels.get(name)
    return values[0] if values else None
