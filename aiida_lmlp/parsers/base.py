"""What the ``lmlp`` parsers share: reading retrieved files and the executable's error message."""

from __future__ import annotations

import os
import shutil
import tempfile
from functools import cached_property
from pathlib import Path

from aiida.parsers import Parser

__all__ = ["LmlpParser"]


class LmlpParser(Parser):
    """Base of the ``lmlp`` parsers.

    Files come from the temporary retrieval folder (the payloads the calculation lists in
    ``retrieve_temporary_list``) or from the ``retrieved`` folder; subclasses implement
    :meth:`parse_files` and read through :meth:`has_file`, :meth:`read_text` and :meth:`path_of`.
    """

    temporary: Path | None = None

    @cached_property
    def _retrieved_names(self) -> set[str]:
        """Names in the ``retrieved`` folder, listed once per parse (``self.retrieved`` is a query each time)."""
        return set(self._retrieved_folder.base.repository.list_object_names())

    @cached_property
    def _retrieved_folder(self):
        """The ``retrieved`` folder, looked up once per parse."""
        return self.retrieved

    def parse(self, **kwargs):
        """Note the temporary folder (if the engine gave one) and parse."""
        folder = kwargs.get("retrieved_temporary_folder")
        self.temporary = Path(folder) if folder else None
        return self.parse_files()

    def parse_files(self):
        """Attach the outputs; return an exit code or None."""
        raise NotImplementedError

    def _temporary_file(self, name: str) -> Path | None:
        path = self.temporary / name if self.temporary is not None else None
        return path if path is not None and path.is_file() else None

    def has_file(self, name: str) -> bool:
        """True when ``name`` was retrieved (temporarily or into ``retrieved``)."""
        return self._temporary_file(name) is not None or name in self._retrieved_names

    def read_text(self, name: str) -> str:
        """A retrieved file as text ('' if it was not retrieved)."""
        temporary = self._temporary_file(name)
        if temporary is not None:
            return temporary.read_text(encoding="utf-8")
        if name not in self._retrieved_names:
            return ""
        return self._retrieved_folder.base.repository.get_object_content(name, mode="r")

    def path_of(self, name: str, folder: str | os.PathLike) -> Path:
        """A path to the retrieved file ``name``: the temporary file itself, or a copy in ``folder``."""
        temporary = self._temporary_file(name)
        if temporary is not None:
            return temporary
        target = Path(folder) / name
        with self._retrieved_folder.base.repository.open(name, mode="rb") as source, open(target, "wb") as handle:
            shutil.copyfileobj(source, handle)
        return target

    def error_message(self, stderr_name: str) -> str | None:
        """The message of a refused run: click prints ``Error: ...`` (or ``Usage: ...``) on stderr."""
        lines = self.read_text(stderr_name).splitlines()
        for line in reversed(lines):
            if line.startswith("Error:"):
                return line.removeprefix("Error:").strip()
        return None

    def linked_input_missing(self, message: str) -> bool:
        """True when ``message`` says that an input file the job linked from an earlier job's folder is gone."""
        import json
        import re

        from aiida_lmlp.calculations.base import INPUT_FILES

        try:
            record = json.loads(self.node.base.repository.get_object_content(INPUT_FILES))
        except FileNotFoundError:
            return False
        linked = [name for name, entry in record.items() if entry.get("path")]
        return "does not exist" in message and any(
            re.search(rf"(?<![\w.]){re.escape(name)}(?![\w.])", message) for name in linked
        )

    @staticmethod
    def tempdir() -> tempfile.TemporaryDirectory:
        """A scratch folder for files that must be read from a path."""
        return tempfile.TemporaryDirectory(prefix="aiida-lmlp-parser-")

    def read_potential(self, name: str):
        """``(LmlpPotentialData, None)`` from the retrieved model file ``name``, or ``(None, exit code)``."""
        from aiida_lmlp.data.potential import LmlpPotentialData
        from aiida_lmlp.formats.errors import ModelFileError

        if not self.has_file(name):
            return None, self.exit_codes.ERROR_MISSING_MODEL
        with self.tempdir() as folder:
            try:
                return LmlpPotentialData(self.path_of(name, folder)), None
            except ModelFileError as error:
                return None, self.exit_codes.ERROR_CORRUPT_MODEL.format(message=str(error))
