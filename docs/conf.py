"""Sphinx configuration: MyST Markdown, autodoc, sphinx-click and aiida-core's process directives."""

project = "aiida-lmlp"
author = "aiida-lmlp developers"
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx_click",
    "aiida.sphinxext",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
autodoc_member_order = "bysource"
autodoc_typehints = "description"
html_theme = "alabaster"
html_title = "aiida-lmlp"

# aiida-core's process directives build each spec with a loaded profile: a throw-away in-memory one
from aiida import load_profile  # noqa: E402
from aiida.storage.sqlite_temp import SqliteTempBackend  # noqa: E402

load_profile(SqliteTempBackend.create_profile("aiida-lmlp-docs"), allow_switch=True)
