// The one compiled module, laqcore._core. Each concern registers itself on a submodule from
// its own register_*.cpp; this file only wires them together.
#include "binding_utils.hpp"

namespace laqcore::bind {
void register_runtime(py::module_ m);
void register_pack(py::module_ m);
void register_qsgd(py::module_ m);
void register_terngrad(py::module_ m);
void register_sign(py::module_ m);
void register_sparse(py::module_ m);
void register_laq(py::module_ m);
void register_laq_widths(py::module_ m);
void register_lazy(py::module_ m);
void register_entropy(py::module_ m);
void register_rotation(py::module_ m);
}  // namespace laqcore::bind

PYBIND11_MODULE(_core, m) {
    using namespace laqcore::bind;
    m.doc() = "laqcore native kernels (private; use the laqcore package API).";
    m.attr("__version__") = LAQCORE_VERSION;
    // A finite input whose result leaves its floating-point type's range (laqcore/common.hpp,
    // LAQ_CHECK_RANGE): both an OverflowError, which tells it from bad input, and a
    // ValueError, as before it had its own type.
    py::register_exception<std::overflow_error>(
        m, "FloatRangeError",
        py::make_tuple(py::handle(PyExc_OverflowError), py::handle(PyExc_ValueError)));
    register_runtime(m.def_submodule("runtime"));
    register_pack(m.def_submodule("pack"));
    register_qsgd(m.def_submodule("qsgd"));
    register_terngrad(m.def_submodule("terngrad"));
    register_sign(m.def_submodule("sign"));
    register_sparse(m.def_submodule("sparse"));
    register_laq(m.def_submodule("laq"));
    register_laq_widths(m.def_submodule("laq_widths"));
    register_lazy(m.def_submodule("lazy"));
    register_entropy(m.def_submodule("entropy"));
    register_rotation(m.def_submodule("rotation"));
}
