"""The simulator's command-line experiments: ``laqcore problem``, ``run``, ``compare`` and
``sweep``.

One concern per module: :mod:`~laqcore.experiments.options` (the flags shared with
``launch``), :mod:`~laqcore.experiments.runs` (running algorithms over seeds),
:mod:`~laqcore.experiments.results` (results.json / histories.json),
:mod:`~laqcore.experiments.tables` and :mod:`~laqcore.experiments.plots` (what a run shows),
:mod:`~laqcore.experiments.commands` (``problem``, ``run``, ``compare``) and
:mod:`~laqcore.experiments.sweep` (``sweep``). The two command modules register themselves
through :data:`laqcore.cli.SUBCOMMAND_MODULES`; ``launch`` reuses
:mod:`~laqcore.experiments.options`.
"""

from __future__ import annotations

__all__: list[str] = []  # the names live in the modules above


def __dir__() -> list[str]:
    return __all__
