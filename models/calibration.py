"""Turning raw detector outputs into tail probabilities and scores in [0, 1], many series at once.

A member's raw output (an ECOD score, an absolute forecast residual) is compared with the outputs
it produced on its own history. ``TailTable`` holds one calibration per series (one row each) and
estimates ``q = P(S >= s)``: the empirical survival function in the body of that history, and
above its ``1 - tail_fraction`` quantile an exponential tail (a generalised Pareto with shape 0,
fitted by the mean excess). The tail keeps ``q`` falling for values beyond everything seen, where
a plain empirical CDF would stop at ``1 / (n + 1)`` and could not tell "just past the maximum"
from "ten times the maximum".

Two mappings from ``q`` to [0, 1]:

- ``confidence(q) = 1 - q``: 0.99 means "more extreme than 99 % of history" (per member).
- ``surprisal_score(q, decades) = log10(1 / q) / decades``, clipped: with ``decades=4`` a
  1-in-100 window scores 0.5 and a 1-in-10,000 window scores 1.0. The ensemble uses this
  scale so that a fixed threshold such as 0.95 means "rare", not "top 5 %".

All functions take and return arrays (one entry per series); everything is vectorised because
the dataflow scores the windows of a few hundred series in one call.
"""

from __future__ import annotations

import numpy as np

DEFAULT_TAIL_FRACTION = 0.1
SMALL_SAMPLE_EXCEEDANCES = 10.0
"""Shrinkage of the tail towards caution: the fitted scale is multiplied by ``1 + k0 / k`` for
``k`` exceedances. A tail fitted on a handful of points (a young series) is mostly noise, and
an exponential extrapolated from it cried wolf right after warm-up; with hundreds of points the
correction fades out."""

TINY = float(np.finfo(np.float64).tiny)
MAX_TAIL_SHAPE = 0.5
"""Upper bound of the fitted generalised Pareto shape (0 = exponential tail). Estimated by the
method of moments from the exceedances: a heavy-tailed sample gets a tail that falls more
slowly, so a value far beyond its history is not called a one-in-a-billion event too soon."""
SAMPLE_DTYPE = np.float32


class TailTable:
    """Per-row calibration: a sorted sample (NaN-padded), its tail threshold, probability, scale.

    A row that was never fitted abstains: ``q = 1``.
    """

    def __init__(self, rows: int, width: int, tail_fraction: float = DEFAULT_TAIL_FRACTION):
        self.tail_fraction = tail_fraction
        self.sample = np.full((rows, width), np.nan, dtype=SAMPLE_DTYPE)
        self.size = np.zeros(rows, dtype=np.int32)
        self.threshold = np.zeros(rows)
        self.threshold_probability = np.ones(rows)
        self.scale = np.ones(rows)
        self.shape = np.zeros(rows)

    @property
    def width(self) -> int:
        return int(self.sample.shape[1])

    def grow(self, rows: int) -> None:
        extra = rows - self.sample.shape[0]
        if extra <= 0:
            return
        self.sample = np.concatenate(
            [self.sample, np.full((extra, self.width), np.nan, dtype=SAMPLE_DTYPE)]
        )
        self.size = np.concatenate([self.size, np.zeros(extra, dtype=np.int32)])
        self.threshold = np.concatenate([self.threshold, np.zeros(extra)])
        self.threshold_probability = np.concatenate([self.threshold_probability, np.ones(extra)])
        self.scale = np.concatenate([self.scale, np.ones(extra)])
        self.shape = np.concatenate([self.shape, np.zeros(extra)])

    def fit(self, rows: np.ndarray, scores: np.ndarray, min_scale: np.ndarray | float) -> None:
        """Calibrate ``rows`` against ``scores`` (one sample per row; non-finite values ignored).

        ``min_scale`` floors the tail's scale so that a sample of identical values (a flat
        series) still yields a finite, steep tail instead of a division by zero.
        """
        width = np.shape(scores)[1]
        if width > self.width:
            raise ValueError(f"sample of {width} scores exceeds the width {self.width}")
        values, n, threshold, probability, scale, shape = fit_tail(
            scores, min_scale, self.tail_fraction
        )
        padded = np.full((len(values), self.width), np.nan, dtype=SAMPLE_DTYPE)
        padded[:, : values.shape[1]] = values
        self.sample[rows] = padded
        self.size[rows] = n
        self.threshold[rows] = threshold
        self.threshold_probability[rows] = probability
        self.scale[rows] = scale
        self.shape[rows] = shape

    def tail_probability(self, rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """``P(S >= score)`` in (0, 1] per row; non-finite scores and unfitted rows give 1.0."""
        return tail_probability_of(
            self.sample[rows],
            self.size[rows],
            self.threshold[rows],
            self.threshold_probability[rows],
            self.scale[rows],
            self.shape[rows],
            scores,
        )

    def head(self, rows: int) -> TailTable:
        """A copy of the first ``rows`` rows (for compact snapshots)."""
        copy = TailTable(0, self.width, self.tail_fraction)
        for name in ("sample", "size", "threshold", "threshold_probability", "scale", "shape"):
            setattr(copy, name, getattr(self, name)[:rows].copy())
        return copy


def fit_tail(
    scores: np.ndarray, min_scale: np.ndarray | float, tail_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``scores`` (non-finite values ignored): the sorted float32 sample (NaN last),
    its size, the tail threshold, the probability of reaching it, the tail's scale and shape."""
    values = np.asarray(scores, dtype=np.float64)
    values = np.where(np.isfinite(values), values, np.nan).astype(SAMPLE_DTYPE)
    values = np.sort(values, axis=1)
    n = np.isfinite(values).sum(axis=1)
    cut = np.maximum(np.ceil((1.0 - tail_fraction) * n).astype(np.int64) - 1, 0)
    threshold = values[np.arange(len(values)), cut].astype(np.float64)
    threshold = np.where(n > 0, threshold, 0.0)
    with np.errstate(invalid="ignore"):
        above = values > threshold[:, None]
        excess = np.where(above, values - threshold[:, None], 0.0).sum(axis=1)
        squares = np.where(above, (values - threshold[:, None]) ** 2, 0.0).sum(axis=1)
    exceedances = above.sum(axis=1)
    count = np.maximum(exceedances, 1)
    mean_excess = excess / count
    variance = np.maximum(squares / count - mean_excess**2, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(variance > 0, mean_excess**2 / variance, np.inf)
    shape = np.where(exceedances >= 2, np.clip(0.5 * (1.0 - ratio), 0.0, MAX_TAIL_SHAPE), 0.0)
    shrinkage = 1.0 + SMALL_SAMPLE_EXCEEDANCES / count
    scale = np.maximum(np.maximum(mean_excess * (1.0 - shape) * shrinkage, min_scale), TINY)
    survival = _empirical_survival(values, n, threshold)
    return values, n, threshold, survival, scale, shape


def tail_probability_of(
    sample: np.ndarray,
    n: np.ndarray,
    threshold: np.ndarray,
    threshold_probability: np.ndarray,
    scale: np.ndarray,
    shape: np.ndarray,
    scores: np.ndarray,
) -> np.ndarray:
    """``P(S >= score)`` from a sample (any order, NaN ignored) and fitted tail parameters
    (generalised Pareto beyond the threshold; shape 0 is exponential); non-finite scores and
    empty samples give 1.0."""
    scores = np.asarray(scores, dtype=np.float64)
    body = _empirical_survival(sample, n, scores)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        excess = (scores - threshold) / scale
        heavy = np.power(1.0 + shape * excess, -1.0 / np.where(shape > 0, shape, 1.0))
        tail = threshold_probability * np.where(shape > 0, heavy, np.exp(-excess))
    q = np.where(scores <= threshold, body, tail)
    return np.where(np.isfinite(scores) & (n > 0), q, 1.0)


def _empirical_survival(sample: np.ndarray, n: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``(#{x >= score} + 1) / (n + 1)``: the conformal p-value of ``score`` against the sample."""
    with np.errstate(invalid="ignore"):
        at_least = (sample >= np.asarray(scores, dtype=SAMPLE_DTYPE)[:, None]).sum(axis=1)
    return (at_least + 1.0) / (n + 1.0)


def confidence(q: np.ndarray) -> np.ndarray:
    return np.clip(1.0 - q, 0.0, 1.0)


def surprisal_score(q: np.ndarray, decades: float) -> np.ndarray:
    """``log10(1 / q) / decades`` clipped to [0, 1]; ``q <= 0`` is certain rarity (1.0)."""
    q = np.asarray(q, dtype=np.float64)
    with np.errstate(divide="ignore"):
        surprise = -np.log10(np.maximum(q, 0.0)) / decades
    # "+ 0.0" turns the -0.0 of log10(1) into 0.0 (it would print as "-0.000000").
    return np.clip(np.where(q <= 0.0, 1.0, surprise), 0.0, 1.0) + 0.0


MIN_MEMBER_Q = 1e-16
"""A member's ``q`` is floored here (16 decades of surprisal): beyond double precision's
resolution of ``1 - q``, and it keeps one member's certainty from outweighing the others."""


def weighted_surprisal(qs: np.ndarray, weights: np.ndarray, decades: float) -> np.ndarray:
    """``sum_k w_k log10(1 / q_k) / decades`` clipped to [0, 1]; members along axis 0.

    Fisher's method adds the members' log p-values; here the secondary members are weighted down
    (they share data with the primary one, so their evidence is not independent) and the sum is
    capped at ``decades``, where the score reaches 1.0.
    """
    qs = np.asarray(qs, dtype=np.float64)
    surprise = -np.log10(np.clip(qs, MIN_MEMBER_Q, 1.0))
    total = np.zeros(qs.shape[1:])
    for weight, member in zip(np.asarray(weights, dtype=np.float64), surprise, strict=True):
        total += weight * member  # member by member: the same sum whatever the batch size
    return np.clip(total / decades, 0.0, 1.0) + 0.0


def combine_tail_probabilities(qs: np.ndarray) -> np.ndarray:
    """Bonferroni over members (axis 0): the smallest ``q`` times the member count, at most 1.

    Conservative without assuming the members are independent (they watch the same series).
    """
    qs = np.asarray(qs, dtype=np.float64)
    if qs.shape[0] == 0:
        return np.ones(qs.shape[1:])
    return np.minimum(1.0, qs.shape[0] * qs.min(axis=0))
