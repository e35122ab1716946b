"""The step loops' batch, split into parts that run in threads of their own.

A step of the LMU's step loops (:mod:`lmu_torch.fused`, the SimpleRNN scan of
:mod:`lmu_torch.recurrence`) is a few products too small to split well over several cores:
torch splits each of them over its intra-op threads and waits for all of them, hundreds of
times per sequence, so one core taken by another process stalls the whole loop.  The batch
rows are independent, so the loops instead run as parts of the batch, one thread each with
its share of torch's threads, and wait for each other once per call.  (On the 2-core
benchmark machine with one core kept busy by another process, case E's train step took 0.7 s
in two parts against 2.7 s in one.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["MAX_PARTS", "MIN_PART_ROWS", "batch_parts", "in_parts", "total"]

#: The step loops run as up to this many independent parts of the batch, each in a thread of
#: its own with its share of torch's intra-op threads (CPU only, at least
#: :data:`MIN_PART_ROWS` rows each).  While a loop runs, torch's intra-op thread count is set
#: to that share.  1 runs the loops in the calling thread.
MAX_PARTS = 2
#: Fewest batch rows per part (see :data:`MAX_PARTS`).
MIN_PART_ROWS = 16
_LOCK = threading.Lock()
#: loops running in parts now, and torch's thread count from before the first of them
_active = 0
_threads_before = 0


def batch_parts(batch: int, device: torch.device) -> list[tuple[int, int]]:
    """``(start, stop)`` of the batch rows of each part the loop runs as."""
    count = 1
    # autocast is a setting of the calling thread: under it the loops stay in that thread
    if device.type == "cpu" and not torch.is_autocast_enabled(device.type):
        count = max(1, min(MAX_PARTS, torch.get_num_threads(), batch // MIN_PART_ROWS))
    size = -(-batch // count)
    return [(b, min(batch, b + size)) for b in range(0, batch, size)]


def in_parts(fn: Callable[[int], Any], count: int) -> list[Any]:
    """``[fn(0), .. fn(count - 1)]``, one thread each, torch's intra-op threads shared out.

    Without autograd (as inside an autograd function) in every thread, and in inference mode
    where the calling thread is; the first exception is raised here once all have finished.
    Loops of several calling threads may run at once: torch's thread count is shared out
    from the one before the first of them, and restored when the last one ends.
    """
    global _active, _threads_before
    if count == 1:
        return [fn(0)]
    results: list[Any] = [None] * count
    errors: list[BaseException] = []
    inference = torch.is_inference_mode_enabled()
    with _LOCK:
        if _active == 0:
            _threads_before = torch.get_num_threads()
        _active += 1
        share = max(1, _threads_before // count)

    def work(i: int) -> None:
        try:
            torch.set_num_threads(share)
            with torch.inference_mode(inference), torch.no_grad():
                results[i] = fn(i)
        except BaseException as err:  # noqa: BLE001 (raised in the calling thread)
            errors.append(err)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(1, count)]
    try:
        for worker in workers:
            worker.start()
        work(0)
    finally:
        for worker in workers:
            worker.join()
        with _LOCK:
            _active -= 1
            torch.set_num_threads(_threads_before if _active == 0 else share)
    if errors:
        raise errors[0]
    return results


def total(shares: list[Any]) -> Any:
    """The sum of the parts' shares of a gradient, in the first one (None where there are none)."""
    if shares[0] is None:
        return None
    result = shares[0]
    for share in shares[1:]:
        result += share
    return result
