"""Rule-based incident classification from measurement, field, tag and metadata names and text.

The rules are deliberately simple keyword matches over normalised tokens; a learned classifier
refines this later. The order of ``CATEGORY_KEYWORDS`` is the priority.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from incidents.schemas import Category, Severity


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


CATEGORY_KEYWORDS: tuple[tuple[Category, frozenset[str]], ...] = (
    (
        Category.SECURITY,
        _words(
            """
            security auth login intrusion firewall breach malware unauthorized ssh tls cert
            certificate sicherheit angriff
            """
        ),
    ),
    (
        Category.DATABASE,
        _words(
            """
            database db postgres postgresql mysql sql query queries replication deadlock
            connections pg redis mongodb datenbank primary replica
            """
        ),
    ),
    (
        Category.MEMORY,
        _words(
            """
            mem memory heap oom swap rss gc speicher
            """
        ),
    ),
    (
        Category.STORAGE,
        _words(
            """
            disk diskio storage volume filesystem fs inode inodes iops io festplatte
            used_percent
            """
        ),
    ),
    (
        Category.NETWORK,
        _words(
            """
            net network netstat bytes_recv bytes_sent packets dns tcp udp bandwidth packet
            drop drops netzwerk ping
            """
        ),
    ),
    (
        Category.COMPUTE,
        _words(
            """
            cpu load load1 load5 usage_user usage_system processes kernel system compute
            """
        ),
    ),
    (
        Category.APPLICATION,
        _words(
            """
            http api app application service request requests response latency errors error
            5xx status queue anwendung timeout
            """
        ),
    ),
)

_TOKEN = re.compile(r"[a-z0-9_]+")


def tokens(texts: Iterable[str]) -> set[str]:
    """Lower-case tokens; ``a_b`` also yields ``a`` and ``b``, and ``-`` separates words."""
    out: set[str] = set()
    for text in texts:
        for tok in _TOKEN.findall(text.lower().replace("-", " ")):
            out.add(tok)
            out.update(p for p in tok.split("_") if p)
    return out


def classify(
    *,
    measurement: str = "",
    field: str = "",
    tags: Mapping[str, str] | None = None,
    title: str = "",
    description: str = "",
    metadata: Mapping[str, Any] | None = None,
) -> Category:
    """Pick the first category (by priority) any of whose keywords occurs; ``other`` if none."""
    texts = [measurement, field, title, description]
    if tags:
        texts.extend(tags.keys())
        texts.extend(str(v) for k, v in tags.items() if k not in {"host", "tenant", "region"})
    if metadata:
        texts.extend(str(k) for k in metadata)
    found = tokens(texts)
    for category, words in CATEGORY_KEYWORDS:
        if found & words:
            return category
    return Category.OTHER


def severity_for(score: float, thresholds: Mapping[str, float]) -> Severity:
    """Map an anomaly score in [0, 1] to the highest severity whose threshold it reaches."""
    for name in ("critical", "high", "medium", "low"):
        if score >= thresholds.get(name, 2.0):
            return Severity(name)
    return Severity.INFO
