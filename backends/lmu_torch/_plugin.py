"""The torch backend's plugin object: light, imports torch only when layers are asked for."""

from __future__ import annotations

import importlib

from lmu import Backend


class TorchBackend(Backend):
    """PyTorch layers (``nn.Module``): LMUCell, LMU, LMUFeedforward."""

    name = "torch"
    description = "PyTorch nn.Module layers"
    module = "torch"

    def layer_class(self, kind: str) -> type:
        """Import lmu_torch's layers (and torch) and return the class ``kind``."""
        layers = importlib.import_module("lmu_torch.layers")
        return getattr(layers, kind)
