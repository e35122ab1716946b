"""lmu: Legendre Memory Units for every deep-learning framework.

The core (this package) holds the backend-neutral math, the configuration schema and a NumPy
reference; framework layers come from backends (``pip install "lmu[torch]"``,
``pip install "lmu[keras]"``) reached through :func:`get_layer`.  Importing ``lmu`` never
imports a framework.
"""

from __future__ import annotations

from . import reference
from ._registry import (
    Backend,
    BackendInfo,
    BackendLoadError,
    BackendNotInstalledError,
    UnknownBackendError,
    get_backend,
    get_layer,
    list_backends,
    refresh_backends,
    register_backend,
)
from ._version import __version__
from .config import LMUConfig, NotSerializableError, select_mode
from .system import (
    discretize,
    euler_theta_bound,
    fft_length,
    impulse_response,
    legendre_decoder,
    legendre_system,
    lmu_matrices,
    truncation_length,
)
from .weights import export_weights, import_weights

__all__ = [
    "Backend",
    "BackendInfo",
    "BackendLoadError",
    "BackendNotInstalledError",
    "LMUConfig",
    "NotSerializableError",
    "UnknownBackendError",
    "__version__",
    "discretize",
    "euler_theta_bound",
    "export_weights",
    "fft_length",
    "get_backend",
    "get_layer",
    "impulse_response",
    "import_weights",
    "legendre_decoder",
    "legendre_system",
    "list_backends",
    "lmu_matrices",
    "reference",
    "refresh_backends",
    "register_backend",
    "select_mode",
    "truncation_length",
]
