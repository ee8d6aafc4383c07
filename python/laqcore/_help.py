"""The help formatter of every ``laqcore`` subcommand: argparse's defaults formatter, minus
the noise (no "(default: None)" or "(default: False)", nothing added to a help text that
already states its default)."""

from __future__ import annotations

import argparse

__all__ = ["HelpFormatter"]


def __dir__() -> list[str]:
    return __all__


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` to an option's help when X says something."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or "default" in text
            or "%(default)" in text
        ):
            return text
        return text + " (default: %(default)s)"
