"""Parsers of the ``lmlp`` CalcJobs: files of the executables into nodes and documented exit codes."""
