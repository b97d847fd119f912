"""PyOD ensemble member: an unsupervised outlier model over the buffered window features.

The fitted PyOD estimator is a cache, not state: it is rebuilt deterministically from the
feature rows it was fitted on, which the detector's ring buffer still holds until the next refit.
It is therefore left out of pickles (ECOD and COPOD keep their whole training matrix plus four
derived matrices, about 50 KB per series), and refitted on first use after unpickling.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from pyod.models.base import BaseDetector
from pyod.models.copod import COPOD
from pyod.models.ecod import ECOD
from pyod.models.hbos import HBOS

from models.calibration import TailCalibrator
from models.features import FeatureRing

log = logging.getLogger(__name__)

PYOD_MODELS: dict[str, Callable[[], BaseDetector]] = {
    "ecod": ECOD,
    "copod": COPOD,
    "hbos": HBOS,
}
"""Parameter-free (ECOD, COPOD) or nearly so (HBOS): nothing to tune per series, deterministic."""

MIN_SCORE_SCALE = 1e-6


def fit_pyod(name: str, rows: np.ndarray) -> tuple[BaseDetector, TailCalibrator] | None:
    """Fit the named model on ``rows`` and calibrate it on its own training scores."""
    model = PYOD_MODELS[name]()
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            model.fit(rows.astype(np.float64))
        scores = np.asarray(model.decision_scores_, dtype=np.float64)
    except Exception as exc:  # a broken fit must not stop the stream
        log.debug("%s fit failed: %s", name, exc)
        return None
    return model, TailCalibrator.fit(scores, MIN_SCORE_SCALE)


def decision_score(model: BaseDetector, features: np.ndarray) -> float:
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            raw = model.decision_function(features.astype(np.float64).reshape(1, -1))
    except Exception as exc:
        log.debug("decision_function failed: %s", exc)
        return float("nan")
    return float(raw[0])


class PyodMember:
    """Ensemble member scoring a window's features with a PyOD model refitted periodically."""

    def __init__(self, name: str, window: int, refit_every: int) -> None:
        if name not in PYOD_MODELS:
            raise ValueError(f"unknown PyOD member {name!r}; choose from {sorted(PYOD_MODELS)}")
        self.name = name
        self.window = window
        self.refit_every = refit_every
        self._fit_end: int | None = None
        self._calibrator: TailCalibrator | None = None
        self._model: BaseDetector | None = None

    def refit(self, history: FeatureRing) -> None:
        self._fit_end = history.total
        self._install(fit_pyod(self.name, history.rows(size=self.window)))

    def tail_probability(self, features: np.ndarray, history: FeatureRing) -> float:
        if self._model is None and self._fit_end is not None and self._calibrator is not None:
            self._install(fit_pyod(self.name, history.rows(self._fit_end, self.window)))
        if self._model is None or self._calibrator is None:
            return 1.0
        return self._calibrator.tail_probability(decision_score(self._model, features))

    def observe(self, features: np.ndarray, history: FeatureRing) -> None:
        """Nothing to update between refits."""

    def _install(self, fitted: tuple[BaseDetector, TailCalibrator] | None) -> None:
        self._model, self._calibrator = fitted if fitted is not None else (None, None)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_model"] = None
        return state
