"""PyTorch backend of lmu: ``LMUCell``, ``LMU`` and ``LMUFeedforward`` as ``nn.Module``.

Importing this package does not import torch (backend discovery imports it); the layer
classes are loaded on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["LMU", "LMUCell", "LMUFeedforward"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(".layers", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
