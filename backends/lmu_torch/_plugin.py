"""The torch backend's plugin object: light, imports torch only when layers are asked for."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lmu import Backend, LMUConfig


class TorchBackend(Backend):
    """PyTorch layers (``nn.Module``): LMUCell, LMU, LMUFeedforward."""

    name = "torch"
    description = "PyTorch nn.Module layers"
    module = "torch"

    def layer_class(self, kind: str) -> type:
        """Import lmu_torch's layers (and torch) and return the class ``kind``."""
        layers = importlib.import_module("lmu_torch.layers")
        return getattr(layers, kind)

    # -- portable weights and the conformance kit (lmu_torch.weights, imported on first use) --
    def _weights(self) -> Any:
        return importlib.import_module("lmu_torch.weights")

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
