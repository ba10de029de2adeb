"""Build a finished-looking CalcJobNode with a retrieved folder of recorded files, for parser tests.

After aiida-quantumespresso's ``generate_calc_job_node`` fixture: the parser sees the same
node and ``retrieved`` folder it would after a real run.
"""

from __future__ import annotations

from pathlib import Path

from aiida import orm
from aiida.common.links import LinkType
from aiida.plugins import ParserFactory


def calc_job_node(entry_point: str, computer: orm.Computer, retrieved: Path, inputs: dict) -> orm.CalcJobNode:
    """A stored CalcJobNode of ``entry_point`` with ``inputs`` linked and ``retrieved`` attached."""
    node = orm.CalcJobNode(computer=computer, process_type=f"aiida.calculations:{entry_point}")
    node.set_option("resources", {"num_machines": 1, "num_mpiprocs_per_machine": 1})
    node.set_option("max_wallclock_seconds", 3600)
    for label, value in inputs.items():
        if isinstance(value, dict):
            for key, item in value.items():
                item.store()
                node.base.links.add_incoming(item, link_type=LinkType.INPUT_CALC, link_label=f"{label}__{key}")
        else:
            value.store()
            node.base.links.add_incoming(value, link_type=LinkType.INPUT_CALC, link_label=label)
    node.store()
    folder = orm.FolderData()
    folder.base.repository.put_object_from_tree(str(retrieved))
    folder.base.links.add_incoming(node, link_type=LinkType.CREATE, link_label="retrieved")
    folder.store()
    return node


def parse(entry_point: str, node: orm.CalcJobNode):
    """``(outputs, exit status)`` of the parser run on ``node``."""
    results, calcfunction = ParserFactory(entry_point).parse_from_node(node, store_provenance=False)
    return results, calcfunction.exit_status, calcfunction.exit_message
