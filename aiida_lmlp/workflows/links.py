"""A finished process's outputs in one query.

``node.outputs.x`` and ``"x" in node.outputs`` each query every outgoing link of ``node``
(aiida-core's link manager keeps no cache); a step that looks at several outputs of a child
reads them once here instead.
"""

from __future__ import annotations

from aiida import orm
from aiida.common.links import LinkType

__all__ = ["outputs_of"]


def outputs_of(node: orm.ProcessNode) -> dict[str, orm.Node]:
    """Every output of ``node`` by link label (nested namespaces joined by ``__``, as stored)."""
    links = node.base.links.get_outgoing(link_type=(LinkType.CREATE, LinkType.RETURN)).all()
    return {link.link_label: link.node for link in links}
