"""Process-level tuning of a build worker: its share of threads, and how it keeps freed memory."""

from __future__ import annotations

import os
import sys

__all__ = ["keep_freed_memory", "limit_threads"]


def limit_threads(n: int = 1) -> None:
    """Keep each worker to its share of the cores (no BLAS/OpenCV/torch oversubscription)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    import cv2

    cv2.setNumThreads(n)
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


MALLOC_MMAP_THRESHOLD = 32 << 20


MALLOC_TRIM_THRESHOLD = 256 << 20


def keep_freed_memory() -> bool:
    """Serve large allocations from the heap and keep freed memory for reuse (glibc only).

    Why: a sample allocates many full-resolution image buffers (a 512×768 float32 RGB image is
    4.7 MB). glibc hands out blocks that large with a fresh mmap by default and returns them on
    free, so every buffer costs page faults on first touch: a compiled pass that takes 0.6 ms on a
    reused buffer took 3.3 ms on a fresh one. With the mmap threshold at 32 MiB and a 256 MiB trim
    threshold, freed buffers are reused; peak memory is unchanged (freed blocks are what later
    buffers take). Process-wide, so it is set where a build's samples run (workers, the bench), and
    a no-op where glibc's `mallopt` is not available. Returns whether it took effect.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc <malloc.h>
    return bool(mallopt(m_mmap_threshold, MALLOC_MMAP_THRESHOLD)) and bool(
        mallopt(m_trim_threshold, MALLOC_TRIM_THRESHOLD)
    )
