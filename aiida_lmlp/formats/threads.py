"""Thread counts of a job: the variables that pin them, and what the libraries took from them.

An ``lmlp`` job pins OpenMP (PyTorch's CPU kernels, PySCF), MKL and OpenBLAS to the cores its
scheduler allocated through :data:`THREAD_VARIABLES` (set by
:class:`~aiida_lmlp.overrides.job_threads.ThreadsPinnedToCores`), so that it never runs more threads than it
owns on a shared node. ``lmlp --record-threads FILE`` writes :func:`thread_counts` when the
command ends. Neither torch nor aiida is imported here.
"""

from __future__ import annotations

import os
import sys

__all__ = ["THREAD_VARIABLES", "thread_counts"]

#: the variables that set the thread counts of OpenMP (PyTorch's CPU kernels, PySCF), MKL and OpenBLAS
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def thread_counts() -> dict:
    """The thread variables of this process, and the threads of PyTorch and PySCF where they are loaded."""
    counts: dict = {"environment": {name: os.environ.get(name) for name in THREAD_VARIABLES}}
    torch = sys.modules.get("torch")
    if torch is not None:
        counts["torch"] = torch.get_num_threads()
    pyscf_lib = sys.modules.get("pyscf.lib")
    if pyscf_lib is not None:
        counts["pyscf"] = pyscf_lib.num_threads()
    return counts
