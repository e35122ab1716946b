"""The Keras backend's plugin object: light, imports keras only when layers are asked for."""

from __future__ import annotations

from lmu import Backend


class KerasBackend(Backend):
    """Keras 3 layers (TensorFlow, JAX or PyTorch underneath): LMUCell, LMU, LMUFeedforward."""

    name = "keras"
    description = "Keras 3 layers (keras.ops; TensorFlow, JAX, PyTorch)"
    module = "keras"
    layers_module = "lmu_keras.layers"
    #: portable weights and the conformance kit's adapter, imported on first use
    adapter_module = "lmu_keras.weights"
