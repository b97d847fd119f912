"""The seed's import path for incident input: ``from incidents.models import IncidentEvent``.

The records live in ``incidents.records`` (this module only re-exports them); the learned models
are the top-level ``models`` package, which ``incidents`` never imports.
"""

from incidents.records import Incident, IncidentEvent
from incidents.schemas import Category, IncidentKind, IncidentStatus, Severity

__all__ = ["Category", "Incident", "IncidentEvent", "IncidentKind", "IncidentStatus", "Severity"]
