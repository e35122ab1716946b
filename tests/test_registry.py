"""Backend discovery, selection, registration and errors."""

from __future__ import annotations

import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest

import lmu
from lmu import _registry


class FakeLayer:
    """Stands in for a framework layer: records how it was built."""

    def __init__(self, config: lmu.LMUConfig, **kwargs: Any) -> None:
        self.config = config
        self.kwargs = kwargs

    @classmethod
    def from_lmu_config(cls, config: lmu.LMUConfig, **kwargs: Any) -> FakeLayer:
        return cls(config, **kwargs)


class FakeBackend(lmu.Backend):
    name = "fake"
    description = "a backend for tests"
    module = "json"  # always importable

    def layer_class(self, kind: str) -> type:
        return type(kind, (FakeLayer,), {})


class MissingFrameworkBackend(lmu.Backend):
    name = "missing"
    module = "lmu_no_such_framework_xyz"


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch: pytest.MonkeyPatch):
    """Each test sees a fresh discovery and no runtime registrations."""
    monkeypatch.setattr(_registry, "_runtime", {})
    monkeypatch.delenv("LMU_BACKEND", raising=False)
    lmu.refresh_backends()
    yield
    lmu.refresh_backends()


def write_plugin(root: Path, dist: str, entry_points: dict[str, str], code: str = "") -> None:
    """A fake installed distribution: ``<dist>-1.0.dist-info`` plus a module on sys.path."""
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {value}" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[lmu.backends]\n{lines}\n")
    if code:
        (root / f"{dist}_mod.py").write_text(textwrap.dedent(code))


PLUGIN_CODE = """
    import lmu

    class ThirdParty(lmu.Backend):
        name = "thirdparty"
        description = "from a fake distribution"
        module = "json"

        def layer_class(self, kind):
            return dict

    class Other(ThirdParty):
        pass
"""


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.endswith("_mod") and m.startswith("fakeplug")]:
        del sys.modules[name]


def test_known_backends_listed_with_install_hints() -> None:
    rows = lmu.list_backends()
    assert list(rows)[:2] == ["torch", "keras"]
    assert rows["torch"].install_hint == 'pip install "lmu[torch]"'
    assert rows["keras"].install_hint == 'pip install "lmu[keras]"'
    for row in rows.values():
        assert isinstance(row.available, bool)


def test_third_party_entry_point_discovered(plugin_path: Path) -> None:
    write_plugin(plugin_path, "fakeplug1", {"thirdparty": "fakeplug1_mod:ThirdParty"}, PLUGIN_CODE)
    lmu.refresh_backends()
    rows = lmu.list_backends()
    assert rows["thirdparty"].available
    assert rows["thirdparty"].distribution == "fakeplug1"
    assert rows["thirdparty"].description == "from a fake distribution"
    backend = lmu.get_backend("thirdparty")
    assert type(backend).__name__ == "ThirdParty"
    assert backend.LMU is dict


def test_discovery_is_cached_until_refresh(plugin_path: Path) -> None:
    assert "thirdparty" not in lmu.list_backends()
    write_plugin(plugin_path, "fakeplug2", {"thirdparty": "fakeplug2_mod:ThirdParty"}, PLUGIN_CODE)
    assert "thirdparty" not in lmu.list_backends()  # cached
    lmu.refresh_backends()
    assert "thirdparty" in lmu.list_backends()


def test_duplicate_identical_entry_points_tolerated(plugin_path: Path) -> None:
    write_plugin(plugin_path, "fakeplug3", {"thirdparty": "fakeplug3_mod:ThirdParty"}, PLUGIN_CODE)
    dup = plugin_path / "dup"
    dup.mkdir()
    sys.path.insert(0, str(dup))
    try:
        write_plugin(dup, "fakeplug3", {"thirdparty": "fakeplug3_mod:ThirdParty"})
        lmu.refresh_backends()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert lmu.list_backends()["thirdparty"].available
    finally:
        sys.path.remove(str(dup))


def test_conflicting_entry_points_warn(plugin_path: Path) -> None:
    write_plugin(plugin_path, "fakeplug4", {"thirdparty": "fakeplug4_mod:ThirdParty"}, PLUGIN_CODE)
    write_plugin(plugin_path, "fakeplug5", {"thirdparty": "fakeplug4_mod:Other"})
    lmu.refresh_backends()
    with pytest.warns(RuntimeWarning, match="conflicting lmu backends named 'thirdparty'"):
        lmu.list_backends()


def test_broken_plugin_warns_and_raises_with_cause(plugin_path: Path) -> None:
    write_plugin(plugin_path, "fakeplug6", {"broken": "fakeplug6_nonexistent:Thing"})
    lmu.refresh_backends()
    with pytest.warns(RuntimeWarning, match="'broken'.*failed to load"):
        rows = lmu.list_backends()
    assert not rows["broken"].available
    assert "ModuleNotFoundError" in (rows["broken"].error or "")
    with pytest.raises(lmu.BackendLoadError, match="broken") as info:
        lmu.get_backend("broken")
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_plugin_that_is_not_a_backend_fails_to_load(plugin_path: Path) -> None:
    write_plugin(plugin_path, "fakeplug7", {"notbackend": "json:dumps"})
    lmu.refresh_backends()
    with pytest.raises(lmu.BackendLoadError) as info:
        lmu.get_backend("notbackend")
    assert isinstance(info.value.__cause__, TypeError)


def test_unknown_backend_lists_names() -> None:
    lmu.register_backend("fake", FakeBackend)
    with pytest.raises(lmu.UnknownBackendError, match="'nope'") as info:
        lmu.get_backend("nope")
    message = str(info.value)
    assert "torch" in message and "keras" in message and "installed: " in message
    assert "'fake'" in message.split("installed: ")[1]
    assert isinstance(info.value, ValueError)


def test_missing_known_backend_gives_pip_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    known = _registry.KnownBackend("lmu_no_such_framework_xyz", "ghost", "lmu_no_such_plugin:X")
    monkeypatch.setitem(_registry.KNOWN_BACKENDS, "ghost", known)
    with pytest.raises(lmu.BackendNotInstalledError, match=r'pip install "lmu\[ghost\]"'):
        lmu.get_backend("ghost")
    assert lmu.list_backends()["ghost"].available is False


def test_registered_backend_without_framework_raises_from_import_error() -> None:
    lmu.register_backend("missing", MissingFrameworkBackend())
    assert lmu.list_backends()["missing"].available is False
    with pytest.raises(lmu.BackendNotInstalledError, match="lmu_no_such_framework_xyz") as info:
        lmu.get_backend("missing")
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    assert isinstance(info.value, ImportError)


def test_env_variable_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    lmu.register_backend("fake", FakeBackend)
    monkeypatch.setenv("LMU_BACKEND", "fake")
    assert lmu.get_backend().name == "fake"
    monkeypatch.setenv("LMU_BACKEND", "nope")
    with pytest.raises(lmu.UnknownBackendError, match="'nope'"):
        lmu.get_backend()
    # an explicit name wins over the environment
    assert lmu.get_backend("fake").name == "fake"


def test_default_order_prefers_known_then_alphabetical(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry, "_entries", {})  # nothing discovered
    monkeypatch.setattr(_registry, "_discover", dict)
    lmu.register_backend("zeta", FakeBackend)
    lmu.register_backend("alpha", FakeBackend)
    assert lmu.get_backend() is _registry._runtime["alpha"].backend
    lmu.register_backend("keras", FakeBackend)
    assert lmu.get_backend() is _registry._runtime["keras"].backend


def test_no_backend_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry, "_discover", dict)
    lmu.refresh_backends()
    with pytest.raises(lmu.BackendNotInstalledError, match=r'pip install "lmu\[torch\]"'):
        lmu.get_backend()


def test_register_backend_clobber_and_validation() -> None:
    lmu.register_backend("fake", FakeBackend)
    with pytest.raises(ValueError, match="'fake' is already registered"):
        lmu.register_backend("fake", FakeBackend)
    replacement = FakeBackend()
    lmu.register_backend("fake", replacement, clobber=True)
    assert lmu.get_backend("fake") is replacement
    with pytest.raises(TypeError, match="not an lmu.Backend"):
        lmu.register_backend("bad", object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty str"):
        lmu.register_backend("", FakeBackend)


def test_get_layer_validates_and_passes_extras() -> None:
    lmu.register_backend("fake", FakeBackend)
    layer = lmu.get_layer(
        "LMUCell", backend="fake", memory_d=2, order=4, theta=3.5, batch_first=False
    )
    assert type(layer).__name__ == "LMUCell"
    assert layer.config == lmu.LMUConfig(memory_d=2, order=4, theta=3.5)
    assert layer.kwargs == {"batch_first": False}
    with pytest.raises(ValueError, match=r"theta must be > 0 and finite \(got -1\)"):
        lmu.get_layer(backend="fake", memory_d=2, order=4, theta=-1)
    with pytest.raises(ValueError, match="kind must be one of"):
        lmu.get_layer("Dense", backend="fake", memory_d=2, order=4, theta=1.0)


def test_backend_base_class_defaults() -> None:
    backend = MissingFrameworkBackend()
    assert backend.available is False
    assert backend.framework_version is None
    with pytest.raises(NotImplementedError, match="missing"):
        backend.LMUCell  # noqa: B018
    assert "missing" in repr(backend)
