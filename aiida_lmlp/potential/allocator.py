"""Keep large freed blocks in the process heap (glibc), for compute processes that reuse them.

PyTorch on the CPU allocates a fresh tensor for almost every intermediate result. glibc's
``malloc`` serves blocks above its mmap threshold (at most 32 MB by default) directly from the
kernel and returns them on ``free``: every such tensor then costs a page fault per 4 kB page on
first touch (about 0.3 ms per MB measured here, more than most of the arithmetic done on it).
Condensed-phase descriptors (a 1000-atom water box at 6 Å: gigabytes of triplet temporaries)
and large training batches are dominated by it.

:func:`keep_freed_memory` raises the mmap and trim thresholds with ``mallopt`` so that large
blocks come from the heap and stay there for the next call. It changes the whole process,
so only the ``lmlp`` compute commands (``train``, ``explore``, ``predict``) call it: a library
should not change its host's allocator. The cost is that the process keeps its peak heap
until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(threshold_bytes: int = 1 << 30) -> bool:
    """Serve blocks up to ``threshold_bytes`` from glibc's heap and keep freed memory for reuse.

    Returns True when glibc accepted both settings, False where there is no glibc (macOS,
    Windows, musl) or it refused; nothing else changes then.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    threshold = int(min(threshold_bytes, 2**31 - 1))
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, threshold))
