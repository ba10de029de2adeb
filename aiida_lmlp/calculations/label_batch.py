"""What the in-process labellers' CalcJobs share: a batch of single points in one ``lmlp label-*`` run.

``lmlp.pyscf`` (``lmlp label-pyscf``) and ``lmlp.xtb`` (``lmlp label-xtb``) write the same files
(``status.jsonl``, ``labelled.extxyz``, ``labelled.npz``), have the same outputs and exit codes,
and are read by the same parser (:class:`aiida_lmlp.parsers.label_batch.LabelBatchParser`): the
contract ``lmlp.label`` relies on for every labeller (see :mod:`aiida_lmlp.workflows.labellers`).
"""

from __future__ import annotations

import json
from typing import Any

from aiida import orm
from aiida.common import CalcInfo
from aiida.common.folders import Folder

from aiida_lmlp.data.dataset import LmlpDatasetData

from .base import LmlpCalcJob, dataset_copy

__all__ = ["SinglePointBatchCalculation", "labelled_text"]


def labelled_text(labelled: int, total: int) -> str:
    """How many of a batch's ``total`` structures got labels, for an exit message: never "the others" when none."""
    if labelled == 0:
        return f"none of the {total} structures is labelled" if total != 1 else "the structure is not labelled"
    if labelled == total:
        return f"all {total} structures are labelled"
    return f"{labelled} of the {total} structures are labelled"


def _validate_structures(structures: LmlpDatasetData, _) -> str | None:
    if structures.count == 0:
        return f"structures: lmlp.dataset<{structures.pk}> is empty: nothing to label"
    return None


class SinglePointBatchCalculation(LmlpCalcJob):
    """Label a batch of structures with one ``lmlp label-<code>`` command.

    Converged structures become the ``labelled`` dataset (eV, eV/Å, eV/Å³) even when others in
    the batch did not converge, failed or were cut off; those are listed in ``failed``.
    Subclasses set :attr:`COMMAND`, :attr:`CODE`, :attr:`PARSER` and :meth:`parameters_class`.
    """

    COMMAND = ""
    """The ``lmlp`` subcommand, e.g. ``label-pyscf``."""
    CODE = ""
    """The program's name in messages, e.g. ``PySCF``."""
    PARSER = ""
    """The parser entry point."""
    PARAMETERS_HELP = ""

    STRUCTURES = "structures.npz"
    PARAMETERS = "parameters.json"
    LABELLED = "labelled.extxyz"
    LABELLED_ARCHIVE = "labelled.npz"
    STATUS = "status.jsonl"

    @classmethod
    def parameters_class(cls) -> Any:
        """The settings class of the labeller (``from_dict`` validates, ``ParameterError`` names the key)."""
        raise NotImplementedError

    @classmethod
    def _validate_parameters(cls, parameters: orm.Dict | None, _) -> str | None:
        if parameters is None:
            return None
        try:
            cls.parameters_class().from_dict(parameters.get_dict())
        except ValueError as error:
            return f"parameters: {error}"
        return None

    @classmethod
    def define(cls, spec):
        """Inputs, outputs and exit codes."""
        super().define(spec)
        spec.input("structures", valid_type=LmlpDatasetData, validator=_validate_structures)
        spec.input(
            "parameters",
            valid_type=orm.Dict,
            required=False,
            validator=cls._validate_parameters,
            help=cls.PARAMETERS_HELP,
        )
        spec.inputs["metadata"]["options"]["parser_name"].default = cls.PARSER
        spec.output("labelled", valid_type=LmlpDatasetData, required=False, help="Converged single points.")
        spec.output("failed", valid_type=orm.List, help="Structures without a label: index, id, status, message.")
        spec.output("output_parameters", valid_type=orm.Dict, help="Counts, method, protocol and timings.")
        spec.default_output_node = "output_parameters"
        spec.exit_code(
            300, "ERROR_MISSING_OUTPUT", invalidates_cache=True, message=f"lmlp {cls.COMMAND} wrote no status."
        )
        spec.exit_code(
            310,
            "ERROR_SCF_NOT_CONVERGED",
            invalidates_cache=True,
            message="The SCF did not converge for {count} structure(s) (index {indices}); {labelled}.",
        )
        spec.exit_code(
            311,
            "ERROR_STRUCTURE_FAILED",
            invalidates_cache=True,
            message=f"{cls.CODE} failed for {{count}} structure(s): {{message}}; {{labelled}}.",
        )
        spec.exit_code(
            320,
            "ERROR_TERMINATED",
            invalidates_cache=True,
            message="The job was terminated (signal {signal}, wall time or kill) after {completed} of {count} "
            "structures; {labelled}.",
        )

    def prepare_for_submission(self, folder: Folder) -> CalcInfo:
        """Structures as a conformation archive and the parameters as JSON."""
        parameters = self.inputs.parameters.get_dict() if "parameters" in self.inputs else {}
        with folder.open(self.PARAMETERS, "w", encoding="utf-8") as handle:
            json.dump(parameters, handle, indent=1, sort_keys=True)
        arguments = [self.COMMAND, "--structures", self.STRUCTURES, "--parameters", self.PARAMETERS]
        arguments += ["--out", self.LABELLED, "--archive", self.LABELLED_ARCHIVE, "--status", self.STATUS]
        copies = [dataset_copy(self.inputs.structures, self.STRUCTURES)]
        return self.calcinfo(
            arguments, [self.STATUS], copies, retrieve_temporary=[self.LABELLED, self.LABELLED_ARCHIVE]
        )
