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

# -- API pages: one per public module, generated at build time --------------------------
# Every module under laqcore (except private `_x` ones and `__main__`) gets a page in
# docs/api/ (not committed), so a module added by anyone is documented without editing the
# docs. A package page shows only its docstring: its members are documented once, in the
# module that defines them (package __init__ files re-export them).


def _write_api_pages() -> None:
    import pkgutil
    from pathlib import Path

    out = Path(__file__).parent / "api"
    out.mkdir(exist_ok=True)
    names = ["laqcore"] + [
        info.name
        for info in pkgutil.walk_packages(laqcore.__path__, "laqcore.")
        if not any(part.startswith("_") for part in info.name.split("."))
    ]
    packages = {"laqcore"} | {
        info.name for info in pkgutil.walk_packages(laqcore.__path__, "laqcore.") if info.ispkg
    }
    for name in names:
        options = "   :no-members:\n" if name in packages else ""
        text = f"{name}\n{'=' * len(name)}\n\n.. automodule:: {name}\n{options}"
        page = out / f"{name}.rst"
        if not page.exists() or page.read_text() != text:
            page.write_text(text)
    for stale in out.glob("*.rst"):
        if stale.stem not in names:
            stale.unlink()


_write_api_pages()
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
