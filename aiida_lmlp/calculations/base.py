"""What the ``lmlp`` CalcJobs share: one serial process, captured output, datasets as conformation archives."""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from aiida import engine, orm
from aiida.common import CalcInfo, CodeInfo
from aiida.common.folders import Folder

from aiida_lmlp.data.dataset import ARCHIVE, LmlpDatasetData
from aiida_lmlp.overrides.checkpoints import InputsEncodedOnce
from aiida_lmlp.overrides.job_threads import ThreadsPinnedToCores
from aiida_lmlp.overrides.process_links import LinksWithoutVacuousQueries

__all__ = ["LmlpCalcJob", "allocated_cores", "dataset_copy", "files_in_folder"]

#: each job's record of its input files: name → {"uuid": the node, "path": where a linked file is, else
#: null (uploaded into the job's folder), "folder": uuid of the RemoteData holding a linked file}
INPUT_FILES = "lmlp.inputs.json"

#: the model file an ``lmlp.train`` or ``lmlp.gather`` job writes (its ``potential`` output) in its folder
MODEL_FILE = "model.lmlp"


def allocated_cores(resources: dict, computer) -> int:
    """The cores a job's one ``lmlp`` process owns: processes per machine × cores per process (or cores per machine).

    As the ``computer``'s scheduler reads ``resources`` (its default processes per machine
    filled in); cores per process default to 1, what SLURM allocates to a task without
    ``--cpus-per-task``. ``lmlp`` is one process on one machine, which owns what the
    allocation gives that machine.
    """
    resources = dict(resources or {})
    scheduler = computer.get_scheduler()
    scheduler.preprocess_resources(resources, computer.get_default_mpiprocs_per_machine())
    job = scheduler.create_job_resource(**resources)
    if getattr(job, "num_cores_per_machine", None):
        return job.num_cores_per_machine
    machines = getattr(job, "num_machines", None) or 1
    per_machine = max(job.get_tot_num_mpiprocs() // machines, 1)
    return per_machine * (getattr(job, "num_cores_per_mpiproc", None) or 1)


def dataset_copy(dataset: LmlpDatasetData, name: str) -> tuple[str, str, str]:
    """A ``local_copy_list`` entry that copies ``dataset``'s archive from the repository to ``name``.

    The daemon neither reads nor converts the conformations: the archive goes to the job as
    stored (the job reads it with :func:`aiida_lmlp.formats.conformation_arrays.read_frames`).
    A training job gets the whole data stream, which grows every iteration; converting it to
    extended XYZ at each submission cost the daemon time in proportion.
    """
    return (dataset.uuid, ARCHIVE, name)


def files_in_folder(remote: orm.RemoteData, outputs: dict[str, str] | None = None) -> dict[str, dict]:
    """The files of nodes that the ``lmlp`` job which made ``remote`` holds on its computer, by node uuid.

    Its input files (from its :data:`INPUT_FILES` record: a file it linked is found where it
    really is, so that links never chain) and the files ``outputs`` names (output link label →
    file name in ``remote``, e.g. ``{"potential": "model.lmlp"}``). Each entry is
    ``{"path": absolute path, "folder": uuid of the RemoteData holding it}``; files in a folder
    that has been cleaned (``verdi calcjob cleanworkdir``) are left out. Empty when ``remote``
    is cleaned itself or its job kept no record.
    """
    job = remote.creator
    if job is None or remote.is_cleaned:
        return {}
    base = PurePosixPath(remote.get_remote_path())
    try:
        record = json.loads(job.base.repository.get_object_content(INPUT_FILES))
    except FileNotFoundError:
        record = {}
    files = {}
    for name, entry in record.items():
        if entry.get("path"):
            files[entry["uuid"]] = {"path": entry["path"], "folder": entry["folder"]}
        else:
            files[entry["uuid"]] = {"path": str(base / name), "folder": remote.uuid}
    for label, name in (outputs or {}).items():
        node = job.base.links.get_outgoing(link_label_filter=label).first()
        if node is not None:
            files[node.node.uuid] = {"path": str(base / name), "folder": remote.uuid}
    others = {entry["folder"] for entry in files.values()} - {remote.uuid}
    if others:
        query = orm.QueryBuilder().append(
            orm.RemoteData,
            filters={"uuid": {"in": sorted(others)}, f"extras.{orm.RemoteData.KEY_EXTRA_CLEANED}": True},
            project="uuid",
        )
        cleaned = set(query.all(flat=True))
        files = {uuid: entry for uuid, entry in files.items() if entry["folder"] not in cleaned}
    return files


class LmlpCalcJob(InputsEncodedOnce, LinksWithoutVacuousQueries, ThreadsPinnedToCores, engine.CalcJob):
    """Base of the ``lmlp`` CalcJobs: a serial ``lmlp`` command whose stdout and stderr are retrieved."""

    STDOUT = "lmlp.out"
    STDERR = "lmlp.err"
    THREADS = "lmlp.threads.json"  # the thread counts the job's libraries ran with (``lmlp --record-threads``)

    @classmethod
    def define(cls, spec):
        """Serial job on one machine by default (``lmlp`` parallelises with threads or one GPU)."""
        super().define(spec)
        spec.inputs["metadata"]["options"]["resources"].default = {"num_machines": 1, "num_mpiprocs_per_machine": 1}
        spec.inputs["metadata"]["options"]["withmpi"].default = False
        # what `verdi calcjob outputcat <pk>` shows without a file name
        spec.inputs["metadata"]["options"]["output_filename"].default = cls.STDOUT
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

    def stage_inputs(
        self, folder: Folder, files: list[tuple[orm.Node, str, str]], linkable: dict[str, dict] | None = None
    ) -> tuple[list, list]:
        """Upload ``files`` (node, file in its repository, name in the job), or link what ``linkable`` holds.

        ``linkable`` (node uuid → ``{"path", "folder"}``, see :func:`files_in_folder`): files already
        on this job's computer. They are linked into the job's folder (``remote_symlink_list``)
        instead of uploaded again; the nodes stay inputs of the job all the same. Writes the
        :data:`INPUT_FILES` record. Returns ``(local_copy_list, remote_symlink_list)``.
        """
        copies, links, record = [], [], {}
        for node, filename, target in files:
            source = (linkable or {}).get(node.uuid)
            if source is not None:
                links.append((self.node.computer.uuid, source["path"], target))
                record[target] = {"uuid": node.uuid, "path": source["path"], "folder": source["folder"]}
            else:
                copies.append((node.uuid, filename, target))
                record[target] = {"uuid": node.uuid, "path": None, "folder": None}
        with folder.open(INPUT_FILES, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=1, sort_keys=True)
        return copies, links

    def calcinfo(
        self,
        arguments: list[str],
        retrieve: list[str],
        local_copies: list | None = None,
        retrieve_temporary: list[str] | None = None,
        remote_links: list | None = None,
    ) -> CalcInfo:
        """One ``lmlp`` command with ``arguments``; stdout/stderr captured and retrieved with ``retrieve``.

        ``local_copies`` and ``remote_links``: what :meth:`stage_inputs` returned.

        ``retrieve_temporary``: files the parser turns into output nodes (model files, labelled or
        visited conformations). They reach the parser in a temporary folder and are not stored a
        second time in the ``retrieved`` folder: a model file with its training state is stored
        once, in its ``lmlp.potential`` node. The remote folder keeps the originals.
        """
        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = ["--record-threads", self.THREADS, *(str(a) for a in arguments)]
        codeinfo.stdout_name = self.STDOUT
        codeinfo.stderr_name = self.STDERR
        calcinfo = CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.local_copy_list = list(local_copies or [])
        calcinfo.remote_copy_list = []
        calcinfo.remote_symlink_list = list(remote_links or [])
        calcinfo.retrieve_list = [*retrieve, self.STDOUT, self.STDERR, self.THREADS]
        calcinfo.retrieve_temporary_list = list(retrieve_temporary or [])
        return calcinfo
