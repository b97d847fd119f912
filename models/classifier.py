"""The learned incident classifier: incident text + tags/metadata keys -> ``Category``.

Features (a ``FeatureUnion``): TF-IDF of character n-grams within words (2-5, so German
compounds such as "Datenbank-Verbindungs-Timeout" share pieces with "database connection
timeout"-style training text and with each other), TF-IDF of words and word pairs, and TF-IDF of
the tokens of the incident's tags and metadata keys. Classifier: a soft-voting ensemble of
logistic regression, a calibrated linear SVM and complement naive Bayes. Everything is
deterministic (fixed ``random_state``, no shuffling) and trains in well under two seconds on the
~450 examples of ``models/data/incident_categories.jsonl``, a labelled set written for this
project (English and German, every ``Category``).

``ClassifierService`` serves predictions per tenant. A tenant without operator corrections gets
the base model (trained once per process); a tenant with corrections gets a model retrained on
the base set plus its corrections, each weighted ``CORRECTION_WEIGHT`` times an ordinary
example, and an exact-wording memory of its corrections (same title and description -> the
corrected category, whatever the model says). Retraining runs in a background thread after a
correction, or on next use, under a per-tenant lock; predictions of a tenant whose model is
being retrained wait for it, so the first incident after a correction already sees it.
Corrections of one tenant never influence another tenant's classification.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import VotingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.naive_bayes import ComplementNB
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.svm import LinearSVC

from incidents.schemas import Category

log = logging.getLogger(__name__)

DATA_FILE = Path(__file__).resolve().parent / "data" / "incident_categories.jsonl"
RANDOM_STATE = 20240601
CORRECTION_WEIGHT = 8.0
"""How many ordinary training examples one operator correction counts as."""
DEFAULT_REFRESH_SECONDS = 60.0
"""How often a tenant's corrections are re-read, to pick up corrections made by another
process; a correction made through this process retrains at once."""
MAX_TENANT_MODELS = 32

_LABEL_TOKEN = re.compile(r"[a-z0-9_]+")
WORD_PATTERN = r"(?u)\b\w\w+\b"
LABEL_PATTERN = r"\S+"
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class LabelledIncident:
    """One training example: text, tags/metadata keys, the right category, and its weight."""

    title: str
    description: str
    labels: tuple[str, ...]
    category: Category
    weight: float = 1.0
    lang: str = ""


def load_examples(path: Path = DATA_FILE) -> list[LabelledIncident]:
    """The labelled set: one JSON object per line with ``title``, ``description``, ``tags``,
    ``metadata_keys``, ``category`` and ``lang``."""
    examples: list[LabelledIncident] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                examples.append(
                    LabelledIncident(
                        title=str(record["title"]),
                        description=str(record.get("description", "")),
                        labels=(*record.get("tags", ()), *record.get("metadata_keys", ())),
                        category=Category(record["category"]),
                        lang=str(record.get("lang", "")),
                    )
                )
            except (ValueError, KeyError) as exc:
                raise ValueError(f"{path}:{number}: not a labelled incident: {exc}") from exc
    return examples


# --- features -----------------------------------------------------------------------------------

Sample = tuple[str, str]
"""(text, label tokens): what the pipeline's input rows are."""


NO_LABELS = "~"
"""A token every label text has, so that a training set without any labels still fits."""


def label_tokens(labels: Iterable[str]) -> list[str]:
    """``timeout_count`` -> ``timeout_count``, ``timeout``, ``count``; ``alertname:HighCPU`` ->
    ``alertname``, ``highcpu``."""
    out: list[str] = []
    for token in _LABEL_TOKEN.findall(" ".join(labels).lower()):
        out.append(token)
        parts = [p for p in token.split("_") if p]
        if len(parts) > 1:
            out.extend(parts)
    return out


MAX_DESCRIPTION_CHARS = 2_000
"""Only the start of a long description is classified (bounds the cost of a prediction)."""


def sample(title: str, description: str, labels: Iterable[str]) -> Sample:
    """The pipeline's input for one incident. The title is repeated: it carries the most."""
    text = f"{title}. {title}. {description[:MAX_DESCRIPTION_CHARS]}".strip()
    return text, " ".join((NO_LABELS, *label_tokens(labels)))


def _texts(rows: Sequence[Sample]) -> list[str]:
    return [row[0] for row in rows]


def _label_texts(rows: Sequence[Sample]) -> list[str]:
    return [row[1] for row in rows]


def build_pipeline(random_state: int = RANDOM_STATE) -> Pipeline:
    """Features + soft-voting ensemble, untrained."""
    features = FeatureUnion(
        [
            (
                "chars",
                Pipeline(
                    [
                        ("text", FunctionTransformer(_texts)),
                        (
                            "tfidf",
                            TfidfVectorizer(
                                analyzer="char_wb",
                                ngram_range=(2, 5),
                                sublinear_tf=True,
                                strip_accents="unicode",
                                lowercase=True,
                            ),
                        ),
                    ]
                ),
            ),
            (
                "words",
                Pipeline(
                    [
                        ("text", FunctionTransformer(_texts)),
                        (
                            "tfidf",
                            TfidfVectorizer(
                                ngram_range=(1, 2),
                                sublinear_tf=True,
                                strip_accents="unicode",
                                token_pattern=WORD_PATTERN,
                            ),
                        ),
                    ]
                ),
            ),
            (
                "labels",
                Pipeline(
                    [
                        ("text", FunctionTransformer(_label_texts)),
                        ("tfidf", TfidfVectorizer(token_pattern=LABEL_PATTERN, sublinear_tf=True)),
                    ]
                ),
            ),
        ]
    )
    ensemble = VotingClassifier(
        [
            (
                "logreg",
                LogisticRegression(
                    C=20.0, solver="saga", tol=1e-3, max_iter=3000, random_state=random_state
                ),
            ),
            (
                "svm",
                CalibratedClassifierCV(
                    LinearSVC(C=0.5, dual=True, random_state=random_state),
                    cv=StratifiedKFold(3),
                ),
            ),
            ("nb", ComplementNB(alpha=0.3)),
        ],
        voting="soft",
    )
    return Pipeline([("features", features), ("ensemble", ensemble)])


# --- the trained model --------------------------------------------------------------------------


@dataclass(slots=True)
class CategoryModel:
    """A trained pipeline and the categories of its probability columns."""

    pipeline: Pipeline
    categories: tuple[Category, ...]

    def probabilities(self, rows: Sequence[Sample]) -> np.ndarray:
        return np.asarray(self.pipeline.predict_proba(list(rows)))

    def predict(
        self, title: str, description: str, labels: Sequence[str]
    ) -> tuple[Category, float]:
        """The most probable category and its probability."""
        proba = self.probabilities([sample(title, description, labels)])[0]
        best = int(np.argmax(proba))
        return self.categories[best], float(proba[best])


def train(examples: Sequence[LabelledIncident], random_state: int = RANDOM_STATE) -> CategoryModel:
    """Fit the pipeline on ``examples`` (with their weights)."""
    if len({e.category for e in examples}) < 2:
        raise ValueError("training needs examples of at least two categories")
    rows = [sample(e.title, e.description, e.labels) for e in examples]
    targets = [str(e.category) for e in examples]
    weights = np.array([e.weight for e in examples], dtype=float)
    pipeline = build_pipeline(random_state)
    pipeline.fit(rows, targets, ensemble__sample_weight=weights)
    classes = pipeline.named_steps["ensemble"].classes_
    return CategoryModel(pipeline, tuple(Category(c) for c in classes))


_base_lock = threading.Lock()
_base: CategoryModel | None = None


def base_model() -> CategoryModel:
    """The model trained on the packaged labelled set (once per process; callers that come
    while it trains wait for it rather than train it again)."""
    global _base
    with _base_lock:
        if _base is None:
            started = time.perf_counter()
            _base = train(load_examples())
            log.info("incident classifier trained in %.2f s", time.perf_counter() - started)
        return _base


def cross_validated_predictions(
    examples: Sequence[LabelledIncident], folds: int = 5, random_state: int = RANDOM_STATE
) -> list[tuple[Category, float]]:
    """Out-of-fold (category, probability) per example, stratified folds shuffled with a fixed
    seed: every example is predicted by a model that never saw it."""
    targets = [str(e.category) for e in examples]
    predictions: dict[int, tuple[Category, float]] = {}
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    for train_index, test_index in splitter.split(np.zeros(len(examples)), targets):
        model = train([examples[i] for i in train_index], random_state)
        rows = [
            sample(examples[i].title, examples[i].description, examples[i].labels)
            for i in test_index
        ]
        for i, row in zip(test_index, model.probabilities(rows), strict=True):
            best = int(np.argmax(row))
            predictions[int(i)] = (model.categories[best], float(row[best]))
    return [predictions[i] for i in range(len(examples))]


# --- per-tenant service with operator corrections -----------------------------------------------


def wording_key(title: str, description: str) -> str:
    """What counts as "the same wording": title and description, case and spacing ignored."""
    return "\n".join(_SPACE.sub(" ", part.strip().lower()) for part in (title, description))


CorrectionLoader = Callable[[str], Sequence[LabelledIncident]]
"""tenant -> that tenant's corrections, oldest first (``connectors.classifier_store``)."""


@dataclass(slots=True)
class _TenantModel:
    model: CategoryModel
    corrections: tuple[LabelledIncident, ...]
    memory: dict[str, Category]
    loaded_at: float


@dataclass(slots=True)
class _TenantSlot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    current: _TenantModel | None = None
    stale: bool = True


class ClassifierService:
    """Predictions per tenant from the base model or a model retrained with the tenant's
    corrections (see the module docstring). Thread-safe."""

    def __init__(
        self,
        load_corrections: CorrectionLoader | None = None,
        *,
        base: Callable[[], CategoryModel] = base_model,
        correction_weight: float = CORRECTION_WEIGHT,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        max_tenants: int = MAX_TENANT_MODELS,
    ) -> None:
        self._load_corrections = load_corrections
        self._base = base
        self._correction_weight = correction_weight
        self._refresh_seconds = refresh_seconds
        self._max_tenants = max_tenants
        self._slots: OrderedDict[str, _TenantSlot] = OrderedDict()
        self._slots_lock = threading.Lock()
        self._threads: set[threading.Thread] = set()

    def predict(
        self, tenant: str, title: str, description: str, labels: Sequence[str]
    ) -> tuple[Category, float, bool]:
        """(category, probability, from a remembered correction)."""
        current = self._current(tenant)
        remembered = current.memory.get(wording_key(title, description))
        if remembered is not None:
            return remembered, 1.0, True
        category, probability = current.model.predict(title, description, labels)
        return category, probability, False

    def corrections_changed(self, tenant: str) -> threading.Thread:
        """A correction was stored: retrain the tenant's model in a background thread."""
        self._slot(tenant).stale = True
        thread = threading.Thread(
            target=self._current, args=(tenant,), name=f"classifier-retrain-{tenant}", daemon=True
        )
        with self._slots_lock:
            self._threads = {t for t in self._threads if t.is_alive()}
            self._threads.add(thread)
        thread.start()
        return thread

    def wait_idle(self, timeout: float | None = None) -> None:
        """Wait for background retraining (tests, shutdown)."""
        with self._slots_lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)

    def _slot(self, tenant: str) -> _TenantSlot:
        with self._slots_lock:
            slot = self._slots.get(tenant)
            if slot is None:
                slot = self._slots[tenant] = _TenantSlot()
                while len(self._slots) > self._max_tenants:
                    self._slots.popitem(last=False)
            else:
                self._slots.move_to_end(tenant)
            return slot

    def _current(self, tenant: str) -> _TenantModel:
        slot = self._slot(tenant)
        with slot.lock:
            current = slot.current
            now = time.monotonic()
            if (
                current is not None
                and not slot.stale
                and now - current.loaded_at < self._refresh_seconds
            ):
                return current
            slot.stale = False  # before reading: a correction stored meanwhile marks it again
            try:
                corrections = (
                    tuple(self._load_corrections(tenant)) if self._load_corrections else ()
                )
            except Exception:  # the store is down: keep classifying, retry on next use
                log.warning(
                    "could not read the classifier corrections of %r", tenant, exc_info=True
                )
                slot.stale = True
                return current if current is not None else self._build((), now)
            if current is not None and corrections == current.corrections:
                current.loaded_at = now
                return current
            slot.current = self._build(corrections, now)
            return slot.current

    def _build(self, corrections: tuple[LabelledIncident, ...], now: float) -> _TenantModel:
        base = self._base()
        if not corrections:
            return _TenantModel(base, corrections, {}, now)
        weighted = [
            LabelledIncident(c.title, c.description, c.labels, c.category, self._correction_weight)
            for c in corrections
        ]
        started = time.perf_counter()
        model = train([*load_examples(), *weighted])
        log.info(
            "incident classifier retrained with %d corrections in %.2f s",
            len(corrections),
            time.perf_counter() - started,
        )
        memory = {wording_key(c.title, c.description): c.category for c in corrections}
        return _TenantModel(model, corrections, memory, now)
