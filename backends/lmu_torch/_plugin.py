"""The torch backend's plugin object: light, imports torch only when layers are asked for."""

from __future__ import annotations

from lmu import Backend


class TorchBackend(Backend):
    """PyTorch layers (``nn.Module``): LMUCell, LMU, LMUFeedforward."""

    name = "torch"
    description = "PyTorch nn.Module layers"
    module = "torch"
    layers_module = "lmu_torch.layers"
    #: portable weights and the conformance kit's adapter, imported on first use
    adapter_module = "lmu_torch.weights"
