"""The Keras backend's plugin object: light, imports keras only when layers are asked for."""

from __future__ import annotations

import importlib

from lmu import Backend


class KerasBackend(Backend):
    """Keras 3 layers (TensorFlow, JAX or PyTorch underneath): LMUCell, LMU, LMUFeedforward."""

    name = "keras"
    description = "Keras 3 layers (keras.ops; TensorFlow, JAX, PyTorch)"
    module = "keras"

    def layer_class(self, kind: str) -> type:
        """Import lmu_keras's layers (and keras) and return the class ``kind``."""
        layers = importlib.import_module("lmu_keras.layers")
        return getattr(layers, kind)
