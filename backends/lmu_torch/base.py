"""What every torch LMU layer shares: options, weights, the discrete system, states, masks."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

import lmu.system
from lmu.config import LMUConfig

from . import discrete
from .hidden import HiddenCell, NeutralHidden
from .initializers import initialize

__all__ = ["LMUBase", "compute_dtype"]

_POSITIONAL = ("memory_d", "order", "theta", "hidden_cell", "input_d")
OPTIONS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(LMUConfig) if f.name not in _POSITIONAL
)
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the memory math: float32 for half precisions, else the input's."""
    if dtype in _LOW_PRECISION or not dtype.is_floating_point:
        return torch.float32
    return dtype


def _tracing() -> bool:
    """Whether torch.compile or torch.export is tracing (no host reads, no caching then)."""
    return bool(torch.compiler.is_compiling() or torch.compiler.is_exporting())


class LMUBase(nn.Module):
    """Weights, configuration and shared helpers of :class:`LMUCell` and :class:`LMU`.

    Parameters
    ----------
    input_size : int
        Input features.
    memory_d, order, theta, hidden_cell
        See :class:`lmu.LMUConfig`.
    device, dtype : optional
        Where and in which dtype to create the weights (torch's factory convention).
    **options
        The other fields of :class:`lmu.LMUConfig` (validated there).

    Attributes
    ----------
    config : LMUConfig
        The validated options.
    kernel, recurrent_kernel, bias : Parameter or None
        Keras layouts: (input_size [+ hidden output], memory_d), (memory_d * order, memory_d),
        (memory_d,).
    theta_inv : Tensor
        1 / theta, shape () or (memory_d,); a Parameter only with ``trainable_theta``.
    A, B : Parameter or None
        The continuous system, (order, order) and (order, 1), with trainable_A / trainable_B.
    hidden_cell : nn.Module or None
    output_size : int
        Features of each output step: the hidden cell's output size; without a hidden cell
        ``memory_d * order``, plus ``input_size`` with input_to_hidden (the output is then
        ``[m_t, x_t]``, keras-lmu's convention, with ``x_t`` not dropped).
    mode : str or None
        The execution mode of the last forward call.
    """

    config: LMUConfig

    def __init__(
        self,
        input_size: int,
        memory_d: int,
        order: int,
        theta: float | Sequence[float],
        hidden_cell: Any = None,
        *,
        device: Any = None,
        dtype: torch.dtype | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}; allowed: {sorted(OPTIONS)}")
        if isinstance(theta, (list, np.ndarray)):
            theta = tuple(float(v) for v in np.asarray(theta).reshape(-1))
        if hidden_cell is not None and not isinstance(hidden_cell, (Mapping, nn.Module)):
            raise ValueError(
                "hidden_cell must be None, a neutral spec dict or a torch nn.Module "
                f"(got {type(hidden_cell).__name__})"
            )
        config = LMUConfig(
            memory_d=memory_d,
            order=order,
            theta=theta,
            hidden_cell=hidden_cell,
            input_d=input_size,
            **options,
        )
        self.config = config
        self.input_size = int(input_size)
        self.mode: str | None = None
        factory = {"device": device, "dtype": dtype or torch.get_default_dtype()}
        md, order = config.memory_d, config.order
        self.memory_size = md * order

        # hidden cell
        hidden_in = self.memory_size + (self.input_size if config.input_to_hidden else 0)
        module: nn.Module | None
        if config.hidden_cell is None:
            module = None
        elif isinstance(config.hidden_cell, Mapping):
            spec = config.hidden_cell
            module = NeutralHidden(spec["type"], hidden_in, spec["units"], spec["activation"])
            module.to(**factory)
        else:
            module = config.hidden_cell
        self.hidden_cell = module
        self._hidden = HiddenCell(module, hidden_in) if module is not None else None
        if self._hidden is not None:
            self.output_size = self._hidden.output_size
        else:  # the memory, or [m_t, x_t] with input_to_hidden (keras-lmu's convention)
            self.output_size = self.memory_size + (self.input_size if config.input_to_hidden else 0)
        self.hidden_stateful = bool(self._hidden and self._hidden.stateful)

        # memory weights
        self.memory_input_size = self.input_size + (
            self.output_size if config.hidden_to_memory else 0
        )
        if config.kernel_initializer is None:
            if self.memory_input_size != md:
                raise ValueError(
                    "kernel_initializer=None means no input kernel, so the memory's input "
                    f"(input_size [+ hidden output with hidden_to_memory] = "
                    f"{self.memory_input_size}) must equal memory_d={md}"
                )
            self.kernel = None
        else:
            self.kernel = nn.Parameter(torch.empty(self.memory_input_size, md, **factory))
            initialize(self.kernel, config.kernel_initializer, "kernel_initializer")
        if config.memory_to_memory:
            self.recurrent_kernel = nn.Parameter(torch.empty(self.memory_size, md, **factory))
            initialize(self.recurrent_kernel, config.recurrent_initializer, "recurrent_initializer")
        else:
            self.recurrent_kernel = None
        if config.use_bias:
            self.bias = nn.Parameter(torch.empty(md, **factory))
            initialize(self.bias, config.bias_initializer, "bias_initializer")
        else:
            self.bias = None
        thetas = torch.tensor(config.thetas, dtype=torch.float64)
        theta_inv = (1.0 / thetas if config.per_dim_theta else 1.0 / thetas[0]).to(**factory)
        if config.trainable_theta:
            self.theta_inv = nn.Parameter(theta_inv)
        else:
            self.register_buffer("theta_inv", theta_inv)
        A, B = lmu.system.legendre_system(order)
        self.A = nn.Parameter(torch.tensor(A, **factory)) if config.trainable_A else None
        self.B = nn.Parameter(torch.tensor(B, **factory)) if config.trainable_B else None
        self._cache = discrete.TensorCache()
        #: (key, chunk matrices) of the fused recurrent loop (see lmu_torch.fused.plan_key)
        self._fused_plan: tuple[Any, Any] | None = None
        self._theta_key: Any = None
        self._thetas: tuple[float, ...] = ()

    # -- construction from a config ---------------------------------------------------------
    @classmethod
    def from_lmu_config(cls, config: LMUConfig, **kwargs: Any) -> LMUBase:
        """Build the layer from a validated :class:`lmu.LMUConfig`.

        Parameters
        ----------
        config : LMUConfig
        **kwargs
            ``input_size`` (needed unless ``config.input_d`` is set) and this class's own
            keyword arguments (``batch_first``, ``device``, ``dtype``).

        Raises
        ------
        ValueError
            When the input size is missing or contradicts ``config.input_d``.
        """
        input_size = kwargs.pop("input_size", None)
        if input_size is None:
            input_size = config.input_d
        elif config.input_d is not None and input_size != config.input_d:
            raise ValueError(
                f"input_size={input_size!r} contradicts input_d={config.input_d!r}; give one"
            )
        if input_size is None:
            raise ValueError(
                "the torch layers need the number of input features: pass input_d=... "
                "(a config field) or input_size=... (got neither)"
            )
        options = {name: getattr(config, name) for name in OPTIONS}
        return cls(
            input_size,
            config.memory_d,
            config.order,
            config.theta,
            config.hidden_cell,
            **options,
            **kwargs,
        )

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"input_size={self.input_size}, memory_d={c.memory_d}, order={c.order}, "
            f"theta={c.theta}, output_size={self.output_size}"
        )

    # -- the discrete system ----------------------------------------------------------------
    @property
    def trainable_system(self) -> bool:
        """Whether theta, A or B are learned (the matrices are then recomputed per call)."""
        c = self.config
        return c.trainable_theta or c.trainable_A or c.trainable_B

    def _fixed_thetas(self) -> tuple[float, ...]:
        """Python floats of theta (exactly the config's unless theta_inv was changed)."""
        buf = self.theta_inv
        if _tracing():
            values = self.config.thetas
            return values[:1] if len(set(values)) == 1 else values
        key = (buf._version, buf.dtype, buf.device, id(buf))
        if key != self._theta_key:
            inv = np.atleast_1d(buf.detach().to("cpu", torch.float64).numpy())
            thetas = np.asarray(self.config.thetas)
            eps = float(torch.finfo(buf.dtype).eps)
            if not np.allclose(inv * thetas, 1.0, rtol=0, atol=8 * eps):
                if not np.all(np.isfinite(inv)) or np.any(inv <= 0):
                    raise ValueError(f"theta_inv must be > 0 and finite (got {inv.tolist()})")
                thetas = 1.0 / np.broadcast_to(inv, (self.config.memory_d,))
            values = tuple(float(v) for v in thetas)
            self._thetas = values[:1] if len(set(values)) == 1 else values
            self._theta_key = key
            self._cache.clear()
        return self._thetas

    def _trainable_matrices(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable float64 Ad (n, order, order), Bd (n, order)."""
        f64 = {"dtype": torch.float64, "device": device}
        c = self.config
        if self.A is not None:
            A = self.A.to(**f64)
        else:
            A = torch.tensor(lmu.system.legendre_system(c.order)[0], **f64)
        if self.B is not None:
            B = self.B.to(**f64)
        else:
            B = torch.tensor(lmu.system.legendre_system(c.order)[1], **f64)
        if c.trainable_theta:
            theta_inv = self.theta_inv.to(**f64)
        else:
            theta_inv = 1.0 / torch.tensor(self._fixed_thetas(), **f64)
        return discrete.discretize(A, B, theta_inv, c.discretizer)

    def matrices(
        self, dtype: torch.dtype, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Discrete Ad (n, order, order) and Bd (n, order); n = 1 when theta is shared."""
        if self.trainable_system:
            Ad, Bd = self._trainable_matrices(device)
            return Ad.to(dtype), Bd.to(dtype)
        thetas = self._fixed_thetas()
        key = ("AB", dtype, device)

        def make() -> torch.Tensor:
            Ad, Bd = discrete.fixed_matrices(self.config.order, thetas, self.config.discretizer)
            return torch.cat([torch.as_tensor(Ad), torch.as_tensor(Bd)[:, :, None]], 2).to(
                device=device, dtype=dtype
            )

        both = self._cache.get(key, make)
        return both[:, :, :-1], both[:, :, -1]

    def impulse(self, length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The impulse response, shape (n, length, order)."""
        c = self.config
        if c.trainable_theta and not (c.trainable_A or c.trainable_B) and c.discretizer == "zoh":
            f64 = {"dtype": torch.float64, "device": device}
            A, B = (torch.tensor(v, **f64) for v in lmu.system.legendre_system(c.order))
            H = discrete.zoh_impulse_response(self.theta_inv.to(**f64), A, B, length)
            return H.to(dtype)
        if self.trainable_system:
            Ad, Bd = self._trainable_matrices(device)
            return discrete.impulse_response(Ad, Bd, length).to(dtype)
        thetas = self._fixed_thetas()

        def make() -> torch.Tensor:
            H = discrete.fixed_impulse_response(c.order, thetas, c.discretizer, length)
            return torch.as_tensor(np.ascontiguousarray(H)).to(device=device, dtype=dtype)

        return self._cache.get(("H", length, dtype, device), make)

    def power(self, steps: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """``Ad ** steps``, shape (n, order, order)."""
        if self.trainable_system:
            Ad, _ = self._trainable_matrices(device)
            return discrete.matrix_power(Ad, steps).to(dtype)
        Ad, _ = self.matrices(torch.float64, device)
        return self._cache.get(
            ("P", steps, dtype, device), lambda: discrete.matrix_power(Ad, steps).to(dtype)
        )

    # -- states ------------------------------------------------------------------------------
    @property
    def state_sizes(self) -> list[int]:
        """Sizes of the states: ``[memory_d * order, *hidden]``."""
        hidden = self._hidden.state_sizes if self._hidden is not None else []
        return [self.memory_size, *hidden]

    def initial_state(
        self, batch: int, dtype: torch.dtype | None = None, device: Any = None
    ) -> tuple[torch.Tensor, ...]:
        """Zero states for a batch."""
        ref = self._reference_tensor()
        dtype = dtype or ref.dtype
        device = device or ref.device
        return tuple(torch.zeros(batch, n, dtype=dtype, device=device) for n in self.state_sizes)

    def _reference_tensor(self) -> torch.Tensor:
        for p in self.parameters():
            return p
        return self.theta_inv

    def _check_state(self, state: Any, batch: int) -> list[torch.Tensor]:
        sizes = self.state_sizes
        if isinstance(state, torch.Tensor):
            state = (state,)
        if not isinstance(state, (tuple, list)) or len(state) != len(sizes):
            got = f"length {len(state)}" if isinstance(state, (tuple, list)) else "no sequence"
            raise ValueError(
                f"state must be a tuple of {len(sizes)} tensors (memory, *hidden) with sizes "
                f"{sizes} (got {type(state).__name__}, {got})"
            )
        out = []
        for i, (s, n) in enumerate(zip(state, sizes, strict=True)):
            if not isinstance(s, torch.Tensor) or tuple(s.shape) != (batch, n):
                shape = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
                raise ValueError(f"state[{i}] must have shape ({batch}, {n}) (got {shape})")
            out.append(s)
        return out

    def _check_theta_finite(self) -> None:
        if self.config.trainable_theta and not _tracing():
            if not bool(torch.isfinite(self.theta_inv).all()) or bool((self.theta_inv <= 0).any()):
                raise ValueError(
                    f"theta_inv must be > 0 and finite (got {self.theta_inv.detach().tolist()})"
                )

    # -- dropout -----------------------------------------------------------------------------
    def make_dropout_masks(
        self, batch: int, dtype: torch.dtype, device: torch.device
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Scaled dropout masks, fixed over a sequence: (input mask, recurrent mask).

        The input mask has shape (batch, memory input) and multiplies the memory's input
        ``[x_t, h_{t-1}]``; the recurrent one (batch, memory_d * order) the memory fed back
        through ``recurrent_kernel``.  None when off (inference, rate 0).
        """
        c = self.config
        if not self.training:
            return None, None
        masks: list[torch.Tensor | None] = []
        for rate, size, used in (
            (c.dropout, self.memory_input_size, True),
            (c.recurrent_dropout, self.memory_size, c.memory_to_memory),
        ):
            if rate > 0 and used:
                keep = torch.full((batch, size), 1.0 - rate, dtype=dtype, device=device)
                masks.append(torch.bernoulli(keep) / (1.0 - rate))
            else:
                masks.append(None)
        return masks[0], masks[1]

    # -- memory pieces -----------------------------------------------------------------------
    def memory_step(
        self, m: torch.Tensor, u: torch.Tensor, Ad: torch.Tensor, Bd: torch.Tensor
    ) -> torch.Tensor:
        """``m_t = m_{t-1} Ad^T + u Bd^T`` per memory dimension; m (batch, md * order)."""
        md, order = self.config.memory_d, self.config.order
        m3 = m.reshape(-1, md, order)
        if Ad.shape[0] == 1:
            m3 = m3 @ Ad[0].transpose(0, 1)
        else:
            m3 = torch.einsum("bdj,dij->bdi", m3, Ad)
        m3 = m3 + u[:, :, None] * Bd
        return m3.reshape(-1, md * order)

    # -- Keras-layout weights ------------------------------------------------------------------
    @torch.no_grad()
    def load_canonical(self, weights: Mapping[str, Any]) -> None:
        """Load weights named and laid out as in :mod:`lmu.reference` (and keras-lmu).

        Parameters
        ----------
        weights : mapping of str to array
            kernel, recurrent_kernel, bias, theta_inv, A, B and, for a neutral hidden cell,
            hidden_kernel, hidden_recurrent_kernel, hidden_bias.  Missing entries are kept.

        Raises
        ------
        ValueError
            For a weight this layer does not have or a shape mismatch.
        """
        hidden_names = {"hidden_kernel", "hidden_recurrent_kernel", "hidden_bias"}
        for name, value in weights.items():
            if name in hidden_names:
                continue
            target = (
                getattr(self, name, None)
                if name in ("kernel", "recurrent_kernel", "bias", "theta_inv", "A", "B")
                else None
            )
            if not isinstance(target, torch.Tensor):
                raise ValueError(f"this layer has no weight {name!r}")
            arr = torch.as_tensor(np.asarray(value), dtype=target.dtype, device=target.device)
            if arr.numel() == target.numel() and name in ("theta_inv", "B"):
                arr = arr.reshape(target.shape)
            if arr.shape != target.shape:
                want, got = tuple(target.shape), tuple(arr.shape)
                raise ValueError(f"weight {name!r} must have shape {want} (got {got})")
            target.copy_(arr)
        if hidden_names & set(weights):
            if not isinstance(self.hidden_cell, NeutralHidden):
                raise ValueError("hidden_* weights need a neutral hidden cell spec")
            self.hidden_cell.load_canonical(weights)

    @torch.no_grad()
    def canonical_weights(self) -> dict[str, np.ndarray]:
        """The weights in :mod:`lmu.reference`'s names and layouts (float64 NumPy)."""
        out: dict[str, np.ndarray] = {}
        for name in ("kernel", "recurrent_kernel", "bias", "theta_inv", "A", "B"):
            t = getattr(self, name)
            if t is not None:
                out[name] = t.detach().to("cpu", torch.float64).numpy().copy()
        if isinstance(self.hidden_cell, NeutralHidden):
            out.update(self.hidden_cell.canonical_weights())
        return out

    def _apply(self, fn: Any, recurse: bool = True) -> LMUBase:  # type: ignore[override]
        self._cache.clear()
        self._fused_plan = None
        self._theta_key = None
        return super()._apply(fn, recurse)
