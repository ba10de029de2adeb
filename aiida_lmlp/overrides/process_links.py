"""Links of a process's new nodes without aiida-core's cycle query, which cannot find anything for them.

Before aiida-core adds an input link to a process node or a create link to an output node, it
asks the database whether the link would close a cycle: whether the link's source descends from
its target (``NodeLinks.validate_incoming``, a recursive query over the links table). A process
links its inputs to its node before the node is stored, and its outputs to their nodes before
those are stored, so the target of every such link is an unstored node: it has no id, nothing in
the database descends from it, and the query always finds nothing. It still costs a query (5 ms
on an empty SQLite profile): in a profiled quickstart campaign the daemon worker spent 2.2 of its
54 busy seconds on them, mostly between one job's end and the next one's creation, where the
campaign waits (``benchmarks/campaign_overhead.py --worker-profile``).

:class:`LinksWithoutVacuousQueries` gives the process node, and each output node before it is
linked, links that skip that query while their node is unstored, and keeps every other check of
``validate_link`` (the node and link types, and the uniqueness of labels and triples). A stored
node gets aiida-core's checks unchanged, the cycle query included.
"""

from __future__ import annotations

from aiida import orm
from aiida.common import exceptions
from aiida.common.links import LinkType
from aiida.orm.nodes.links import NodeLinks
from aiida.orm.nodes.process.process import ProcessNodeLinks
from aiida.orm.utils.links import validate_link

from aiida_lmlp.overrides import enabled

__all__ = ["LinksWithoutVacuousQueries", "skip_vacuous_cycle_query"]

# the link classes whose ``validate_incoming`` is known: aiida-core's cycle query after
# ``validate_link``, preceded for a process node by the refusal of a sealed or stored node
_PLAIN = NodeLinks.validate_incoming
_PROCESS = ProcessNodeLinks.validate_incoming


class _NoCycleQueryWhileUnstored:
    """Placed before a ``NodeLinks`` class: while the node is unstored, its incoming links get every
    check of aiida-core's ``validate_incoming`` except the cycle query."""

    def validate_incoming(self, source: orm.Node, link_type: LinkType, link_label: str) -> None:
        """aiida-core's validation of a link into this node, without the database query for a cycle
        while the node is unstored (nothing can descend from it); unchanged once it is stored."""
        node = self._node
        if node.is_stored:
            super().validate_incoming(source, link_type, link_label)
            return
        if isinstance(self, ProcessNodeLinks) and node.is_sealed:
            raise exceptions.ModificationNotAllowed("Cannot add a link to a sealed node")
        validate_link(source, node, link_type, link_label, backend=node.backend)


_SUBCLASSES: dict[type, type] = {}


def skip_vacuous_cycle_query(node: orm.Node) -> orm.Node:
    """Give ``node`` links that skip the cycle query while it is unstored (see the module docstring).

    Only where the node's link class validates as aiida-core 2.x does (``NodeLinks`` or
    ``ProcessNodeLinks`` and its subclasses that keep its ``validate_incoming``); any other class is
    left alone, so a future aiida-core with other checks keeps them."""
    links = node.base.links  # cached on the node: the same object for every later link
    cls = type(links)
    if cls.validate_incoming not in (_PLAIN, _PROCESS):  # also a node given its subclass before
        return node
    subclass = _SUBCLASSES.get(cls)
    if subclass is None:
        subclass = _SUBCLASSES[cls] = type(cls.__name__, (_NoCycleQueryWhileUnstored, cls), {})
    links.__class__ = subclass
    return node


class LinksWithoutVacuousQueries:
    """Mixin for a :class:`~aiida.engine.Process`: the links to its new node and to its new outputs
    are validated without the cycle query that cannot find anything for them."""

    def _setup_inputs(self) -> None:
        if enabled():
            skip_vacuous_cycle_query(self.node)
        super()._setup_inputs()

    def update_outputs(self) -> None:
        """aiida-core's ``update_outputs``; the cycle query skipped for the outputs not stored yet."""
        for output in self._flat_outputs().values() if enabled() else ():
            if isinstance(output, orm.Node) and not output.is_stored:
                skip_vacuous_cycle_query(output)
        super().update_outputs()
