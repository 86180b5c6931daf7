"""Sphinx configuration: Markdown pages via MyST, API pages via autodoc."""

project = "imagehub"
author = "imagehub developers"
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "example-plugin/**"]
myst_heading_anchors = 3
autodoc_typehints = "description"
suppress_warnings = ["myst.xref_missing"]
html_theme = "alabaster"
