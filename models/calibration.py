"""Turning raw detector outputs into tail probabilities and scores in [0, 1].

A member's raw output (a PyOD decision score, an absolute forecast residual) is compared with the
outputs it produced on its own history. ``TailCalibrator.tail_probability(s)`` estimates
``q = P(S >= s)``: the empirical survival function in the body of that history, and above its
``1 - tail_fraction`` quantile an exponential tail (a generalised Pareto with shape 0, fitted by
the mean excess). The tail keeps ``q`` falling for values beyond everything seen, where a plain
empirical CDF would stop at ``1 / (n + 1)`` and could not tell "just past the maximum" from
"ten times the maximum".

Two mappings from ``q`` to [0, 1]:

- ``confidence(q) = 1 - q``: 0.99 means "more extreme than 99 % of history" (per member).
- ``surprisal_score(q, decades) = log10(1 / q) / decades``, clipped: with ``decades=4`` a
  1-in-100 window scores 0.5 and a 1-in-10,000 window scores 1.0. The ensemble uses this
  scale so that a fixed threshold such as 0.95 means "rare", not "top 5 %".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

DEFAULT_TAIL_FRACTION = 0.1
SMALL_SAMPLE_EXCEEDANCES = 10.0
"""Shrinkage of the tail towards caution: the fitted scale is multiplied by ``1 + k0 / k`` for
``k`` exceedances. A tail fitted on a handful of points (a young series) is mostly noise, and
an exponential extrapolated from it cried wolf right after warm-up; with hundreds of points the
correction fades out."""


@dataclass(frozen=True, slots=True)
class TailCalibrator:
    """Empirical body plus exponential tail of a sample of scores (higher = more anomalous)."""

    sorted_scores: np.ndarray
    threshold: float
    threshold_probability: float
    tail_scale: float

    @classmethod
    def fit(
        cls,
        scores: np.ndarray,
        min_scale: float,
        tail_fraction: float = DEFAULT_TAIL_FRACTION,
    ) -> TailCalibrator:
        """Calibrate against ``scores`` (finite values only are kept).

        ``min_scale`` floors the tail's scale so that a sample of identical values (a flat
        series) still yields a finite, steep tail instead of a division by zero.
        """
        values = np.asarray(scores, dtype=np.float64)
        values = np.sort(values[np.isfinite(values)]).astype(np.float32)
        if values.size == 0:
            values = np.zeros(1, dtype=np.float32)
        cut = max(math.ceil((1.0 - tail_fraction) * values.size) - 1, 0)
        threshold = float(values[cut])
        excess = values[values > threshold].astype(np.float64) - threshold
        mean_excess = float(excess.mean()) if excess.size else 0.0
        shrinkage = 1.0 + SMALL_SAMPLE_EXCEEDANCES / max(excess.size, 1)
        return cls(
            sorted_scores=values,
            threshold=threshold,
            threshold_probability=_empirical_survival(values, threshold),
            tail_scale=max(mean_excess * shrinkage, min_scale, np.finfo(np.float64).tiny),
        )

    @property
    def size(self) -> int:
        return int(self.sorted_scores.size)

    def tail_probability(self, score: float) -> float:
        """``P(S >= score)`` in (0, 1]; non-finite scores abstain with 1.0."""
        if not math.isfinite(score):
            return 1.0
        if score <= self.threshold:
            return _empirical_survival(self.sorted_scores, score)
        return self.threshold_probability * math.exp(-(score - self.threshold) / self.tail_scale)


def _empirical_survival(sorted_values: np.ndarray, score: float) -> float:
    """``(#{x >= score} + 1) / (n + 1)``: the conformal p-value of ``score`` against the sample."""
    n = int(sorted_values.size)
    at_least = n - int(np.searchsorted(sorted_values, score, side="left"))
    return (at_least + 1) / (n + 1)


def confidence(q: float) -> float:
    return min(max(1.0 - q, 0.0), 1.0)


def surprisal_score(q: float, decades: float) -> float:
    """``log10(1 / q) / decades`` clipped to [0, 1]; ``q <= 0`` is certain rarity (1.0)."""
    if q <= 0.0:
        return 1.0
    return min(max(-math.log10(q) / decades, 0.0), 1.0)


def combine_tail_probabilities(qs: Iterable[float]) -> float:
    """Bonferroni: the smallest member ``q`` times the number of members, at most 1.

    Conservative without assuming the members are independent (they watch the same series).
    """
    values = list(qs)
    if not values:
        return 1.0
    return min(1.0, len(values) * min(values))
