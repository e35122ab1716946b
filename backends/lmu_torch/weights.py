"""The torch backend's adapters for portable weights and the lmu.testing conformance kit.

The layout work (torch's transposed ``nn.Linear``/``nn.RNN`` weights, the GRU's ``r, z, n``
gate order against Keras' ``z, r, h``, torch's two biases) lives in the layers'
``canonical_weights`` / ``load_canonical`` (:mod:`lmu_torch.base`, :mod:`lmu_torch.hidden`);
this module checks names and shapes against the core's canonical set and runs a layer on
NumPy input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from lmu.config import LMUConfig
from lmu.weights import canonical_shapes, check_weights

from .base import LMUBase
from .layers import LMUCell, LMUFeedforward

__all__ = ["export_weights", "float64_kwargs", "import_weights", "layer_config", "run"]


def _check_layer(layer: Any) -> LMUBase:
    if not isinstance(layer, LMUBase):
        raise ValueError(
            f"layer must be an lmu_torch LMU, LMUCell or LMUFeedforward (got "
            f"{type(layer).__name__})"
        )
    return layer


def _native_units(layer: LMUBase) -> int | None:
    return layer.output_size if layer.config.hidden_cell_type == "native" else None


def layer_config(layer: Any) -> LMUConfig:
    """The layer's config; theta is the buffer's value if someone changed ``theta_inv``."""
    layer = _check_layer(layer)
    config = layer.config
    if not config.trainable_theta:
        thetas = layer._fixed_thetas()
        if len(thetas) == 1 and not config.per_dim_theta:
            theta: Any = thetas[0]
        else:
            theta = tuple(np.broadcast_to(thetas, (config.memory_d,)).tolist())
        if theta != config.theta:
            config = config.replace(theta=theta)
    return config


def export_weights(layer: Any) -> dict[str, np.ndarray]:
    """Canonical float64 weights (``theta_inv`` only with trainable_theta)."""
    layer = _check_layer(layer)
    weights = layer.canonical_weights()
    expected = canonical_shapes(layer.config, layer.input_size, _native_units(layer))
    return {name: weights[name].reshape(shape) for name, shape in expected.items()}


def import_weights(layer: Any, weights: Mapping[str, Any]) -> None:
    """Load canonical weights, checking every name and shape first."""
    layer = _check_layer(layer)
    expected = canonical_shapes(layer.config, layer.input_size, _native_units(layer))
    where = f"the torch {type(layer).__name__} (input_size={layer.input_size})"
    layer.load_canonical(check_weights(weights, expected, where))


def run(
    layer: Any, x: np.ndarray, initial_state: Sequence[np.ndarray] | None = None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Call the layer in eval mode without gradients; NumPy in and out."""
    layer = _check_layer(layer)
    ref = layer._reference_tensor()
    dtype, device = ref.dtype, ref.device

    def tensor(a: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=dtype, device=device)

    def numpy(t: torch.Tensor) -> np.ndarray:
        return t.detach().to("cpu", torch.float64).numpy()

    xt = tensor(x)
    state = None if initial_state is None else tuple(tensor(s) for s in initial_state)
    was_training = layer.training
    layer.eval()
    try:
        with torch.no_grad():
            if isinstance(layer, LMUCell):
                if xt.dim() != 3:
                    raise ValueError(
                        f"x must have shape (batch, time, input_size) to be stepped through an "
                        f"LMUCell (got shape {tuple(xt.shape)})"
                    )
                outs = []
                for t in range(xt.shape[1]):
                    out, state = layer(xt[:, t], state)
                    outs.append(out)
                if not outs:
                    raise ValueError(
                        f"x must have at least one time step (got shape {tuple(xt.shape)})"
                    )
                output = torch.stack(outs, dim=1)
                final = state
            else:
                batch_first = getattr(layer, "batch_first", True)
                if not batch_first and xt.dim() == 3:
                    xt = xt.transpose(0, 1)
                if isinstance(layer, LMUFeedforward):
                    output, final = layer.forward_with_state(xt, state)
                else:
                    output, final = layer(xt, state)
                if not batch_first and layer.config.return_sequences:
                    output = output.transpose(0, 1)
    finally:
        layer.train(was_training)
    assert final is not None
    return numpy(output), [numpy(s) for s in final]


def float64_kwargs() -> dict[str, Any]:
    """``dtype=torch.float64``."""
    return {"dtype": torch.float64}
