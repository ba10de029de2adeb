"""Build a finished-looking CalcJobNode with a retrieved folder of recorded files, for parser tests.

After aiida-quantumespresso's ``generate_calc_job_node`` fixture: the parser sees the same
node and ``retrieved`` folder it would after a real run.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from aiida import orm
from aiida.common.links import LinkType
from aiida.plugins import ParserFactory

# the payload files each calculation lists in retrieve_temporary_list (parsed into nodes, not kept)
TEMPORARY = {
    "lmlp.train": {"model.lmlp"},
    "lmlp.gather": {"model.lmlp"},
    "lmlp.explore": {"visited.extxyz", "visited.npz"},
    "lmlp.pyscf": {"labelled.extxyz", "labelled.npz"},
}
_temporary_folders: dict[int, Path] = {}


def calc_job_node(
    entry_point: str,
    computer: orm.Computer,
    retrieved: Path,
    inputs: dict,
    temporary: bool = True,
    options: dict | None = None,
) -> orm.CalcJobNode:
    """A stored CalcJobNode of ``entry_point`` with ``inputs`` linked and ``retrieved`` attached.

    As after a real run, the payload files (:data:`TEMPORARY`) go to a temporary folder that
    :func:`parse` hands to the parser, the rest into ``retrieved``; ``temporary=False`` puts
    everything into ``retrieved`` (how nodes made before the temporary retrieval look).
    ``options``: further ``metadata.options`` of the calculation (e.g. ``output_filename``).
    """
    node = orm.CalcJobNode(computer=computer, process_type=f"aiida.calculations:{entry_point}")
    node.set_option("resources", {"num_machines": 1, "num_mpiprocs_per_machine": 1})
    node.set_option("max_wallclock_seconds", 3600)
    for key, value in (options or {}).items():
        node.set_option(key, value)
    for label, value in inputs.items():
        if isinstance(value, dict):
            for key, item in value.items():
                item.store()
                node.base.links.add_incoming(item, link_type=LinkType.INPUT_CALC, link_label=f"{label}__{key}")
        else:
            value.store()
            node.base.links.add_incoming(value, link_type=LinkType.INPUT_CALC, link_label=label)
    node.store()
    payload = TEMPORARY.get(entry_point, set()) if temporary else set()
    kept = Path(tempfile.mkdtemp(prefix="lmlp-retrieved-"))
    moved = Path(tempfile.mkdtemp(prefix="lmlp-temporary-"))
    for path in Path(retrieved).iterdir():
        shutil.copy(path, (moved if path.name in payload else kept) / path.name)
    folder = orm.FolderData()
    folder.base.repository.put_object_from_tree(str(kept))
    folder.base.links.add_incoming(node, link_type=LinkType.CREATE, link_label="retrieved")
    folder.store()
    if payload:
        _temporary_folders[node.pk] = moved
    return node


def parse(entry_point: str, node: orm.CalcJobNode):
    """``(outputs, exit status)`` of the parser run on ``node``."""
    results, calcfunction = ParserFactory(entry_point).parse_from_node(
        node, store_provenance=False, retrieved_temporary_folder=_temporary_folders.get(node.pk)
    )
    return results, calcfunction.exit_status, calcfunction.exit_message
