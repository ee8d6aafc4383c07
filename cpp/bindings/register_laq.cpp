#include <pybind11/stl.h>

#include <optional>

#include "binding_utils.hpp"
#include "laqcore/laq.hpp"
#include "laqcore/pack.hpp"

namespace laqcore::bind {
namespace {

// The packed body must be exactly packed_size(n, bits) bytes: anything else is a truncated
// or mis-sized payload.
std::size_t checked_packed(const carray<std::uint8_t>& packed, std::size_t n, int bits) {
    check_bits(bits);
    const std::size_t have = vector_length(packed, "packed");
    const std::size_t need = packed_size(n, bits);
    LAQ_CHECK(have == need, "packed buffer has " << have << " bytes but " << n << " codes of "
                                                 << bits << " bits need exactly " << need);
    return have;
}

}  // namespace

void register_laq(py::module_ m) {
    m.doc() = "LAQ innovation quantizer (formula and arithmetic: cpp/include/laqcore/laq.hpp).";

    m.def(
        "kernel_name", []() { return std::string(laq_active_kernels().name); },
        "Name of the block-kernel table the LAQ drivers use.");

    m.def(
        "quantize",
        [](const carray<float>& grad, const std::optional<carray<float>>& prev, int bits) {
            check_bits(bits);
            const std::size_t n = vector_length(grad, "grad");
            const float* p = nullptr;
            if (prev) {
                const std::size_t np = vector_length(*prev, "prev");
                LAQ_CHECK(np == n, "prev has length " << np << " but grad has length " << n);
                p = prev->data();
            }
            auto packed = new_vector<std::uint8_t>(packed_size(n, bits));
            const float* g = grad.data();
            std::uint8_t* out = packed.mutable_data();
            LaqResult r;
            {
                // Safe: the kernel touches only raw buffers of arrays the caller keeps alive.
                py::gil_scoped_release release;
                r = laq_quantize(g, p, n, bits, out);
            }
            return py::make_tuple(packed, r.radius, r.err_sq, r.innov_sq);
        },
        py::arg("grad").noconvert(), py::arg("prev").noconvert() = py::none(), py::arg("bits"),
        "Fused quantize + pack. Returns (packed, radius, err_sq, innov_sq); prev=None means 0.");

    m.def(
        "dequantize",
        [](const carray<std::uint8_t>& packed, std::size_t n, int bits, float radius) {
            checked_packed(packed, n, bits);
            auto out = new_vector<float>(n);
            const std::uint8_t* in = packed.data();
            float* dst = out.mutable_data();
            {
                py::gil_scoped_release release;  // raw buffers only
                laq_dequantize(in, n, bits, radius, dst);
            }
            return out;
        },
        py::arg("packed").noconvert(), py::arg("n"), py::arg("bits"), py::arg("radius"));

    m.def(
        "accumulate",
        [](carray<float>& inout, const carray<std::uint8_t>& packed, int bits, float radius,
           float weight) {
            const std::size_t n = writable_vector_length(inout, "aggregate");
            checked_packed(packed, n, bits);
            const std::uint8_t* in = packed.data();
            float* dst = inout.mutable_data();
            {
                py::gil_scoped_release release;  // raw buffers only
                laq_accumulate(in, n, bits, radius, weight, dst);
            }
        },
        py::arg("inout").noconvert(), py::arg("packed").noconvert(), py::arg("bits"),
        py::arg("radius"), py::arg("weight") = 1.0f,
        "inout += weight * dQ in place (weight 1: the worker's apply).");

    m.def(
        "check_payload",
        [](const carray<std::uint8_t>& packed, std::size_t n, int bits, float radius) {
            checked_packed(packed, n, bits);
            laq_check_payload(radius, bits, packed.data(), n);
        },
        py::arg("packed").noconvert(), py::arg("n"), py::arg("bits"), py::arg("radius"),
        "Raises ValueError unless (packed, n, bits, radius) is a decodable payload.");

    m.def(
        "innov_sq",
        [](const carray<std::uint8_t>& packed, std::size_t n, int bits, float radius) {
            checked_packed(packed, n, bits);
            const std::uint8_t* in = packed.data();
            py::gil_scoped_release release;  // raw buffers only
            return laq_innov_sq(in, n, bits, radius);
        },
        py::arg("packed").noconvert(), py::arg("n"), py::arg("bits"), py::arg("radius"),
        "||dQ||^2 recomputed from the codes (bit-identical to the quantizer's innov_sq).");

    m.def(
        "lut",
        [](float radius, int bits) {
            LaqGrid grid;
            laq_make_grid(radius, bits, grid);
            auto out = new_vector<float>(std::size_t{1} << bits);
            std::copy(grid.lut, grid.lut + (1 << bits), out.mutable_data());
            return out;
        },
        py::arg("radius"), py::arg("bits"),
        "Dequantized value of every code for (radius, bits) (exposed for tests).");
}

}  // namespace laqcore::bind
