"""Shared pytest setup: markers and framework-availability helpers."""

from __future__ import annotations

import importlib.util

import pytest


def importorskip_pair(module: str) -> tuple[bool, pytest.MarkDecorator]:
    """``(has_module, requires_module)``: a flag and a skip marker, without importing it."""
    has = importlib.util.find_spec(module) is not None
    return has, pytest.mark.skipif(not has, reason=f"{module} is not installed")
