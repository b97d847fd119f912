"""The seed's incident-management entry point, working as the seed README writes it::

    from incidents.core import IncidentManager
    from incidents.models import IncidentEvent

    manager = IncidentManager()
    incident = IncidentEvent(
        title="Datenbank-Verbindungs-Timeout",
        description="Mehrere Datenbank-Verbindungs-Timeouts erkannt",
        severity="high",
        source="monitoring",
        metadata={"database": "primary", "timeout_count": 15},
    )
    response = await manager.process_incident(incident)
    print(f"Incident klassifiziert als: {response.classification}")   # database
    print(f"Automatisierte Aktionen: {response.actions}")

``process_incident`` classifies the event exactly as ``POST /api/v1/incidents`` does
(``incidents.classification.decide_category``: confident rules, the learned classifier,
keywords) and lists the actions that the automation rules of its ``AutoResponseEngine`` would run
for it (``IncidentManager(automation=engine)``; without one: an empty engine, so no actions).
It keeps nothing: storing incidents and firing rules is the API's and the automation engine's
job.

The learned classifier comes from the ``incidents.classifiers`` entry-point group (this package
registers ``models.classifier:base_model`` as ``default``), so ``incidents`` does not import
``models``. Without that entry point (or with ``ENABLE_ML_PREDICTION=false``) the rules and
keywords decide alone.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Protocol

from incidents.automations import AutoResponseEngine
from incidents.classification import (
    DEFAULT_MIN_CONFIDENCE,
    CategoryPredictor,
    Classification,
    Method,
    Prediction,
    decide_category,
)
from incidents.fingerprint import fingerprint, tag_identity
from incidents.records import Incident, IncidentEvent, utc_now
from incidents.schemas import DEFAULT_TENANT, Category, IncidentStatus

log = logging.getLogger(__name__)

CLASSIFIER_GROUP = "incidents.classifiers"
DEFAULT_CLASSIFIER = "default"


class TextClassifier(Protocol):
    """What the entry point's factory returns (``models.classifier.CategoryModel`` is one)."""

    def predict(
        self, title: str, description: str, labels: Sequence[str]
    ) -> tuple[Category, float]: ...


@dataclass(frozen=True, slots=True)
class ModelPredictor:
    """A ``TextClassifier`` as the ``CategoryPredictor`` that ``decide_category`` takes."""

    model: TextClassifier

    def predict(self, title: str, description: str, labels: Sequence[str]) -> Prediction:
        category, probability = self.model.predict(title, description, labels)
        return Prediction(Category(category), float(probability))


def load_predictor(
    name: str = DEFAULT_CLASSIFIER, entries: Iterable[EntryPoint] | None = None
) -> CategoryPredictor | None:
    """The learned classifier registered as ``name`` in ``incidents.classifiers``; ``None``
    (rules and keywords only) when there is none or it cannot be loaded."""
    found = {
        ep.name: ep
        for ep in (entries if entries is not None else entry_points(group=CLASSIFIER_GROUP))
    }
    entry = found.get(name)
    if entry is None:
        return None
    try:
        return ModelPredictor(entry.load()())
    except Exception as exc:  # a broken model must not stop classification by rules
        log.warning("incident classifier %r cannot be loaded: %s", name, type(exc).__name__)
        return None


@dataclass(frozen=True, slots=True)
class IncidentResponse:
    """What ``process_incident`` returns; reads like an object and like a dict
    (``response.classification`` or ``response["classification"]``)."""

    classification: Category
    actions: list[dict[str, Any]]
    """One entry per action the matching rules would run: type, name, target, rule."""
    method: Method
    """How the category was chosen: rules, model, keywords, default (or correction)."""
    confidence: float | None
    incident: Incident = field(repr=False)

    def __getitem__(self, key: str) -> Any:
        if key not in self.to_dict():
            raise KeyError(key)
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "classification": str(self.classification),
            "actions": list(self.actions),
            "method": self.method,
            "confidence": self.confidence,
            "incident": self.incident,
        }


_UNSET: Any = object()


class IncidentManager:
    """Classify an incident and say what automation would do for it (see module docstring)."""

    def __init__(
        self,
        automation: AutoResponseEngine | None = None,
        *,
        predictor: CategoryPredictor | None = _UNSET,
        tenant: str = DEFAULT_TENANT,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    ) -> None:
        self.automation = automation if automation is not None else AutoResponseEngine()
        self.tenant = tenant
        self.min_confidence = min_confidence
        self._predictor = predictor
        self._predictor_loaded = predictor is not _UNSET

    @property
    def predictor(self) -> CategoryPredictor | None:
        if not self._predictor_loaded:
            from incidents.config import get_settings

            enabled = get_settings().enable_ml_prediction
            self._predictor = load_predictor() if enabled else None
            self._predictor_loaded = True
        return self._predictor

    def classify(self, event: IncidentEvent) -> Classification:
        if event.category is not None:
            return Classification(event.category, "rules")
        return decide_category(
            title=event.title,
            description=event.description,
            tags=event.tags,
            metadata=event.metadata,
            predictor=self.predictor,
            min_confidence=self.min_confidence,
        )

    def build_incident(self, event: IncidentEvent, category: Category) -> Incident:
        """The incident as the store would create it (not stored)."""
        now = utc_now()
        tenant = event.tenant or self.tenant
        return Incident(
            id=str(uuid.uuid4()),
            fingerprint=event.fingerprint
            or fingerprint(tenant, event.source, event.title, tag_identity(event.tags)),
            tenant=tenant,
            title=event.title,
            description=event.description,
            severity=event.severity,
            category=category,
            status=IncidentStatus.OPEN,
            kind=event.kind,
            source=event.source,
            series=None,
            metadata=dict(event.metadata),
            score=None,
            peak_score=None,
            repeat_count=0,
            first_seen=now,
            last_seen=now,
            created_at=now,
            updated_at=now,
            tags=tuple(event.tags),
        )

    def process(self, event: IncidentEvent) -> IncidentResponse:
        classification = self.classify(event)
        incident = self.build_incident(event, classification.category)
        actions = []
        for rule, planned in self.automation.planned_by_rule(incident):
            actions.append({**planned.describe(), "rule": rule.name})
        return IncidentResponse(
            classification=classification.category,
            actions=actions,
            method=classification.method,
            confidence=classification.confidence,
            incident=incident,
        )

    async def process_incident(self, event: IncidentEvent) -> IncidentResponse:
        """``process`` in a worker thread (the learned classifier may train on first use)."""
        return await asyncio.to_thread(self.process, event)


__all__ = [
    "CLASSIFIER_GROUP",
    "IncidentManager",
    "IncidentResponse",
    "ModelPredictor",
    "load_predictor",
]
