"""The CPU memory allocator's settings for training processes (glibc malloc), without importing torch."""

from __future__ import annotations

import os

MMAP_THRESHOLD = 32 << 20  #: glibc: blocks under 32 MiB come from the heap (its adaptive threshold's own ceiling)
TRIM_THRESHOLD = 256 << 20  #: glibc: up to 256 MiB of freed heap is kept for the next step, not handed back


def steady_cpu_allocator() -> bool:
    """On glibc, fix malloc's thresholds (``mallopt``: MMAP_THRESHOLD, TRIM_THRESHOLD) so that a training step's
    freed tensors are reused by the next step rather than unmapped and faulted in again. glibc adapts these
    thresholds as blocks are freed, and a process can settle where it does not: on the 2-core CPU the tiny CNN's
    step at 28 px took 18 ms in one process and 13 ms in another (docs/performance.md). Numerics are unchanged.
    ``MEDAUG_MALLOC=default`` leaves glibc as it is. Returns whether the thresholds were set."""
    import ctypes
    import ctypes.util

    if os.environ.get("MEDAUG_MALLOC", "") == "default":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without mallopt)
        return False
    if mallopt is None:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and bool(mallopt(m_trim_threshold, TRIM_THRESHOLD))
