"""Gradients of the FFT mode (a hand-written adjoint) against automatic differentiation.

The FFT mode's gradient with respect to the memory input is written by hand (a correlation
in the frequency domain, through ``keras.ops.custom_gradient``) when the system is fixed; the
direct convolution (``conv_mode="raw"``, ``truncate_ir=None``) is differentiated by the
framework.  Both are exact, so in float64 their gradients agree to rounding, on every Keras
backend the suite runs under.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import lmu_keras  # noqa: E402
from lmu_keras import _memory  # noqa: E402


def _grads(layer: Any, x: np.ndarray, w: np.ndarray, states: list | None = None) -> list:
    """d/d(x, initial states, trainable weights) of ``sum(layer(x) * w)``, as NumPy arrays."""
    backend = keras.backend.backend()
    states = list(states or [])
    n_weights = len(layer.trainable_variables)
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.constant(x)
        st = [tf.constant(s) for s in states]
        with tf.GradientTape() as tape:
            tape.watch([xt, *st])
            out = layer(xt, initial_state=st) if st else layer(xt)
            loss = tf.reduce_sum(out * w)
        got = tape.gradient(loss, [xt, *st, *layer.trainable_variables])
    elif backend == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        fixed = [v.value for v in layer.non_trainable_variables]

        def loss(xv: Any, sv: list, tv: list) -> Any:
            kwargs = {"initial_state": sv} if sv else {}
            out, _ = layer.stateless_call(tv, fixed, xv, **kwargs)
            return (out * w).sum()

        gx, gs, gt = jax.grad(loss, argnums=(0, 1, 2))(x, states, trainable)
        got = [gx, *gs, *gt]
    else:
        pytest.skip(f"no gradient helper for the {backend} backend")
    assert len(got) == 1 + len(states) + n_weights
    return [np.asarray(g) for g in got]


def _layer(mode: str, memory_d: int, order: int, theta: Any) -> Any:
    layer = lmu_keras.LMUFeedforward(
        memory_d,
        order,
        theta,
        None,
        return_sequences=True,
        conv_mode=mode,
        truncate_ir=None,
        use_bias=True,
        bias_initializer="glorot_uniform",
        dtype="float64",
    )
    layer.build((None, None, 2))
    return layer


@pytest.mark.parametrize("blocked", [False, True], ids=["whole", "one-order-per-block"])
@pytest.mark.parametrize(
    "memory_d, order, theta",
    [(1, 1, 6.5), (1, 8, 6.5), (3, 5, 6.5), (3, 4, (3.0, 7.5, 11.0))],
    ids=["order1", "md1", "md3", "per-dim-theta"],
)
def test_fft_gradient_equals_autodiff_of_direct_convolution(
    monkeypatch: pytest.MonkeyPatch, memory_d: int, order: int, theta: Any, blocked: bool
) -> None:
    if blocked:  # one order per block, in the forward and in the hand-written adjoint
        monkeypatch.setattr(_memory, "FFT_BLOCK_ELEMENTS", 1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 9, 2))
    w = rng.normal(size=(2, 9, memory_d * order))
    fft = _layer("fft", memory_d, order, theta)
    raw = _layer("raw", memory_d, order, theta)
    raw.set_weights(fft.get_weights())
    np.testing.assert_allclose(np.asarray(fft(x)), np.asarray(raw(x)), rtol=0, atol=1e-12)
    got, want = _grads(fft, x, w), _grads(raw, x, w)
    assert len(got) == 3  # input, kernel, bias
    for g, e in zip(got, want, strict=True):
        assert np.abs(e).max() > 1e-3  # a gradient that is there
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-10)


def test_fft_gradient_with_initial_state_equals_autodiff() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 9, 2))
    m0 = rng.normal(size=(2, 2 * 4))
    w = rng.normal(size=(2, 9, 2 * 4))
    layers = [
        lmu_keras.LMU(2, 4, 6.5, None, return_sequences=True, conv_mode=mode, dtype="float64")
        for mode in ("fft", "recurrent")
    ]
    for layer in layers:
        layer.build((None, None, 2))
    layers[1].set_weights(layers[0].get_weights())
    got, want = (_grads(layer, x, w, [m0]) for layer in layers)
    assert len(got) == 3  # input, initial memory, kernel
    for g, e in zip(got, want, strict=True):
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-10)


@pytest.mark.parametrize("memory_d", [1, 2])
@pytest.mark.parametrize("kind", ["simple_rnn", "gru", "lstm"])
def test_projected_fft_gradient_equals_step_loop(kind: str, memory_d: int) -> None:
    """A Keras RNN cell over the FFT memory reads the memory through G = H W_m (never formed)."""
    cells = {
        "simple_rnn": keras.layers.SimpleRNNCell,
        "gru": keras.layers.GRUCell,
        "lstm": keras.layers.LSTMCell,
    }
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 9, 2))
    w = rng.normal(size=(2, 9, 3))
    m0 = rng.normal(size=(2, memory_d * 4))
    h0 = [rng.normal(size=(2, 3)) for _ in range(2 if kind == "lstm" else 1)]
    layers = []
    for mode in ("fft", "recurrent"):
        layer = lmu_keras.LMU(
            memory_d,
            4,
            (6.5, 11.0)[:memory_d],
            cells[kind](3, dtype="float64"),
            input_to_hidden=True,
            use_bias=True,
            return_sequences=True,
            conv_mode=mode,
            dtype="float64",
        )
        layer.build((None, None, 2))
        layers.append(layer)
    layers[1].set_weights(layers[0].get_weights())
    np.testing.assert_allclose(
        np.asarray(layers[0](x, initial_state=[m0, *h0])),
        np.asarray(layers[1](x, initial_state=[m0, *h0])),
        rtol=0,
        atol=1e-12,
    )
    got, want = (_grads(layer, x, w, [m0, *h0]) for layer in layers)
    for g, e in zip(got, want, strict=True):
        assert np.abs(e).max() > 1e-3
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-10)
