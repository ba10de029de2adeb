"""The model-version registry: every version of a campaign, its lineage, differences and exports.

Each version is an ``lmlp.potential`` node with extras ``lmlp_campaign``, ``lmlp_version``,
``lmlp_parent`` (UUID of the previous version), ``lmlp_iteration`` and ``lmlp_dataset_size``,
and is put into the group ``lmlp/campaign/<name>``. A campaign's versions are found by their
extras as well as by the group, so that a campaign imported from an archive that holds its nodes
but not the group (``verdi archive create -N <work chain>``) is found as it was. Lineage comes
from the provenance graph: the DFT calculations whose labels reached a version's training data.
Torch-free (the data behind a version is read from the model file's header and its safetensors
payload with NumPy).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from aiida import orm
from aiida.common.links import LinkType

from aiida_lmlp.data.dataset import LmlpDatasetData
from aiida_lmlp.data.potential import LmlpPotentialData

__all__ = [
    "GROUP_PREFIX",
    "campaign_group",
    "diff_versions",
    "export_version",
    "get_version",
    "lineage",
    "list_campaigns",
    "list_versions",
    "register_version",
    "training_state",
]

GROUP_PREFIX = "lmlp/campaign/"


def campaign_group(name: str) -> orm.Group:
    """The group of a campaign's versions (created on first use)."""
    group, _ = orm.Group.collection.get_or_create(label=f"{GROUP_PREFIX}{name}")
    return group


def list_campaigns() -> list[str]:
    """Names of all campaigns in the profile: those of the campaign groups and of the versions' extras."""
    query = orm.QueryBuilder().append(orm.Group, filters={"label": {"like": f"{GROUP_PREFIX}%"}}, project="label")
    names = {label.removeprefix(GROUP_PREFIX) for label in query.all(flat=True)}
    query = orm.QueryBuilder().append(
        LmlpPotentialData, filters={"extras": {"has_key": "lmlp_campaign"}}, project="extras.lmlp_campaign"
    )
    names.update(name for name in query.all(flat=True) if isinstance(name, str))
    return sorted(names)


def register_version(
    potential: LmlpPotentialData,
    campaign: str,
    *,
    version: int,
    parent: LmlpPotentialData | None,
    iteration: int,
    dataset_size: int,
) -> None:
    """Put ``potential`` into the campaign's group with its version extras."""
    potential.base.extras.set_many(
        {
            "lmlp_campaign": campaign,
            "lmlp_version": int(version),
            "lmlp_parent": parent.uuid if parent is not None else None,
            "lmlp_iteration": int(iteration),
            "lmlp_dataset_size": int(dataset_size),
        }
    )
    campaign_group(campaign).add_nodes(potential)


def _versions(campaign: str) -> list[LmlpPotentialData]:
    """The campaign's versions, oldest first: the potentials of its group and those whose extras name it."""
    query = orm.QueryBuilder()
    query.append(orm.Group, filters={"label": f"{GROUP_PREFIX}{campaign}"}, tag="group")
    query.append(LmlpPotentialData, with_group="group", project="*")
    nodes = {node.pk: node for node in query.all(flat=True)}
    query = orm.QueryBuilder().append(
        LmlpPotentialData,
        filters={"extras.lmlp_campaign": campaign, "extras": {"has_key": "lmlp_version"}},
        project="*",
    )
    nodes.update((node.pk, node) for node in query.all(flat=True))
    return sorted(nodes.values(), key=lambda node: (node.base.extras.get("lmlp_version", -1), node.pk))


def list_versions(campaign: str) -> list[dict]:
    """One row per version: number, node, data size, test RMSEs (eV/atom, eV/Å), epochs."""
    rows = []
    for node in _versions(campaign):
        extras, attributes = node.base.extras.all, node.base.attributes.all
        rows.append(
            {
                "version": extras.get("lmlp_version"),
                "pk": node.pk,
                "uuid": node.uuid,
                "parent": extras.get("lmlp_parent"),
                "iteration": extras.get("lmlp_iteration"),
                "dataset_size": extras.get("lmlp_dataset_size"),
                "rmse_energy_per_atom": attributes.get("rmse_energy_per_atom"),
                "rmse_forces": attributes.get("rmse_forces"),
                "first_test_rmse_energy_per_atom": attributes.get("first_test_rmse_energy_per_atom"),
                "first_test_rmse_forces": attributes.get("first_test_rmse_forces"),
                "epochs": attributes.get("epochs"),
                "members": attributes.get("members"),
                "ctime": node.ctime.isoformat(timespec="seconds"),
            }
        )
    return rows


def get_version(campaign: str, version: int) -> LmlpPotentialData:
    """The potential of ``version`` in ``campaign``; a negative ``version`` counts back (``-1``: the latest)."""
    versions = _versions(campaign)
    if not versions:
        raise KeyError(f"campaign {campaign!r} has no versions (known campaigns: {', '.join(list_campaigns())})")
    if -len(versions) <= version < 0:
        return versions[version]
    for node in versions:
        if node.base.extras.get("lmlp_version") == version:
            return node
    known = ", ".join(str(n.base.extras.get("lmlp_version")) for n in versions)
    raise KeyError(f"campaign {campaign!r} has no version {version} (versions: {known})")


def training_state(potential: LmlpPotentialData) -> dict:
    """The ids a version was trained and tested on, and those the adaptive selection excluded.

    ``{"ids": set, "test": set, "excluded_by_all": set, "excluded_by_any": set}``; a conformation
    is excluded by a member when its selection weight S_hist fell to 0 (Algorithm 2).
    """
    from safetensors.numpy import load

    from aiida_lmlp.formats.model_header import read_model_header

    with tempfile.TemporaryDirectory() as folder:
        path = potential.export(Path(folder) / "model.lmlp")
        header = read_model_header(path)
        tensors = load(path.read_bytes())
    trainer = (header.config.get("training") or {}).get("trainer") or {}
    ids, test, excluded_sets = set(), set(), []
    for m, member in enumerate(trainer.get("members", [])):
        selection_ids = member.get("selection_ids", [])
        ids.update(selection_ids)
        test.update(member.get("test", []))
        s_hist = tensors.get(f"training.selection.{m}.s_hist")
        excluded = {i for i, s in zip(selection_ids, s_hist) if s <= 0} if s_hist is not None else set()
        excluded_sets.append(excluded)
    return {
        "ids": ids | test,
        "test": test,
        "excluded_by_all": set.intersection(*excluded_sets) if excluded_sets else set(),
        "excluded_by_any": set.union(*excluded_sets) if excluded_sets else set(),
    }


def _ancestors(node: orm.Node) -> list[orm.Node]:
    from aiida.tools.graph.graph_traversers import traverse_graph

    result = traverse_graph(
        [node.pk], get_links=False, links_backward=[LinkType.CREATE, LinkType.INPUT_CALC, LinkType.INPUT_WORK]
    )
    return [orm.load_node(pk) for pk in result["nodes"]]


def lineage(potential: LmlpPotentialData) -> dict:
    """Where a version came from: its parent versions and the DFT calculations behind its data."""
    ancestors = _ancestors(potential)
    dft = [n for n in ancestors if isinstance(n, orm.CalcJobNode) and (n.process_type or "").endswith("lmlp.pyscf")]
    parents = [n for n in ancestors if isinstance(n, LmlpPotentialData) and n.pk != potential.pk]
    trainings = [
        n for n in ancestors if isinstance(n, orm.CalcJobNode) and (n.process_type or "").endswith("lmlp.train")
    ]
    return {
        "potential": potential.pk,
        "parents": sorted(
            (
                {"pk": n.pk, "version": n.base.extras.get("lmlp_version"), "epochs": n.base.attributes.get("epochs")}
                for n in parents
            ),
            key=lambda row: row["pk"],
        ),
        "trainings": sorted(n.pk for n in trainings),
        "dft_calculations": sorted(
            (
                {
                    "pk": n.pk,
                    "structures": n.inputs.structures.count,
                    "labelled": n.outputs.labelled.count if "labelled" in n.outputs else 0,
                    "exit_status": n.exit_status,
                    "method": (n.outputs.output_parameters.get("method") if "output_parameters" in n.outputs else None),
                }
                for n in dft
            ),
            key=lambda row: row["pk"],
        ),
    }


def _training_datasets(potential: LmlpPotentialData) -> list[LmlpDatasetData]:
    """The labelled datasets the version's training calculations read."""
    return [
        n
        for n in _ancestors(potential)
        if isinstance(n, LmlpDatasetData)
        and any(
            (link.node.process_type or "").endswith(("lmlp.train", "lmlp.gather"))
            for link in n.base.links.get_outgoing(link_type=LinkType.INPUT_CALC).all()
        )
    ]


def diff_versions(old: LmlpPotentialData, new: LmlpPotentialData) -> dict:
    """What changed from ``old`` to ``new``: data added and removed, exclusions, RMSE change."""
    a, b = training_state(old), training_state(new)

    def rmse(node):
        return node.base.attributes.get("rmse_energy_per_atom"), node.base.attributes.get("rmse_forces")

    (e_old, f_old), (e_new, f_new) = rmse(old), rmse(new)
    return {
        "old": old.pk,
        "new": new.pk,
        "conformations_old": len(a["ids"]),
        "conformations_new": len(b["ids"]),
        "added": sorted(b["ids"] - a["ids"]),
        "removed": sorted(a["ids"] - b["ids"]),
        "excluded_by_all_members": sorted(b["excluded_by_all"]),
        "newly_excluded_by_any_member": sorted(b["excluded_by_any"] - a["excluded_by_any"]),
        "rmse_energy_per_atom": {"old": e_old, "new": e_new, "change": e_new - e_old},
        "rmse_forces": {"old": f_old, "new": f_new, "change": f_new - f_old},
        "units": {"rmse_energy_per_atom": "eV/atom", "rmse_forces": "eV/Angstrom"},
    }


def export_version(potential: LmlpPotentialData, folder: str | os.PathLike) -> tuple[Path, Path]:
    """Write the model file and the conformations it was trained on (extxyz) into ``folder``."""
    from ase.io import write

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = potential.export(folder / "model.lmlp")
    wanted = training_state(potential)["ids"]
    frames, seen = [], set()
    for dataset in sorted(_training_datasets(potential), key=lambda n: n.pk):
        for identifier, atoms in zip(dataset.ids, dataset.to_atoms()):
            if identifier in wanted and identifier not in seen:
                seen.add(identifier)
                frames.append(atoms)
    data = folder / "training_data.extxyz"
    write(data, frames, format="extxyz")
    return model, data
