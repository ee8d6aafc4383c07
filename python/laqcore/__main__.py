"""``python -m laqcore`` runs the ``laqcore`` command (also what ``torchrun -m laqcore`` uses)."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
