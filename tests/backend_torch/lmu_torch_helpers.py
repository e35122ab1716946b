"""Helpers for the torch backend tests: layers with reference weights, reference runs."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lmu import reference  # noqa: E402

TOL = 1e-10


def build(cls: Any, input_size: int = 3, seed: int = 0, **options: Any) -> Any:
    """A float64 layer with random canonical weights (neutral or no hidden cell)."""
    torch.manual_seed(seed)
    layer = cls(input_size, dtype=torch.float64, **options)
    if not isinstance(layer.config.hidden_cell, torch.nn.Module):
        layer.load_canonical(reference.random_weights(layer.config, input_size, seed=seed))
    else:
        rng = np.random.default_rng(seed)
        w = {}
        for name in ("kernel", "recurrent_kernel", "bias"):
            p = getattr(layer, name)
            if p is not None:
                fan_in = p.shape[0] if p.dim() > 1 else 1
                w[name] = rng.normal(0, 0.5 / np.sqrt(fan_in), size=tuple(p.shape))
        layer.load_canonical(w)
    return layer


def native_hidden_fn(layer: Any) -> Callable[..., Any] | None:
    """A NumPy hidden_fn running a native torch hidden cell, for lmu.reference.run."""
    module = layer.hidden_cell
    if not isinstance(module, torch.nn.Module) or type(module).__name__ == "NeutralHidden":
        return None
    hidden = layer._hidden

    def fn(inp: np.ndarray, states: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        with torch.no_grad():
            out, new = hidden.step(torch.tensor(inp), [torch.tensor(np.asarray(s)) for s in states])
        return out.numpy(), [s.numpy() for s in new]

    return fn


def reference_run(
    layer: Any, x: np.ndarray, state: Sequence[np.ndarray] | None = None, **kwargs: Any
) -> tuple[np.ndarray, list[np.ndarray]]:
    """lmu.reference.run with the layer's own weights; output per return_sequences."""
    cfg = layer.config
    out, states = reference.run(
        cfg,
        layer.canonical_weights(),
        x,
        state,
        hidden_fn=native_hidden_fn(layer),
        hidden_state_shapes=layer.state_sizes[1:],
        **kwargs,
    )
    return (out if cfg.return_sequences else out[:, -1]), states


def assert_close(actual: Any, expected: Any, tol: float = TOL, what: str = "") -> None:
    """Max abs error below tol * max(1, max |expected|)."""
    a = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    e = np.asarray(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    scale = max(1.0, float(np.max(np.abs(e))) if e.size else 1.0)
    err = float(np.max(np.abs(a - e))) if e.size else 0.0
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol * scale:.3g}"


def assert_states_close(actual: Sequence[Any], expected: Sequence[Any], tol: float = TOL) -> None:
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        assert_close(a, e, tol, f"state[{i}]")


def pairwise(
    params: dict[str, list[Any]],
    repair: Callable[[dict[str, Any]], dict[str, Any] | None],
    seed: int = 0,
    candidates: int = 60,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """A small set of cases covering every pair of parameter values that ``repair`` allows.

    Greedy: each new case is the random candidate (after ``repair``, which may change values
    to satisfy constraints or return None to reject) that covers the most uncovered pairs.
    """
    rng = random.Random(seed)
    names = list(params)

    def pairs(case: dict[str, Any]) -> set[tuple[Any, ...]]:
        return {(a, repr(case[a]), b, repr(case[b])) for a, b in itertools.combinations(names, 2)}

    pool = []
    for _ in range(4000):
        cand = repair({n: rng.choice(v) for n, v in params.items()})
        if cand is not None:
            pool.append(cand)
    reachable = set().union(*(pairs(c) for c in pool))
    covered: set[tuple[Any, ...]] = set()
    cases: list[dict[str, Any]] = []
    while covered != reachable and len(cases) < limit:
        best = max(
            rng.sample(pool, min(candidates, len(pool))), key=lambda c: len(pairs(c) - covered)
        )
        if not pairs(best) - covered:
            best = next(c for c in pool if pairs(c) - covered)
        cases.append(best)
        covered |= pairs(best)
    return cases
