"""Window features, computed for a batch of windows at once.

Features are float32: half the memory of float64, and the precision of a metric value rarely
matters past seven significant digits. Every computation reads the float32-rounded values, so
what is scored is exactly what is later learned and stored.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from incidents.schemas import WindowAggregate

FEATURE_NAMES: tuple[str, ...] = ("mean", "std", "range", "last", "delta_mean")
MEAN = FEATURE_NAMES.index("mean")
FEATURE_DTYPE = np.float32


def window_features(windows: Sequence[WindowAggregate], previous_mean: np.ndarray) -> np.ndarray:
    """(windows, features) in the order of ``FEATURE_NAMES``.

    ``previous_mean`` holds each series' last learned mean (NaN for a new series, whose
    ``delta_mean`` is 0). With one point per window, std and range are 0 and mean equals last.
    """
    raw = np.array(
        [(w.mean, w.std, w.maximum - w.minimum, w.last, w.count) for w in windows],
        dtype=np.float64,
    ).reshape(len(windows), 5)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = raw[:, 0].astype(FEATURE_DTYPE)
        single = raw[:, 4] <= 1
        delta = np.where(np.isnan(previous_mean), 0.0, mean - previous_mean)
        columns = (
            mean,
            np.where(single, 0.0, raw[:, 1]),
            np.where(single, 0.0, raw[:, 2]),
            raw[:, 3],
            delta,
        )
        return np.stack(columns, axis=1).astype(FEATURE_DTYPE)
