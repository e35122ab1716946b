"""Import hygiene, the info command, and the entry points the installed package declares."""

from __future__ import annotations

import configparser
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import lmu

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("torch", "tensorflow", "keras", "jax")


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_import_lmu_loads_no_framework() -> None:
    code = (
        "import sys, lmu\n"
        "lmu.list_backends()\n"  # discovery loads the plugin objects, still no framework
        f"print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_info_command_reports_versions_and_backends() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lmu", "info"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"lmu     {lmu.__version__}" in out
    assert "numpy" in out and "scipy" in out and "python" in out
    for name in ("torch", "keras"):
        row = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert f'pip install "lmu[{name}]"' in row


def test_info_command_rejects_unknown_subcommand() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lmu", "nope"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "invalid choice: 'nope'" in result.stderr


def declared_entry_points() -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    raw = parser["options.entry_points"]["lmu.backends"]
    pairs = (line.split("=", 1) for line in raw.strip().splitlines())
    return {name.strip(): value.strip() for name, value in pairs}


def test_setup_cfg_declares_first_party_backends() -> None:
    declared = declared_entry_points()
    assert set(declared) == {"torch", "keras"}
    for name, value in declared.items():
        assert value == lmu._registry.KNOWN_BACKENDS[name].plugin


def test_installed_entry_points_load() -> None:
    """Every entry point setup.cfg declares is installed and loads a Backend (no framework)."""
    try:
        dist = importlib.metadata.distribution("lmu")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("lmu is not installed (running from a source tree)")
    installed = {ep.name: ep for ep in dist.entry_points if ep.group == "lmu.backends"}
    declared = declared_entry_points()
    assert {name: ep.value for name, ep in installed.items()} == declared
    for name, ep in installed.items():
        backend_cls = ep.load()
        assert issubclass(backend_cls, lmu.Backend)
        assert backend_cls.name == name
    # and the installed distribution really ships the backend packages
    files = {str(f).split("/")[0] for f in dist.files or []}
    if any(f.endswith(".pth") or f.startswith("__editable__") for f in files):
        pytest.skip("editable install: the wheel's contents are not checked here")
    assert {"lmu", "lmu_torch", "lmu_keras"} <= files
