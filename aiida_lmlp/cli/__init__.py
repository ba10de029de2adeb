"""The ``lmlp`` command line (a thin click group over the library)."""

from .main import main

__all__ = ["main"]
