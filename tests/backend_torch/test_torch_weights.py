"""lmu.export_weights / lmu.import_weights with torch layers: round trips, layouts, errors."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lmu  # noqa: E402
from lmu import reference  # noqa: E402

HIDDEN = ["dense", "simple_rnn", "gru", "lstm"]


def _options(hidden: str, kind: str = "LMU") -> dict[str, Any]:
    recurrent = kind != "LMUFeedforward"
    return dict(
        memory_d=2,
        order=5,
        theta=(7.5, 19.0),
        hidden_cell={"type": hidden, "units": 4},
        hidden_to_memory=recurrent,
        memory_to_memory=recurrent,
        input_to_hidden=True,
        use_bias=True,
        trainable_theta=True,
        trainable_A=True,
        trainable_B=True,
        return_sequences=True,
        input_d=3,
    )


def _train(layer: Any, steps: int = 5) -> None:
    """A few Adam steps, so that every weight (and both torch biases) move."""
    opt = torch.optim.Adam(layer.parameters(), lr=0.003)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 12, 3, generator=g, dtype=torch.float64)
    y = torch.randn(4, 12, layer.output_size, generator=g, dtype=torch.float64)
    for _ in range(steps):
        opt.zero_grad()
        out = (
            layer(x)[0]
            if not isinstance(layer, lmu.get_backend("torch").LMUFeedforward)
            else layer(x)
        )
        ((out - y) ** 2).mean().backward()
        opt.step()


@pytest.mark.parametrize("kind", ["LMU", "LMUFeedforward", "LMUCell"])
@pytest.mark.parametrize("hidden", HIDDEN)
def test_trained_round_trip(hidden: str, kind: str) -> None:
    backend = lmu.get_backend("torch")
    src = lmu.get_layer(kind, backend="torch", dtype=torch.float64, **_options(hidden, kind))
    if kind != "LMUCell":
        _train(src)
    exported = lmu.export_weights(src)
    assert exported["backend"] == "torch" and exported["kind"] == kind
    json.dumps(exported["config"])  # the config is plain data
    dst = lmu.get_layer(kind, backend="torch", dtype=torch.float64, **exported["config"])
    lmu.import_weights(dst, exported)
    again = lmu.export_weights(dst)["weights"]
    assert set(again) == set(exported["weights"])
    for name, value in exported["weights"].items():
        np.testing.assert_allclose(again[name], value, rtol=0, atol=1e-15, err_msg=name)
    x = np.random.default_rng(1).normal(size=(2, 9, 3))
    a, sa = backend.run(src, x)
    b, sb = backend.run(dst, x)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-12)
    for s, t in zip(sa, sb, strict=True):
        np.testing.assert_allclose(t, s, rtol=0, atol=1e-12)
    # and the exported weights define the same model in the reference
    ref, _ = reference.run(src.config, exported["weights"], x)
    np.testing.assert_allclose(a, ref, rtol=0, atol=1e-10)


def test_split_biases_are_summed() -> None:
    """torch's LSTM has two biases; the canonical (Keras) layout has one: their sum."""
    layer = lmu.get_layer("LMU", backend="torch", dtype=torch.float64, **_options("lstm"))
    with torch.no_grad():
        layer.hidden_cell.rnn.bias_hh_l0.uniform_(-1, 1)
        layer.hidden_cell.rnn.bias_ih_l0.uniform_(-1, 1)
    rnn = layer.hidden_cell.rnn
    w = lmu.export_weights(layer)["weights"]
    expected = (rnn.bias_ih_l0 + rnn.bias_hh_l0).detach().numpy()
    np.testing.assert_allclose(w["hidden_bias"], expected)


def test_gru_gate_order_and_transpose() -> None:
    """Keras' (z, r, h) columns against torch's (r, z, n) rows."""
    layer = lmu.get_layer("LMU", backend="torch", dtype=torch.float64, **_options("gru"))
    w = lmu.export_weights(layer)["weights"]
    W = layer.hidden_cell.rnn.weight_ih_l0.detach().numpy()  # (3 * units, in), rows r, z, n
    u = 4
    np.testing.assert_array_equal(w["hidden_kernel"][:, :u], W[u : 2 * u].T)  # z
    np.testing.assert_array_equal(w["hidden_kernel"][:, u : 2 * u], W[:u].T)  # r
    np.testing.assert_array_equal(w["hidden_kernel"][:, 2 * u :], W[2 * u :].T)  # h / n
    assert w["hidden_bias"].shape == (2, 3 * u)


def test_untrainable_theta_travels_in_the_config() -> None:
    layer = lmu.get_layer("LMU", backend="torch", memory_d=1, order=3, theta=4.5, input_d=2)
    exported = lmu.export_weights(layer)
    assert "theta_inv" not in exported["weights"]
    assert exported["config"]["theta"] == 4.5
    with torch.no_grad():
        layer.theta_inv.fill_(1 / 6.0)  # a changed buffer is the layer's theta now
    assert lmu.export_weights(layer)["config"]["theta"] == pytest.approx(6.0)


def test_import_errors() -> None:
    layer = lmu.get_layer("LMU", backend="torch", **_options("lstm"))
    good = lmu.export_weights(layer)["weights"]
    with pytest.raises(ValueError, match=r"missing weight\(s\) \['hidden_bias'\]"):
        lmu.import_weights(layer, {k: v for k, v in good.items() if k != "hidden_bias"})
    bad = {**good, "kernel": np.zeros((3, 2))}
    with pytest.raises(ValueError, match=r"'kernel' must have shape \(7, 2\) \(got \(3, 2\)\)"):
        lmu.import_weights(layer, bad)
    other = lmu.get_layer("LMU", backend="torch", **{**_options("lstm"), "use_bias": False})
    with pytest.raises(ValueError, match="use_bias=True in the weights, False in the layer"):
        lmu.import_weights(other, lmu.export_weights(layer))
    with pytest.raises(ValueError, match="unexpected weight 'bias' .*use_bias=True"):
        lmu.import_weights(other, good)
    with pytest.raises(ValueError, match="layer must be an lmu_torch"):
        lmu.import_weights(torch.nn.Linear(2, 2), good, backend="torch")


def test_native_hidden_cell_is_not_portable() -> None:
    layer = lmu.get_layer(
        "LMU",
        backend="torch",
        memory_d=1,
        order=3,
        theta=4.0,
        input_d=2,
        hidden_cell=torch.nn.Linear(3, 2),
    )
    with pytest.raises(lmu.NotSerializableError, match="neutral hidden_cell spec"):
        lmu.export_weights(layer)
    # the backend adapter itself exports the memory's canonical weights
    assert set(lmu.get_backend("torch").export_weights(layer)) == {"kernel"}


def test_npz_file_round_trip(tmp_path: Any) -> None:
    layer = lmu.get_layer("LMU", backend="torch", **_options("gru"))
    exported = lmu.export_weights(layer)
    path = tmp_path / "w.npz"
    np.savez(path, config=json.dumps(exported["config"]), **exported["weights"])
    data = np.load(path)
    config = json.loads(str(data["config"]))
    weights = {k: data[k] for k in data.files if k != "config"}
    dst = lmu.get_layer("LMU", backend="torch", **config)
    lmu.import_weights(dst, {"config": config, "weights": weights})
    for name, value in exported["weights"].items():
        np.testing.assert_allclose(lmu.export_weights(dst)["weights"][name], value, atol=1e-7)


def test_run_adapter_handles_time_first_layers() -> None:
    backend = lmu.get_backend("torch")
    options = {**_options("gru"), "hidden_to_memory": False, "memory_to_memory": False}
    a = lmu.get_layer("LMU", backend="torch", dtype=torch.float64, **options)
    b = lmu.get_layer("LMU", backend="torch", dtype=torch.float64, batch_first=False, **options)
    lmu.import_weights(b, lmu.export_weights(a))
    x = np.random.default_rng(2).normal(size=(2, 7, 3))  # the adapter takes batch first
    out_a, states_a = backend.run(a, x)
    out_b, states_b = backend.run(b, x)
    assert out_b.shape == (2, 7, 4)
    np.testing.assert_allclose(out_b, out_a, rtol=0, atol=1e-12)
    for s, t in zip(states_a, states_b, strict=True):
        np.testing.assert_allclose(t, s, rtol=0, atol=1e-12)
    assert a.training and b.training  # the adapter restores training mode
