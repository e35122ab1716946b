"""lmu.testing against fake NumPy backends: it passes a correct one and catches broken ones.

The fake backend's layer *is* lmu.reference, so every case must pass; each broken variant has
one deliberate bug (a transposed memory update, a gate-order slip on import, an ignored
initial state, ...) that the kit must report.  Also: portable weights through the fake
backend (lmu.export_weights / lmu.import_weights, the config check, backend lookup).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

import lmu
import lmu.testing
import lmu.weights
from lmu import _registry, reference
from lmu.config import LMUConfig

# -- the fake backend ---------------------------------------------------------------------------


class FakeLayer:
    """A 'layer' holding a config and canonical weights; running it is lmu.reference.run."""

    def __init__(self, kind: str, config: LMUConfig) -> None:
        if kind == "LMUFeedforward":
            if not config.is_lti:
                raise ValueError(
                    "LMUFeedforward needs a linear memory: hidden_to_memory and "
                    f"memory_to_memory must be False (got {config.hidden_to_memory}, "
                    f"{config.memory_to_memory})"
                )
            if config.conv_mode == "recurrent":
                raise ValueError("LMUFeedforward cannot use conv_mode='recurrent'")
        if config.input_d is None:
            raise ValueError("the fake backend needs input_d")
        self.kind = kind
        self.config = config
        self.weights = lmu.testing.case_weights(config, config.input_d, seed=123)


class FakeBackend(lmu.Backend):
    """A correct backend: lmu.reference behind the adapter methods."""

    name = "fake"
    description = "lmu.reference as a backend (tests)"
    module = "numpy"

    def layer_class(self, kind: str) -> type:
        return FakeLayer

    def make_layer(self, kind: str, config: LMUConfig, **kwargs: Any) -> Any:
        return FakeLayer(kind, config)

    def layer_config(self, layer: Any) -> LMUConfig:
        return layer.config

    def export_weights(self, layer: Any) -> dict[str, np.ndarray]:
        return {k: np.array(v, dtype=np.float64) for k, v in layer.weights.items()}

    def import_weights(self, layer: Any, weights: Mapping[str, Any]) -> None:
        expected = lmu.weights.canonical_shapes(layer.config, layer.config.input_d)
        layer.weights = lmu.weights.check_weights(weights, expected, "the fake layer")

    def weights_for_run(self, layer: Any) -> dict[str, np.ndarray]:
        return layer.weights

    def run(
        self, layer: Any, x: Any, initial_state: Sequence[Any] | None = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        out, states = reference.run(layer.config, self.weights_for_run(layer), x, initial_state)
        if layer.kind != "LMUCell" and not layer.config.return_sequences:
            out = out[:, -1]
        return out, states

    def float64_kwargs(self) -> dict[str, Any]:
        return {}


class TransposedMemory(FakeBackend):
    """Bug: the memory update uses Ad instead of Ad^T (transposing A transposes Ad)."""

    name = "fake-transposed"

    def weights_for_run(self, layer: Any) -> dict[str, np.ndarray]:
        w = dict(layer.weights)
        w["A"] = np.asarray(w.get("A", lmu.legendre_system(layer.config.order)[0])).T
        return w


class SwappedGates(FakeBackend):
    """Bug: import swaps the first two gate blocks of the hidden weights (a layout slip)."""

    name = "fake-swapped-gates"

    def import_weights(self, layer: Any, weights: Mapping[str, Any]) -> None:
        super().import_weights(layer, weights)
        kind = layer.config.hidden_cell_type
        if kind in ("gru", "lstm"):
            u = layer.config.hidden_cell["units"]
            for name in ("hidden_kernel", "hidden_recurrent_kernel", "hidden_bias"):
                a = layer.weights[name]
                layer.weights[name] = np.concatenate(
                    [a[..., u : 2 * u], a[..., :u], a[..., 2 * u :]], axis=-1
                )


class IgnoresInitialState(FakeBackend):
    """Bug: the initial state is dropped."""

    name = "fake-no-state"

    def run(self, layer: Any, x: Any, initial_state: Any = None) -> Any:
        return super().run(layer, x, None)


class LastStepAlways(FakeBackend):
    """Bug: return_sequences is ignored (only the last step comes back)."""

    name = "fake-last-step"

    def run(self, layer: Any, x: Any, initial_state: Any = None) -> Any:
        out, states = super().run(layer, x, initial_state)
        return (out[:, -1] if out.ndim == 3 else out), states


class Float32(FakeBackend):
    """Bug: computes in float32."""

    name = "fake-float32"

    def run(self, layer: Any, x: Any, initial_state: Any = None) -> Any:
        out, states = super().run(layer, np.asarray(x, np.float32), initial_state)
        return out.astype(np.float32), [s.astype(np.float32) for s in states]


class DropoutAtInference(FakeBackend):
    """Bug: dropout stays on at inference."""

    name = "fake-dropout"

    def run(self, layer: Any, x: Any, initial_state: Any = None) -> Any:
        rate = layer.config.dropout
        if rate:
            keep = np.random.default_rng(0).random(np.shape(x)[::2]) >= rate
            x = np.asarray(x) * keep[:, None, :] / (1 - rate)
        return super().run(layer, x, initial_state)


class LenientInputs(FakeBackend):
    """Bug: inputs with extra features and states of any size are silently cut to fit."""

    name = "fake-lenient-inputs"

    def run(self, layer: Any, x: Any, initial_state: Any = None) -> Any:
        x = np.asarray(x)
        if x.ndim == 3 and x.shape[1] > 0:
            x = x[..., : layer.config.input_d]
        if initial_state is not None:
            initial_state = None
        return super().run(layer, x, initial_state)


class LenientWeights(FakeBackend):
    """Bug: import takes whatever it is given."""

    name = "fake-lenient-weights"

    def import_weights(self, layer: Any, weights: Mapping[str, Any]) -> None:
        layer.weights = {k: np.asarray(v) for k, v in weights.items()}


class NoFeedforwardCheck(FakeBackend):
    """Bug: LMUFeedforward accepts a non-linear memory."""

    name = "fake-ff-lenient"

    def make_layer(self, kind: str, config: LMUConfig, **kwargs: Any) -> Any:
        return FakeLayer("LMU" if kind == "LMUFeedforward" else kind, config)


BROKEN = (
    TransposedMemory,
    SwappedGates,
    IgnoresInitialState,
    LastStepAlways,
    Float32,
    DropoutAtInference,
)
ALL = (FakeBackend, *BROKEN, LenientInputs, LenientWeights, NoFeedforwardCheck)


@pytest.fixture(autouse=True, scope="module")
def _fake_backends() -> Any:
    """Register the fake backends for this module's tests only."""
    saved = dict(_registry._runtime)
    for cls in ALL:
        lmu.register_backend(cls.name, cls, clobber=True)
    yield
    _registry._runtime.clear()
    _registry._runtime.update(saved)


CASES = lmu.testing.conformance_cases()

# -- the kit's own pytest entry, for the correct fake backend ----------------------------------

(
    test_matches_reference,
    test_bad_configs,
    test_bad_inputs,
    test_bad_weights,
) = lmu.testing.make_conformance_tests("fake")


# -- the kit catches each broken backend -------------------------------------------------------


def _failures(backend: str) -> list[str]:
    failed = []
    for case in CASES:
        try:
            lmu.testing.check_case(backend, case)
        except AssertionError as exc:
            assert case.id in str(exc) and repr(backend) in str(exc)
            failed.append(case.id)
    return failed


@pytest.mark.parametrize("cls", BROKEN, ids=lambda c: c.__name__)
def test_broken_backend_fails_some_cases(cls: type[FakeBackend]) -> None:
    failed = _failures(cls.name)
    assert failed, f"the kit passed {cls.__name__}"
    if cls is SwappedGates:
        gated = [c.id for c in CASES if c.config.hidden_cell_type in ("gru", "lstm")]
        assert set(failed) == set(gated)
    if cls is IgnoresInitialState:
        assert set(failed) == {c.id for c in CASES if c.initial_state}
    if cls is DropoutAtInference:
        assert set(failed) == {c.id for c in CASES if c.config.dropout}
    if cls is LastStepAlways:
        assert set(failed) == {
            c.id for c in CASES if c.kind == "LMUCell" or c.config.return_sequences
        }


def test_transposed_memory_message_names_the_difference() -> None:
    case = next(c for c in CASES if c.config.order > 1 and c.config.hidden_cell is None)
    with pytest.raises(AssertionError, match=r"output: relative error .* > 1e-10"):
        lmu.testing.check_case("fake-transposed", case)


def test_tolerance_is_the_limit() -> None:
    case = next(c for c in CASES if c.input_shape[1] > 1 and c.config.order > 1)
    errors = lmu.testing.check_case("fake-float32", case, tol=1e-3)
    assert 1e-10 < errors["output"] <= 1e-3
    with pytest.raises(AssertionError, match="relative error"):
        lmu.testing.check_case("fake-float32", case, tol=1e-10)


def test_correct_backend_errors_are_exact() -> None:
    for case in CASES:
        errors = lmu.testing.check_case("fake", case)
        assert set(errors) == {"output"} | {
            f"state[{i}]" for i in range(len(reference.state_sizes(case.config)))
        }
        assert max(errors.values()) == 0.0


def test_lenient_inputs_are_caught() -> None:
    with pytest.raises(AssertionError, match=r"input \(2, 5, 4\): no error"):
        lmu.testing.check_bad_inputs("fake-lenient-inputs")
    with pytest.raises(AssertionError, match="memory state of size 9: no error"):
        lmu.testing.check_bad_inputs("fake-lenient-inputs", kinds=("LMU",))


def test_lenient_weights_are_caught() -> None:
    with pytest.raises(AssertionError) as info:
        lmu.testing.check_bad_weights("fake-lenient-weights")
    msg = str(info.value)
    assert "missing hidden_recurrent_kernel: no error" in msg
    assert "unexpected recurrent_kernel: no error" in msg
    assert "kernel of shape (4, 2): no error" in msg


def test_lenient_feedforward_is_caught() -> None:
    with pytest.raises(AssertionError, match=r"LMUFeedforward\(\{'memory_to_memory': True\}\)"):
        lmu.testing.check_bad_configs("fake-ff-lenient")


def test_wrong_error_type_is_reported() -> None:
    class TypeErrors(FakeBackend):
        name = "fake-type-errors"

        def run(self, layer: Any, x: Any, initial_state: Any = None) -> Any:
            if np.shape(x)[-1] != layer.config.input_d:
                raise TypeError("bad x")
            return super().run(layer, x, initial_state)

    with pytest.raises(AssertionError, match="raised TypeError instead of ValueError"):
        lmu.testing.check_bad_inputs(TypeErrors(), kinds=("LMU",))


def test_not_implemented_adapters_name_the_backend() -> None:
    class Bare(lmu.Backend):
        name = "bare"
        module = "numpy"

    for call in (
        lambda b: b.export_weights(None),
        lambda b: b.import_weights(None, {}),
        lambda b: b.run(None, np.zeros((1, 1, 1))),
        lambda b: b.float64_kwargs(),
        lambda b: b.layer_config(None),
    ):
        with pytest.raises(NotImplementedError, match="backend 'bare' does not implement"):
            call(Bare())


# -- the cases -----------------------------------------------------------------------------------


def test_cases_are_deterministic_and_cover_every_value() -> None:
    again = lmu.testing.conformance_cases()
    assert [c.id for c in again] == [c.id for c in CASES]
    assert len(CASES) <= 40
    for name, values in lmu.testing.FACTORS.items():
        seen = {repr(c.factors[name]) for c in CASES}
        assert seen == {repr(v) for v in values}, name


def test_cases_cover_every_valid_pair() -> None:
    names = list(lmu.testing.FACTORS)
    covered = {
        (a, repr(c.factors[a]), b, repr(c.factors[b]))
        for c in CASES
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    }
    for kind in ("LMU", "LMUCell", "LMUFeedforward"):
        for hidden in (None, "dense", "simple_rnn", "gru", "lstm"):
            assert ("kind", repr(kind), "hidden_cell", repr(hidden)) in covered
    for mode in ("fft", "raw", "last_state", "recurrent", "auto"):
        for steps in (1, 9, 70):
            assert ("conv_mode", repr(mode), "steps", repr(steps)) in covered
        assert ("conv_mode", repr(mode), "initial_state", "True") in covered
    assert ("hidden_to_memory", "True", "memory_to_memory", "True") in covered


def test_cases_are_valid_for_their_kind() -> None:
    for case in CASES:
        cfg = case.config
        assert case.input_shape[2] == cfg.input_d
        if case.kind == "LMUFeedforward":
            assert cfg.is_lti and cfg.conv_mode != "recurrent"
        if case.kind == "LMUCell":
            assert cfg.conv_mode == "auto" and not cfg.return_sequences
        if cfg.conv_mode == "raw":
            assert cfg.truncate_ir is None


def test_supported_narrows_the_cases() -> None:
    cases = lmu.testing.conformance_cases(
        supported={"kind": ("LMU",), "hidden_cell": (None, "lstm"), "conv_mode": ("recurrent",)}
    )
    assert {c.kind for c in cases} == {"LMU"}
    assert {c.config.hidden_cell_type for c in cases} == {None, "lstm"}
    assert {c.config.conv_mode for c in cases} == {"recurrent"}


@pytest.mark.parametrize(
    ("supported", "match"),
    [
        ({"colour": ("red",)}, "unknown factor 'colour'"),
        ({"kind": ("GRU",)}, r"supported\['kind'\] must be a non-empty subset"),
        ({"kind": ()}, r"supported\['kind'\] must be a non-empty subset"),
        ({"kind": ("LMUFeedforward",), "conv_mode": ("recurrent",)}, "no valid case"),
    ],
)
def test_supported_is_validated(supported: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        lmu.testing.conformance_cases(supported=supported)


def test_canonical_shapes_agree_with_random_weights() -> None:
    for case in CASES:
        w = lmu.testing.case_weights(case.config, case.input_shape[2], case.seed)
        shapes = lmu.weights.canonical_shapes(case.config, case.input_shape[2])
        assert {k: v.shape for k, v in w.items()} == shapes


def test_make_conformance_tests_marks_xfail() -> None:
    first = CASES[0].id
    tests = lmu.testing.make_conformance_tests(
        "fake", xfail={first: "known", "bad_inputs[LMUCell]": "known too", "bad_weights": "x"}
    )
    params = tests.test_matches_reference.pytestmark[0].args[1]
    marked = {p.id for p in params if p.marks}
    assert marked == {first}
    kinds = tests.test_bad_inputs.pytestmark[0].args[1]
    assert {p.id for p in kinds if p.marks} == {"LMUCell"}
    assert [m.name for m in tests.test_bad_weights.pytestmark] == ["xfail"]
    assert not hasattr(tests.test_bad_configs, "pytestmark")


# -- portable weights through the fake backend ---------------------------------------------------


def _layer(**options: Any) -> FakeLayer:
    base: dict[str, Any] = dict(
        memory_d=2, order=4, theta=10.0, hidden_cell={"type": "gru", "units": 3}, input_d=3
    )
    base.update(options)
    return lmu.get_layer("LMU", backend="fake", **base)


def test_export_import_round_trip() -> None:
    src = _layer(use_bias=True, trainable_theta=True)
    exported = lmu.export_weights(src)
    assert exported["format"] == "lmu-weights-1"
    assert exported["backend"] == "fake" and exported["kind"] is None
    assert LMUConfig.from_dict(exported["config"]) == src.config
    assert set(exported["weights"]) == {
        "kernel",
        "bias",
        "theta_inv",
        "hidden_kernel",
        "hidden_recurrent_kernel",
        "hidden_bias",
    }
    dst = _layer(use_bias=True, trainable_theta=True)
    dst.weights = {}
    lmu.import_weights(dst, exported)
    for name, value in exported["weights"].items():
        np.testing.assert_array_equal(dst.weights[name], value)
    lmu.import_weights(dst, exported["weights"])  # the plain mapping works too


def test_import_checks_the_config() -> None:
    exported = lmu.export_weights(_layer())
    with pytest.raises(ValueError, match=r"order=4 in the weights, 5 in the layer"):
        lmu.import_weights(_layer(order=5), exported)
    with pytest.raises(ValueError, match=r"theta=10.0 in the weights, 11.0 in the layer"):
        lmu.import_weights(_layer(theta=11.0), exported)
    with pytest.raises(ValueError, match="format 'other'"):
        lmu.import_weights(_layer(), {**exported, "format": "other"})
    # fields that do not change what the weights mean may differ
    lmu.import_weights(_layer(return_sequences=True, conv_mode="recurrent"), exported)


def test_import_errors_name_key_and_shapes() -> None:
    layer = _layer()
    good = lmu.export_weights(layer)["weights"]
    with pytest.raises(ValueError, match=r"missing weight\(s\) \['hidden_bias'\]"):
        lmu.import_weights(layer, {k: v for k, v in good.items() if k != "hidden_bias"})
    with pytest.raises(ValueError, match="unexpected weight 'A' .*trainable_A=True"):
        lmu.import_weights(layer, {**good, "A": np.eye(4)})
    with pytest.raises(ValueError, match="'kernal' .*not a canonical weight name"):
        lmu.import_weights(layer, {**good, "kernal": np.eye(4)})
    with pytest.raises(ValueError, match=r"'hidden_bias' must have shape \(2, 9\) \(got \(9,\)\)"):
        lmu.import_weights(layer, {**good, "hidden_bias": np.zeros(9)})
    with pytest.raises(ValueError, match="non-finite"):
        lmu.import_weights(layer, {**good, "kernel": np.full((3, 2), np.nan)})


def test_backend_lookup() -> None:
    layer = _layer()
    assert lmu.weights.layer_backend(layer).name in {c.name for c in ALL}
    assert lmu.weights.layer_backend(layer, "fake").name == "fake"
    with pytest.raises(ValueError, match="no registered lmu backend owns layers of type"):
        lmu.export_weights(object())


def test_native_hidden_cells_are_not_portable() -> None:
    layer = _layer()
    object.__setattr__(layer, "config", LMUConfig(memory_d=2, order=4, theta=10.0))
    object.__setattr__(
        layer.config, "hidden_cell", type("Native", (), {})()
    )  # as a backend would hold a framework cell
    with pytest.raises(lmu.NotSerializableError, match="neutral hidden_cell spec"):
        lmu.export_weights(layer, backend="fake")


def test_import_lmu_does_not_import_the_kit() -> None:
    code = "import sys, lmu; print('pytest' in sys.modules, 'lmu.testing' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_non_canonical_export_is_refused() -> None:
    class ExportsTorchNames(FakeBackend):
        name = "fake-torch-names"

        def export_weights(self, layer: Any) -> dict[str, np.ndarray]:
            w = super().export_weights(layer)
            w["weight_ih_l0"] = w.pop("hidden_kernel").T
            return w

    layer = _layer()
    with pytest.raises(ValueError, match="bug in backend 'fake-torch-names'.*'hidden_kernel'"):
        lmu.export_weights(layer, backend=ExportsTorchNames())


def test_a_wrong_layer_config_is_caught() -> None:
    class ForgetsTheDiscretizer(FakeBackend):
        name = "fake-zoh-config"

        def layer_config(self, layer: Any) -> LMUConfig:
            return layer.config.replace(discretizer="zoh")

    case = next(c for c in CASES if c.config.discretizer == "euler")
    with pytest.raises(AssertionError, match=r"layer_config differs .*'discretizer': \('zoh'"):
        lmu.testing.check_case(ForgetsTheDiscretizer(), case)
