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

// radii must hold exactly laq_num_radii(n, block_size) radii.
void checked_radii(const carray<float>& radii, std::size_t n, std::size_t block_size) {
    const std::size_t have = vector_length(radii, "radii");
    const std::size_t need = laq_num_radii(n, block_size);
    LAQ_CHECK(have == need, "radii has " << have << " entries but " << n
                                         << " elements in blocks of " << block_size
                                         << " need exactly " << need);
}

void register_blocks(py::module_ m) {
    m.def(
        "quantize_blocks",
        [](const carray<float>& grad, const std::optional<carray<float>>& prev, int bits,
           std::size_t block_size) {
            check_bits(bits);
            laq_check_block_size(block_size);
            const std::size_t n = vector_length(grad, "grad");
            LAQ_CHECK(n > 0, "grad must not be empty");
            const float* p = nullptr;
            if (prev) {
                const std::size_t np = vector_length(*prev, "prev");
                LAQ_CHECK(np == n, "prev has length " << np << " but grad has length " << n);
                p = prev->data();
            }
            auto packed = new_vector<std::uint8_t>(packed_size(n, bits));
            auto radii = new_vector<float>(laq_num_radii(n, block_size));
            const float* g = grad.data();
            std::uint8_t* out = packed.mutable_data();
            float* r_out = radii.mutable_data();
            LaqResult r;
            {
                py::gil_scoped_release release;  // raw buffers only
                r = laq_quantize_blocks(g, p, n, bits, block_size, r_out, out);
            }
            return py::make_tuple(packed, radii, r.err_sq, r.innov_sq);
        },
        py::arg("grad").noconvert(), py::arg("prev").noconvert(), py::arg("bits"),
        py::arg("block_size"),
        "Fused blockwise quantize + pack. Returns (packed, radii, err_sq, innov_sq).");

    m.def(
        "dequantize_blocks",
        [](const carray<std::uint8_t>& packed, std::size_t n, int bits, std::size_t block_size,
           const carray<float>& radii) {
            checked_packed(packed, n, bits);
            checked_radii(radii, n, block_size);
            auto out = new_vector<float>(n);
            const std::uint8_t* in = packed.data();
            const float* r = radii.data();
            float* dst = out.mutable_data();
            {
                py::gil_scoped_release release;  // raw buffers only
                laq_dequantize_blocks(in, n, bits, block_size, r, dst);
            }
            return out;
        },
        py::arg("packed").noconvert(), py::arg("n"), py::arg("bits"), py::arg("block_size"),
        py::arg("radii").noconvert());

    m.def(
        "accumulate_blocks",
        [](carray<float>& inout, const carray<std::uint8_t>& packed, std::size_t n, int bits,
           std::size_t block_size, const carray<float>& radii, float weight) {
            const std::size_t have = writable_vector_length(inout, "aggregate");
            LAQ_CHECK(have == n, "aggregate has length " << have << ", expected n = " << n);
            checked_packed(packed, n, bits);
            checked_radii(radii, n, block_size);
            const std::uint8_t* in = packed.data();
            const float* r = radii.data();
            float* dst = inout.mutable_data();
            {
                py::gil_scoped_release release;  // raw buffers only
                laq_accumulate_blocks(in, n, bits, block_size, r, weight, dst);
            }
        },
        py::arg("inout").noconvert(), py::arg("packed").noconvert(), py::arg("n"), py::arg("bits"),
        py::arg("block_size"), py::arg("radii").noconvert(), py::arg("weight") = 1.0f,
        "inout += weight * dQ in place (blockwise radii).");

    m.def(
        "check_blocks_payload",
        [](const carray<std::uint8_t>& packed, std::size_t n, int bits, std::size_t block_size,
           const carray<float>& radii) {
            checked_packed(packed, n, bits);
            checked_radii(radii, n, block_size);
            laq_check_blocks_payload(radii.data(), block_size, bits, packed.data(), n);
        },
        py::arg("packed").noconvert(), py::arg("n"), py::arg("bits"), py::arg("block_size"),
        py::arg("radii").noconvert(),
        "Raises ValueError unless the blockwise payload is decodable.");

    m.def(
        "innov_sq_blocks",
        [](const carray<std::uint8_t>& packed, std::size_t n, int bits, std::size_t block_size,
           const carray<float>& radii) {
            checked_packed(packed, n, bits);
            checked_radii(radii, n, block_size);
            const std::uint8_t* in = packed.data();
            const float* r = radii.data();
            py::gil_scoped_release release;  // raw buffers only
            return laq_innov_sq_blocks(in, n, bits, block_size, r);
        },
        py::arg("packed").noconvert(), py::arg("n"), py::arg("bits"), py::arg("block_size"),
        py::arg("radii").noconvert(), "||dQ||^2 of a blockwise payload (bit-identical).");
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
        [](carray<float>& inout, const carray<std::uint8_t>& packed, std::size_t n, int bits,
           float radius, float weight) {
            const std::size_t have = writable_vector_length(inout, "aggregate");
            LAQ_CHECK(have == n, "aggregate has length " << have << ", expected n = " << n);
            checked_packed(packed, n, bits);
            const std::uint8_t* in = packed.data();
            float* dst = inout.mutable_data();
            {
                py::gil_scoped_release release;  // raw buffers only
                laq_accumulate(in, n, bits, radius, weight, dst);
            }
        },
        py::arg("inout").noconvert(), py::arg("packed").noconvert(), py::arg("n"), py::arg("bits"),
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

    register_blocks(m);
}

}  // namespace laqcore::bind
