"""The plugin's overrides of aiida-core and PyTorch internals, in one place, with one switch.

Each module here replaces a private piece of aiida-core or PyTorch for the plugin's own processes
or jobs: to take per-process costs off a campaign's critical path, or (``job_threads``) to pin a
job's threads to its cores. None changes the provenance graph, checkpoints or model files.

- :mod:`.checkpoints` replaces aiida-core's ``Process.encode_input_args`` and ``decode_input_args``
  for the plugin's processes: inputs encoded once, a checkpoint's nodes loaded in one query
  (checked against aiida-core 2.9.4);
- :mod:`.process_links` replaces ``NodeLinks.validate_incoming`` and
  ``ProcessNodeLinks.validate_incoming`` (aiida-core) for the unstored nodes of the plugin's
  processes: every check but the cycle query, which cannot find anything there (checked against aiida-core 2.9.4);
- :mod:`.job_threads` extends aiida-core's private ``CalcJob._setup_metadata``: a job's
  ``environment_variables`` get the OpenMP, MKL and OpenBLAS thread counts of its allocated cores
  (checked against aiida-core 2.9.4);
- :mod:`.optimizer_imports` seeds the ``torch._disable_dynamo`` cache of ``torch.optim.Optimizer``'s
  bookkeeping methods, so that ``lmlp train`` does not import ``torch._dynamo`` (checked against torch 2.13.0).

Set the environment variable ``AIIDA_LMLP_OVERRIDES=off`` (also ``0``, ``false``, ``no``) to turn
them all off: every process then runs aiida-core's and PyTorch's code unchanged. For a daemon, set
it in the environment of ``verdi daemon start``. This package imports neither aiida nor torch;
each module imports what it overrides.
"""

from __future__ import annotations

import os

__all__ = ["SWITCH", "enabled"]

#: the environment variable that turns every override off
SWITCH = "AIIDA_LMLP_OVERRIDES"
_OFF = {"off", "0", "false", "no"}


def enabled() -> bool:
    """Whether the overrides are on: unless ``AIIDA_LMLP_OVERRIDES`` says ``off`` (read at every call)."""
    return os.environ.get(SWITCH, "on").strip().lower() not in _OFF
