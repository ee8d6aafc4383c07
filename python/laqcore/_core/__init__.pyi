# Type stubs for the native extension laqcore._core (built from cpp/bindings/).
# Hand-maintained; `python -m mypy.stubtest laqcore._core` (run by .ci/run) checks them
# against the compiled module, so a binding added without a stub fails CI.
# Bootstrap a new submodule with `pybind11-stubgen laqcore._core -o /tmp/stubs`.
from . import entropy as entropy
from . import laq as laq
from . import laq_widths as laq_widths
from . import lazy as lazy
from . import pack as pack
from . import qsgd as qsgd
from . import rotation as rotation
from . import runtime as runtime
from . import sign as sign
from . import sparse as sparse
from . import terngrad as terngrad

__version__: str

class FloatRangeError(OverflowError, ValueError):
    """A finite input whose result leaves its floating-point type's range (cpp/include/laqcore/common.hpp)."""
