"""``python -m lmu info``: versions and backends, for bug reports."""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence

import numpy as np
import scipy

from . import __version__
from ._registry import list_backends


def info_text() -> str:
    """The report ``python -m lmu info`` prints."""
    lines = [
        f"lmu     {__version__}",
        f"python  {platform.python_version()} ({sys.executable})",
        f"numpy   {np.__version__}",
        f"scipy   {scipy.__version__}",
        "",
        f"{'backend':<10} {'available':<10} {'version':<12} install",
    ]
    for name, row in list_backends().items():
        status = "yes" if row.available else ("ERROR" if row.error else "no")
        lines.append(
            f"{name:<10} {status:<10} {row.framework_version or '-':<12} {row.install_hint}"
        )
        if row.error:
            lines.append(f"{'':<10} load error: {row.error}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m lmu``."""
    parser = argparse.ArgumentParser(prog="python -m lmu", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print versions of lmu, python, numpy, scipy and the backends")
    args = parser.parse_args(argv)
    if args.command == "info":
        print(info_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
