"""Bad input gives a ValueError that names the argument, the value and what is allowed."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from lmu_keras import LMU, LMUCell, LMUFeedforward  # noqa: E402


def _built(**kw):
    layer = LMU(2, 4, 6.0, {"type": "gru", "units": 3}, **kw)
    layer(np.zeros((2, 5, 3), "float32"))
    return layer


def test_wrong_rank():
    with pytest.raises(ValueError, match=r"expects inputs of shape \(batch, time, features\)"):
        LMU(2, 4, 6.0, None)(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match=r"got shape \(2, 3\)"):
        _built()(np.zeros((2, 3), "float32"))


def test_wrong_feature_size():
    with pytest.raises(ValueError, match=r"inputs must have 3 features.*\(2, 5, 4\)"):
        _built()(np.zeros((2, 5, 4), "float32"))


def test_zero_length_sequence():
    with pytest.raises(ValueError, match=r"at least one time step.*\(2, 0, 3\)"):
        _built()(np.zeros((2, 0, 3), "float32"))


def test_wrong_state():
    layer = _built()
    x = np.zeros((2, 5, 3), "float32")
    with pytest.raises(ValueError, match=r"initial_state\[1\] must have shape \(batch, 3\)"):
        layer(x, initial_state=[np.zeros((2, 8), "float32"), np.zeros((2, 4), "float32")])
    with pytest.raises(ValueError, match=r"list of 2 tensors.*sizes \[8, 3\].*got 1"):
        layer(x, initial_state=[np.zeros((2, 8), "float32")])


@pytest.mark.parametrize("theta", [float("inf"), float("nan"), -1.0, 0.0])
@pytest.mark.parametrize("cls", [LMU, LMUCell, LMUFeedforward])
def test_non_finite_or_non_positive_theta(cls, theta):
    with pytest.raises(ValueError, match="theta must be > 0 and finite"):
        cls(2, 4, theta, None)


def test_per_dimension_theta_length():
    with pytest.raises(ValueError, match="memory_d=2 entries"):
        LMU(2, 4, [5.0, 6.0, 7.0], None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"memory_d": 0}, "memory_d must be a positive int"),
        ({"order": 2.5}, "order must be a positive int"),
        ({"discretizer": "rk4"}, "discretizer must be one of"),
        ({"conv_mode": "fast"}, "conv_mode must be one of"),
        ({"dropout": 1.5}, r"dropout must be a number in \[0, 1\)"),
        ({"hidden_cell": None, "hidden_to_memory": True}, "hidden_to_memory=True needs"),
        ({"memory_to_memory": True, "conv_mode": "fft"}, "needs a linear memory"),
        ({"return_sequences": True, "conv_mode": "last_state"}, "return_sequences=False"),
        ({"hidden_cell": {"type": "rnn", "units": 3}}, r"hidden_cell\['type'\] must be one of"),
        ({"return_state": 1}, "return_state must be True or False"),
    ],
)
def test_bad_options(kwargs, message):
    args = {"memory_d": 2, "order": 4, "theta": 6.0, "hidden_cell": None}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        LMU(**args)


def test_feedforward_rejects_recurrent_mode():
    with pytest.raises(ValueError, match=r"conv_mode must be one of .*\(got 'recurrent'\)"):
        LMUFeedforward(2, 4, 6.0, None, conv_mode="recurrent")


def test_symbolic_wrong_rank():
    with pytest.raises(ValueError, match=r"got shape \(None, 3\)"):
        LMU(2, 4, 6.0, None)(keras.Input((3,)))


def test_cell_in_rnn_names_a_bad_initial_state():
    rnn = keras.layers.RNN(LMUCell(2, 4, 10.0, None))
    x = np.zeros((3, 5, 2), "float32")
    rnn(x)
    with pytest.raises(
        ValueError, match=r"states\[0\] must have shape \(batch, 8\) \(got shape \(3, 7\)\)"
    ):
        rnn(x, initial_state=[np.zeros((3, 7), "float32")])


def test_cell_names_features_different_from_build():
    cell = LMUCell(2, 4, 10.0, None)
    cell.build((3, 2))
    with pytest.raises(ValueError, match=r"inputs must have 2 features.*\(3, 5\)"):
        cell(np.zeros((3, 5), "float32"), [np.zeros((3, 8), "float32")])
