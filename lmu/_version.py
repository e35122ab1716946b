"""The package version (read by setup.cfg)."""

__version__ = "0.5.0.dev0"
