"""Helpers shared by the Keras backend tests (imported by module name, like the torch ones)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def set_canonical(layer: Any, weights: Mapping[str, np.ndarray]) -> None:
    """Load lmu.reference's canonical weights into a built lmu_keras layer (or LMUCell)."""
    for name in ("kernel", "bias", "recurrent_kernel", "theta_inv", "A", "B"):
        var = getattr(layer, name, None)
        if name in weights and var is not None:
            var.assign(np.asarray(weights[name]).reshape(var.shape))
    cell = layer.hidden_cell
    if cell is not None and "hidden_kernel" in weights:
        cell.kernel.assign(weights["hidden_kernel"])
        cell.bias.assign(weights["hidden_bias"])
        if "hidden_recurrent_kernel" in weights:
            cell.recurrent_kernel.assign(weights["hidden_recurrent_kernel"])
