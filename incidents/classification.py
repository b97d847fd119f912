"""Incident classification: rules over names, a learned text classifier, keyword fallback.

``decide_category`` is the order every incident created through the API goes through:

1. an operator's correction of an incident with the same wording (the learned classifier
   remembers them: ``Prediction.source == "correction"``);
2. *confident* rules: exactly one category's specific keywords occur among the structural names
   (measurement, field, tag keys and labels, metadata keys), e.g. a metadata key ``database``;
3. the learned text+tags classifier (``models.classifier``), when its probability reaches
   ``min_confidence``;
4. the keyword rules of ``classify`` over names *and* text (priority order), else ``other``.

``classify`` alone (keyword matches over normalised tokens, the order of ``CATEGORY_KEYWORDS``
is the priority) is what the dataflow uses for detected incidents: it costs microseconds and
measurement/field names are what a detected incident has. ``incidents`` does not import
``models``: the learned classifier comes in as a ``CategoryPredictor``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

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


STRONG_NAME_KEYWORDS: tuple[tuple[Category, frozenset[str]], ...] = (
    (
        Category.SECURITY,
        _words(
            """
            security auth login intrusion firewall breach malware unauthorized ssh tls cert
            certificate waf ids ddos vulnerability cve edr secrets
            """
        ),
    ),
    (
        Category.DATABASE,
        _words(
            """
            database db postgres postgresql mysql mariadb sql query queries replication deadlock
            pg pgbouncer redis mongodb cassandra oracle datenbank replica
            """
        ),
    ),
    (Category.MEMORY, _words("mem memory heap oom swap rss gc")),
    (
        Category.STORAGE,
        _words(
            """
            disk diskio storage volume filesystem inode inodes iops raid nfs ceph zfs
            mountpoint persistentvolumeclaim festplatte
            """
        ),
    ),
    (
        Category.NETWORK,
        _words(
            """
            net network netstat bytes_recv bytes_sent packets dns tcp udp bandwidth netzwerk
            ping bgp vpn conntrack coredns
            """
        ),
    ),
    (
        Category.COMPUTE,
        _words("cpu load1 load5 load15 usage_user usage_system usage_iowait usage_steal"),
    ),
    (Category.APPLICATION, _words("http https api latency 5xx endpoint grpc graphql")),
)
"""Keywords specific enough that a *name* (not free text) containing one decides the category.

Generic words of ``CATEGORY_KEYWORDS`` (``timeout``, ``error``, ``status``, ``system``,
``service``, ``kernel``, ``used_percent``) are left out: they occur in incidents of several
categories, e.g. the seed's ``timeout_count`` next to ``database``.
"""

IDENTITY_TAG_KEYS = frozenset({"host", "tenant", "region"})


def structural_names(
    *,
    measurement: str = "",
    field: str = "",
    tags: Mapping[str, str] | None = None,
    labels: Iterable[str] = (),
    metadata: Mapping[str, Any] | None = None,
) -> list[str]:
    """The names a rule may trust: measurement, field, tag keys and values (not identity tags),
    free-form labels (an API incident's ``tags``) and metadata keys (not their values)."""
    names = [measurement, field, *labels]
    if tags:
        names.extend(tags.keys())
        names.extend(str(v) for k, v in tags.items() if k not in IDENTITY_TAG_KEYS)
    if metadata:
        names.extend(str(k) for k in metadata)
    return [n for n in names if n]


def confident_rule_category(names: Iterable[str]) -> Category | None:
    """The category whose specific keywords occur in ``names``, if exactly one category's do."""
    found = tokens(names)
    matched = [category for category, words in STRONG_NAME_KEYWORDS if found & words]
    return matched[0] if len(matched) == 1 else None


Method = Literal["correction", "rules", "model", "keywords", "default"]


@dataclass(frozen=True, slots=True)
class Prediction:
    """A learned classifier's answer: the category, its probability, and whether it is a
    remembered operator correction for the same wording (``source="correction"``)."""

    category: Category
    confidence: float
    source: Literal["model", "correction"] = "model"


class CategoryPredictor(Protocol):
    """What ``decide_category`` needs from a learned classifier (``models.classifier``)."""

    def predict(self, title: str, description: str, labels: Sequence[str]) -> Prediction: ...


@dataclass(frozen=True, slots=True)
class Classification:
    """The chosen category, how it was chosen (``method``), and the model's probability when
    the model (or a remembered correction) chose it."""

    category: Category
    method: Method
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class CategoryCorrection:
    """An operator changed an incident's category: what the incident said and the right answer.

    ``labels`` are the incident's tags and metadata keys (``classifier_labels``).
    """

    tenant: str
    title: str
    description: str
    labels: tuple[str, ...]
    category: Category
    previous: Category | None = None
    incident_id: str | None = None
    actor: str = ""


DEFAULT_MIN_CONFIDENCE = 0.3
"""Below this probability the learned classifier's answer is not taken (keywords decide)."""


def classifier_labels(
    tags: Iterable[str] = (), metadata: Mapping[str, Any] | None = None
) -> list[str]:
    """The learned classifier's non-text input: an incident's tags and its metadata keys."""
    return [*tags, *(str(k) for k in (metadata or {}))]


def decide_category(
    *,
    title: str,
    description: str = "",
    tags: Sequence[str] = (),
    metadata: Mapping[str, Any] | None = None,
    predictor: CategoryPredictor | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> Classification:
    """Corrections, then confident rules, then the learned classifier, then keywords/``other``.

    ``predictor`` None (``ENABLE_ML_PREDICTION=false``) skips steps 1 and 3.
    """
    prediction = (
        predictor.predict(title, description, classifier_labels(tags, metadata))
        if predictor is not None
        else None
    )
    if prediction is not None and prediction.source == "correction":
        return Classification(prediction.category, "correction", prediction.confidence)
    ruled = confident_rule_category(structural_names(labels=tags, metadata=metadata))
    if ruled is not None:
        return Classification(ruled, "rules")
    if prediction is not None and prediction.confidence >= min_confidence:
        return Classification(prediction.category, "model", prediction.confidence)
    keyword = classify(title=title, description=" ".join((description, *tags)), metadata=metadata)
    return Classification(keyword, "default" if keyword is Category.OTHER else "keywords")


def severity_for(score: float, thresholds: Mapping[str, float]) -> Severity:
    """Map an anomaly score in [0, 1] to the highest severity whose threshold it reaches."""
    for name in ("critical", "high", "medium", "low"):
        if score >= thresholds.get(name, 2.0):
            return Severity(name)
    return Severity.INFO
