"""``python -m laqcore.bench``: the same as ``laqcore bench``."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
