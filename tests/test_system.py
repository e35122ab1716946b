"""Tests of lmu.system: the Legendre system, discretisers, impulse responses and decoders.

Expected values are derived independently of the implementation: written out from the
definitions, computed by SciPy, or by plain step-by-step loops.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import scipy.signal
from numpy.polynomial import legendre as npleg

from lmu import system
from lmu.system import (
    discretize,
    euler_theta_bound,
    fft_length,
    impulse_response,
    legendre_decoder,
    legendre_system,
    lmu_matrices,
    truncation_length,
)

BAD_ORDERS = [0, -1, 2.5, True, "3", None, 3.0]


def _legendre_by_definition(order: int) -> tuple[np.ndarray, np.ndarray]:
    """A and B written out entry by entry from the definition, with Python ints."""
    A = [[0] * order for _ in range(order)]
    B = [[0] for _ in range(order)]
    for i in range(order):
        B[i][0] = (2 * i + 1) * (-1) ** i
        for j in range(order):
            A[i][j] = (2 * i + 1) * (-1 if i < j else (-1) ** (i - j + 1))
    return np.array(A, dtype=float), np.array(B, dtype=float)


def _loop_response(Ad: np.ndarray, Bd: np.ndarray, length: int) -> np.ndarray:
    """Rows Ad^t Bd by a plain loop."""
    out = np.empty((length, Ad.shape[0]))
    x = Bd[:, 0].copy()
    for t in range(length):
        out[t] = x
        x = Ad @ x
    return out


def _rel_tail(H: np.ndarray, L: int) -> float:
    """||H[L:]|| / ||H|| (Frobenius)."""
    return float(np.linalg.norm(H[L:]) / np.linalg.norm(H))


# -- legendre_system --------------------------------------------------------------------------


def test_legendre_system_order_3_written_out() -> None:
    A, B = legendre_system(3)
    np.testing.assert_array_equal(A, [[-1, -1, -1], [3, -3, -3], [-5, 5, -5]])
    np.testing.assert_array_equal(B, [[1], [-3], [5]])


def test_legendre_system_order_1() -> None:
    A, B = legendre_system(1)
    np.testing.assert_array_equal(A, [[-1.0]])
    np.testing.assert_array_equal(B, [[1.0]])


@pytest.mark.parametrize("order", [1, 2, 4, 7, 16])
def test_legendre_system_matches_definition(order: int) -> None:
    A, B = legendre_system(order)
    A_ref, B_ref = _legendre_by_definition(order)
    assert A.shape == (order, order)
    assert B.shape == (order, 1)
    assert A.dtype == np.float64 and B.dtype == np.float64
    np.testing.assert_array_equal(A, A_ref)
    np.testing.assert_array_equal(B, B_ref)


def test_legendre_system_numpy_int_order() -> None:
    A, _ = legendre_system(np.int64(5))
    assert A.shape == (5, 5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_legendre_system_dtype(dtype: type) -> None:
    A, B = legendre_system(6, dtype=dtype)
    assert A.dtype == dtype and B.dtype == dtype
    A_ref, B_ref = _legendre_by_definition(6)
    np.testing.assert_array_equal(A, A_ref.astype(dtype))
    np.testing.assert_array_equal(B, B_ref.astype(dtype))


@pytest.mark.parametrize("order", BAD_ORDERS)
def test_legendre_system_bad_order(order: object) -> None:
    with pytest.raises(ValueError, match="order") as info:
        legendre_system(order)  # type: ignore[arg-type]
    assert repr(order) in str(info.value)


# -- discretize -------------------------------------------------------------------------------


def _systems() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(1)
    A8, B8 = legendre_system(8)
    M = rng.normal(size=(5, 5)) - 3 * np.eye(5)
    return [(A8 / 20.0, B8 / 20.0), (M, rng.normal(size=(5, 2))), legendre_system(3)]


@pytest.mark.parametrize("method", ["zoh", "bilinear"])
@pytest.mark.parametrize("dt", [1.0, 0.3, 2.5])
def test_discretize_matches_scipy(method: str, dt: float) -> None:
    for A, B in _systems():
        n, k = B.shape
        Ad, Bd = discretize(A, B, dt, method)
        ref = scipy.signal.cont2discrete((A, B, np.eye(n), np.zeros((n, k))), dt, method=method)
        np.testing.assert_allclose(Ad, ref[0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(Bd, ref[1], rtol=1e-10, atol=1e-12)
        assert Ad.shape == (n, n) and Bd.shape == (n, k)


def test_discretize_default_is_zoh_with_unit_step() -> None:
    A, B = legendre_system(4)
    Ad, Bd = discretize(A / 10, B / 10)
    np.testing.assert_allclose(Ad, scipy.linalg.expm(A / 10), rtol=1e-12, atol=1e-14)
    # Bd = A^-1 (Ad - I) B for an invertible A
    np.testing.assert_allclose(
        Bd, np.linalg.solve(A / 10, (Ad - np.eye(4)) @ (B / 10)), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("dt", [1.0, 0.1])
def test_discretize_euler(dt: float) -> None:
    for A, B in _systems():
        Ad, Bd = discretize(A, B, dt, "euler")
        np.testing.assert_allclose(Ad, np.eye(A.shape[0]) + dt * A, rtol=0, atol=1e-15)
        np.testing.assert_allclose(Bd, dt * B, rtol=0, atol=1e-15)


def test_discretize_float32_in_float32_out() -> None:
    A, B = legendre_system(4, dtype=np.float32)
    Ad, Bd = discretize(A / 10, B / 10, 1.0, "zoh")
    assert Ad.dtype == np.float32 and Bd.dtype == np.float32
    Ad64, _ = discretize(A.astype(np.float64) / 10, B.astype(np.float64) / 10)
    np.testing.assert_allclose(Ad, Ad64, rtol=1e-6)


@pytest.mark.parametrize("method", ["ZOH", "foh", "", None, "tustin"])
def test_discretize_bad_method(method: object) -> None:
    A, B = legendre_system(3)
    with pytest.raises(ValueError, match="method") as info:
        discretize(A, B, 1.0, method)  # type: ignore[arg-type]
    assert repr(method) in str(info.value)


@pytest.mark.parametrize("dt", [0, -1.0, float("nan"), float("inf"), "1", True, None])
def test_discretize_bad_dt(dt: object) -> None:
    A, B = legendre_system(3)
    with pytest.raises(ValueError, match="dt") as info:
        discretize(A, B, dt)  # type: ignore[arg-type]
    assert repr(dt) in str(info.value)


def test_discretize_bad_shapes() -> None:
    A, B = legendre_system(3)
    with pytest.raises(ValueError, match=r"A must be a square matrix \(got shape \(3, 2\)\)"):
        discretize(A[:, :2], B)
    with pytest.raises(ValueError, match=r"A must be a square matrix \(got shape \(3,\)\)"):
        discretize(A[0], B)
    with pytest.raises(ValueError, match=r"B must have shape \(3, k\) \(got shape \(2, 1\)\)"):
        discretize(A, B[:2])
    with pytest.raises(ValueError, match=r"B must have shape \(3, k\) \(got shape \(3,\)\)"):
        discretize(A, B[:, 0])


# -- lmu_matrices -----------------------------------------------------------------------------


@pytest.mark.parametrize("discretizer", ["zoh", "bilinear", "euler"])
def test_lmu_matrices_is_scaled_system_discretised(discretizer: str) -> None:
    A, B = legendre_system(6)
    theta = 50.0
    Ad, Bd = lmu_matrices(6, theta, discretizer)
    n = 6
    if discretizer == "euler":
        Ad_ref, Bd_ref = np.eye(n) + A / theta, B / theta
    else:
        Ad_ref, Bd_ref, *_ = scipy.signal.cont2discrete(
            (A / theta, B / theta, np.eye(n), np.zeros((n, 1))), 1.0, method=discretizer
        )
    np.testing.assert_allclose(Ad, Ad_ref, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(Bd, Bd_ref, rtol=1e-10, atol=1e-13)
    assert Ad.shape == (6, 6) and Bd.shape == (6, 1)


@pytest.mark.parametrize("discretizer", ["zoh", "bilinear", "euler"])
def test_lmu_matrices_per_dimension_theta_stacks(discretizer: str) -> None:
    thetas = [30.0, 100.0, 7.5e3]
    Ad, Bd = lmu_matrices(5, thetas, discretizer)
    assert Ad.shape == (3, 5, 5) and Bd.shape == (3, 5, 1)
    for k, th in enumerate(thetas):
        Ad_k, Bd_k = lmu_matrices(5, th, discretizer)
        np.testing.assert_array_equal(Ad[k], Ad_k)
        np.testing.assert_array_equal(Bd[k], Bd_k)
    # a numpy array works like a list; a 1-element sequence still stacks
    Ad_np, _ = lmu_matrices(5, np.array(thetas), discretizer)
    np.testing.assert_array_equal(Ad_np, Ad)
    Ad_1, Bd_1 = lmu_matrices(5, [30.0], discretizer)
    assert Ad_1.shape == (1, 5, 5) and Bd_1.shape == (1, 5, 1)


def test_lmu_matrices_dtype() -> None:
    Ad, Bd = lmu_matrices(4, [10.0, 20.0], dtype=np.float32)
    assert Ad.dtype == np.float32 and Bd.dtype == np.float32


@pytest.mark.parametrize(
    "theta", [0, -1.0, float("nan"), float("inf"), [], [[1.0, 2.0]], True, "5", [1.0, "a"], None]
)
def test_lmu_matrices_bad_theta(theta: object) -> None:
    with pytest.raises(ValueError, match="theta"):
        lmu_matrices(4, theta)  # type: ignore[arg-type]


def test_lmu_matrices_bad_theta_names_value() -> None:
    with pytest.raises(ValueError, match=r"theta must be > 0 and finite \(got -2.0\)"):
        lmu_matrices(4, -2.0)
    with pytest.raises(ValueError, match=r"got \[1.0, 0.0\]"):
        lmu_matrices(4, [1.0, 0.0])


@pytest.mark.parametrize("discretizer", ["ZOH", "Euler", "rk4"])
def test_lmu_matrices_bad_discretizer(discretizer: str) -> None:
    with pytest.raises(ValueError, match="discretizer") as info:
        lmu_matrices(4, 10.0, discretizer)
    assert repr(discretizer) in str(info.value)


@pytest.mark.parametrize("order", BAD_ORDERS)
def test_lmu_matrices_bad_order(order: object) -> None:
    with pytest.raises(ValueError, match="order"):
        lmu_matrices(order, 10.0)  # type: ignore[arg-type]


def test_euler_theta_bound_order_1_by_hand() -> None:
    # A = [[-1]]: Ad = 1 - 1/theta, stable iff |1 - 1/theta| < 1 iff theta > 1/2
    assert euler_theta_bound(1) == pytest.approx(0.5, rel=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3, 5, 8, 12])
def test_euler_theta_bound_is_the_stability_edge(order: int) -> None:
    A, _ = legendre_system(order)
    bound = euler_theta_bound(order)
    assert bound > 0

    def radius(theta: float) -> float:
        return float(np.max(np.abs(np.linalg.eigvals(np.eye(order) + A / theta))))

    assert radius(bound * (1 + 1e-6)) < 1.0
    assert radius(bound * (1 - 1e-6)) > 1.0
    assert radius(bound) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("order", [3, 8])
def test_euler_warning_below_bound_mentions_bound(order: int) -> None:
    bound = euler_theta_bound(order)
    for call in (
        lambda th: lmu_matrices(order, th, "euler"),
        lambda th: lmu_matrices(order, [10 * bound, th], "euler"),
        lambda th: impulse_response(order, th, 8, "euler"),
    ):
        with pytest.warns(RuntimeWarning, match="euler") as rec:
            call(0.9 * bound)
        message = str(rec[0].message)
        assert f"{bound:.4g}" in message
        assert f"order={order}" in message
        assert rec[0].filename == __file__  # points at the caller


@pytest.mark.parametrize("order", [3, 8])
def test_no_euler_warning_above_bound(order: int) -> None:
    bound = euler_theta_bound(order)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lmu_matrices(order, 1.01 * bound, "euler")
        lmu_matrices(order, [1.01 * bound, 5 * bound], "euler")
        impulse_response(order, 1.01 * bound, 16, "euler")
        lmu_matrices(order, 0.5 * bound, "zoh")  # other discretisers never warn
        lmu_matrices(order, 0.5 * bound, "bilinear")


# -- impulse_response -------------------------------------------------------------------------


@pytest.mark.parametrize("discretizer", ["zoh", "bilinear", "euler"])
@pytest.mark.parametrize(
    ("order", "theta", "length"), [(1, 3.0, 50), (6, 40.0, 1000), (17, 300.0, 3000)]
)
def test_impulse_response_equals_loop(
    discretizer: str, order: int, theta: float, length: int
) -> None:
    Ad, Bd = lmu_matrices(order, theta, discretizer)
    ref = _loop_response(Ad, Bd, length)
    H = impulse_response(order, theta, length, discretizer)
    assert H.shape == (length, order)
    assert H.dtype == np.float64
    err = np.max(np.abs(H - ref)) / np.max(np.abs(ref))
    assert err < 1e-12


@pytest.mark.parametrize("length", [1, 2, 3, 5, 8, 9, 31, 64, 65, 100])
def test_impulse_response_every_length(length: int) -> None:
    # lengths around powers of two exercise the doubling's last partial block
    Ad, Bd = lmu_matrices(4, 10.0)
    ref = _loop_response(Ad, Bd, length)
    np.testing.assert_allclose(impulse_response(4, 10.0, length), ref, rtol=1e-11, atol=1e-15)


def test_impulse_response_zoh_rows_are_matrix_exponentials() -> None:
    # Ad^t Bd = expm(A t / theta) Bd exactly for zoh: an independent path to far rows
    order, theta, length = 8, 100.0, 5000
    A, _ = legendre_system(order)
    _, Bd = lmu_matrices(order, theta)
    H = impulse_response(order, theta, length)
    scale = np.max(np.abs(H))
    for t in (0, 1, 99, 100, 1234, 4999):
        row = scipy.linalg.expm(A * (t / theta)) @ Bd[:, 0]
        np.testing.assert_allclose(H[t], row, rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("discretizer", ["zoh", "bilinear"])
def test_impulse_response_per_theta(discretizer: str) -> None:
    thetas = [5.0, 50.0, 500.0, 50.0]
    H = impulse_response(7, thetas, 300, discretizer)
    assert H.shape == (4, 300, 7)
    for k, th in enumerate(thetas):
        Ad, Bd = lmu_matrices(7, th, discretizer)
        ref = _loop_response(Ad, Bd, 300)
        assert np.max(np.abs(H[k] - ref)) / np.max(np.abs(ref)) < 1e-12


def test_impulse_response_dtype() -> None:
    H = impulse_response(5, [10.0, 20.0], 40, dtype=np.float32)
    assert H.dtype == np.float32 and H.shape == (2, 40, 5)
    np.testing.assert_allclose(H, impulse_response(5, [10.0, 20.0], 40), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("order", "theta"), [(4, 1.0), (4, 1e3), (8, 1e5)])
def test_impulse_response_million_steps(order: int, theta: float) -> None:
    length = 10**6
    H = impulse_response(order, theta, length)
    assert H.shape == (length, order)
    assert np.all(np.isfinite(H))
    # spot check far rows against the exact matrix exponential (zoh)
    A, _ = legendre_system(order)
    _, Bd = lmu_matrices(order, theta)
    scale = np.max(np.abs(H))
    for t in (length - 1, 3 * length // 4, 1000):
        row = scipy.linalg.expm(A * (t / theta)) @ Bd[:, 0]
        np.testing.assert_allclose(H[t], row, rtol=0, atol=1e-10 * scale)


def test_impulse_response_stable_euler_long() -> None:
    order, length = 6, 200_000
    theta = 2 * euler_theta_bound(order)
    H = impulse_response(order, theta, length, "euler")
    assert np.all(np.isfinite(H))
    Ad, Bd = lmu_matrices(order, theta, "euler")
    row = np.linalg.matrix_power(Ad, length - 1) @ Bd[:, 0]
    np.testing.assert_allclose(H[-1], row, rtol=0, atol=1e-10 * np.max(np.abs(H)))


def test_impulse_response_order_1024() -> None:
    order, theta, length = 1024, 500.0, 48
    H = impulse_response(order, theta, length)
    assert H.shape == (length, order)
    assert np.all(np.isfinite(H))
    Ad, Bd = lmu_matrices(order, theta)
    ref = _loop_response(Ad, Bd, length)
    assert np.max(np.abs(H - ref)) / np.max(np.abs(ref)) < 1e-10


@pytest.mark.slow
def test_impulse_response_order_1024_long() -> None:
    order, theta, length = 1024, 100.0, 4096
    H = impulse_response(order, theta, length)
    assert np.all(np.isfinite(H))
    A, _ = legendre_system(order)
    _, Bd = lmu_matrices(order, theta)
    row = scipy.linalg.expm(A * ((length - 1) / theta)) @ Bd[:, 0]
    np.testing.assert_allclose(H[-1], row, rtol=0, atol=1e-9 * np.max(np.abs(H)))


@pytest.mark.parametrize("tol", [0.5, 1e-2, 1e-4, 1e-6])
@pytest.mark.parametrize(("order", "theta"), [(4, 10.0), (8, 60.0), (12, 200.0)])
def test_impulse_response_tol_is_shortest_prefix(tol: float, order: int, theta: float) -> None:
    length = 4000
    full = impulse_response(order, theta, length)
    H = impulse_response(order, theta, length, tol=tol)
    L = H.shape[0]
    assert 1 <= L < length
    np.testing.assert_array_equal(H, full[:L])
    assert _rel_tail(full, L) <= tol
    assert _rel_tail(full, L - 1) > tol


def test_impulse_response_tol_several_thetas_share_one_length() -> None:
    thetas = [10.0, 40.0, 160.0]
    tol = 1e-3
    full = impulse_response(6, thetas, 3000)
    H = impulse_response(6, thetas, 3000, tol=tol)
    L = H.shape[1]
    assert H.shape == (3, L, 6)
    np.testing.assert_array_equal(H, full[:, :L])
    for k in range(3):
        assert _rel_tail(full[k], L) <= tol
    assert any(_rel_tail(full[k], L - 1) > tol for k in range(3))
    # the longest window decides
    single = impulse_response(6, 160.0, 3000, tol=tol)
    assert single.shape[0] == L


def test_impulse_response_tol_not_reachable_keeps_everything() -> None:
    # too short to decay: the whole response is kept
    H = impulse_response(6, 1000.0, 20, tol=1e-8)
    assert H.shape == (20, 6)


def test_truncation_length_by_hand() -> None:
    H = np.array([[3.0, 0.0], [0.0, 4.0], [0.0, 0.0], [1e-3, 0.0]])
    # ||H|| = sqrt(25 + 1e-6); tails: L=1 -> 4.0000001, L=2 -> 1e-3, L=3 -> 1e-3, L=4 -> 0
    assert truncation_length(H, 0.9) == 1
    assert truncation_length(H, 0.5) == 2
    assert truncation_length(H, 1e-3 / 5.0 * 1.0001) == 2
    assert truncation_length(H, 1e-3 / 5.0 * 0.9999) == 4
    stacked = np.stack([H, H[[1, 0, 2, 3]]])
    assert truncation_length(stacked, 0.5) == 2
    assert truncation_length(stacked, 0.7) == 2  # second needs 2 (tail 3/5 = 0.6 at L=1)
    assert truncation_length(stacked, 0.85) == 1


@pytest.mark.parametrize("tol", [0, 1, 1.5, -0.1, float("nan"), "0.1", True])
def test_impulse_response_bad_tol(tol: object) -> None:
    with pytest.raises(ValueError, match="tol") as info:
        impulse_response(4, 10.0, 100, tol=tol)  # type: ignore[arg-type]
    assert repr(tol) in str(info.value)
    with pytest.raises(ValueError, match="tol"):
        truncation_length(np.ones((5, 2)), tol)  # type: ignore[arg-type]


@pytest.mark.parametrize("length", [0, -3, 2.5, True, "10", None])
def test_impulse_response_bad_length(length: object) -> None:
    with pytest.raises(ValueError, match="length") as info:
        impulse_response(4, 10.0, length)  # type: ignore[arg-type]
    assert repr(length) in str(info.value)


def test_impulse_response_bad_other_args() -> None:
    with pytest.raises(ValueError, match="order"):
        impulse_response(0, 10.0, 10)
    with pytest.raises(ValueError, match="theta"):
        impulse_response(4, -1.0, 10)
    with pytest.raises(ValueError, match="discretizer"):
        impulse_response(4, 10.0, 10, "foh")


# -- legendre_decoder -------------------------------------------------------------------------


@pytest.mark.parametrize("order", [1, 2, 5, 12])
def test_legendre_decoder_is_shifted_legendre(order: int) -> None:
    r = np.linspace(0.0, 1.0, 21)
    D = legendre_decoder(order, r)
    assert D.shape == (21, order)
    for i in range(order):
        coef = np.zeros(i + 1)
        coef[i] = 1.0
        np.testing.assert_allclose(D[:, i], npleg.legval(2 * r - 1, coef), rtol=1e-12, atol=1e-13)


def test_legendre_decoder_known_values() -> None:
    # P0 = 1, P1(x) = x, P2(x) = (3x^2 - 1) / 2 at x = 2r - 1
    D = legendre_decoder(3, [0.0, 0.5, 1.0, 0.25])
    np.testing.assert_allclose(
        D, [[1, -1, 1], [1, 0, -0.5], [1, 1, 1], [1, -0.5, -0.125]], rtol=0, atol=1e-15
    )


def test_legendre_decoder_scalar_and_dtype() -> None:
    D = legendre_decoder(4, 0.3)
    assert D.shape == (1, 4)
    D32 = legendre_decoder(4, [0.3, 0.6], dtype=np.float32)
    assert D32.dtype == np.float32 and D32.shape == (2, 4)


@pytest.mark.parametrize("r", [-0.01, 1.01, [0.5, 2.0], float("nan"), [[0.5]], "0.5"])
def test_legendre_decoder_bad_r(r: object) -> None:
    with pytest.raises(ValueError, match="r must"):
        legendre_decoder(4, r)  # type: ignore[arg-type]


@pytest.mark.parametrize("order", [0, 2.5, True])
def test_legendre_decoder_bad_order(order: object) -> None:
    with pytest.raises(ValueError, match="order"):
        legendre_decoder(order, 0.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("discretizer", ["zoh", "bilinear"])
def test_decoder_reads_back_delayed_input(discretizer: str) -> None:
    # run the memory on a smooth signal (plain loop of the discrete system, no library
    # convolution) and read u(T - r*theta) back with the decoder
    order, theta, T = 12, 200.0, 900
    t = np.arange(T)
    u = np.sin(2 * np.pi * t / 300) + 0.5 * np.cos(2 * np.pi * t / 170 + 0.3)
    Ad, Bd = lmu_matrices(order, theta, discretizer)
    m = np.zeros(order)
    for s in range(T):
        m = Ad @ m + Bd[:, 0] * u[s]
    rs = np.array([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
    estimate = legendre_decoder(order, rs) @ m
    target = np.interp(T - 1 - rs * theta, t, u)
    np.testing.assert_allclose(estimate, target, rtol=0, atol=0.03)
    # and the memory from the impulse response agrees with the loop
    H = impulse_response(order, theta, T, discretizer)
    np.testing.assert_allclose(H[::-1].T @ u, m, rtol=1e-10, atol=1e-12)


def test_module_all_names_exist() -> None:
    for name in system.__all__:
        assert hasattr(system, name)


# property tests need hypothesis (not part of the core's test extra): skipped without it
try:
    import hypothesis  # noqa: F401

    HAS_HYPOTHESIS = True
except ImportError:  # pragma: no cover
    HAS_HYPOTHESIS = False

if HAS_HYPOTHESIS:
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays

    @settings(max_examples=60, deadline=None)
    @given(
        arrays(
            np.float64,
            st.tuples(st.integers(1, 3), st.integers(1, 40), st.integers(1, 4)),
            elements=st.floats(-1e3, 1e3, allow_nan=False),
        ),
        st.floats(1e-6, 0.999),
    )
    def test_truncation_length_property(H: np.ndarray, tol: float) -> None:
        L = truncation_length(H, tol)
        assert 1 <= L <= H.shape[1]

        def ok(k: int, n: int) -> bool:
            return bool(np.linalg.norm(H[k, n:]) <= tol * np.linalg.norm(H[k]))

        assert all(ok(k, L) for k in range(H.shape[0]))
        if L > 1:
            assert not all(ok(k, L - 1) for k in range(H.shape[0]))


def _smooth_brute(n: int, primes: tuple[int, ...]) -> int:
    m = n
    while True:
        rest = m
        for p in primes:
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return m
        m += 1


@pytest.mark.parametrize("primes", [(2, 3, 5, 7), (2, 3, 5), (2,)])
def test_fft_length_is_the_smallest_smooth_length(primes: tuple[int, ...]) -> None:
    for n in [*range(1, 600), 1023, 1567, 4097]:
        assert fft_length(n, primes) == _smooth_brute(n, primes)


def test_fft_length_errors() -> None:
    with pytest.raises(ValueError, match=r"n must be a positive int \(got 0\)"):
        fft_length(0)
    with pytest.raises(ValueError, match=r"primes must include 2 \(got \(3, 5\)\)"):
        fft_length(10, (3, 5))
