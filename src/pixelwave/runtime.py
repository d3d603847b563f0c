"""Process-wide settings for processes that train: how the C library hands out memory."""

from __future__ import annotations


def reuse_freed_memory() -> bool:
    """Keep freed memory in the process's heap for reuse (glibc: mallopt M_MMAP_MAX=0, no trimming).

    By default glibc serves allocations of >= 32 MB (less once its threshold adapts) by mmap and returns them
    on free, so every training step page-faults its large activations in afresh, each page zeroed by the
    kernel: on a 2-core CPU that cost the standard WaveNet's float32 step anywhere from 0% to 45% of its speed,
    depending on what ran before. With this, a step reuses the previous step's memory. The process's resident
    size then stays at its peak; meant for processes that train (`pixelwave train`, the demo, the benchmarks),
    not called on import. Returns whether it took effect (False off glibc).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    # -1 is read as the largest size_t: the top of the heap is never handed back
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, -1))
