"""Window features and the bounded per-series history they are kept in.

Features are stored as float32: half the memory of float64, and the precision of a metric value
rarely matters past seven significant digits. Every computation reads the float32-rounded values,
so what is scored is exactly what is later learned and stored.
"""

from __future__ import annotations

import numpy as np

from incidents.schemas import WindowAggregate

FEATURE_NAMES: tuple[str, ...] = ("mean", "std", "range", "last", "delta_mean")
MEAN = FEATURE_NAMES.index("mean")
FEATURE_DTYPE = np.float32


def window_features(agg: WindowAggregate, previous_mean: float | None) -> np.ndarray:
    """The feature vector of one window, in the order of ``FEATURE_NAMES``.

    ``delta_mean`` is 0 for a series' first window. With one point per window, std and range
    are 0 and mean equals last: constant columns that the detectors tolerate.
    """
    mean = FEATURE_DTYPE(agg.mean)
    delta = 0.0 if previous_mean is None else float(mean) - previous_mean
    std = agg.std if agg.count > 1 else 0.0
    spread = agg.maximum - agg.minimum if agg.count > 1 else 0.0
    return np.array([mean, std, spread, agg.last, delta], dtype=FEATURE_DTYPE)


def is_finite_features(features: np.ndarray) -> bool:
    return bool(np.isfinite(features).all())


class FeatureRing:
    """A fixed-capacity ring buffer of feature rows, oldest overwritten first.

    ``total`` counts every row ever appended, so positions are absolute: ``rows(end, size)``
    gives the rows with absolute positions ``[end - size, end)`` that are still held.
    """

    def __init__(self, capacity: int, width: int = len(FEATURE_NAMES)) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._data = np.zeros((capacity, width), dtype=FEATURE_DTYPE)
        self.total = 0

    @property
    def capacity(self) -> int:
        return int(self._data.shape[0])

    def __len__(self) -> int:
        return min(self.total, self.capacity)

    def append(self, row: np.ndarray) -> None:
        self._data[self.total % self.capacity] = row
        self.total += 1

    def rows(self, end: int | None = None, size: int | None = None) -> np.ndarray:
        """Rows ``[end - size, end)`` in order (a copy), clipped to what the ring still holds."""
        end = self.total if end is None else min(end, self.total)
        oldest = self.total - len(self)
        start = oldest if size is None else max(end - size, oldest)
        if end <= start:
            return np.empty((0, self._data.shape[1]), dtype=FEATURE_DTYPE)
        index = np.arange(start, end) % self.capacity
        return self._data[index]

    def column(self, index: int, size: int | None = None) -> np.ndarray:
        """The newest ``size`` values of one feature column, in order, as float64."""
        return self.rows(size=size)[:, index].astype(np.float64)
