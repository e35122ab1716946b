"""Every execution mode against lmu.reference.run in float64, over a pairwise grid."""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from lmu_keras_helpers import set_canonical  # noqa: E402

import lmu  # noqa: E402
from lmu.reference import random_weights, run, state_sizes  # noqa: E402

FACTORS: dict[str, tuple[Any, ...]] = {
    "mode": ("auto", "fft", "raw", "raw_trunc", "recurrent", "last_state"),
    "hidden": (None, "dense", "simple_rnn", "gru", "lstm"),
    "discretizer": ("zoh", "euler", "bilinear"),
    "theta": (21.7, "per_dim"),
    "connections": ("none", "h2m", "m2m", "both", "i2h"),
    "bias": (False, True),
    "return_sequences": (False, True),
    "length": (1, 9, 64, 65, 150),
    "state": (False, True),
    "trainable": ("none", "theta", "AB"),
}


def _valid(case: dict[str, Any]) -> bool:
    lti = case["connections"] in ("none", "i2h")
    stateful_hidden = case["hidden"] in ("simple_rnn", "gru", "lstm")
    if case["mode"] in ("fft", "raw", "raw_trunc", "last_state") and not lti:
        return False
    if case["mode"] == "last_state" and (case["return_sequences"] or stateful_hidden):
        return False
    if case["hidden"] is None and case["connections"] in ("h2m", "both", "i2h"):
        return False
    return True


def pairwise(factors: dict[str, tuple[Any, ...]], seed: int = 0) -> list[dict[str, Any]]:
    """A small set of valid cases covering every valid pair of factor values (greedy)."""
    names = list(factors)
    rng = np.random.default_rng(seed)
    uncovered = set()
    for a, b in itertools.combinations(range(len(names)), 2):
        for va, vb in itertools.product(
            range(len(factors[names[a]])), range(len(factors[names[b]]))
        ):
            uncovered.add((a, va, b, vb))
    cases: list[dict[str, Any]] = []
    stale = 0
    while uncovered and stale < 50:
        best, best_gain = None, 0
        for _ in range(300):
            idx = [int(rng.integers(len(factors[n]))) for n in names]
            case = {n: factors[n][i] for n, i in zip(names, idx, strict=True)}
            if not _valid(case):
                continue
            gain = sum(
                (a, idx[a], b, idx[b]) in uncovered
                for a, b in itertools.combinations(range(len(names)), 2)
            )
            if gain > best_gain:
                best, best_gain = (case, idx), gain
        if best is None:
            stale += 1
            continue
        case, idx = best
        for a, b in itertools.combinations(range(len(names)), 2):
            uncovered.discard((a, idx[a], b, idx[b]))
        cases.append(case)
    return cases


CASES = pairwise(FACTORS)


def _case_id(case: dict[str, Any]) -> str:
    return "-".join(str(v) for v in case.values())


def make_config(case: dict[str, Any], memory_d: int = 2, order: int = 6) -> lmu.LMUConfig:
    kind = case["hidden"]
    hidden = None if kind is None else {"type": kind, "units": 3, "activation": "tanh"}
    conn = case["connections"]
    mode = case["mode"]
    return lmu.LMUConfig(
        memory_d=memory_d,
        order=order,
        theta=21.7 if case["theta"] != "per_dim" else (21.7, 12.25),
        hidden_cell=hidden,
        hidden_to_memory=conn in ("h2m", "both"),
        memory_to_memory=conn in ("m2m", "both"),
        input_to_hidden=conn == "i2h",
        use_bias=case["bias"],
        discretizer=case["discretizer"],
        return_sequences=case["return_sequences"],
        conv_mode="raw" if mode == "raw_trunc" else mode,
        truncate_ir=1e-4 if mode == "raw_trunc" else None,
        trainable_theta=case["trainable"] == "theta",
        trainable_A=case["trainable"] == "AB",
        trainable_B=case["trainable"] == "AB",
    )


def trained_weights(cfg: lmu.LMUConfig, input_d: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Random canonical weights, with theta/A/B moved away from their initial values."""
    w = random_weights(cfg, input_d, seed=seed)
    rng = np.random.default_rng(seed + 1)
    if cfg.trainable_theta:
        w["theta_inv"] = 1.0 / (np.asarray(cfg.theta) * 1.15)
    A, B = lmu.legendre_system(cfg.order)
    if cfg.trainable_A:
        w["A"] = A + 0.05 * rng.normal(size=A.shape)
    if cfg.trainable_B:
        w["B"] = B + 0.05 * rng.normal(size=B.shape)
    return w


def run_both(cfg, x, state=None, cls_name="LMU", **extra):
    from lmu_keras import LMU, LMUFeedforward

    cls = {"LMU": LMU, "LMUFeedforward": LMUFeedforward}[cls_name]
    w = trained_weights(cfg, x.shape[-1])
    layer = cls.from_lmu_config(cfg, dtype="float64", **extra)
    layer.build(x.shape)
    set_canonical(layer, w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # euler stability note
        ref, ref_states = run(cfg, w, x, state)
        out = layer(x, initial_state=state) if state is not None else layer(x)
    return layer, ref, ref_states, out


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_mode_matches_reference(case, float64):
    cfg = make_config(case)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, case["length"], 3))
    state = None
    if case["state"]:
        state = [rng.normal(size=(2, n)) for n in state_sizes(cfg)]
    layer, ref, _, out = run_both(cfg, x, state)
    expected = ref if cfg.return_sequences else ref[:, -1]
    mode = case["mode"]
    if mode == "auto":
        assert layer.mode in ("last_state", "raw", "fft", "recurrent")
    else:
        assert layer.mode == ("raw" if mode == "raw_trunc" else mode)
    tol = 2e-4 if mode == "raw_trunc" else 1e-10
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(np.asarray(out), expected, rtol=0, atol=tol * scale)


def test_grid_covers_every_mode_and_hidden_kind():
    assert {c["mode"] for c in CASES} == set(FACTORS["mode"])
    assert {c["hidden"] for c in CASES} == set(FACTORS["hidden"])
    assert len(CASES) < 60


@pytest.mark.parametrize("mode", ["last_state", "fft", "raw", "recurrent"])
def test_final_states_match_reference(mode, float64):
    hidden = "dense" if mode == "last_state" else "lstm"
    case = dict(
        mode=mode,
        hidden=hidden,
        discretizer="zoh",
        theta="per_dim",
        connections="i2h",
        bias=True,
        return_sequences=False,
        length=33,
        state=True,
        trainable="theta",
    )
    cfg = make_config(case)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 33, 3))
    state = [rng.normal(size=(2, n)) for n in state_sizes(cfg)]
    layer, _, ref_states, out = run_both(cfg, x, state, return_state=True)
    assert len(out) == 1 + len(ref_states)
    for got, exp in zip(out[1:], ref_states, strict=True):
        np.testing.assert_allclose(np.asarray(got), exp, atol=1e-10)


@pytest.mark.parametrize("mode", ["fft", "raw", "recurrent", "last_state"])
def test_chunked_equals_whole(mode, float64):
    """Feeding the returned state back continues the sequence exactly, in every mode."""
    from lmu_keras import LMU

    rs = mode != "last_state"
    layer = LMU(
        3,
        5,
        9.5,
        {"type": "dense", "units": 4} if mode == "last_state" else {"type": "gru", "units": 4},
        return_sequences=rs,
        return_state=True,
        conv_mode=mode,
        truncate_ir=None,
        dtype="float64",
    )
    x = np.random.default_rng(5).normal(size=(2, 40, 2))
    whole = layer(x)
    first = layer(x[:, :17])
    second = layer(x[:, 17:], initial_state=first[1:])
    for a, b in zip(whole[1:], second[1:], strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-10)
    if rs:
        joined = np.concatenate([np.asarray(first[0]), np.asarray(second[0])], axis=1)
        np.testing.assert_allclose(joined, np.asarray(whole[0]), atol=1e-10)
    else:
        np.testing.assert_allclose(np.asarray(second[0]), np.asarray(whole[0]), atol=1e-10)


def test_changing_lengths_between_calls(float64):
    from lmu_keras import LMU

    cfg = lmu.LMUConfig(
        memory_d=2,
        order=4,
        theta=13.0,
        hidden_cell={"type": "dense", "units": 2},
        return_sequences=True,
    )
    w = random_weights(cfg, 2)
    layer = LMU.from_lmu_config(cfg, dtype="float64")
    layer.build((1, None, 2))
    set_canonical(layer, w)
    for T in (1, 5, 80, 3):
        x = np.random.default_rng(T).normal(size=(1, T, 2))
        np.testing.assert_allclose(np.asarray(layer(x)), run(cfg, w, x)[0], atol=1e-10)


@pytest.mark.parametrize("kind", ["lmu_cell", "feedforward"])
def test_cell_and_feedforward_match_reference(kind, float64):
    from lmu_keras import LMUCell, LMUFeedforward

    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 25, 3))
    if kind == "lmu_cell":
        cfg = lmu.LMUConfig(
            memory_d=2,
            order=5,
            theta=(8.5, 17.0),
            hidden_cell={"type": "lstm", "units": 3},
            hidden_to_memory=True,
            memory_to_memory=True,
            input_to_hidden=True,
            use_bias=True,
            trainable_theta=True,
        )
        w = trained_weights(cfg, 3)
        cell = LMUCell.from_lmu_config(cfg, dtype="float64")
        layer = keras.layers.RNN(cell, return_sequences=True, dtype="float64")
        layer.build(x.shape)
        set_canonical(cell, w)
        np.testing.assert_allclose(np.asarray(layer(x)), run(cfg, w, x)[0], atol=1e-10)
    else:
        cfg = lmu.LMUConfig(
            memory_d=2,
            order=5,
            theta=8.5,
            hidden_cell={"type": "simple_rnn", "units": 3},
            input_to_hidden=True,
            use_bias=True,
            return_sequences=True,
        )
        w = random_weights(cfg, 3)
        layer = LMUFeedforward.from_lmu_config(cfg, dtype="float64")
        layer.build(x.shape)
        set_canonical(layer, w)
        np.testing.assert_allclose(np.asarray(layer(x)), run(cfg, w, x)[0], atol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fft", "raw", "recurrent", "last_state"])
def test_long_sequence(mode, float64):
    case = dict(
        mode=mode,
        hidden=None if mode == "last_state" else "simple_rnn",
        discretizer="zoh",
        theta=21.7,
        connections="none",
        bias=False,
        return_sequences=mode != "last_state",
        length=2000,
        state=False,
        trainable="none",
    )
    cfg = make_config(case, memory_d=1, order=8)
    x = np.random.default_rng(7).normal(size=(1, 2000, 2))
    _, ref, _, out = run_both(cfg, x)
    expected = ref if cfg.return_sequences else ref[:, -1]
    np.testing.assert_allclose(np.asarray(out), expected, atol=1e-9)
