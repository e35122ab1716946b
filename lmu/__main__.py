"""``python -m lmu info``: versions and backends, for bug reports.

``python -m lmu demo``: train a small LMU on a task generated locally, with a progress bar,
a result table and a plot.
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy

from . import __version__
from ._registry import (
    BackendLoadError,
    BackendNotInstalledError,
    UnknownBackendError,
    list_backends,
)
from .demo import TASKS


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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive int (got {text!r})")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an int >= 0 (got {text!r})")
    return value


def _add_demo_parser(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="train a small LMU on a generated task: progress bar, result table, plot",
        description=(
            "Train a small LMU on a task it generates itself (no download): the delay task "
            "(recall the input from r*theta steps ago) or Mackey-Glass prediction (tau=17, "
            "15 steps ahead); print the NRMSE against trivial baselines and write a PNG."
        ),
    )
    demo.add_argument(
        "--backend",
        default=None,
        help="torch or keras (default: LMU_BACKEND, else the first installed)",
    )
    demo.add_argument("--task", default="delay", choices=TASKS, help="default: delay")
    demo.add_argument(
        "--epochs", type=_positive_int, default=None, help="training epochs (default: the task's)"
    )
    demo.add_argument(
        "--out",
        default=None,
        metavar="PATH",
        help="the PNG to write (default: lmu-demo-<task>-<backend>.png here)",
    )
    demo.add_argument("--seed", type=_seed, default=0, help="seed of the data and the model")
    demo.add_argument(
        "--quick", action="store_true", help="less data and fewer epochs: a faster, rougher run"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m lmu``."""
    parser = argparse.ArgumentParser(prog="python -m lmu", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print versions of lmu, python, numpy, scipy and the backends")
    _add_demo_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "info":
        print(info_text())
    elif args.command == "demo":
        from .demo import DemoError, run_demo

        try:
            run_demo(
                backend=args.backend,
                task=args.task,
                epochs=args.epochs,
                out=args.out,
                seed=args.seed,
                quick=args.quick,
            )
        except (
            DemoError,
            UnknownBackendError,
            BackendNotInstalledError,
            BackendLoadError,
        ) as exc:
            print(f"python -m lmu demo: error: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
