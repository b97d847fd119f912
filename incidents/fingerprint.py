"""Incident fingerprints: the identity under which repeated reports collapse into one incident.

A fingerprint is the SHA-256 (hex) of a canonical JSON document, so it is stable across
processes, Python versions and dict orderings. Values are taken verbatim (no case folding):
series keys are case-sensitive, and two titles that differ only in case are two incidents.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping

from incidents.labels import parse_tag

FINGERPRINT_VERSION = 1


def fingerprint(
    tenant: str, source: str, title: str, identifying: Mapping[str, str] | None = None
) -> str:
    """Stable id of "the same problem" within a tenant.

    Manual incidents use ``(tenant, source, title)``; the dataflow's incident builder uses
    ``source="detector", title=series``. ``identifying`` adds key/value pairs that distinguish
    otherwise equal reports (e.g. ``{"database": "primary"}``).
    """
    document = {
        "v": FINGERPRINT_VERSION,
        "tenant": tenant,
        "source": source,
        "title": title,
        "identifying": {str(k): str(v) for k, v in (identifying or {}).items()},
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def tag_identity(tags: Iterable[str]) -> dict[str, str]:
    """Tags as the identifying part of a fingerprint: ``["host=db-1", "db"]`` ->
    ``{"host": "db-1", "db": "true"}``; several values of one key are joined in sorted order,
    so the order of the tags never matters. No tags -> ``{}`` (the fingerprint of a report
    without tags is the same as before tags counted).

    Tags identify (``host=db-1`` and ``host=db-2`` are two problems); free-form metadata does
    not (it carries counters such as ``timeout_count`` that differ between repeats), unless the
    reporter sends an explicit ``fingerprint``.
    """
    values: dict[str, set[str]] = {}
    for tag in tags:
        key, value = parse_tag(str(tag))
        values.setdefault(key, set()).add(value)
    return {key: ",".join(sorted(found)) for key, found in values.items()}
