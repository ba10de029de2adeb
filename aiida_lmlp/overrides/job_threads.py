"""Jobs whose thread counts are pinned to the cores the scheduler allocated them.

aiida-core has no public hook that sets a job's default environment from its resources, so
:class:`ThreadsPinnedToCores` extends aiida-core's private ``CalcJob._setup_metadata`` (checked
against aiida-core 2.9.4): after aiida-core stores the options, it fills in
:data:`~aiida_lmlp.formats.threads.THREAD_VARIABLES` with the job's cores
(:func:`aiida_lmlp.calculations.base.allocated_cores`) in ``environment_variables``, keeping any
variable given there. The job script exports them before the ``prepend_text`` of the computer,
the code and the options, so a site setting there still wins. With ``AIIDA_LMLP_OVERRIDES=off``
jobs get aiida-core's options unchanged (and the threads their libraries choose).
"""

from __future__ import annotations

from aiida_lmlp.formats.threads import THREAD_VARIABLES
from aiida_lmlp.overrides import enabled

__all__ = ["ThreadsPinnedToCores"]


class ThreadsPinnedToCores:
    """Mixin for a :class:`~aiida.engine.CalcJob`: its job exports the thread variables = its allocated cores."""

    def _setup_metadata(self, metadata: dict) -> None:
        """Store the options as aiida-core does, then pin the job's threads to its cores (see the module)."""
        super()._setup_metadata(metadata)
        computer = self.node.computer or self.inputs.code.computer
        if not enabled() or computer is None:
            return
        from aiida_lmlp.calculations.base import allocated_cores

        cores = str(allocated_cores(self.node.get_option("resources"), computer))
        given = self.node.get_option("environment_variables") or {}
        self.node.set_option("environment_variables", {**dict.fromkeys(THREAD_VARIABLES, cores), **given})
