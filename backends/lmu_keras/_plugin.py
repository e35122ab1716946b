"""The Keras backend's plugin object: light, imports keras only when layers are asked for."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lmu import Backend, LMUConfig


class KerasBackend(Backend):
    """Keras 3 layers (TensorFlow, JAX or PyTorch underneath): LMUCell, LMU, LMUFeedforward."""

    name = "keras"
    description = "Keras 3 layers (keras.ops; TensorFlow, JAX, PyTorch)"
    module = "keras"

    def layer_class(self, kind: str) -> type:
        """Import lmu_keras's layers (and keras) and return the class ``kind``."""
        layers = importlib.import_module("lmu_keras.layers")
        return getattr(layers, kind)

    # -- portable weights and the conformance kit (lmu_keras.weights, imported on first use) --
    def _weights(self) -> Any:
        return importlib.import_module("lmu_keras.weights")

    def layer_config(self, layer: Any) -> LMUConfig:
        """The layer's :class:`lmu.LMUConfig` (input_d filled in)."""
        config: LMUConfig = self._weights().layer_config(layer)
        return config

    def export_weights(self, layer: Any) -> dict[str, np.ndarray]:
        """Canonical float64 weights (see :func:`lmu.export_weights`)."""
        weights: dict[str, np.ndarray] = self._weights().export_weights(layer)
        return weights

    def import_weights(self, layer: Any, weights: Mapping[str, Any]) -> None:
        """Load canonical weights (see :func:`lmu.import_weights`)."""
        self._weights().import_weights(layer, weights)

    def run(
        self, layer: Any, x: Any, initial_state: Sequence[Any] | None = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Call the layer on NumPy input in inference mode (see :meth:`lmu.Backend.run`)."""
        result: tuple[np.ndarray, list[np.ndarray]] = self._weights().run(layer, x, initial_state)
        return result

    def float64_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for a float64 layer."""
        kwargs: dict[str, Any] = self._weights().float64_kwargs()
        return kwargs
