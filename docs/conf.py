"""Sphinx configuration: user guide in Markdown (MyST), API reference from the numpy-style
docstrings of the *installed* laqcore (autodoc imports it). Build offline with

    python -m pip install ".[docs]"
    python -m sphinx -W --keep-going -b html docs build/docs-html
"""

from __future__ import annotations

import laqcore

project = "laqcore"
author = "laqcore developers"
copyright = "laqcore developers"
release = laqcore.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3

# numpy-style docstrings ("Parameters", "Returns", "Examples" sections).
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
# "Attributes" sections become :ivar: fields, so a documented property is not described twice.
napoleon_use_ivar = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

html_theme = "alabaster"
html_theme_options = {"description": "Communication-efficient distributed learning"}
