"""Weights trained in one framework give the same model in the other (torch <-> Keras).

Needs torch and Keras in one process, so it runs only where both are installed (tox keeps
them apart; each backend's own round trips are in tests/backend_torch and
tests/backend_keras).  Layers are float32, as trained; outputs must agree to float32
precision.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import importlib.util  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


if not (_installed("torch") and _installed("keras")):
    pytest.skip("needs torch and keras in one environment", allow_module_level=True)

import keras  # noqa: E402
import torch  # noqa: E402

import lmu  # noqa: E402

TOL = 2e-5  # relative to max(1, max |output|), float32
CASES = [
    ("LMU", "lstm"),
    ("LMU", "gru"),
    ("LMU", "simple_rnn"),
    ("LMU", "dense"),
    ("LMUFeedforward", "gru"),
    ("LMUFeedforward", "lstm"),
]
#: max abs differences found, for the report (pytest -s prints them)
RESULTS: dict[str, float] = {}


def _options(kind: str, hidden: str) -> dict[str, Any]:
    opts: dict[str, Any] = dict(
        memory_d=2,
        order=6,
        theta=(9.5, 20.0),
        hidden_cell={"type": hidden, "units": 5},
        input_to_hidden=True,
        use_bias=True,
        trainable_theta=True,
        return_sequences=True,
        input_d=3,
    )
    if kind == "LMU":
        opts.update(hidden_to_memory=True, memory_to_memory=True, trainable_A=True)
    return opts


def _data(out_d: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (
        rng.normal(size=(8, 20, 3)).astype(np.float32),
        rng.normal(size=(8, 20, out_d)).astype(np.float32),
    )


def _train_torch(layer: Any, steps: int = 10) -> None:
    x, y = (torch.as_tensor(a) for a in _data(layer.output_size))
    opt = torch.optim.Adam(layer.parameters(), lr=3e-3)
    for _ in range(steps):
        opt.zero_grad()
        out = (
            layer.forward_with_state(x)[0] if hasattr(layer, "forward_with_state") else layer(x)[0]
        )
        ((out - y) ** 2).mean().backward()
        opt.step()


def _train_keras(layer: Any, steps: int = 10) -> None:
    inp = keras.Input((20, 3))
    model = keras.Model(inp, layer(inp))
    x, y = _data(model.output_shape[-1])
    model.compile(keras.optimizers.Adam(3e-3), "mse")
    model.fit(x, y, epochs=steps, batch_size=8, verbose=0)


def _compare(src_backend: str, src: Any, dst_backend: str, dst: Any, key: str) -> None:
    x = np.random.default_rng(1).normal(size=(4, 30, 3)).astype(np.float32)
    a, sa = lmu.get_backend(src_backend).run(src, x)
    b, sb = lmu.get_backend(dst_backend).run(dst, x)
    scale = max(1.0, float(np.abs(a).max()))
    diffs = [float(np.abs(a - b).max())]
    diffs += [float(np.abs(s - t).max()) for s, t in zip(sa, sb, strict=True)]
    RESULTS[key] = max(diffs)
    print(f"\n{key}: max |output diff| {diffs[0]:.2e}, max |state diff| {max(diffs[1:]):.2e}")
    assert max(diffs) <= TOL * scale, f"{key}: {diffs}"


def _moved(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> None:
    for name, value in before.items():
        assert not np.allclose(after[name], value), f"training did not move {name}"


@pytest.mark.parametrize(("kind", "hidden"), CASES)
def test_torch_to_keras(kind: str, hidden: str) -> None:
    src = lmu.get_layer(kind, backend="torch", **_options(kind, hidden))
    before = lmu.export_weights(src)["weights"]
    _train_torch(src)
    exported = lmu.export_weights(src)
    _moved(before, exported["weights"])
    dst = lmu.get_layer(exported["kind"], backend="keras", **exported["config"])
    lmu.import_weights(dst, exported)
    _compare("torch", src, "keras", dst, f"torch->keras {kind} {hidden}")


@pytest.mark.parametrize(("kind", "hidden"), CASES)
def test_keras_to_torch(kind: str, hidden: str) -> None:
    src = lmu.get_layer(kind, backend="keras", **_options(kind, hidden))
    src.build((None, None, 3))
    before = lmu.export_weights(src)["weights"]
    _train_keras(src)
    exported = lmu.export_weights(src)
    _moved(before, exported["weights"])
    dst = lmu.get_layer(exported["kind"], backend="torch", **exported["config"])
    lmu.import_weights(dst, exported)
    _compare("keras", src, "torch", dst, f"keras->torch {kind} {hidden}")


def test_config_mismatch_is_refused() -> None:
    src = lmu.get_layer("LMU", backend="torch", **_options("LMU", "lstm"))
    dst = lmu.get_layer("LMU", backend="keras", **{**_options("LMU", "lstm"), "order": 7})
    with pytest.raises(ValueError, match="order=6 in the weights, 7 in the layer"):
        lmu.import_weights(dst, lmu.export_weights(src))
