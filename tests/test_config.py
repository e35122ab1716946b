"""Tests of lmu.config: LMUConfig validation, serialisation, derived facts and select_mode."""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import numpy as np
import pytest

from lmu.config import (
    ACTIVATIONS,
    CONV_MODES,
    HIDDEN_CELL_TYPES,
    INITIALIZERS,
    RAW_MAX_LEN,
    LMUConfig,
    NotSerializableError,
    hidden_cell_spec,
    select_mode,
)

LSTM = {"type": "lstm", "units": 8}
DENSE = {"type": "dense", "units": 5, "activation": "relu"}


class NativeCell:
    """Stands in for a framework layer (the core passes it through)."""

    units = 3


def make(**kw: Any) -> LMUConfig:
    base: dict[str, Any] = {"memory_d": 2, "order": 4, "theta": 10.0}
    base.update(kw)
    return LMUConfig(**base)


def raises_naming(field: str, value: Any, **kw: Any) -> str:
    """Construct with ``kw``; assert a ValueError naming ``field`` and ``value``."""
    with pytest.raises(ValueError) as info:
        make(**kw)
    message = str(info.value)
    assert field in message, message
    assert repr(value) in message or str(value) in message, message
    return message


# -- defaults ---------------------------------------------------------------------------------


def test_defaults() -> None:
    c = make()
    assert c.hidden_cell is None
    assert c.discretizer == "zoh"
    assert c.kernel_initializer == "glorot_uniform"
    assert c.recurrent_initializer == "orthogonal"
    assert c.bias_initializer == "zeros"
    assert c.conv_mode == "auto"
    assert c.dropout == 0.0 and c.recurrent_dropout == 0.0
    assert c.use_bias is False and c.return_sequences is False
    assert c.truncate_ir == 1e-4
    assert c.input_d is None


def test_is_frozen() -> None:
    c = make()
    with pytest.raises(AttributeError):
        c.order = 5  # type: ignore[misc]


# -- scalar fields ----------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["memory_d", "order"])
@pytest.mark.parametrize("value", [0, -2, 2.5, True, "4", None, 4.0])
def test_positive_int_fields(field: str, value: Any) -> None:
    message = raises_naming(field, value, **{field: value})
    assert "positive int" in message


def test_numpy_ints_accepted_and_converted() -> None:
    c = make(memory_d=np.int64(3), order=np.int32(5), input_d=np.int16(3))
    assert type(c.memory_d) is int and type(c.order) is int and type(c.input_d) is int


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), -math.inf])
def test_theta_scalar_bad(value: float) -> None:
    raises_naming("theta", value, theta=value)


def test_theta_scalar_converted_to_float() -> None:
    assert make(theta=7).theta == 7.0 and isinstance(make(theta=7).theta, float)
    assert make(theta=np.float32(2.5)).theta == 2.5
    assert make(theta=np.array(3.0)).theta == 3.0


@pytest.mark.parametrize("value", [True, False, "10", None, [True, 1.0], ["a", 1.0], [[1.0, 2.0]]])
def test_theta_wrong_type(value: Any) -> None:
    with pytest.raises(ValueError, match="theta") as info:
        make(theta=value)
    assert repr(value) in str(info.value)


def test_theta_per_dimension() -> None:
    c = make(memory_d=3, theta=[5, 10.0, np.float64(20)])
    assert c.theta == (5.0, 10.0, 20.0)
    assert c.per_dim_theta
    assert c.thetas == (5.0, 10.0, 20.0)
    c2 = make(memory_d=2, theta=np.array([1.5, 2.5]))
    assert c2.theta == (1.5, 2.5)


@pytest.mark.parametrize("value", [[1.0], [1.0, 2.0, 3.0], []])
def test_theta_per_dimension_wrong_length(value: list[float]) -> None:
    message = raises_naming("theta", len(value), memory_d=2, theta=value)
    assert "memory_d=2" in message


@pytest.mark.parametrize("value", [[1.0, 0.0], [1.0, -3.0], [float("nan"), 1.0], [1.0, math.inf]])
def test_theta_per_dimension_bad_values(value: list[float]) -> None:
    message = raises_naming("theta", value, memory_d=2, theta=value)
    assert "> 0 and finite" in message


BOOL_FIELDS = [
    "trainable_theta",
    "trainable_A",
    "trainable_B",
    "hidden_to_memory",
    "memory_to_memory",
    "input_to_hidden",
    "use_bias",
    "return_sequences",
]


@pytest.mark.parametrize("field", BOOL_FIELDS)
@pytest.mark.parametrize("value", [1, 0, "True", None, 1.0])
def test_bool_fields_reject_non_bools(field: str, value: Any) -> None:
    kw: dict[str, Any] = {field: value}
    if field in ("hidden_to_memory", "input_to_hidden"):
        kw["hidden_cell"] = LSTM
    raises_naming(field, value, **kw)


def test_bool_fields_accept_numpy_bool() -> None:
    c = make(use_bias=np.bool_(True))
    assert c.use_bias is True


@pytest.mark.parametrize("value", ["ZOH", "foh", "", None, 1])
def test_discretizer(value: Any) -> None:
    raises_naming("discretizer", value, discretizer=value)


@pytest.mark.parametrize("value", ["euler", "bilinear", "zoh"])
def test_discretizer_ok(value: str) -> None:
    assert make(discretizer=value).discretizer == value


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("glorot_uniform", "glorot_uniform"),
        ("GlorotUniform", "glorot_uniform"),
        ("GLOROT_NORMAL", "glorot_normal"),
        ("heuniform", "he_uniform"),
        ("Orthogonal", "orthogonal"),
        ("uniform", "random_uniform"),
        ("normal", "random_normal"),
        ("zero", "zeros"),
        ("TruncatedNormal", "truncated_normal"),
    ],
)
@pytest.mark.parametrize(
    "field", ["kernel_initializer", "recurrent_initializer", "bias_initializer"]
)
def test_initializer_names_normalised(field: str, given: str, expected: str) -> None:
    assert getattr(make(**{field: given}), field) == expected


@pytest.mark.parametrize("name", INITIALIZERS)
def test_every_initializer_name_kept(name: str) -> None:
    assert make(kernel_initializer=name).kernel_initializer == name


@pytest.mark.parametrize(
    "field", ["kernel_initializer", "recurrent_initializer", "bias_initializer"]
)
@pytest.mark.parametrize("value", ["glorot", "xavier_uniform", "", 3, 0.5, True])
def test_initializer_bad(field: str, value: Any) -> None:
    raises_naming(field, value, **{field: value})


def test_initializer_none_only_for_kernel() -> None:
    assert make(kernel_initializer=None).kernel_initializer is None
    for field in ("recurrent_initializer", "bias_initializer"):
        raises_naming(field, None, **{field: None})


def test_initializer_callable_and_dict_passed_through() -> None:
    def init(shape: Any) -> Any:
        return np.zeros(shape)

    spec = {"class_name": "GlorotUniform", "config": {"seed": 1}}
    c = make(kernel_initializer=init, recurrent_initializer=spec)
    assert c.kernel_initializer is init
    assert c.recurrent_initializer == spec


@pytest.mark.parametrize("field", ["dropout", "recurrent_dropout"])
@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, float("nan"), "0.1", True, None])
def test_dropout_range(field: str, value: Any) -> None:
    kw: dict[str, Any] = {field: value, "memory_to_memory": True}
    message = raises_naming(field, value, **kw)
    assert "[0, 1)" in message


@pytest.mark.parametrize("value", [0, 0.0, 0.5, 0.999])
def test_dropout_ok(value: float) -> None:
    c = make(dropout=value, recurrent_dropout=value, memory_to_memory=True)
    assert c.dropout == value and isinstance(c.dropout, float)


@pytest.mark.parametrize("value", ["FFT", "conv", "", None, "last-state"])
def test_conv_mode_bad(value: Any) -> None:
    raises_naming("conv_mode", value, conv_mode=value)


@pytest.mark.parametrize("value", CONV_MODES)
def test_conv_mode_ok(value: str) -> None:
    assert make(conv_mode=value).conv_mode == value


@pytest.mark.parametrize("value", [0, 1, 1.5, -1e-3, float("nan"), "1e-4", True])
def test_truncate_ir_bad(value: Any) -> None:
    raises_naming("truncate_ir", value, truncate_ir=value)


def test_truncate_ir_ok() -> None:
    assert make(truncate_ir=None).truncate_ir is None
    assert make(truncate_ir=1e-6).truncate_ir == 1e-6


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "3"])
def test_input_d_bad(value: Any) -> None:
    raises_naming("input_d", value, input_d=value)


# -- hidden cell spec -------------------------------------------------------------------------


def test_hidden_cell_spec_defaults_and_copy() -> None:
    given = {"type": "gru", "units": 4}
    spec = hidden_cell_spec(given)
    assert spec == {"type": "gru", "units": 4, "activation": "tanh"}
    assert spec is not given and given == {"type": "gru", "units": 4}
    assert hidden_cell_spec({"type": "dense", "units": 2, "activation": None})["activation"] == (
        "linear"
    )


@pytest.mark.parametrize("kind", list(HIDDEN_CELL_TYPES))
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_hidden_cell_spec_all_valid(kind: str, activation: str) -> None:
    spec = {"type": kind, "units": 3, "activation": activation}
    assert make(hidden_cell=spec).hidden_cell == spec


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"type": "transformer", "units": 3}, ["type", "'transformer'"]),
        ({"type": ["lstm"], "units": 3}, ["type", "['lstm']"]),
        ({"units": 3}, ["type", "None"]),
        ({"type": "lstm"}, ["units", "None"]),
        ({"type": "lstm", "units": 0}, ["units", "0"]),
        ({"type": "lstm", "units": 2.0}, ["units", "2.0"]),
        ({"type": "lstm", "units": True}, ["units", "True"]),
        ({"type": "lstm", "units": 2, "activation": "gelu"}, ["activation", "'gelu'"]),
        ({"type": "lstm", "units": 2, "activation": ["tanh"]}, ["activation", "['tanh']"]),
        ({"type": "lstm", "units": 2, "dropout": 0.1}, ["unknown", "dropout"]),
    ],
)
def test_hidden_cell_spec_bad(spec: dict[str, Any], words: list[str]) -> None:
    for call in (hidden_cell_spec, lambda s: make(hidden_cell=s)):
        with pytest.raises(ValueError) as info:
            call(spec)
        for word in words:
            assert word in str(info.value)
    with pytest.raises(ValueError, match="hidden_cell"):
        hidden_cell_spec(["lstm", 3])


@pytest.mark.parametrize("value", ["lstm", 3, True, 2.5, np.float64(1.0)])
def test_hidden_cell_not_a_layer(value: Any) -> None:
    raises_naming("hidden_cell", value, hidden_cell=value)


def test_native_hidden_cell_passed_through() -> None:
    cell = NativeCell()
    c = make(hidden_cell=cell, hidden_to_memory=True, input_to_hidden=True)
    assert c.hidden_cell is cell
    assert c.hidden_cell_type == "native"
    assert c.hidden_cell_stateful is None


# -- combinations -----------------------------------------------------------------------------


def test_hidden_to_memory_needs_hidden_cell() -> None:
    for kw in ({}, {"input_to_hidden": True}, {"input_to_hidden": True, "input_d": 3}):
        message = raises_naming("hidden_to_memory", True, hidden_to_memory=True, **kw)
        assert "hidden_cell=None" in message
    assert make(hidden_to_memory=True, hidden_cell=LSTM).hidden_to_memory is True


def test_input_to_hidden_without_hidden_cell() -> None:
    # keras-lmu's convention: the output is then [m_t, x_t]
    c = make(input_to_hidden=True)
    assert c.input_to_hidden is True
    assert c.hidden_cell is None
    assert c.is_lti
    assert c.hidden_cell_stateful is False
    assert select_mode(c) == "last_state"
    assert select_mode(c.replace(return_sequences=True), seq_len=10) == "raw"
    assert select_mode(c.replace(memory_to_memory=True)) == "recurrent"
    assert make(input_to_hidden=True, conv_mode="last_state").conv_mode == "last_state"
    assert LMUConfig.from_json(c.to_json()) == c
    assert make(input_to_hidden=True, hidden_cell=LSTM).input_to_hidden is True


@pytest.mark.parametrize("mode", ["fft", "raw", "last_state"])
@pytest.mark.parametrize("flag", ["hidden_to_memory", "memory_to_memory"])
def test_lti_modes_reject_nonlinear_memory(mode: str, flag: str) -> None:
    with pytest.raises(ValueError) as info:
        make(conv_mode=mode, hidden_cell=DENSE, **{flag: True})
    message = str(info.value)
    assert f"conv_mode={mode!r}" in message
    assert f"{flag}=True" in message


@pytest.mark.parametrize("mode", ["auto", "recurrent"])
@pytest.mark.parametrize("flag", ["hidden_to_memory", "memory_to_memory"])
def test_nonlinear_memory_ok_with_auto_and_recurrent(mode: str, flag: str) -> None:
    c = make(conv_mode=mode, hidden_cell=DENSE, **{flag: True})
    assert not c.is_lti


def test_last_state_with_return_sequences() -> None:
    message = raises_naming("return_sequences", True, conv_mode="last_state", return_sequences=True)
    assert "last_state" in message


@pytest.mark.parametrize("kind", ["simple_rnn", "gru", "lstm"])
def test_last_state_with_stateful_spec(kind: str) -> None:
    message = raises_naming(
        "hidden_cell", kind, conv_mode="last_state", hidden_cell={"type": kind, "units": 2}
    )
    assert "last_state" in message


def test_last_state_ok_with_dense_none_or_native() -> None:
    make(conv_mode="last_state")
    make(conv_mode="last_state", hidden_cell=DENSE)
    make(conv_mode="last_state", hidden_cell=NativeCell())


def test_no_kernel_needs_matching_input_d() -> None:
    with pytest.raises(ValueError) as info:
        make(memory_d=2, kernel_initializer=None, input_d=3)
    message = str(info.value)
    assert "kernel_initializer=None" in message
    assert "input_d=3" in message and "memory_d=2" in message
    make(memory_d=2, kernel_initializer=None, input_d=2)
    make(memory_d=2, kernel_initializer=None)  # unknown input_d: checked at build time


def test_no_kernel_with_hidden_to_memory_counts_hidden_units() -> None:
    cell = {"type": "dense", "units": 3}
    with pytest.raises(ValueError, match=r"input_d=2, units=3, memory_d=4"):
        make(
            memory_d=4, kernel_initializer=None, input_d=2, hidden_cell=cell, hidden_to_memory=True
        )
    c = make(
        memory_d=5, kernel_initializer=None, input_d=2, hidden_cell=cell, hidden_to_memory=True
    )
    assert c.kernel_initializer is None


def test_recurrent_dropout_without_memory_to_memory_warns() -> None:
    with pytest.warns(UserWarning, match=r"recurrent_dropout=0.2.*memory_to_memory") as rec:
        make(recurrent_dropout=0.2)
    assert rec[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make(recurrent_dropout=0.2, memory_to_memory=True)
        make(recurrent_dropout=0.0)


# -- derived facts ----------------------------------------------------------------------------


def test_thetas_scalar_broadcast() -> None:
    c = make(memory_d=3, theta=4.0)
    assert c.thetas == (4.0, 4.0, 4.0)
    assert not c.per_dim_theta


def test_is_lti() -> None:
    assert make().is_lti
    assert make(hidden_cell=LSTM).is_lti
    assert make(hidden_cell=LSTM, input_to_hidden=True).is_lti
    assert not make(memory_to_memory=True).is_lti
    assert not make(hidden_cell=LSTM, hidden_to_memory=True).is_lti


@pytest.mark.parametrize(
    ("cell", "kind", "stateful"),
    [
        (None, None, False),
        ({"type": "dense", "units": 2}, "dense", False),
        ({"type": "simple_rnn", "units": 2}, "simple_rnn", True),
        ({"type": "gru", "units": 2}, "gru", True),
        ({"type": "lstm", "units": 2}, "lstm", True),
        (NativeCell(), "native", None),
    ],
)
def test_hidden_cell_type_and_stateful(cell: Any, kind: str | None, stateful: bool | None) -> None:
    c = make(hidden_cell=cell)
    assert c.hidden_cell_type == kind
    assert c.hidden_cell_stateful is stateful


def test_replace_validates_again() -> None:
    c = make(hidden_cell=LSTM, use_bias=True)
    d = c.replace(order=7, theta=3.0)
    assert (d.order, d.theta, d.use_bias, d.hidden_cell) == (7, 3.0, True, c.hidden_cell)
    assert c.order == 4  # unchanged
    with pytest.raises(ValueError, match=r"order must be a positive int \(got 0\)"):
        c.replace(order=0)
    assert c.replace(memory_d=3).thetas == (10.0, 10.0, 10.0)  # a scalar theta broadcasts
    with pytest.raises(ValueError, match="theta per memory dimension"):
        make(memory_d=2, theta=[1.0, 2.0]).replace(memory_d=3)
    with pytest.raises(TypeError):
        c.replace(no_such_field=1)


def test_equality_and_hash() -> None:
    a = make(hidden_cell={"type": "lstm", "units": 8}, theta=[1.0, 2.0])
    b = make(hidden_cell={"type": "lstm", "units": 8, "activation": "tanh"}, theta=(1, 2))
    assert a == b
    assert hash(a) == hash(b)
    assert a != a.replace(order=5)
    assert len({a, b, a.replace(order=5)}) == 2


# -- serialisation ----------------------------------------------------------------------------


ROUND_TRIP = [
    {},
    {"memory_d": 3, "theta": [1.0, 2.5, 100.0]},
    {"hidden_cell": LSTM, "hidden_to_memory": True, "memory_to_memory": True},
    {
        "hidden_cell": DENSE,
        "input_to_hidden": True,
        "discretizer": "euler",
        "theta": 1000.0,
        "kernel_initializer": "HeNormal",
        "recurrent_initializer": "zeros",
        "use_bias": True,
        "bias_initializer": "ones",
        "dropout": 0.25,
        "return_sequences": True,
        "conv_mode": "raw",
        "truncate_ir": None,
        "input_d": 2,
        "trainable_theta": True,
        "trainable_A": True,
        "trainable_B": True,
    },
    {"kernel_initializer": None, "input_d": 2, "conv_mode": "last_state"},
    {"memory_to_memory": True, "recurrent_dropout": 0.5, "discretizer": "bilinear"},
    {"input_to_hidden": True, "input_d": 3, "return_sequences": True},
]


@pytest.mark.parametrize("kw", ROUND_TRIP)
def test_dict_and_json_round_trip(kw: dict[str, Any]) -> None:
    c = make(**kw)
    d = c.to_dict()
    assert set(d) == {
        "memory_d", "order", "theta", "hidden_cell", "trainable_theta", "trainable_A",
        "trainable_B", "hidden_to_memory", "memory_to_memory", "input_to_hidden",
        "discretizer", "kernel_initializer", "recurrent_initializer", "use_bias",
        "bias_initializer", "dropout", "recurrent_dropout", "return_sequences", "conv_mode",
        "truncate_ir", "input_d",
    }  # fmt: skip
    assert LMUConfig.from_dict(d) == c
    text = c.to_json()
    assert json.loads(text) == d  # only plain JSON values
    assert LMUConfig.from_json(text) == c
    assert LMUConfig.from_json(text).to_json() == text


def test_to_dict_plain_values_and_independent() -> None:
    c = make(memory_d=2, theta=[3.0, 4.0], hidden_cell=LSTM)
    d = c.to_dict()
    assert d["theta"] == [3.0, 4.0] and isinstance(d["theta"], list)
    assert d["hidden_cell"] == {"type": "lstm", "units": 8, "activation": "tanh"}
    d["hidden_cell"]["units"] = 99
    assert c.hidden_cell["units"] == 8


def test_dict_initializer_serialises() -> None:
    spec = {"class_name": "GlorotUniform", "config": {"seed": 1}}
    c = make(kernel_initializer=spec)
    assert LMUConfig.from_json(c.to_json()) == c


def test_from_dict_errors() -> None:
    d = make().to_dict()
    d["colour"] = "blue"
    with pytest.raises(ValueError, match=r"unknown LMUConfig fields \['colour'\]"):
        LMUConfig.from_dict(d)
    d = make().to_dict()
    d["order"] = -1
    with pytest.raises(ValueError, match=r"order must be a positive int \(got -1\)"):
        LMUConfig.from_dict(d)
    with pytest.raises(ValueError, match="mapping"):
        LMUConfig.from_dict(["memory_d"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        LMUConfig.from_dict({"memory_d": 1})  # order and theta missing


def test_native_hidden_cell_not_serialisable() -> None:
    c = make(hidden_cell=NativeCell())
    with pytest.raises(NotSerializableError, match="hidden_cell") as info:
        c.to_dict()
    assert isinstance(info.value, TypeError)
    assert "NativeCell" in str(info.value)
    with pytest.raises(NotSerializableError, match="hidden_cell"):
        c.to_json()


@pytest.mark.parametrize(
    "field", ["kernel_initializer", "recurrent_initializer", "bias_initializer"]
)
def test_callable_initializer_not_serialisable(field: str) -> None:
    c = make(**{field: np.zeros})
    with pytest.raises(NotSerializableError, match=field):
        c.to_dict()
    with pytest.raises(TypeError):
        c.to_json()


# -- select_mode ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fft", "raw", "recurrent"])
def test_select_mode_explicit(mode: str) -> None:
    c = make(conv_mode=mode, return_sequences=True)
    for stateful in (False, True):
        assert select_mode(c, stateful) == mode
        assert select_mode(c, stateful, seq_len=5) == mode


def test_select_mode_explicit_last_state() -> None:
    c = make(conv_mode="last_state", hidden_cell=NativeCell())
    assert select_mode(c, False) == "last_state"
    with pytest.raises(ValueError, match="last_state"):
        select_mode(c, True)


def test_select_mode_auto() -> None:
    assert select_mode(make(memory_to_memory=True), False) == "recurrent"
    assert select_mode(make(hidden_cell=DENSE, hidden_to_memory=True), False) == "recurrent"
    assert select_mode(make(), False) == "last_state"
    assert select_mode(make(hidden_cell=DENSE), False, seq_len=10_000) == "last_state"
    seq = make(return_sequences=True)
    assert select_mode(seq, False, seq_len=RAW_MAX_LEN) == "raw"
    assert select_mode(seq, False, seq_len=RAW_MAX_LEN + 1) == "fft"
    assert select_mode(seq, False) == "fft"  # unknown length
    # a recurrent hidden cell needs every step of the memory
    assert select_mode(make(), True, seq_len=10) == "raw"
    assert select_mode(make(), True, seq_len=1000) == "fft"


def test_select_mode_uses_config_statefulness_by_default() -> None:
    assert select_mode(make(hidden_cell=LSTM), seq_len=1000) == "fft"
    assert select_mode(make(hidden_cell=DENSE), seq_len=1000) == "last_state"
    assert select_mode(make(), seq_len=1000) == "last_state"
    with pytest.raises(ValueError, match="hidden_stateful"):
        select_mode(make(hidden_cell=NativeCell()))
    assert select_mode(make(hidden_cell=NativeCell()), True, seq_len=1000) == "fft"


# property tests need hypothesis (not part of the core's test extra): skipped without it
try:
    import hypothesis  # noqa: F401

    HAS_HYPOTHESIS = True
except ImportError:  # pragma: no cover
    HAS_HYPOTHESIS = False

if HAS_HYPOTHESIS:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=80, deadline=None)
    @given(
        memory_d=st.integers(1, 4),
        order=st.integers(1, 64),
        theta=st.floats(1e-3, 1e6),
        per_dim=st.booleans(),
        cell=st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {
                    "type": st.sampled_from(sorted(HIDDEN_CELL_TYPES)),
                    "units": st.integers(1, 32),
                    "activation": st.sampled_from(ACTIVATIONS),
                }
            ),
        ),
        flags=st.tuples(*[st.booleans()] * 5),
        discretizer=st.sampled_from(["zoh", "euler", "bilinear"]),
        init=st.sampled_from(INITIALIZERS),
        dropout=st.floats(0.0, 0.99),
        truncate_ir=st.one_of(st.none(), st.floats(1e-9, 0.5)),
    )
    def test_round_trip_property(
        memory_d: int,
        order: int,
        theta: float,
        per_dim: bool,
        cell: dict[str, Any] | None,
        flags: tuple[bool, ...],
        discretizer: str,
        init: str,
        dropout: float,
        truncate_ir: float | None,
    ) -> None:
        h2m, m2m, i2h, bias, seqs = flags
        if cell is None:
            h2m = False
        c = LMUConfig(
            memory_d=memory_d,
            order=order,
            theta=[theta * (k + 1) for k in range(memory_d)] if per_dim else theta,
            hidden_cell=cell,
            hidden_to_memory=h2m,
            memory_to_memory=m2m,
            input_to_hidden=i2h,
            use_bias=bias,
            return_sequences=seqs,
            discretizer=discretizer,
            kernel_initializer=init,
            recurrent_initializer=init.upper(),
            dropout=dropout,
            truncate_ir=truncate_ir,
        )
        assert c.recurrent_initializer == init
        assert LMUConfig.from_json(c.to_json()) == c
        assert LMUConfig.from_dict(c.to_dict()) == c
        assert hash(LMUConfig.from_dict(c.to_dict())) == hash(c)
        assert len(c.thetas) == memory_d
        mode = select_mode(c, bool(c.hidden_cell_stateful), seq_len=100)
        assert mode in CONV_MODES and mode != "auto"
        if not c.is_lti:
            assert mode == "recurrent"
