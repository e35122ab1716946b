"""Keras-style initializers for torch tensors stored in the Keras layout (fan_in = rows)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = ["initialize"]


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[0] * receptive, shape[1] * receptive


def _truncated(tensor: torch.Tensor, std: float) -> None:
    nn.init.trunc_normal_(tensor, 0.0, std, -2.0 * std, 2.0 * std)


def _uniform_limit(tensor: torch.Tensor, limit: float) -> None:
    nn.init.uniform_(tensor, -limit, limit)


@torch.no_grad()
def initialize(tensor: torch.Tensor, spec: Any, name: str = "initializer") -> torch.Tensor:
    """Fill ``tensor`` in place following a Keras initializer name or a callable.

    Parameters
    ----------
    tensor : Tensor
        A weight in the Keras layout, (fan_in, fan_out) for matrices.
    spec : str or callable
        One of :data:`lmu.config.INITIALIZERS` (already normalised by LMUConfig), or a
        callable: either in place (``torch.nn.init.xavier_uniform_``) or returning an array
        of the tensor's shape (``lambda shape: ...`` is not supported; it receives the tensor).
    name : str
        The option's name, for error messages.

    Returns
    -------
    Tensor
        ``tensor``.

    Raises
    ------
    ValueError
        For a name this backend does not know, or a callable returning the wrong shape.
    """
    if callable(spec) and not isinstance(spec, str):
        result = spec(tensor)
        if result is not None and result is not tensor:
            value = torch.as_tensor(result, dtype=tensor.dtype, device=tensor.device)
            if value.shape != tensor.shape:
                raise ValueError(
                    f"{name} returned shape {tuple(value.shape)}; expected {tuple(tensor.shape)}"
                )
            tensor.copy_(value)
        return tensor
    fan_in, fan_out = _fans(tuple(tensor.shape))
    if spec == "glorot_uniform":
        _uniform_limit(tensor, math.sqrt(6.0 / (fan_in + fan_out)))
    elif spec == "glorot_normal":
        _truncated(tensor, math.sqrt(2.0 / (fan_in + fan_out)) / 0.87962566103423978)
    elif spec == "he_uniform":
        _uniform_limit(tensor, math.sqrt(6.0 / fan_in))
    elif spec == "he_normal":
        _truncated(tensor, math.sqrt(2.0 / fan_in) / 0.87962566103423978)
    elif spec == "lecun_uniform":
        _uniform_limit(tensor, math.sqrt(3.0 / fan_in))
    elif spec == "lecun_normal":
        _truncated(tensor, math.sqrt(1.0 / fan_in) / 0.87962566103423978)
    elif spec == "orthogonal":
        if tensor.dim() < 2:
            nn.init.normal_(tensor)
        else:
            nn.init.orthogonal_(tensor)
    elif spec == "zeros":
        tensor.zero_()
    elif spec == "ones":
        tensor.fill_(1.0)
    elif spec == "random_uniform":
        _uniform_limit(tensor, 0.05)
    elif spec == "random_normal":
        nn.init.normal_(tensor, 0.0, 0.05)
    elif spec == "truncated_normal":
        _truncated(tensor, 0.05)
    else:
        raise ValueError(f"{name} {spec!r} is not an initializer the torch backend knows")
    return tensor
