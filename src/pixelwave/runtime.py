"""Process-wide settings: how many threads torch runs on, and, for processes that train, how the C library
hands out memory."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time

import torch


def threads_for(usable: int, cores: int, load: float | None, idle: float | None) -> int:
    """The rule: the cores this process may use that are not busy with other work, at least one.

    usable: the cores this process may run on; cores: all the machine's cores, which the readings cover;
    load: the 1-minute load average (runnable tasks); idle: the share of all cores' time spent idle in a short
    sample. Busy cores = the larger of `load` and (1 - idle) * cores; a core at least half idle counts as idle.
    Without readings: every usable core (torch's own default).
    """
    readings = [r for r in (load, None if idle is None else (1.0 - idle) * cores) if r is not None]
    if not readings:
        return max(1, usable)
    return max(1, min(usable, math.floor(cores - max(readings) + 0.5)))


def cpu_idle_share(seconds: float = 0.1) -> float | None:
    """The share of all cores' time spent idle (or waiting on I/O) over `seconds`, from /proc/stat (Linux);
    None where there is no /proc/stat."""

    def times() -> list[int]:
        with open("/proc/stat") as f:  # "cpu  user nice system idle iowait irq softirq steal ..."
            return [int(v) for v in f.readline().split()[1:9]]

    try:
        before = times()
        time.sleep(seconds)
        after = times()
    except (OSError, ValueError):
        return None
    delta = [b - a for a, b in zip(before, after, strict=True)]
    return (delta[3] + delta[4]) / sum(delta) if sum(delta) > 0 else None


@functools.cache
def default_threads() -> int:
    """Torch's CPU threads where a command is not given --threads: all cores when they are idle, one when they
    are busy (`threads_for`), measured once, when a process first asks. $OMP_NUM_THREADS decides where it is set
    (torchrun sets 1 for each of several processes).

    Both readings are cheap (the load average is a read, the /proc/stat sample 0.1 s), and each covers what the
    other misses: the load average follows the last minute, so it still counts a job that has just stopped and
    barely yet one that has just started; the sample sees the present only, and a bursty neighbour can be
    between bursts. Taking the busier of the two errs towards fewer threads, the cheaper mistake: a thread
    fewer than there are idle cores costs at most that core's share, while a thread that waits for a busy core
    made the samplers' small ops 14-360x slower on 2 shared cores (`models.base.single_thread`).
    """
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    cores = os.cpu_count() or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = cores
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        load = None
    return threads_for(usable, cores, load, cpu_idle_share())


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


@contextlib.contextmanager
def full_float32():
    """float32 as IEEE float32 inside the scope, also on CUDA: there cuDNN runs float32 convolutions in TF32
    (a 10-bit mantissa) by default on Ampere and later GPUs, so a likelihood moved in its fourth decimal and the
    naive sampler (whole-image convolutions) drew other codes than the cached one (its own products) for the same
    seed. The scope turns TF32 off for convolutions and matrix products and restores both settings after; it
    decorates the evaluation and the samplers. Training keeps PyTorch's defaults. No effect on a CPU."""
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul
