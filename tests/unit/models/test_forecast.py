from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.regression.linear_model import yule_walker as sm_yule_walker
from statsmodels.tsa.arima.estimators.hannan_rissanen import hannan_rissanen as sm_hannan_rissanen
from statsmodels.tsa.arima_process import arma_generate_sample

from models.forecast import (
    FLOAT32_EPS,
    FLOAT32_TINY,
    MAD_TO_SIGMA,
    MEAN_ABS_DEV_TO_SIGMA,
    arma_residuals,
    hannan_rissanen,
    long_ar_order,
    resolution,
    robust_level,
    two_sided_normal_tail,
    yule_walker,
)

# (phi, theta, drift, noise scale) of the differences:
#     d_t - drift = phi (d_{t-1} - drift) + e_t + theta e_{t-1}
PROCESSES = [
    (0.5, 0.3, 0.0, 1.0),
    (-0.4, 0.6, 2.5, 0.5),
    (0.9, -0.5, -0.2, 3.0),
    (0.0, 0.0, 10.0, 1.0),
    (0.7, 0.7, 1e3, 50.0),
]


def simulated_differences(n: int, seed: int) -> np.ndarray:
    """One row per process: the differences of an ARIMA(1, 1, 1) series with drift."""
    rng = np.random.default_rng(seed)
    rows = []
    for phi, theta, drift, scale in PROCESSES:
        arma = arma_generate_sample(
            [1.0, -phi], [1.0, theta], n + 1, scale=scale, distrvs=rng.standard_normal, burnin=50
        )
        levels = 100.0 + np.cumsum(drift + arma)
        rows.append(np.diff(levels))
    return np.array(rows)


def statsmodels_coefficients(differences: np.ndarray) -> tuple[float, float]:
    result, _ = sm_hannan_rissanen(differences, ar_order=1, ma_order=1, demean=True, unbiased=False)
    return float(result.ar_params[0]), float(result.ma_params[0])


@pytest.mark.parametrize(("n", "seed"), [(255, 1), (255, 2), (120, 3), (40, 4), (15, 5)])
def test_hannan_rissanen_equals_statsmodels(n: int, seed: int) -> None:
    differences = simulated_differences(n, seed)
    mu, phi, theta = hannan_rissanen(differences)
    assert mu == pytest.approx(differences.mean(axis=1), rel=1e-12)
    for row in range(len(differences)):
        expected_phi, expected_theta = statsmodels_coefficients(differences[row])
        assert phi[row] == pytest.approx(expected_phi, rel=1e-7, abs=1e-9)
        assert theta[row] == pytest.approx(expected_theta, rel=1e-7, abs=1e-9)


def test_hannan_rissanen_recovers_the_process_on_long_series() -> None:
    # Processes 0 and 2; without the bias-correction step the estimate for process 1 is
    # visibly biased (statsmodels gives the same), and process 3 is white noise, where phi and
    # theta are not identified.
    differences = simulated_differences(4000, seed=6)[[0, 2]]
    mu, phi, theta = hannan_rissanen(differences)
    expected = np.array(PROCESSES)[[0, 2]]
    # The mean difference of the persistent (phi = 0.9) process varies most: sd about 0.24.
    assert np.all(np.abs(mu - expected[:, 2]) < [0.1, 1.0])
    assert phi == pytest.approx(expected[:, 0], abs=0.1)
    assert theta == pytest.approx(expected[:, 1], abs=0.1)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_too_short_input_gives_no_coefficients(n: int) -> None:
    differences = np.random.default_rng(n).normal(size=(3, n))
    mu, phi, theta = hannan_rissanen(differences)
    assert mu == pytest.approx(differences.mean(axis=1))
    assert np.isnan(phi).all()
    assert np.isnan(theta).all()


def test_constant_differences_give_no_coefficients() -> None:
    mu, phi, theta = hannan_rissanen(np.full((2, 100), 3.0))
    assert mu.tolist() == [3.0, 3.0]
    assert np.isnan(phi).all()
    assert np.isnan(theta).all()


def test_a_degenerate_row_does_not_spoil_the_others() -> None:
    differences = simulated_differences(255, seed=7)
    alone = hannan_rissanen(differences)
    with_flat = hannan_rissanen(np.vstack([differences, np.full((1, 255), 1.0)]))
    for got, expected in zip(with_flat, alone, strict=True):
        assert got[:-1].tolist() == expected.tolist()
    assert math.isnan(with_flat[1][-1])
    assert math.isnan(with_flat[2][-1])


@pytest.mark.parametrize("order", [1, 2, 5, 30])
def test_yule_walker_equals_statsmodels_mle(order: int) -> None:
    rng = np.random.default_rng(order)
    x = np.cumsum(rng.normal(size=(3, 200)), axis=1) * 0.1 + rng.normal(size=(3, 200))
    x = x - x.mean(axis=1, keepdims=True)
    got = yule_walker(x, order)
    assert got.shape == (3, order)
    for row in range(3):
        expected, _ = sm_yule_walker(x[row], order=order, method="mle", result_object=False)
        assert got[row] == pytest.approx(expected, rel=1e-8, abs=1e-10)


def test_long_ar_order_is_the_statsmodels_default() -> None:
    for n in (10, 15, 40, 255, 1000):
        _, other = sm_hannan_rissanen(np.random.default_rng(n).normal(size=n), 1, 1)
        assert long_ar_order(n) == other.initial_ar_order
    assert long_ar_order(2) == 2


def loop_residuals(x: np.ndarray, mu: float, phi: float, theta: float) -> list[float]:
    residuals: list[float] = []
    previous_x = previous_e = 0.0
    for value in x.tolist():
        e = (value - mu) - phi * previous_x - theta * previous_e
        residuals.append(e)
        previous_x, previous_e = value - mu, e
    return residuals


def test_arma_residuals_equal_a_plain_loop() -> None:
    differences = simulated_differences(100, seed=8)
    mu, phi, theta = hannan_rissanen(differences)
    got = arma_residuals(differences, mu, phi, theta)
    assert got.shape == differences.shape
    for row in range(len(differences)):
        expected = loop_residuals(differences[row], mu[row], phi[row], theta[row])
        assert got[row].tolist() == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_arma_residuals_recover_the_innovations() -> None:
    rng = np.random.default_rng(9)
    e = rng.normal(size=300)
    x = np.zeros(300)
    for t in range(300):
        x[t] = (0.6 * x[t - 1] + 0.3 * e[t - 1] if t else 0.0) + e[t]
    residuals = arma_residuals((x + 4.0)[None], np.array([4.0]), np.array([0.6]), np.array([0.3]))
    assert residuals[0] == pytest.approx(e, abs=1e-9)


def test_robust_level_on_known_data() -> None:
    values = np.array(
        [
            [1.0, 2.0, 3.0, 4.0, 100.0],  # MAD 1
            [5.0, 5.0, 5.0, 5.0, 9.0],  # MAD 0: mean absolute deviation 0.8
            [2.0, 2.0, 2.0, 2.0, 2.0],  # flat: the floor
        ]
    )
    location, scale = robust_level(values, np.array([1e-9, 1e-9, 0.25]))
    assert location.tolist() == [3.0, 5.0, 2.0]
    assert scale == pytest.approx([MAD_TO_SIGMA, MEAN_ABS_DEV_TO_SIGMA * 0.8, 0.25])
    location, scale = robust_level(values[:1], np.array([10.0]))  # a floor above the MAD
    assert (location.tolist(), scale.tolist()) == ([3.0], [10.0])


def test_two_sided_normal_tail() -> None:
    z = np.array([0.0, 1.959963984540054, -1.959963984540054, 1.0, 40.0])
    q = two_sided_normal_tail(z)
    assert q[:4] == pytest.approx([1.0, 0.05, 0.05, 0.31731050786291415])
    assert 0.0 <= q[4] < 1e-300


def test_resolution_scales_with_the_largest_value() -> None:
    values = np.array([[1.0, -1000.0, 3.0], [0.0, 0.0, 0.0]])
    assert resolution(values).tolist() == [4.0 * FLOAT32_EPS * 1000.0, FLOAT32_TINY]
    assert resolution(np.zeros((2, 0))).tolist() == [FLOAT32_TINY, FLOAT32_TINY]
