"""Backend discovery (entry points), selection and errors.

A backend is a small :class:`Backend` object registered under the entry-point group
``lmu.backends``.  Discovery never imports a framework: only asking a backend for its layer
classes does.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import importlib.util
import os
import threading
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from .config import LMUConfig

__all__ = [
    "DEFAULT_ORDER",
    "ENTRY_POINT_GROUP",
    "KNOWN_BACKENDS",
    "LAYER_KINDS",
    "Backend",
    "BackendInfo",
    "BackendLoadError",
    "BackendNotInstalledError",
    "UnknownBackendError",
    "get_backend",
    "get_layer",
    "list_backends",
    "refresh_backends",
    "register_backend",
]

ENTRY_POINT_GROUP = "lmu.backends"
LAYER_KINDS: tuple[str, ...] = ("LMU", "LMUCell", "LMUFeedforward")


@dataclasses.dataclass(frozen=True)
class KnownBackend:
    """What the core knows about a first-party backend without importing anything."""

    module: str  #: the framework module whose presence makes the backend available
    extra: str  #: the pip extra that installs it
    plugin: str  #: "module:attr" of its Backend object (used when no entry point is found)


#: name -> framework module, pip extra and plugin object, for exact install hints.
KNOWN_BACKENDS: dict[str, KnownBackend] = {
    "torch": KnownBackend("torch", "torch", "lmu_torch._plugin:TorchBackend"),
    "keras": KnownBackend("keras", "keras", "lmu_keras._plugin:KerasBackend"),
}
#: Without an explicit choice or LMU_BACKEND, the first available of these is used, then any
#: other available backend in alphabetical order.
DEFAULT_ORDER: tuple[str, ...] = ("torch", "keras")


class UnknownBackendError(ValueError):
    """No backend of that name is known or registered."""


class BackendNotInstalledError(ImportError):
    """The backend is known but its framework is not installed."""


class BackendLoadError(ImportError):
    """A registered backend's plugin object failed to load."""


def install_hint(name: str) -> str:
    """The pip command that installs a known backend, or a generic hint."""
    known = KNOWN_BACKENDS.get(name)
    if known is None:
        return f"install the package that provides the {name!r} lmu backend"
    return f'pip install "lmu[{known.extra}]"'


class Backend:
    """Base class of a backend plugin: light, importing its framework only on demand.

    Subclasses set :attr:`name`, :attr:`description`, :attr:`module` (the framework's import
    name), and either :attr:`layers_module` / :attr:`adapter_module` (modules imported on first
    use) or override :meth:`layer_class` and the adapter methods.
    """

    name: str = ""
    description: str = ""
    module: str = ""
    #: Module holding the LMUCell, LMU and LMUFeedforward classes (imported on first use).
    layers_module: str = ""
    #: Module with functions ``layer_config``, ``export_weights``, ``import_weights``, ``run``
    #: and ``float64_kwargs`` taking the same arguments as the methods of the same names.
    adapter_module: str = ""

    @property
    def available(self) -> bool:
        """Whether the framework can be imported (``importlib.util.find_spec``, no import)."""
        try:
            return importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):
            return False

    @property
    def framework_version(self) -> str | None:
        """The installed framework's distribution version, read without importing it."""
        try:
            return importlib.metadata.version(self.module)
        except importlib.metadata.PackageNotFoundError:
            return None

    def layer_class(self, kind: str) -> type:
        """The layer class ``kind`` ("LMU", "LMUCell" or "LMUFeedforward").

        The default imports :attr:`layers_module` (and with it the framework).
        """
        if not self.layers_module:
            raise NotImplementedError(f"backend {self.name!r} does not implement layer_class")
        cls: type = getattr(importlib.import_module(self.layers_module), kind)
        return cls

    def make_layer(self, kind: str, config: LMUConfig, **kwargs: Any) -> Any:
        """Build a layer of ``kind`` from a validated config.

        The default calls ``layer_class(kind).from_lmu_config(config, **kwargs)``.
        """
        cls: Any = self.layer_class(kind)
        return cls.from_lmu_config(config, **kwargs)

    # -- adapters for lmu.export_weights / lmu.import_weights and lmu.testing ----------------
    def _missing(self, what: str) -> NotImplementedError:
        return NotImplementedError(
            f"backend {self.name!r} does not implement {what} (needed by lmu.export_weights, "
            "lmu.import_weights and the lmu.testing conformance kit)"
        )

    def _adapter(self, what: str) -> Any:
        """The function ``what`` of :attr:`adapter_module`, or the not-implemented error."""
        if not self.adapter_module:
            raise self._missing(what)
        return getattr(importlib.import_module(self.adapter_module), what)

    def owns(self, layer: Any) -> bool:
        """Whether ``layer`` is one of this backend's layers.

        The default compares top-level packages: the layer's class and this plugin object's
        class must come from the same one (``lmu_torch.layers.LMU`` and
        ``lmu_torch._plugin.TorchBackend``).  Override when they live apart.
        """
        mine = type(self).__module__.split(".")[0]
        return type(layer).__module__.split(".")[0] == mine

    def layer_config(self, layer: Any) -> LMUConfig:
        """The layer's validated :class:`lmu.LMUConfig`, with ``input_d`` filled in."""
        config: LMUConfig = self._adapter("layer_config")(layer)
        return config

    def export_weights(self, layer: Any) -> dict[str, Any]:
        """The layer's weights in :mod:`lmu.reference`'s canonical names and layouts.

        Returns a dict of str to float64 NumPy arrays: exactly the names
        :func:`lmu.weights.canonical_shapes` lists for the layer's config.
        """
        weights: dict[str, Any] = self._adapter("export_weights")(layer)
        return weights

    def import_weights(self, layer: Any, weights: Mapping[str, Any]) -> None:
        """Load canonical weights (the inverse of :meth:`export_weights`).

        Raises ValueError naming a missing or unexpected key or a wrong shape (expected and
        got); :func:`lmu.weights.check_weights` does those checks.
        """
        self._adapter("import_weights")(layer, weights)

    def run(
        self, layer: Any, x: Any, initial_state: Sequence[Any] | None = None
    ) -> tuple[Any, list[Any]]:
        """Call the layer on NumPy input in inference mode; hand back NumPy arrays.

        Parameters
        ----------
        layer : the backend's layer
        x : ndarray, shape (batch, time, features)
            Converted to the layer's dtype (float64 for a layer built with
            :meth:`float64_kwargs`).  Not validated here: the layer's own errors must show.
        initial_state : list of ndarray, optional
            ``[memory, *hidden]``.

        Returns
        -------
        outputs : ndarray
            (batch, time, features) with return_sequences (and always for an LMUCell, stepped
            over the time axis), else (batch, features).
        states : list of ndarray
            The final states ``[memory, *hidden]``.
        """
        result: tuple[Any, list[Any]] = self._adapter("run")(layer, x, initial_state)
        return result

    def float64_kwargs(self) -> dict[str, Any]:
        """Keyword arguments that make :meth:`make_layer` build a float64 layer."""
        kwargs: dict[str, Any] = self._adapter("float64_kwargs")()
        return kwargs

    @property
    def LMUCell(self) -> type:  # noqa: N802 - mirrors the class name
        """The backend's cell class (imports the framework)."""
        return self.layer_class("LMUCell")

    @property
    def LMU(self) -> type:  # noqa: N802
        """The backend's sequence layer class (imports the framework)."""
        return self.layer_class("LMU")

    @property
    def LMUFeedforward(self) -> type:  # noqa: N802
        """The backend's parallel layer class (imports the framework)."""
        return self.layer_class("LMUFeedforward")

    def __repr__(self) -> str:
        return f"<lmu backend {self.name!r}>"


@dataclasses.dataclass(frozen=True)
class BackendInfo:
    """One row of :func:`list_backends`."""

    name: str
    available: bool
    framework_version: str | None
    install_hint: str
    distribution: str | None
    description: str = ""
    error: str | None = None  #: why the plugin failed to load, if it did


@dataclasses.dataclass
class _Entry:
    name: str
    source: str  # "module:attr" or "runtime"
    distribution: str | None
    backend: Backend | None = None
    error: BaseException | None = None


_lock = threading.RLock()
_entries: dict[str, _Entry] | None = None
_runtime: dict[str, _Entry] = {}


def _instantiate(obj: Any, source: str) -> Backend:
    backend = obj() if isinstance(obj, type) else obj
    if not isinstance(backend, Backend):
        raise TypeError(f"{source} is not an lmu.Backend (got {type(backend).__name__})")
    return backend


def _load_plugin(path: str) -> Backend:
    module, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return _instantiate(obj, path)


def _discover() -> dict[str, _Entry]:
    found: dict[str, _Entry] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else None
        if ep.name in found:
            if found[ep.name].source != ep.value:
                warnings.warn(
                    f"conflicting lmu backends named {ep.name!r}: {found[ep.name].source} "
                    f"(from {found[ep.name].distribution}) and {ep.value} (from {dist}); "
                    f"using the first",
                    RuntimeWarning,
                    stacklevel=3,
                )
            continue
        entry = _Entry(ep.name, ep.value, dist)
        try:
            entry.backend = _instantiate(ep.load(), ep.value)
        except Exception as exc:  # a broken plugin must not break discovery
            entry.error = exc
        found[ep.name] = entry
    # first-party backends importable from a source checkout without entry points
    for name, known in KNOWN_BACKENDS.items():
        if name in found:
            continue
        spec_name = known.plugin.partition(":")[0].split(".")[0]
        try:
            present = importlib.util.find_spec(spec_name) is not None
        except (ImportError, ValueError):
            present = False
        if present:
            entry = _Entry(name, known.plugin, None)
            try:
                entry.backend = _load_plugin(known.plugin)
            except Exception as exc:
                entry.error = exc
            found[name] = entry
    return found


def _registry() -> dict[str, _Entry]:
    global _entries
    with _lock:
        if _entries is None:
            _entries = _discover()
        merged = dict(_entries)
        merged.update(_runtime)
        return merged


def refresh_backends() -> None:
    """Forget the cached discovery; the next call looks at the entry points again."""
    global _entries
    with _lock:
        _entries = None


def register_backend(name: str, backend: Backend | type[Backend], clobber: bool = False) -> None:
    """Register a backend at run time.

    Parameters
    ----------
    name : str
        The name :func:`get_backend` will accept.
    backend : Backend instance or subclass
    clobber : bool
        Replace an existing backend of that name.

    Raises
    ------
    ValueError
        If the name is taken and ``clobber`` is False, or the name is empty.
    TypeError
        If ``backend`` is not an :class:`lmu.Backend`.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty str (got {name!r})")
    instance = _instantiate(backend, repr(backend))
    with _lock:
        if not clobber and name in _registry():
            raise ValueError(
                f"a backend named {name!r} is already registered; pass clobber=True to replace it"
            )
        _runtime[name] = _Entry(name, "runtime", None, backend=instance)


def list_backends() -> dict[str, BackendInfo]:
    """Every registered or known backend, available or not.

    Returns
    -------
    dict of str to BackendInfo
        In the default selection order.

    Warns
    -----
    RuntimeWarning
        For a plugin that failed to load (asking for it by name raises with the cause).
    """
    entries = _registry()
    out: dict[str, BackendInfo] = {}
    for name in _ordered(set(entries) | set(KNOWN_BACKENDS)):
        entry = entries.get(name)
        if entry is not None and entry.error is not None:
            warnings.warn(
                f"lmu backend {name!r} ({entry.source}) failed to load: {entry.error!r}",
                RuntimeWarning,
                stacklevel=2,
            )
        backend = entry.backend if entry is not None else None
        known = KNOWN_BACKENDS.get(name)
        if backend is not None:
            available, version, desc = (
                backend.available,
                backend.framework_version,
                backend.description,
            )
        else:
            available = False
            version = None
            desc = ""
            if known is not None and entry is None:
                version = _dist_version(known.module)
        out[name] = BackendInfo(
            name=name,
            available=available,
            framework_version=version,
            install_hint=install_hint(name),
            distribution=entry.distribution if entry is not None else None,
            description=desc,
            error=repr(entry.error) if entry is not None and entry.error is not None else None,
        )
    return out


def _dist_version(module: str) -> str | None:
    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        return None


def _ordered(names: set[str]) -> list[str]:
    first = [n for n in DEFAULT_ORDER if n in names]
    return first + sorted(names - set(first))


def _unknown(name: str, entries: Mapping[str, _Entry]) -> UnknownBackendError:
    installed = sorted(
        n for n, e in entries.items() if e.backend is not None and e.backend.available
    )
    return UnknownBackendError(
        f"unknown lmu backend {name!r}; known: {sorted(set(entries) | set(KNOWN_BACKENDS))}, "
        f"installed: {installed}"
    )


def _not_installed(name: str, module: str) -> BackendNotInstalledError:
    return BackendNotInstalledError(
        f"the lmu backend {name!r} needs {module}, which is not installed: {install_hint(name)}"
    )


def _resolve(name: str, entries: Mapping[str, _Entry]) -> Backend:
    entry = entries.get(name)
    if entry is None:
        known = KNOWN_BACKENDS.get(name)
        if known is None:
            raise _unknown(name, entries)
        raise _not_installed(name, known.module)
    if entry.error is not None:
        raise BackendLoadError(
            f"the lmu backend {name!r} ({entry.source}) failed to load: {entry.error!r}"
        ) from entry.error
    backend = entry.backend
    assert backend is not None
    if not backend.available:
        try:
            importlib.import_module(backend.module)
        except ImportError as exc:
            raise _not_installed(name, backend.module) from exc
    return backend


def get_backend(name: str | None = None) -> Backend:
    """Select a backend.

    Parameters
    ----------
    name : str, optional
        Explicit choice.  Otherwise the ``LMU_BACKEND`` environment variable (read now, at
        call time), otherwise the first available of :data:`DEFAULT_ORDER`, then of the
        others alphabetically.

    Returns
    -------
    Backend

    Raises
    ------
    UnknownBackendError
        For a name nobody registered (the message lists known and installed names).
    BackendNotInstalledError
        When the backend's framework is missing (the message has the pip command), or when
        no backend at all is available.
    BackendLoadError
        When the backend's plugin failed to load (raised from the cause).
    """
    entries = _registry()
    if name is None:
        name = os.environ.get("LMU_BACKEND") or None
    if name is not None:
        if not isinstance(name, str):
            raise UnknownBackendError(f"backend must be a str or None (got {name!r})")
        return _resolve(name, entries)
    for candidate in _ordered(set(entries)):
        entry = entries[candidate]
        if entry.backend is not None and entry.backend.available:
            return entry.backend
    hints = "; ".join(f"{n}: {install_hint(n)}" for n in KNOWN_BACKENDS)
    raise BackendNotInstalledError(f"no lmu backend is installed ({hints})")


def get_layer(kind: str = "LMU", *, backend: str | None = None, **options: Any) -> Any:
    """Build an LMU layer with the selected backend.

    Parameters
    ----------
    kind : {"LMU", "LMUCell", "LMUFeedforward"}
    backend : str, optional
        See :func:`get_backend`.
    **options
        :class:`lmu.LMUConfig` fields (validated here, once) and backend-specific keyword
        arguments (passed through, e.g. ``batch_first`` for torch).

    Returns
    -------
    The backend's layer instance.

    Raises
    ------
    ValueError
        For an unknown kind or an invalid option (the message names it).
    """
    if kind not in LAYER_KINDS:
        raise ValueError(f"kind must be one of {LAYER_KINDS} (got {kind!r})")
    fields = {f.name for f in dataclasses.fields(LMUConfig)}
    config = LMUConfig(**{k: v for k, v in options.items() if k in fields})
    extra = {k: v for k, v in options.items() if k not in fields}
    return get_backend(backend).make_layer(kind, config, **extra)
