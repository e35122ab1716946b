"""Reused CPU memory for the largest tensors the layers make on every call.

The C allocator (glibc) maps every allocation of 32 MB and more afresh and returns it to the
system when it is freed, so a tensor that size costs one page fault per 4 KB page each time
it is first written: for the full-sequence FFT's output (case B: 268 MB per train step) and
the SimpleRNN scan's input and gradient (case D: 66 MB each), about as much time as the
arithmetic that fills them.  :func:`empty` hands out such tensors from a small pool of
buffers that stay mapped between calls instead; a buffer is handed out again only once no
tensor uses it any more (no output, view or tensor saved for backward), which its reference
count tells exactly.  The step loops pool their storage from :data:`LOOP_MIN_BYTES` (glibc
also gives the freed top of a thread's heap back to the system).  Smaller tensors, other
devices and dtypes NumPy lacks take :func:`torch.empty`.

The pool holds at most :data:`MAX_BYTES` in all (the buffers stay mapped between calls, as
with PyTorch's caching allocator on a GPU); :func:`release` empties it and
``lmu_torch.workspace.enabled = False`` turns it off.  Tensors from the pool are ordinary CPU
tensors, except that their storage cannot be resized (``resize_`` to a larger size fails).
"""

from __future__ import annotations

import mmap
import sys
import threading
from collections import OrderedDict

import numpy as np
import torch

__all__ = [
    "LOOP_MIN_BYTES",
    "MAX_BYTES",
    "MIN_BYTES",
    "empty",
    "enabled",
    "pooled_bytes",
    "release",
]

#: Tensors of at least this many bytes come from the pool (glibc maps these afresh).
MIN_BYTES = 32 << 20
#: The pool's buffers take at most this many bytes in all; a tensor that does not fit once
#: the free buffers are dropped takes :func:`torch.empty`.
MAX_BYTES = 1 << 30
#: What the step loops (:mod:`lmu_torch.fused`, :mod:`lmu_torch.recurrence`) pool from: their
#: storage, made anew in every call and in threads of their own (see ``min_bytes`` of
#: :func:`empty`).
LOOP_MIN_BYTES = 1 << 20
#: False: every tensor takes :func:`torch.empty`.
enabled = True

_NUMPY = {
    torch.float32: np.float32,
    torch.float64: np.float64,
    torch.complex64: np.complex64,
    torch.complex128: np.complex128,
}
_LOCK = threading.Lock()
#: (elements, dtype) -> buffers, least recently handed out first
_pool: OrderedDict[tuple[int, torch.dtype], list[np.ndarray]] = OrderedDict()


def _refs(buffer: np.ndarray) -> int:
    """``buffer``'s reference count, called as ``for buffer in a_list: _refs(buffer)``."""
    return sys.getrefcount(buffer)


def _idle_refs() -> int:
    """A buffer's references while no tensor uses it, as :func:`_refs` counts them in the
    pool's loops: its list's, the loop's name, the call's (measured, as the interpreter
    decides them)."""
    for probe in [np.empty(1)]:
        return _refs(probe)
    raise AssertionError("unreachable")


_IDLE_REFS = _idle_refs()


def _mapped(numel: int, dtype: type) -> np.ndarray:
    """A new array of ``numel`` elements in an anonymous memory mapping of its own.

    Page-aligned, and in ordinary pages: NumPy's own large arrays ask Linux for 2 MB pages,
    which made these buffers slower on the 2-core benchmark VM.
    """
    size = np.dtype(dtype).itemsize
    if hasattr(mmap, "MAP_PRIVATE"):  # private: a forked process gets its own copy
        area = mmap.mmap(-1, numel * size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    else:
        area = mmap.mmap(-1, numel * size)
    return np.frombuffer(area, dtype=dtype, count=numel)


def _tensor(buffer: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    """A tensor of ``shape`` in ``buffer``'s memory, itself no view (its ``_base`` is None).

    Its storage holds ``buffer`` (the reference :func:`_refs` counts).  A view of the flat
    tensor would do as well for arithmetic, but an autograd function may not change a view
    in place, so a view would keep a consumer such as the last-output SimpleRNN scan
    (``simple_rnn_scan(..., consume=True)``) from running in the tensor's storage.
    """
    flat = torch.from_numpy(buffer)
    return flat.new_empty(0).set_(flat.untyped_storage(), 0, shape)


def _held() -> int:
    return sum(b.nbytes for buffers in _pool.values() for b in buffers)


def pooled_bytes() -> int:
    """Bytes the pool's buffers take now."""
    with _LOCK:
        return _held()


def release() -> None:
    """Drop the pool's buffers (those still used by tensors live on with them)."""
    with _LOCK:
        _pool.clear()


def _make_room(nbytes: int) -> bool:
    """Drop idle buffers, least recently used first, until ``nbytes`` more fit."""
    held = _held()
    for key in list(_pool):
        if held + nbytes <= MAX_BYTES:
            break
        keep = []
        for buffer in _pool[key]:
            if held + nbytes > MAX_BYTES and _refs(buffer) <= _IDLE_REFS:
                held -= buffer.nbytes
            else:
                keep.append(buffer)
        if keep:
            _pool[key] = keep
        else:
            del _pool[key]
    return held + nbytes <= MAX_BYTES


def empty(
    *shape: int,
    dtype: torch.dtype,
    device: torch.device | str | None = None,
    min_bytes: int | None = None,
) -> torch.Tensor:
    """``torch.empty(*shape, dtype=dtype, device=device)``, from the pool when large (CPU).

    Parameters
    ----------
    *shape : int
    dtype : torch.dtype
    device : torch.device or str, optional
    min_bytes : int, optional
        Pool tensors of at least this many bytes (default :data:`MIN_BYTES`).  glibc also
        gives a heap's freed top back to the system once it exceeds a threshold, so smaller
        tensors that a call makes by the dozen megabytes, in a thread of its own, fault in
        afresh as well; the step loops pool theirs from :data:`LOOP_MIN_BYTES`.

    Returns
    -------
    torch.Tensor
        A new contiguous tensor, uninitialised, that shares memory with no live tensor.
    """
    dev = torch.device("cpu") if device is None else torch.device(device)
    numel = 1
    for n in shape:
        numel *= n
    np_dtype = _NUMPY.get(dtype)
    nbytes = 0 if np_dtype is None else numel * np.dtype(np_dtype).itemsize
    if (
        not enabled
        or dev.type != "cpu"
        or np_dtype is None
        or numel == 0
        or nbytes < (MIN_BYTES if min_bytes is None else min_bytes)
        or _IDLE_REFS < 1  # an interpreter whose reference counts say nothing
        or torch.compiler.is_compiling()  # traced: no NumPy memory in graphs
        or torch.compiler.is_exporting()
    ):
        return torch.empty(*shape, dtype=dtype, device=device)
    key = (numel, dtype)
    with _LOCK:
        buffers = _pool.get(key, [])
        for buffer in buffers:
            if _refs(buffer) <= _IDLE_REFS:
                _pool.move_to_end(key)
                return _tensor(buffer, shape)
        if not _make_room(nbytes):
            return torch.empty(*shape, dtype=dtype, device=device)
        buffer = _mapped(numel, np_dtype)
        _pool.setdefault(key, []).append(buffer)
        _pool.move_to_end(key)
        return _tensor(buffer, shape)
