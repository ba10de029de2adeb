"""What the ``lmlp`` CalcJobs share: one serial process, captured output, datasets as conformation archives."""

from __future__ import annotations

from aiida import engine
from aiida.common import CalcInfo, CodeInfo

from aiida_lmlp.data.dataset import ARCHIVE, LmlpDatasetData
from aiida_lmlp.overrides.checkpoints import InputsEncodedOnce
from aiida_lmlp.overrides.process_links import LinksWithoutVacuousQueries

__all__ = ["LmlpCalcJob", "dataset_copy"]


def dataset_copy(dataset: LmlpDatasetData, name: str) -> tuple[str, str, str]:
    """A ``local_copy_list`` entry that copies ``dataset``'s archive from the repository to ``name``.

    The daemon neither reads nor converts the conformations: the archive goes to the job as
    stored (the job reads it with :func:`aiida_lmlp.formats.conformation_arrays.read_frames`).
    A training job gets the whole data stream, which grows every iteration; converting it to
    extended XYZ at each submission cost the daemon time in proportion.
    """
    return (dataset.uuid, ARCHIVE, name)


class LmlpCalcJob(InputsEncodedOnce, LinksWithoutVacuousQueries, engine.CalcJob):
    """Base of the ``lmlp`` CalcJobs: a serial ``lmlp`` command whose stdout and stderr are retrieved."""

    STDOUT = "lmlp.out"
    STDERR = "lmlp.err"

    @classmethod
    def define(cls, spec):
        """Serial job on one machine by default (``lmlp`` parallelises with threads or one GPU)."""
        super().define(spec)
        spec.inputs["metadata"]["options"]["resources"].default = {"num_machines": 1, "num_mpiprocs_per_machine": 1}
        spec.inputs["metadata"]["options"]["withmpi"].default = False
        spec.exit_code(
            302,
            "ERROR_INVALID_INPUT",
            invalidates_cache=True,
            message="lmlp refused its input: {message}",
        )
        spec.exit_code(
            303,
            "ERROR_CRASHED",
            invalidates_cache=True,
            message="lmlp stopped without finishing its output (crash or kill): {message}",
        )

    def calcinfo(
        self,
        arguments: list[str],
        retrieve: list[str],
        local_copies: list | None = None,
        retrieve_temporary: list[str] | None = None,
    ) -> CalcInfo:
        """One ``lmlp`` command with ``arguments``; stdout/stderr captured and retrieved with ``retrieve``.

        ``retrieve_temporary``: files the parser turns into output nodes (model files, labelled or
        visited conformations). They reach the parser in a temporary folder and are not stored a
        second time in the ``retrieved`` folder: a model file with its training state is stored
        once, in its ``lmlp.potential`` node. The remote folder keeps the originals.
        """
        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = [str(a) for a in arguments]
        codeinfo.stdout_name = self.STDOUT
        codeinfo.stderr_name = self.STDERR
        calcinfo = CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.local_copy_list = list(local_copies or [])
        calcinfo.remote_copy_list = []
        calcinfo.retrieve_list = [*retrieve, self.STDOUT, self.STDERR]
        calcinfo.retrieve_temporary_list = list(retrieve_temporary or [])
        return calcinfo
