"""Incident fingerprints: the identity under which repeated reports collapse into one incident.

A fingerprint is the SHA-256 (hex) of a canonical JSON document, so it is stable across
processes, Python versions and dict orderings. Values are taken verbatim (no case folding):
series keys are case-sensitive, and two titles that differ only in case are two incidents.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

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
