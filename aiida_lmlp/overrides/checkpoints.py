"""Process checkpoints that encode a process's inputs once, and decode them with one query.

aiida-core saves a checkpoint of a running process at every state change: every step of a work
chain, every transition of a calculation job (upload, submit, update, retrieve, parse). Each
checkpoint encodes the process's raw inputs and its parsed inputs to YAML again, with PyYAML's
pure-Python emitter: in the quickstart campaign that was 2.6 s of the daemon worker's 73 busy
seconds, half the time it spent on checkpoints (``benchmarks/campaign_overhead.py --worker-profile``).
The inputs of a process are fixed once it has been created (plumpy freezes the mapping, and the
campaign copies a namespace before it adds to it), so their encoding is the same string every
time: :class:`InputsEncodedOnce` keeps it. (aiida-core's ``BaseRestartWorkChain`` writes each
child's ``call_link_label`` into the ``metadata`` it shares with its inputs; it writes it again
before every child, so a checkpoint that holds the inputs as given loses nothing.) A process
loaded from a checkpoint (after a daemon restart) encodes its inputs once again, at its first
checkpoint; outputs, which grow, are encoded every time, as aiida-core does.

The other way round, every process the daemon runs is loaded from its checkpoint first (a work
chain's child too: it is created, checkpointed and sent to the broker, then continued), and
aiida-core's decoding loads every input node with a query of its own, twice: once for the raw
and once for the parsed inputs (1.6 s of the worker's busy time in the quickstart). Here the
nodes of a checkpoint are loaded with one query, and the raw and parsed inputs share them, as
they do in a process that was never reloaded.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from aiida import orm
from aiida.orm.utils import serialize

from aiida_lmlp.overrides import enabled

__all__ = ["InputsEncodedOnce", "decode_with_nodes"]

_NODE_TAG = getattr(serialize, "_NODE_TAG", "!aiida_node")
_NODE_REFERENCE = re.compile(re.escape(_NODE_TAG) + r"""\s+['"]?([0-9a-fA-F-]{36})['"]?""")


class _NodeSharingLoader(serialize.AiiDALoader):
    """aiida-core's checkpoint loader, taking nodes from ``nodes`` (uuid → node) before the database."""

    nodes: dict[str, orm.Node]


def _construct_node(loader: _NodeSharingLoader, node: yaml.Node) -> orm.Node:
    uuid = loader.construct_scalar(node)
    found = loader.nodes.get(uuid)
    if found is None:
        found = loader.nodes[uuid] = orm.load_node(uuid=uuid)
    return found


yaml.add_constructor(_NODE_TAG, _construct_node, Loader=_NodeSharingLoader)


def decode_with_nodes(encoded: str, nodes: dict[str, orm.Node]) -> Any:
    """What ``aiida.orm.utils.serialize.deserialize_unsafe`` returns for ``encoded`` (trusted: a
    checkpoint), with every node it names taken from ``nodes`` or loaded in one query and added there."""
    missing = {uuid for uuid in _NODE_REFERENCE.findall(encoded) if uuid not in nodes}
    if missing:
        query = orm.QueryBuilder().append(orm.Node, filters={"uuid": {"in": sorted(missing)}}, project="*")
        nodes.update({node.uuid: node for node in query.all(flat=True)})
    loader = _NodeSharingLoader(encoded)
    loader.nodes = nodes
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


class InputsEncodedOnce:
    """Mixin for a :class:`~aiida.engine.Process`: each inputs mapping is encoded for checkpoints once."""

    def encode_input_args(self, inputs: dict[str, Any]) -> str:
        """The YAML of ``inputs`` that aiida-core's ``encode_input_args`` writes; computed once for
        the process's raw and parsed inputs, which are fixed, and every time for anything else."""
        if not enabled() or (inputs is not self.raw_inputs and inputs is not self.inputs):
            return super().encode_input_args(inputs)
        encoded = self.__dict__.setdefault("_lmlp_encoded_inputs", [])  # (mapping, text): two at most
        for mapping, text in encoded:
            if mapping is inputs:
                return text
        text = super().encode_input_args(inputs)
        encoded.append((inputs, text))
        return text

    def decode_input_args(self, encoded: str) -> dict[str, Any]:
        """The inputs (or outputs) of a checkpoint, as aiida-core decodes them, with their nodes loaded in
        one query and shared between the raw and the parsed inputs."""
        if not enabled():
            return super().decode_input_args(encoded)
        return decode_with_nodes(encoded, self.__dict__.setdefault("_lmlp_decoded_nodes", {}))
