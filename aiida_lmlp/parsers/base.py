"""What the ``lmlp`` parsers share: reading retrieved files and the executable's error message."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from aiida.parsers import Parser

__all__ = ["LmlpParser"]


class LmlpParser(Parser):
    """Base of the ``lmlp`` parsers."""

    def has_file(self, name: str) -> bool:
        """True when ``name`` was retrieved."""
        return name in self.retrieved.base.repository.list_object_names()

    def read_text(self, name: str) -> str:
        """A retrieved file as text ('' if it was not retrieved)."""
        if not self.has_file(name):
            return ""
        return self.retrieved.base.repository.get_object_content(name, mode="r")

    def copy_out(self, name: str, folder: str | os.PathLike) -> Path:
        """Copy a retrieved file into ``folder`` (for readers that need a path)."""
        target = Path(folder) / name
        with self.retrieved.base.repository.open(name, mode="rb") as source, open(target, "wb") as handle:
            shutil.copyfileobj(source, handle)
        return target

    def error_message(self, stderr_name: str) -> str | None:
        """The message of a refused run: click prints ``Error: ...`` (or ``Usage: ...``) on stderr."""
        lines = self.read_text(stderr_name).splitlines()
        for line in reversed(lines):
            if line.startswith("Error:"):
                return line.removeprefix("Error:").strip()
        return None

    @staticmethod
    def tempdir() -> tempfile.TemporaryDirectory:
        """A scratch folder for files that must be read from a path."""
        return tempfile.TemporaryDirectory(prefix="aiida-lmlp-parser-")

    def read_potential(self, name: str):
        """``(LmlpPotentialData, None)`` from the retrieved model file ``name``, or ``(None, exit code)``."""
        from aiida_lmlp.data.potential import LmlpPotentialData
        from aiida_lmlp.potential.errors import ModelFileError

        if not self.has_file(name):
            return None, self.exit_codes.ERROR_MISSING_MODEL
        with self.tempdir() as folder:
            try:
                return LmlpPotentialData(self.copy_out(name, folder)), None
            except ModelFileError as error:
                return None, self.exit_codes.ERROR_CORRUPT_MODEL.format(message=str(error))
