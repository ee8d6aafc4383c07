// _core.laq_widths: LAQ with a bit width per block (laqcore/laq_widths.hpp).
#include <pybind11/stl.h>

#include <array>
#include <optional>

#include "binding_utils.hpp"
#include "laqcore/laq_widths.hpp"

namespace laqcore::bind {
namespace {

LaqWidthsTable table_of(const std::array<int, kWidthFields>& widths) {
    LaqWidthsTable t{};
    for (int k = 0; k < kWidthFields; ++k) t.w[k] = widths[k];
    laq_check_width_table(t);
    return t;
}

// A received body's fields checked (length, padding, r_max, block, table); its data pointer.
const std::uint8_t* checked_body(const carray<std::uint8_t>& body, std::size_t n, std::size_t block,
                                 const LaqWidthsTable& table, float r_max) {
    const std::size_t have = vector_length(body, "body");
    laq_widths_check(body.data(), have, n, block, table, r_max);
    return body.data();
}

}  // namespace

void register_laq_widths(py::module_ m) {
    m.doc() = "LAQ with a bit width per block (formula: cpp/include/laqcore/laq_widths.hpp).";
    m.attr("WIDTH_FIELDS") = kWidthFields;
    m.attr("WIDTH_FIELD_BITS") = kWidthFieldBits;
    m.attr("EXPONENT_BITS") = kExponentBits;
    m.attr("MAX_BLOCK") = kMaxWidthBlock;
    m.def(
        "quantize",
        [](const carray<float>& grad, const std::optional<carray<float>>& prev, std::size_t block,
           const std::array<int, kWidthFields>& widths, double budget, double cap) {
            const std::size_t n = vector_length(grad, "grad");
            const float* p = nullptr;
            if (prev) {
                const std::size_t np = vector_length(*prev, "prev");
                LAQ_CHECK(np == n, "prev has length " << np << " but grad has length " << n);
                p = prev->data();
            }
            const LaqWidthsTable table = table_of(widths);
            const float* g = grad.data();
            LaqWidthsResult r;
            {
                py::gil_scoped_release release;  // raw buffers only
                r = laq_quantize_widths(g, p, n, block, table, budget, cap);
            }
            auto body = new_vector<std::uint8_t>(r.body.size());
            std::copy(r.body.begin(), r.body.end(), body.mutable_data());
            return py::make_tuple(body, r.r_max, r.err_sq, r.innov_sq);
        },
        py::arg("grad").noconvert(), py::arg("prev").noconvert(), py::arg("block"),
        py::arg("widths"), py::arg("budget"), py::arg("cap"),
        "Quantize grad - prev with a width per block. Returns (body, r_max, err_sq, innov_sq).");
    m.def(
        "check",
        [](const carray<std::uint8_t>& body, std::size_t n, std::size_t block,
           const std::array<int, kWidthFields>& widths,
           float r_max) { checked_body(body, n, block, table_of(widths), r_max); },
        py::arg("body").noconvert(), py::arg("n"), py::arg("block"), py::arg("widths"),
        py::arg("r_max"), "Check a received body (ValueError if corrupt).");
    m.def(
        "fields",
        [](const carray<std::uint8_t>& body, std::size_t n, std::size_t block,
           const std::array<int, kWidthFields>& widths, float r_max) {
            const LaqWidthsTable table = table_of(widths);
            const std::uint8_t* in = checked_body(body, n, block, table, r_max);
            const std::size_t nb = (n + block - 1) / block;
            auto w = new_vector<std::int8_t>(nb);
            auto radii = new_vector<float>(nb);
            laq_widths_fields(in, n, block, table, r_max, w.mutable_data(), radii.mutable_data());
            return py::make_tuple(w, radii);
        },
        py::arg("body").noconvert(), py::arg("n"), py::arg("block"), py::arg("widths"),
        py::arg("r_max"), "Per-block widths (int8) and radii (float32) of a body.");
    m.def(
        "dequantize",
        [](const carray<std::uint8_t>& body, std::size_t n, std::size_t block,
           const std::array<int, kWidthFields>& widths, float r_max) {
            const LaqWidthsTable table = table_of(widths);
            const std::uint8_t* in = checked_body(body, n, block, table, r_max);
            return fill_new_vector(n, [&](float* dst) {
                laq_widths_decode(in, n, block, table, r_max, 1.0f, true, dst);
            });
        },
        py::arg("body").noconvert(), py::arg("n"), py::arg("block"), py::arg("widths"),
        py::arg("r_max"), "dQ of a body (float32).");
    m.def(
        "accumulate",
        [](carray<float>& inout, const carray<std::uint8_t>& body, std::size_t n, std::size_t block,
           const std::array<int, kWidthFields>& widths, float r_max, float weight) {
            const std::size_t have = writable_vector_length(inout, "aggregate");
            LAQ_CHECK(have == n, "aggregate has length " << have << ", expected n = " << n);
            const LaqWidthsTable table = table_of(widths);
            const std::uint8_t* in = checked_body(body, n, block, table, r_max);
            float* dst = inout.mutable_data();
            py::gil_scoped_release release;
            laq_widths_decode(in, n, block, table, r_max, weight, false, dst);
        },
        py::arg("inout").noconvert(), py::arg("body").noconvert(), py::arg("n"), py::arg("block"),
        py::arg("widths"), py::arg("r_max"), py::arg("weight") = 1.0f,
        "inout += weight * dQ (float32, in place).");
    m.def(
        "innov_sq",
        [](const carray<std::uint8_t>& body, std::size_t n, std::size_t block,
           const std::array<int, kWidthFields>& widths, float r_max) {
            const LaqWidthsTable table = table_of(widths);
            const std::uint8_t* in = checked_body(body, n, block, table, r_max);
            return laq_widths_innov_sq(in, n, block, table, r_max);
        },
        py::arg("body").noconvert(), py::arg("n"), py::arg("block"), py::arg("widths"),
        py::arg("r_max"), "||dQ||^2 of a body, equal to the encoder's innov_sq.");
    m.def(
        "radius_scale",
        [](int e) {
            LAQ_CHECK(e >= 0 && e < kExponentLevels, "exponent must be in 0..7, got " << e);
            return laq_widths_radius_scale(e);
        },
        py::arg("e"), "float32(2^(-e/2)) for an exponent e in 0..7.");
}

}  // namespace laqcore::bind
