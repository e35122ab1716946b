"""Keras 3 backend of lmu: LMUCell, LMU and LMUFeedforward written with keras.ops.

Importing this package does not import Keras; the layer classes are loaded on first access
(``lmu_keras.LMU``), so that lmu's backend discovery stays framework-free.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["LMU", "LMUCell", "LMUFeedforward", "custom_objects", "load_keras_lmu_model"]

_LAZY = {
    "LMU": "lmu_keras.layers",
    "LMUCell": "lmu_keras.layers",
    "LMUFeedforward": "lmu_keras.layers",
    "custom_objects": "lmu_keras.migrate",
    "load_keras_lmu_model": "lmu_keras.migrate",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lmu_keras' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
