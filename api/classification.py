"""Incident classification in the API: the learned classifier, its corrections, the wiring.

``POST /api/v1/incidents`` without a ``category`` goes through
``incidents.classification.decide_category`` (corrections, confident rules, the learned
classifier, keywords, ``other``); ``PUT /api/v1/incidents/{id}`` that changes the category
stores a correction (``connectors.classifier_store``) and retrains the tenant's model in the
background (``models.classifier.ClassifierService``). ``ENABLE_ML_PREDICTION=false`` leaves
rules and keywords only (corrections are still stored, for when it is switched on again).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from connectors.classifier_store import ClassifierStore
from connectors.store import Store
from incidents.classification import (
    DEFAULT_MIN_CONFIDENCE,
    CategoryCorrection,
    Classification,
    Prediction,
    classifier_labels,
    decide_category,
)
from incidents.config import Settings
from incidents.records import Incident
from models.classifier import ClassifierService, LabelledIncident, base_model

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TenantPredictor:
    """``ClassifierService`` bound to one tenant, as a ``CategoryPredictor``."""

    service: ClassifierService
    tenant: str

    def predict(self, title: str, description: str, labels: Sequence[str]) -> Prediction:
        category, probability, remembered = self.service.predict(
            self.tenant, title, description, labels
        )
        return Prediction(category, probability, "correction" if remembered else "model")


class IncidentClassifier:
    """What the incidents router uses: classify a new incident, learn from a correction."""

    def __init__(
        self,
        corrections: ClassifierStore,
        service: ClassifierService | None,
        *,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    ) -> None:
        self.corrections = corrections
        self.service = service
        self.min_confidence = min_confidence

    @classmethod
    def from_settings(cls, settings: Settings, store: Store) -> IncidentClassifier:
        corrections = ClassifierStore(store)
        service = None
        if settings.enable_ml_prediction:

            def load(tenant: str) -> list[LabelledIncident]:
                return [
                    LabelledIncident(c.title, c.description, c.labels, c.category)
                    for c in corrections.corrections(tenant)
                ]

            service = ClassifierService(load)
        return cls(corrections, service)

    def warm_up(self) -> None:
        """Train the base model in the background, so the first incident does not wait."""
        if self.service is not None:
            threading.Thread(target=base_model, name="classifier-warm-up", daemon=True).start()

    def classify(
        self,
        *,
        tenant: str,
        title: str,
        description: str,
        tags: Sequence[str],
        metadata: Mapping[str, Any],
    ) -> Classification:
        predictor = TenantPredictor(self.service, tenant) if self.service is not None else None
        return decide_category(
            title=title,
            description=description,
            tags=tags,
            metadata=metadata,
            predictor=predictor,
            min_confidence=self.min_confidence,
        )

    def learn_correction(self, before: Incident, after: Incident, *, actor: str) -> bool:
        """Store a correction when ``after``'s category differs from ``before``'s; True if so.

        The incident's text as it is after the edit is what is learned (an edit may change the
        title and the category together).
        """
        if after.category == before.category:
            return False
        try:
            self._store_correction(before, after, actor=actor)
        except SQLAlchemyError:
            # The edit itself is committed; losing the lesson must not fail the request.
            log.error("could not store the category correction of incident %s", after.id)
            return False
        if self.service is not None:
            self.service.corrections_changed(after.tenant)
        log.info(
            "category of incident %s corrected from %s to %s",
            after.id,
            before.category,
            after.category,
        )
        return True

    def _store_correction(self, before: Incident, after: Incident, *, actor: str) -> None:
        self.corrections.add_correction(
            CategoryCorrection(
                tenant=after.tenant,
                title=after.title,
                description=after.description,
                labels=tuple(classifier_labels(after.tags, after.metadata)),
                category=after.category,
                previous=before.category,
                incident_id=after.id,
                actor=actor,
            )
        )
