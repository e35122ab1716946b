"""Side-by-side train-step benchmarks of the LMU backends (and keras-lmu when installed).

Each (implementation, case) runs in its own subprocess, so peak memory is its own and the
frameworks do not disturb each other.  Prints a table with ratios to keras-lmu and writes JSON.

Usage::

    python benchmarks/run.py                          # every implementation that imports
    python benchmarks/run.py --impl torch keras-lmu --cases A C F --steps 5
    python benchmarks/run.py --json results.json
    python benchmarks/run.py --cases D E --rounds 3   # alternate three times, median of rounds

Cases (float32, MSE loss on random targets, Adam), from the backend issues:

A  memory_d=32, order=256, theta=784, 512 steps, batch 16, 32 inputs, no hidden cell,
   dense head on the last step
B  A with return_sequences=True and the head on every step
C  memory_d=1, order=256, theta=784, 784 steps, batch 100, 1 input, hidden Dense(212, tanh)
D  C with a SimpleRNN(212) hidden cell and input_to_hidden
E  D with hidden_to_memory and memory_to_memory
F  C with trainable_theta (zoh)
stream  one inference step at a time, batch 1, case D's cell: per-step latency
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CASES = ("A", "B", "C", "D", "E", "F", "stream")
#: implementation -> (cases module, framework module it needs, extra environment)
IMPLS: dict[str, tuple[str, str, dict[str, str]]] = {
    "torch": ("torch_cases", "torch", {}),
    "keras": ("keras_cases", "keras", {"KERAS_BACKEND": "tensorflow"}),
    "keras-jax": ("keras_cases", "jax", {"KERAS_BACKEND": "jax"}),
    "keras-lmu": ("keras_cases", "keras_lmu", {"KERAS_BACKEND": "tensorflow"}),
}
BASELINE = "keras-lmu"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def child(impl: str, case: str, steps: int, warmup: int, device: str) -> dict[str, Any]:
    """Time one case in this process; returns the measurements."""
    sys.path.insert(0, str(HERE))
    module = importlib.import_module(IMPLS[impl][0])
    cases_impl = "keras" if impl == "keras-jax" else impl
    rss_before = _peak_rss_mb()
    if case == "stream":
        fn = module.build_stream(cases_impl)
        mode = "step"
        steps, warmup = max(steps, 200), max(warmup, 20)
    else:
        fn, mode = module.build(case, cases_impl, device=device)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    result = {
        "impl": impl,
        "case": case,
        "mode": mode,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "steps": steps,
        "peak_rss_mb": _peak_rss_mb(),
        "rss_after_build_mb": rss_before,
    }
    if device.startswith("cuda") and case != "stream":
        import torch

        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def available(impl: str) -> bool:
    """Whether the implementation's framework can be imported here."""
    module, framework, _ = IMPLS[impl]
    if importlib.util.find_spec(framework) is None:
        return False
    return (HERE / f"{module}.py").exists()


def run_case(impl: str, case: str, args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ, **IMPLS[impl][2])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        impl,
        case,
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--device",
        args.device,
    ]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=args.timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"impl": impl, "case": case, "error": f"timed out after {args.timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"impl": impl, "case": case, "error": " | ".join(tail)}
    return json.loads(lines[-1])


def combine_rounds(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One result per (case, impl) from several rounds of the same runs.

    The median step is the median of the rounds' medians and the peak memory the largest
    round's; ``ratios`` lists each round's keras-lmu median over this one (runs of one round
    are minutes apart at most, so a slow spell of a shared machine shows in the spread of the
    ratios rather than in one of them).
    """
    if len(rounds) == 1:
        return rounds[0]
    combined: list[dict[str, Any]] = []
    for i, first in enumerate(rounds[0]):
        runs = [rnd[i] for rnd in rounds]
        ok = [r for r in runs if "error" not in r]
        if not ok:
            combined.append(first)
            continue
        out = dict(ok[0])
        out["median_s"] = statistics.median(r["median_s"] for r in ok)
        out["min_s"] = min(r["min_s"] for r in ok)
        out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in ok)
        if "peak_cuda_mb" in out:
            out["peak_cuda_mb"] = max(r["peak_cuda_mb"] for r in ok)
        out["rounds"] = len(ok)
        ratios = []
        for rnd in rounds:
            base = next(
                (r for r in rnd if r["case"] == first["case"] and r["impl"] == BASELINE), None
            )
            mine = rnd[i]
            if base and "error" not in base and "error" not in mine:
                ratios.append(base["median_s"] / mine["median_s"])
        if ratios and first["impl"] != BASELINE:
            out["ratios"] = ratios
        combined.append(out)
    return combined


def table(results: list[dict[str, Any]]) -> str:
    """Format results with ratios to keras-lmu (time: baseline/ours, memory: ours/baseline)."""
    base = {r["case"]: r for r in results if r["impl"] == BASELINE and "error" not in r}
    gpu = any("peak_cuda_mb" in r for r in results)
    head = f"{'case':<7} {'impl':<10} {'mode':<11} {'median':>10} {'peak MB':>9} "
    head += f"{'GPU MB':>8} " if gpu else ""
    head += f"{'speedup vs keras-lmu':>21} {'memory vs keras-lmu':>20}"
    lines = [head, "-" * len(head)]
    for r in results:
        if "error" in r:
            lines.append(f"{r['case']:<7} {r['impl']:<10} ERROR: {r['error']}")
            continue
        b = base.get(r["case"])
        speed = f"{b['median_s'] / r['median_s']:.1f}x" if b else "-"
        mem = f"{r['peak_rss_mb'] / b['peak_rss_mb']:.2f}" if b else "-"
        median = r["median_s"]
        shown = f"{median * 1e3:.2f} ms" if median < 1 else f"{median:.3f} s"
        gpu_mb = f"{r['peak_cuda_mb']:>8.0f} " if "peak_cuda_mb" in r else f"{'-':>8} "
        lines.append(
            f"{r['case']:<7} {r['impl']:<10} {r['mode']:<11} {shown:>10} "
            f"{r['peak_rss_mb']:>9.0f} {gpu_mb if gpu else ''}{speed:>21} {mem:>20}"
        )
    return "\n".join(lines)


def rst_table(results: list[dict[str, Any]]) -> str:
    """The results as a reStructuredText simple table (for README.rst)."""
    base = {r["case"]: r for r in results if r["impl"] == BASELINE and "error" not in r}
    head = ("case", "impl", "mode", "median step", "peak RSS", "speed vs keras-lmu", "memory")
    rows = []
    for r in results:
        if "error" in r:
            continue
        b = base.get(r["case"])
        median = r["median_s"]
        rows.append(
            (
                r["case"],
                r["impl"],
                "-" if r["impl"] == BASELINE else r["mode"],
                f"{median * 1e3:.2f} ms" if median < 1 else f"{median:.2f} s",
                f"{r['peak_rss_mb'] / 1024:.2f} GB",
                f"{b['median_s'] / median:.1f}x" if b else "-",
                f"{r['peak_rss_mb'] / b['peak_rss_mb']:.2f}" if b else "-",
            )
        )
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    rule = "  ".join("=" * w for w in widths)

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([rule, line(head), rule, *(line(r) for r in rows), rule])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", nargs="+", choices=list(IMPLS), default=None)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--steps", type=int, default=5, help="timed steps per case")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (torch)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per case")
    parser.add_argument(
        "--rounds", type=int, default=1, help="run everything this many times, alternating"
    )
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    parser.add_argument(
        "--rst", type=Path, default=None, metavar="JSON", help="print a saved run as an RST table"
    )
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rst:
        print(rst_table(json.loads(args.rst.read_text())["results"]))
        return 0
    if args.child:
        print(json.dumps(child(*args.child, args.steps, args.warmup, args.device)))
        return 0
    impls = args.impl or [name for name in IMPLS if available(name)]
    missing = [name for name in impls if not available(name)]
    if missing:
        print(f"not importable here, skipped: {', '.join(missing)}")
    impls = [name for name in impls if name not in missing]
    if BASELINE in impls:  # baseline first, so ratios can be printed as we go
        impls = [BASELINE] + [name for name in impls if name != BASELINE]
    rounds = []
    for _ in range(max(1, args.rounds)):
        results: list[dict[str, Any]] = []
        for case in args.cases:
            for impl in impls:
                results.append(run_case(impl, case, args))
                line = table([r for r in results if r["case"] == case]).splitlines()[-1]
                print(line, flush=True)
        rounds.append(results)
    results = combine_rounds(rounds)
    print()
    print(
        f"{platform.node()} | {platform.processor() or platform.machine()} | "
        f"{os.cpu_count()} CPUs | python {platform.python_version()} | "
        f"{time.strftime('%Y-%m-%d')}"
    )
    print(table(results))
    for r in results:
        if "ratios" in r:
            each = ", ".join(f"{x:.1f}x" for x in r["ratios"])
            print(f"{r['case']:<7} {r['impl']:<10} speedup per round: {each}")
    if args.json:
        meta = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "device": args.device}
        meta["rounds"] = len(rounds)
        doc = {"meta": meta, "results": results}
        if len(rounds) > 1:
            doc["per_round"] = rounds
        args.json.write_text(json.dumps(doc, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
