"""``lmlp.cp2k_batch``: the CP2K adapter of the labeller interface (a ``Cp2kCalculation`` per structure).

For every structure of the batch a ``Cp2kCalculation`` runs a Quickstep single point built by
:func:`aiida_lmlp.labelling.cp2k_input.cp2k_input` and parsed by ``lmlp.cp2k`` (energy, forces,
stress in eV units). The batch's outputs and exit codes are those of every labeller
(:mod:`aiida_lmlp.workflows.labellers`), so that ``lmlp.label`` retries and drops CP2K
structures as it does PySCF ones. Needs the ``cp2k`` extra (aiida-cp2k) and a ``cp2k`` code.
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction

from aiida_lmlp.calculations.label_batch import labelled_text
from aiida_lmlp.data.dataset import LmlpDatasetData
from aiida_lmlp.overrides.checkpoints import InputsEncodedOnce
from aiida_lmlp.overrides.process_links import LinksWithoutVacuousQueries
from aiida_lmlp.workflows.links import outputs_of
from aiida_lmlp.workflows.reporting import CallerNamedReport

__all__ = ["Cp2kBatchWorkChain", "attach_cp2k_labels"]

# Cp2kCalculation exit statuses and what they mean for a structure (see aiida_lmlp.parsers.cp2k)
NOT_CONVERGED = {450}
REFUSED = {304}  # CP2K aborted with a message: wrong multiplicity, a basis set missing for an element ...
INTERRUPTED = {400, 120}  # CP2K's own wall time, the scheduler's

DEFAULT_OPTIONS = {"withmpi": False, "resources": {"num_machines": 1, "num_mpiprocs_per_machine": 1}}


def _validate_parameters(parameters: orm.Dict, _) -> str | None:
    from aiida_lmlp.labelling.cp2k_input import Cp2kParameters

    try:
        Cp2kParameters.from_dict(parameters.get_dict())
    except ValueError as error:
        return f"parameters: {error}"
    return None


def _validate_structures(structures: LmlpDatasetData, _) -> str | None:
    if structures.count == 0:
        return f"structures: lmlp.dataset<{structures.pk}> is empty: nothing to label"
    return None


@calcfunction
def attach_cp2k_labels(structures: LmlpDatasetData, method: orm.Str, protocol: orm.Dict, **labels) -> LmlpDatasetData:
    """The conformations of ``structures`` named in ``labels`` (``s<index>`` → ``lmlp_labels`` of a CP2K run),
    with those labels (eV, eV/Å, eV/Å³), as one dataset recording ``method`` and ``protocol``.

    A calcfunction: each labelled conformation links to the ``Cp2kCalculation`` that computed it.
    """
    frames = structures.to_atoms()
    labelled = []
    for key in sorted(labels, key=lambda k: int(k[1:])):
        atoms = frames[int(key[1:])]
        atoms.calc = None
        arrays = labels[key]
        atoms.info.pop("conformation_id", None)
        atoms.info["energy"] = float(arrays.get_array("energy")[0])
        atoms.arrays["forces"] = arrays.get_array("forces")
        if "stress" in arrays.get_arraynames():
            atoms.info["stress"] = arrays.get_array("stress")
        atoms.info["method"] = method.value
        labelled.append(atoms)
    return LmlpDatasetData.from_atoms(
        labelled, label_method=method.value, label_protocol=protocol.get_dict(), source="CP2K labels"
    )


class Cp2kBatchWorkChain(CallerNamedReport, InputsEncodedOnce, LinksWithoutVacuousQueries, WorkChain):
    """Label a batch of structures with CP2K: one ``Cp2kCalculation`` per structure, all at once."""

    @classmethod
    def define(cls, spec):
        """Inputs, outline, outputs and the labeller exit codes."""
        super().define(spec)
        spec.input("code", valid_type=orm.AbstractCode, help="The cp2k executable (e.g. Debian's cp2k).")
        spec.input("structures", valid_type=LmlpDatasetData, validator=_validate_structures)
        spec.input(
            "parameters",
            valid_type=orm.Dict,
            default=lambda: orm.Dict({}),
            validator=_validate_parameters,
            help="Cp2kParameters: method, basis, cutoff (eV), kpoint_density, smearing, dispersion, SCF settings.",
        )
        spec.input(
            "options",
            valid_type=orm.Dict,
            required=False,
            help="metadata.options of every Cp2kCalculation (default: serial, no MPI).",
        )
        spec.outline(cls.run_calculations, cls.gather)
        spec.output("labelled", valid_type=LmlpDatasetData, required=False, help="Converged single points.")
        spec.output("failed", valid_type=orm.List, help="Structures without a label: index, id, status, message.")
        spec.output("output_parameters", valid_type=orm.Dict, help="Counts, parameters, protocol, CP2K version.")
        spec.exit_code(
            303, "ERROR_CRASHED", message="CP2K stopped without finishing for {count} structure(s): {message}"
        )
        spec.exit_code(
            310,
            "ERROR_SCF_NOT_CONVERGED",
            message="The SCF did not converge for {count} structure(s) (index {indices}); {labelled}.",
        )
        spec.exit_code(
            311,
            "ERROR_STRUCTURE_FAILED",
            message="CP2K failed for {count} structure(s): {message}; {labelled}.",
        )
        spec.exit_code(
            320,
            "ERROR_TERMINATED",
            message="{count} calculation(s) ran out of wall time or were killed; {labelled}.",
        )

    def run_calculations(self):
        """One Cp2kCalculation per structure; a structure CP2K cannot take is recorded at once."""
        from aiida.plugins import CalculationFactory

        from aiida_lmlp.labelling.cp2k_input import Cp2kParameters, cp2k_input

        Cp2kCalculation = CalculationFactory("cp2k")
        parameters = Cp2kParameters.from_dict(self.inputs.parameters.get_dict())
        options = {**DEFAULT_OPTIONS, **(self.inputs.options.get_dict() if "options" in self.inputs else {})}
        options["parser_name"] = "lmlp.cp2k"
        self.ctx.refused = []
        calculations = {}
        for index, atoms in enumerate(self.inputs.structures.to_atoms()):
            try:
                data, structure, mesh = cp2k_input(atoms, parameters)
            except ValueError as error:
                self.ctx.refused.append([index, str(error)])
                continue
            inputs = {
                "code": self.inputs.code,
                "parameters": orm.Dict(data),
                "structure": orm.StructureData(ase=structure),
                "metadata": {"options": options, "call_link_label": f"cp2k_{index:04d}"},
            }
            if mesh != (1, 1, 1):
                kpoints = orm.KpointsData()
                kpoints.set_kpoints_mesh(list(mesh))
                inputs["kpoints"] = kpoints
            calculations[f"s{index}"] = self.submit(Cp2kCalculation, **inputs)
        return ToContext(**calculations)

    def gather(self):
        """Labels into one dataset; every other structure into ``failed`` with its status."""
        from aiida_lmlp.labelling.cp2k_input import Cp2kParameters
        from aiida_lmlp.parsers.cp2k import LABELS

        ids = self.inputs.structures.ids
        parameters = Cp2kParameters.from_dict(self.inputs.parameters.get_dict())
        failed = [
            {"index": index, "id": ids[index], "status": "error", "message": message}
            for index, message in self.ctx.refused
        ]
        labels, versions, steps = {}, set(), {}
        for index in range(len(ids)):
            key = f"s{index}"
            if key not in self.ctx:
                continue
            node = self.ctx[key]
            outputs = outputs_of(node)
            summary = outputs["output_parameters"].get_dict() if "output_parameters" in outputs else {}
            if "cp2k_version" in summary:
                versions.add(summary["cp2k_version"])
            if node.is_finished_ok and LABELS in outputs:
                labels[key] = outputs[LABELS]
                steps[str(index)] = summary.get("scf_steps")
                continue
            status, message = self._outcome(node, summary)
            failed.append({"index": index, "id": ids[index], "status": status, "message": message})
        if labels:
            self.out(
                "labelled",
                attach_cp2k_labels(
                    self.inputs.structures,
                    orm.Str(parameters.method_label()),
                    orm.Dict(parameters.protocol().to_dict()),
                    **labels,
                    metadata={"call_link_label": "attach_labels"},
                ),
            )
        failed.sort(key=lambda entry: entry["index"])
        self.out("failed", orm.List(failed).store())
        counts = {s: sum(entry["status"] == s for entry in failed) for s in ("not_converged", "error", "crashed")}
        self.out(
            "output_parameters",
            orm.Dict(
                {
                    "count": len(ids),
                    "converged": len(labels),
                    "not_converged": counts["not_converged"],
                    "errors": counts["error"],
                    "crashed": counts["crashed"],
                    "not_attempted": sum(entry["status"] == "not_attempted" for entry in failed),
                    "parameters": parameters.to_dict(),
                    "protocol": parameters.protocol().to_dict(),
                    "method": parameters.method_label(),
                    "versions": {"cp2k": sorted(versions)},
                    "scf_steps": steps,
                }
            ).store(),
        )
        return self._batch_exit_code(failed, labelled_text(len(labels), len(ids)))

    @staticmethod
    def _outcome(node, summary: dict) -> tuple[str, str]:
        """The labeller status of a failed Cp2kCalculation, and why."""
        label = f"{node.process_label}<{node.pk}>"
        if node.is_killed:
            return "not_attempted", f"{label} was killed"
        status = node.exit_status
        if status in NOT_CONVERGED:
            return "not_converged", f"{label}: SCF not converged"
        if status in REFUSED:
            return "error", f"CP2K aborted: {summary.get('abort_message') or node.exit_message}"
        if status in INTERRUPTED:
            return "not_attempted", f"{label}: {node.exit_message}"
        reason = summary.get("error") or node.exit_message or ("excepted" if node.is_excepted else f"exit {status}")
        return "crashed", f"{label}: {reason}"

    def _batch_exit_code(self, failed: list[dict], labelled: str):
        def of(status):
            return [entry for entry in failed if entry["status"] == status]

        if of("crashed"):
            text = "; ".join(f"{e['index']}: {e['message']}" for e in of("crashed")[:3])
            return self.exit_codes.ERROR_CRASHED.format(count=len(of("crashed")), message=text)
        if of("not_attempted"):
            return self.exit_codes.ERROR_TERMINATED.format(count=len(of("not_attempted")), labelled=labelled)
        if of("error"):
            text = "; ".join(f"{e['index']}: {e['message']}" for e in of("error")[:3])
            return self.exit_codes.ERROR_STRUCTURE_FAILED.format(
                count=len(of("error")), message=text, labelled=labelled
            )
        if of("not_converged"):
            indices = ", ".join(str(e["index"]) for e in of("not_converged"))
            return self.exit_codes.ERROR_SCF_NOT_CONVERGED.format(
                count=len(of("not_converged")), indices=indices, labelled=labelled
            )
        return None
