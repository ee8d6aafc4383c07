"""Sphinx configuration: user guide in Markdown (MyST), API reference from the numpy-style
docstrings of the *installed* laqcore (autodoc imports it). Build offline with

    python -m pip install ".[docs]"
    python -m sphinx -W --keep-going -b html docs build/docs-html
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

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
exclude_patterns = ["_build", "_generated"]
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

HERE = Path(__file__).parent


# -- API pages: one per public module, generated at build time --------------------------
# Every module under laqcore (except private `_x` ones and `__main__`) gets a page in
# docs/api/ (not committed), so a module added by anyone is documented without editing the
# docs. A package page shows its docstring and the members the package defines itself; the
# ones it re-exports are documented once, in the module that defines them.


def _package_page_body(name: str) -> str:
    """A package page documents only the functions and classes the package itself defines
    (laqcore.algorithms' get_algorithm, ...): its re-exports have their own module's page.
    One directive each: ``:members: a, b`` on the automodule still documented every name of
    ``__all__`` (autodoc_default_options' ``members``), so each class of laqcore.algorithms
    had two targets and every cross-reference to it warned."""
    package = importlib.import_module(name)
    text = "   :no-members:\n"
    for member in getattr(package, "__all__", []):
        obj = getattr(package, member)
        if getattr(obj, "__module__", None) == name:
            kind = "class" if inspect.isclass(obj) else "function"
            text += f"\n.. auto{kind}:: {name}.{member}\n"
    return text


def _write_api_pages() -> None:
    out = HERE / "api"
    out.mkdir(exist_ok=True)
    found = list(pkgutil.walk_packages(laqcore.__path__, "laqcore."))
    names = ["laqcore"] + [
        info.name for info in found if not any(p.startswith("_") for p in info.name.split("."))
    ]
    packages = {"laqcore"} | {info.name for info in found if info.ispkg}
    for name in names:
        body = _package_page_body(name) if name in packages else ""
        text = f"{name}\n{'=' * len(name)}\n\n.. automodule:: {name}\n{body}"
        page = out / f"{name}.rst"
        if not page.exists() or page.read_text() != text:
            page.write_text(text)
    for stale in out.glob("*.rst"):
        if stale.stem not in names:
            stale.unlink()


# -- tables generated from the registries (docs/_generated/, not committed) -------------
# The user guide includes these, so an algorithm or compressor registered by anyone shows
# up with its real defaults.


def _first_line(obj: object) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def _write_tables() -> None:
    from laqcore.algorithms import ALGORITHMS

    out = HERE / "_generated"
    out.mkdir(exist_ok=True)
    rows = [
        "| name | class | what it is | stochastic | parameters it reads (`USES`; besides "
        "`alpha`, `seed`) | defaults that differ from `Params` |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, cls in ALGORITHMS.items():
        defaults = ", ".join(f"`{k}={v!r}`" for k, v in getattr(cls, "DEFAULTS", {}).items())
        stochastic = "yes" if getattr(cls, "stochastic", False) else "no"
        own = sorted(cls.USES - {"alpha", "seed"}, key=str.lower)
        rows.append(
            f"| `{name}` | `{cls.__name__}` | {_first_line(cls)} | {stochastic} | "
            f"{', '.join(f'`{k}`' for k in own) or '-'} | {defaults or '-'} |"
        )
    (out / "algorithms.md").write_text("\n".join(rows) + "\n")

    rows = ["| name | built with defaults | what it is |", "| --- | --- | --- |"]
    for name in laqcore.available_compressors():
        try:
            comp = laqcore.get_compressor(name)
        except (TypeError, ValueError):  # needs a size argument (k or ratio)
            comp = laqcore.get_compressor(name, ratio=0.1)
        rows.append(f"| `{name}` | `{comp!r}` | {_first_line(type(comp))} |")
    (out / "compressors.md").write_text("\n".join(rows) + "\n")


_write_api_pages()
_write_tables()
