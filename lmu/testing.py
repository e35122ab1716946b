"""A conformance kit: test any lmu backend, ours or a third party's, against lmu.reference.

A backend test module needs two lines::

    import lmu.testing

    tests = lmu.testing.make_conformance_tests("mybackend")
    test_matches_reference, test_bad_configs, test_bad_inputs, test_bad_weights = tests

The generated tests build every layer kind (LMU, LMUCell, LMUFeedforward) through
:func:`lmu.get_layer` in float64, load random canonical weights with the backend's
:meth:`lmu.Backend.import_weights`, feed deterministic inputs (and initial states) through
:meth:`lmu.Backend.run`, and compare outputs and final states with :func:`lmu.reference.run`
(to 1e-10 relative to the largest value), over a pairwise-covering set of option combinations
(:func:`conformance_cases`); they also check the export round trip and that bad configs, bad
inputs and bad weights raise ValueError naming the problem.

A backend declares what it supports by narrowing the factors, e.g.
``make_conformance_tests("mine", supported={"kind": ("LMU",), "hidden_cell": (None, "lstm")})``.

This module needs pytest (for the generated tests) but never imports a framework.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import random
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from . import reference
from ._registry import Backend, get_backend, get_layer
from .config import LMUConfig
from .system import legendre_system

__all__ = [
    "FACTORS",
    "Case",
    "ConformanceTests",
    "case_weights",
    "check_bad_configs",
    "check_bad_inputs",
    "check_bad_weights",
    "check_case",
    "conformance_cases",
    "make_conformance_tests",
]

#: The option factors and every value they take; ``supported=`` narrows them.
FACTORS: dict[str, tuple[Any, ...]] = {
    "kind": ("LMU", "LMUCell", "LMUFeedforward"),
    "memory_d": (1, 2),
    "order": (1, 5),
    "theta": ("integer", "non_integer", "per_dim"),
    "hidden_cell": (None, "dense", "simple_rnn", "gru", "lstm"),
    "activation": ("tanh", "relu"),
    "hidden_to_memory": (False, True),
    "memory_to_memory": (False, True),
    "input_to_hidden": (False, True),
    "use_bias": (False, True),
    "kernel": (True, False),
    "discretizer": ("zoh", "euler", "bilinear"),
    "return_sequences": (False, True),
    "conv_mode": ("auto", "fft", "raw", "last_state", "recurrent"),
    "trainable": ("none", "theta", "A_B"),
    "dropout": (0.0, 0.3),
    "initial_state": (False, True),
    "steps": (1, 9, 70),
}
_THETAS: dict[str, Any] = {"integer": 12.0, "non_integer": 17.35, "per_dim": (9.5, 23.0)}
_UNITS = 3
_INPUT_D = 3
_BATCH = 2
_LTI_MODES = ("fft", "raw", "last_state")


@dataclasses.dataclass(frozen=True)
class Case:
    """One conformance case.

    Attributes
    ----------
    id : str
        A readable test id.
    kind : {"LMU", "LMUCell", "LMUFeedforward"}
    config : LMUConfig
        With ``input_d`` set.
    input_shape : tuple of int
        (batch, time, features).
    initial_state : bool
        Whether random initial states are given.
    seed : int
        Seed of the weights, inputs and states.
    factors : dict
        The factor values the case was made from.
    """

    id: str
    kind: str
    config: LMUConfig
    input_shape: tuple[int, int, int]
    initial_state: bool
    seed: int
    factors: Mapping[str, Any]


def _repair(case: dict[str, Any]) -> dict[str, Any] | None:
    """Make a factor combination valid (or None to drop it)."""
    c = dict(case)
    if c["hidden_cell"] is None:
        c["hidden_to_memory"] = False  # input_to_hidden stays: the output is then [m_t, x_t]
        c["activation"] = "tanh"
    if c["kind"] == "LMUCell":
        c["return_sequences"], c["conv_mode"] = False, "auto"
    if c["kind"] == "LMUFeedforward":
        c["hidden_to_memory"] = c["memory_to_memory"] = False
        if c["conv_mode"] == "recurrent":
            return None
    if not c["kernel"]:
        c["hidden_to_memory"] = False  # then input_d = memory_d (see _config)
    lti = not (c["hidden_to_memory"] or c["memory_to_memory"])
    if c["conv_mode"] in _LTI_MODES and not lti:
        return None
    if c["conv_mode"] == "last_state" and (
        c["return_sequences"] or c["hidden_cell"] in ("simple_rnn", "gru", "lstm")
    ):
        return None
    return c


def _config(c: Mapping[str, Any]) -> LMUConfig:
    md = c["memory_d"]
    theta = _THETAS[c["theta"]]
    if isinstance(theta, tuple):
        theta = theta[:md]
    hidden = (
        None
        if c["hidden_cell"] is None
        else {"type": c["hidden_cell"], "units": _UNITS, "activation": c["activation"]}
    )
    extra: dict[str, Any] = {}
    if c["dropout"]:  # off at inference: the output must not change
        extra["dropout"] = c["dropout"]
        if c["memory_to_memory"]:
            extra["recurrent_dropout"] = c["dropout"]
    if c["kind"] != "LMUCell":
        extra.update(return_sequences=c["return_sequences"], conv_mode=c["conv_mode"])
        if c["conv_mode"] == "raw":
            extra["truncate_ir"] = None  # exact: truncation is an approximation by design
    return LMUConfig(
        memory_d=md,
        order=c["order"],
        theta=theta,
        hidden_cell=hidden,
        hidden_to_memory=c["hidden_to_memory"],
        memory_to_memory=c["memory_to_memory"],
        input_to_hidden=c["input_to_hidden"],
        use_bias=c["use_bias"],
        kernel_initializer="glorot_uniform" if c["kernel"] else None,
        discretizer=c["discretizer"],
        trainable_theta=c["trainable"] == "theta",
        trainable_A=c["trainable"] == "A_B",
        trainable_B=c["trainable"] == "A_B",
        input_d=_INPUT_D if c["kernel"] else md,
        **extra,
    )


def _case_id(index: int, c: Mapping[str, Any]) -> str:
    parts = [f"{index:02d}", c["kind"], f"d{c['memory_d']}o{c['order']}", str(c["theta"])]
    if c["hidden_cell"] is not None:
        parts.append(f"{c['hidden_cell']}:{c['activation']}")
    for flag, short in (
        ("hidden_to_memory", "h2m"),
        ("memory_to_memory", "m2m"),
        ("input_to_hidden", "i2h"),
        ("use_bias", "bias"),
        ("return_sequences", "seq"),
        ("initial_state", "state"),
    ):
        if c[flag]:
            parts.append(short)
    if not c["kernel"]:
        parts.append("nokernel")
    if c["trainable"] != "none":
        parts.append(f"train_{c['trainable']}")
    if c["dropout"]:
        parts.append(f"dropout{c['dropout']}")
    parts += [c["discretizer"], c["conv_mode"], f"T{c['steps']}"]
    return "-".join(parts)


def _pairwise(
    factors: Mapping[str, Sequence[Any]],
    repair: Callable[[dict[str, Any]], dict[str, Any] | None],
    seed: int,
) -> list[dict[str, Any]]:
    """Greedy pairwise covering: every pair of factor values some valid case has, at least once."""
    rng = random.Random(seed)
    names = list(factors)

    def pairs(c: Mapping[str, Any]) -> set[tuple[str, str, str, str]]:
        return {(a, repr(c[a]), b, repr(c[b])) for a, b in itertools.combinations(names, 2)}

    pool = []
    for _ in range(1500):
        cand = repair({n: rng.choice(list(v)) for n, v in factors.items()})
        if cand is not None:
            pool.append((cand, pairs(cand)))
    if not pool:
        raise ValueError(f"no valid case can be made from the supported factors {dict(factors)}")
    reachable: set[tuple[str, str, str, str]] = set().union(*(p for _, p in pool))
    covered: set[tuple[str, str, str, str]] = set()
    cases: list[dict[str, Any]] = []
    while covered != reachable:
        best, best_pairs = max(pool, key=lambda cp: len(cp[1] - covered))
        cases.append(best)
        covered |= best_pairs
    return cases


def conformance_cases(
    supported: Mapping[str, Sequence[Any]] | None = None, seed: int = 0
) -> list[Case]:
    """The conformance cases for the option values a backend supports.

    Parameters
    ----------
    supported : mapping of factor name to values, optional
        Narrows :data:`FACTORS` (e.g. ``{"conv_mode": ("auto", "recurrent")}``); a factor
        left out takes all its values.
    seed : int
        Seed of the case selection (and of each case's data).

    Returns
    -------
    list of Case
        Deterministic; every pair of (valid) factor values appears in some case.

    Raises
    ------
    ValueError
        For an unknown factor or value.
    """
    factors: dict[str, tuple[Any, ...]] = dict(FACTORS)
    for name, values in (supported or {}).items():
        if name not in FACTORS:
            raise ValueError(f"unknown factor {name!r} in supported; factors: {list(FACTORS)}")
        values = tuple(values)
        bad = [v for v in values if v not in FACTORS[name]]
        if bad or not values:
            raise ValueError(
                f"supported[{name!r}] must be a non-empty subset of {FACTORS[name]} (got {values})"
            )
        factors[name] = values
    return list(_cases(tuple(factors.items()), seed))


@functools.lru_cache(maxsize=16)
def _cases(factors: tuple[tuple[str, tuple[Any, ...]], ...], seed: int) -> tuple[Case, ...]:
    out = []
    for i, c in enumerate(_pairwise(dict(factors), _repair, seed)):
        config = _config(c)
        input_d = int(config.input_d or _INPUT_D)
        out.append(
            Case(
                id=_case_id(i, c),
                kind=c["kind"],
                config=config,
                input_shape=(_BATCH, int(c["steps"]), input_d),
                initial_state=bool(c["initial_state"]),
                seed=seed * 1000 + i,
                factors=c,
            )
        )
    return tuple(out)


def case_weights(config: LMUConfig, input_d: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random canonical weights, with theta_inv, A and B (when trainable) moved off their
    initial values, as after training.

    Parameters
    ----------
    config : LMUConfig
        With a neutral hidden cell or none.
    input_d : int
        Input features.
    seed : int

    Returns
    -------
    dict of str to ndarray (float64)
        The names and shapes of :func:`lmu.weights.canonical_shapes`.
    """
    w = reference.random_weights(config, input_d, seed=seed)
    rng = np.random.default_rng(seed + 7919)
    if config.trainable_theta:
        inv = 1.0 / (np.asarray(config.thetas) * rng.uniform(0.8, 1.25, config.memory_d))
        w["theta_inv"] = inv if config.per_dim_theta else np.asarray(inv[0])
    A, B = legendre_system(config.order)
    if config.trainable_A:
        w["A"] = A + 0.05 * rng.normal(size=A.shape)
    if config.trainable_B:
        w["B"] = B + 0.05 * rng.normal(size=B.shape)
    return w


def _backend(backend: str | Backend) -> Backend:
    return backend if isinstance(backend, Backend) else get_backend(backend)


def _build(impl: Backend, kind: str, options: Mapping[str, Any]) -> Any:
    """A float64 layer through :func:`lmu.get_layer` (or ``make_layer`` for a backend object
    that is not registered)."""
    try:
        registered = get_backend(impl.name) is impl
    except (ValueError, ImportError):
        registered = False
    if registered:
        return get_layer(kind, backend=impl.name, **options, **impl.float64_kwargs())
    return impl.make_layer(kind, LMUConfig(**options), **impl.float64_kwargs())


def _float64_layer(impl: Backend, kind: str, config: LMUConfig) -> Any:
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    return _build(impl, kind, fields)


def _max_error(actual: Any, expected: np.ndarray, what: str) -> float:
    a = np.asarray(actual, dtype=np.float64)
    if a.shape != expected.shape:
        raise AssertionError(f"{what}: shape {a.shape}, expected {expected.shape}")
    if not expected.size:
        return 0.0
    scale = max(1.0, float(np.max(np.abs(expected))))
    return float(np.max(np.abs(a - expected))) / scale


def check_case(backend: str | Backend, case: Case, tol: float = 1e-10) -> dict[str, float]:
    """Run one case in the backend and in :func:`lmu.reference.run`; compare.

    Builds the layer with :func:`lmu.get_layer` in float64, imports :func:`case_weights`,
    checks that the layer reports the config it was built with and that exporting gives the
    weights back, runs the backend on a deterministic input (and
    initial state) and compares the outputs and every final state.

    Parameters
    ----------
    backend : str or Backend
    case : Case
    tol : float
        Largest allowed error relative to ``max(1, max |expected|)``.

    Returns
    -------
    dict of str to float
        The relative errors ("output", "state[0]", ...).

    Raises
    ------
    AssertionError
        Naming the case, what differs and by how much.
    """
    impl = _backend(backend)
    config = case.config
    batch, steps, input_d = case.input_shape
    weights = case_weights(config, input_d, case.seed)
    rng = np.random.default_rng(case.seed + 1)
    x = rng.normal(size=case.input_shape)
    state = None
    if case.initial_state:
        state = [0.5 * rng.normal(size=(batch, n)) for n in reference.state_sizes(config)]
    layer = _float64_layer(impl, case.kind, config)
    impl.import_weights(layer, weights)
    exported = impl.export_weights(layer)
    problems = []
    reported = impl.layer_config(layer)
    if reported != config:
        diff = {
            f.name: (getattr(reported, f.name), getattr(config, f.name))
            for f in dataclasses.fields(config)
            if getattr(reported, f.name) != getattr(config, f.name)
        }
        problems.append(f"layer_config differs from the config built with: {diff}")
    if set(exported) != set(weights):
        problems.append(
            f"export_weights gave names {sorted(exported)} after importing {sorted(weights)}"
        )
    else:
        for name, value in weights.items():
            got = np.asarray(exported[name], dtype=np.float64)
            if got.shape != value.shape or not np.allclose(got, value, rtol=0, atol=1e-12):
                problems.append(f"export_weights changed {name!r} (shape {got.shape})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # euler's stability note
        out, states = impl.run(layer, x, state)
        ref, ref_states = reference.run(config, weights, x, state)
    expected = ref if (case.kind == "LMUCell" or config.return_sequences) else ref[:, -1]
    errors: dict[str, float] = {}
    try:
        errors["output"] = _max_error(out, expected, "output")
        if len(states) != len(ref_states):
            raise AssertionError(f"{len(states)} final states, expected {len(ref_states)}")
        for i, (got, exp) in enumerate(zip(states, ref_states, strict=True)):
            errors[f"state[{i}]"] = _max_error(got, exp, f"state[{i}]")
    except AssertionError as exc:
        problems.append(str(exc))
    problems += [f"{k}: relative error {v:.3g} > {tol:g}" for k, v in errors.items() if v > tol]
    if problems:
        raise AssertionError(f"backend {impl.name!r}, case {case.id}: " + "; ".join(problems))
    return errors


def _expect_value_error(
    fn: Callable[[], Any], what: str, mention: Sequence[str], problems: list[str]
) -> None:
    """Record a problem unless ``fn`` raises ValueError whose message has every pattern."""
    try:
        fn()
    except ValueError as exc:
        msg = str(exc)
        missing = [p for p in mention if not re.search(p, msg, re.IGNORECASE)]
        if missing:
            problems.append(f"{what}: the ValueError does not mention {missing}: {msg!r}")
    except Exception as exc:  # noqa: BLE001 - any other type is the finding
        problems.append(f"{what}: raised {type(exc).__name__} instead of ValueError: {exc}")
    else:
        problems.append(f"{what}: no error")


def _report(impl: Backend, title: str, problems: list[str]) -> None:
    if problems:
        raise AssertionError(f"backend {impl.name!r}, {title}:\n  " + "\n  ".join(problems))


#: (kind, options, patterns the message must contain)
BAD_CONFIGS: tuple[tuple[str, dict[str, Any], tuple[str, ...]], ...] = (
    ("LMU", {"memory_d": 0}, ("memory_d", "0")),
    ("LMU", {"order": -2}, ("order", "-2")),
    ("LMU", {"theta": -1.0}, ("theta", "-1")),
    ("LMU", {"theta": (5.0, 6.0, 7.0)}, ("theta", "memory_d")),
    ("LMU", {"hidden_cell": {"type": "transformer", "units": 3}}, ("type", "transformer")),
    ("LMU", {"hidden_cell": {"type": "lstm", "units": 0}}, ("units",)),
    ("LMU", {"discretizer": "rk4"}, ("discretizer", "rk4")),
    ("LMU", {"memory_to_memory": True, "conv_mode": "fft"}, ("conv_mode",)),
    ("LMU", {"return_sequences": True, "conv_mode": "last_state"}, ("last_state",)),
    ("LMU", {"hidden_to_memory": True}, ("hidden_to_memory",)),
    ("LMU", {"dropout": 1.5}, ("dropout", "1.5")),
    ("LMU", {"kernel_initializer": None}, ("input_d", "memory_d")),
    ("LMUCell", {"order": 0}, ("order",)),
    ("LMUFeedforward", {"memory_to_memory": True}, ("memory_to_memory",)),
    ("LMUFeedforward", {"conv_mode": "recurrent"}, ("recurrent",)),
)


def check_bad_configs(backend: str | Backend) -> None:
    """Bad options raise ValueError naming the option (and the value).

    Builds through :func:`lmu.get_layer` (the core validates) and through
    :meth:`lmu.Backend.make_layer` with a valid config the layer kind refuses
    (LMUFeedforward with memory_to_memory or conv_mode="recurrent").

    Raises
    ------
    AssertionError
        Listing every case that did not raise, raised another type, or did not name the
        problem.
    """
    impl = _backend(backend)
    base = {"memory_d": 2, "order": 4, "theta": 10.0, "input_d": _INPUT_D}
    f64 = impl.float64_kwargs()
    problems: list[str] = []
    for kind, bad, mention in BAD_CONFIGS:
        options = {**base, **bad}

        def build(kind: str = kind, options: dict[str, Any] = options) -> Any:
            return _build(impl, kind, options)

        _expect_value_error(build, f"{kind}({bad})", mention, problems)
    for kind, bad, mention in BAD_CONFIGS:
        if kind != "LMUFeedforward":
            continue
        config = LMUConfig(**{**base, **bad})

        def make(kind: str = kind, config: LMUConfig = config) -> Any:
            return impl.make_layer(kind, config, **f64)

        _expect_value_error(make, f"make_layer({kind}, {bad})", mention, problems)
    _report(impl, "bad configs", problems)


def _small_layer(impl: Backend, kind: str) -> tuple[Any, LMUConfig]:
    config = LMUConfig(
        memory_d=2,
        order=4,
        theta=10.0,
        hidden_cell={"type": "lstm" if kind != "LMUFeedforward" else "dense", "units": _UNITS},
        input_d=_INPUT_D,
    )
    layer = _float64_layer(impl, kind, config)
    impl.import_weights(layer, reference.random_weights(config, _INPUT_D))
    return layer, config


def _bad_inputs(impl: Backend, kind: str, problems: list[str]) -> None:
    layer, config = _small_layer(impl, kind)
    sizes = reference.state_sizes(config)
    rng = np.random.default_rng(0)

    def call(x_shape: tuple[int, ...], state: list[np.ndarray] | None = None) -> Any:
        return impl.run(layer, rng.normal(size=x_shape), state)

    full = (_BATCH, 5, _INPUT_D)
    wide = (_BATCH, 5, _INPUT_D + 1)
    _expect_value_error(lambda: call(wide), f"{kind}: input {wide}", [r"\b4\b"], problems)
    if kind != "LMUCell":
        flat, empty = (_BATCH, _INPUT_D), (_BATCH, 0, _INPUT_D)
        _expect_value_error(lambda: call(flat), f"{kind}: input {flat}", [r"\(2, 3\)"], problems)
        _expect_value_error(lambda: call(empty), f"{kind}: input {empty}", [r"\b0\b"], problems)
    n = sizes[0] + 1
    bad_size = [np.zeros((_BATCH, n)), *(np.zeros((_BATCH, k)) for k in sizes[1:])]
    _expect_value_error(
        lambda: call(full, bad_size), f"{kind}: memory state of size {n}", [rf"\b{n}\b"], problems
    )
    _expect_value_error(
        lambda: call(full, [np.zeros((_BATCH, sizes[0]))]),
        f"{kind}: 1 initial state instead of {len(sizes)}",
        ["state"],
        problems,
    )


def check_bad_inputs(backend: str | Backend, kinds: Sequence[str] | None = None) -> None:
    """Bad inputs and initial states raise ValueError naming what is wrong.

    For each layer kind: an input with the wrong number of features, of the wrong rank, with
    no time steps, and initial states of the wrong size or number, through
    :meth:`lmu.Backend.run`.

    Parameters
    ----------
    backend : str or Backend
    kinds : sequence of str, optional
        Layer kinds to check (all by default).

    Raises
    ------
    AssertionError
        Listing every case that did not raise a ValueError naming the bad value.
    """
    impl = _backend(backend)
    problems: list[str] = []
    for kind in kinds or FACTORS["kind"]:
        _bad_inputs(impl, kind, problems)
    _report(impl, "bad inputs", problems)


def check_bad_weights(backend: str | Backend) -> None:
    """Importing a weight dict with a missing or unexpected key or a wrong shape raises
    ValueError naming the key (and the expected and given shapes).

    Raises
    ------
    AssertionError
        Listing every case that did not raise such a ValueError.
    """
    impl = _backend(backend)
    problems: list[str] = []
    layer, config = _small_layer(impl, "LMU")
    good = reference.random_weights(config, _INPUT_D)
    missing = {k: v for k, v in good.items() if k != "hidden_recurrent_kernel"}
    extra = {**good, "recurrent_kernel": np.zeros((8, 2))}
    shape = {**good, "kernel": np.zeros((_INPUT_D + 1, 2))}
    cases: list[tuple[str, dict[str, np.ndarray], list[str]]] = [
        ("missing hidden_recurrent_kernel", missing, ["hidden_recurrent_kernel", "missing"]),
        ("unexpected recurrent_kernel", extra, ["recurrent_kernel", "memory_to_memory"]),
        ("kernel of shape (4, 2)", shape, ["kernel", r"\(3, 2\)", r"\(4, 2\)"]),
    ]
    for what, weights, mention in cases:

        def load(w: dict[str, np.ndarray] = weights) -> None:
            impl.import_weights(layer, w)

        _expect_value_error(load, what, mention, problems)
    _report(impl, "bad weights", problems)


class ConformanceTests(NamedTuple):
    """The pytest test functions :func:`make_conformance_tests` returns (assign them at module
    level in a test file so that pytest collects them)."""

    test_matches_reference: Callable[..., None]
    test_bad_configs: Callable[[], None]
    test_bad_inputs: Callable[..., None]
    test_bad_weights: Callable[[], None]


def make_conformance_tests(
    backend: str,
    supported: Mapping[str, Sequence[Any]] | None = None,
    tol: float = 1e-10,
    xfail: Mapping[str, str] | None = None,
    seed: int = 0,
) -> ConformanceTests:
    """pytest test functions running the kit for a backend.

    Parameters
    ----------
    backend : str
        The backend's registered name.
    supported : mapping, optional
        See :func:`conformance_cases`.
    tol : float
        See :func:`check_case`.
    xfail : mapping of str to str, optional
        Known failures: a case id (or a regular expression matching ids), "bad_configs",
        "bad_weights" or "bad_inputs[KIND]", mapped to the reason (strict: a test that passes
        is reported as XPASS(strict), a failure).
    seed : int
        See :func:`conformance_cases`.

    Returns
    -------
    ConformanceTests
        ``test_matches_reference`` (parametrised over the cases), ``test_bad_configs``,
        ``test_bad_inputs``, ``test_bad_weights``.

    Examples
    --------
    In ``tests/test_mybackend_conformance.py``::

        import lmu.testing

        (test_matches_reference, test_bad_configs, test_bad_inputs,
         test_bad_weights) = lmu.testing.make_conformance_tests("mybackend")
    """
    import pytest

    xfail = dict(xfail or {})
    cases = conformance_cases(supported, seed)

    def marks(name: str) -> list[Any]:
        for key, reason in xfail.items():
            if key == name or (key not in _CHECKS and re.search(key, name)):
                return [pytest.mark.xfail(reason=reason, strict=True)]
        return []

    params = [pytest.param(c, id=c.id, marks=marks(c.id)) for c in cases]

    @pytest.mark.parametrize("case", params)
    def test_matches_reference(case: Case) -> None:
        check_case(backend, case, tol)

    def test_bad_configs() -> None:
        check_bad_configs(backend)

    kinds = [pytest.param(k, id=k, marks=marks(f"bad_inputs[{k}]")) for k in FACTORS["kind"]]

    @pytest.mark.parametrize("kind", kinds)
    def test_bad_inputs(kind: str) -> None:
        check_bad_inputs(backend, kinds=(kind,))

    def test_bad_weights() -> None:
        check_bad_weights(backend)

    for name, fn in (("bad_configs", test_bad_configs), ("bad_weights", test_bad_weights)):
        for mark in marks(name):
            mark(fn)
    return ConformanceTests(
        test_matches_reference, test_bad_configs, test_bad_inputs, test_bad_weights
    )


_CHECKS = (
    "bad_configs",
    "bad_weights",
    *(f"bad_inputs[{k}]" for k in FACTORS["kind"]),
)
