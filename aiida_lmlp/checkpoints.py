"""Process checkpoints that serialise a process's inputs once instead of at every checkpoint.

aiida-core saves a checkpoint of a running process at every state change: every step of a work
chain, every transition of a calculation job (upload, submit, update, retrieve, parse). Each
checkpoint encodes the process's raw inputs and its parsed inputs to YAML again, with PyYAML's
pure-Python emitter: in the quickstart campaign that was 2.6 s of the daemon worker's 73 busy
seconds, half the time it spent on checkpoints (``benchmarks/campaign_overhead.py --worker-profile``).
The inputs of a process never change once it has been created (plumpy freezes them, and the
plugin's steps copy a namespace before they change it), so their encoding is the same string
every time: :class:`InputsEncodedOnce` keeps it. A process loaded from a checkpoint (after a
daemon restart) encodes its inputs once again, at its first checkpoint; outputs, which grow,
are encoded every time, as aiida-core does.
"""

from __future__ import annotations

from typing import Any

__all__ = ["InputsEncodedOnce"]


class InputsEncodedOnce:
    """Mixin for a :class:`~aiida.engine.Process`: each inputs mapping is encoded for checkpoints once."""

    def encode_input_args(self, inputs: dict[str, Any]) -> str:
        """The YAML of ``inputs`` that aiida-core's ``encode_input_args`` writes; computed once for
        the process's raw and parsed inputs, which are fixed, and every time for anything else."""
        fixed = {id(mapping) for mapping in (self.raw_inputs, self.inputs) if mapping is not None}
        if id(inputs) not in fixed:
            return super().encode_input_args(inputs)
        cache = self.__dict__.setdefault("_lmlp_encoded_inputs", {})
        entry = cache.get(id(inputs))
        if entry is None or entry[0] is not inputs:  # the mapping is kept with its text: its id stays unique
            entry = cache[id(inputs)] = (inputs, super().encode_input_args(inputs))
        return entry[1]
