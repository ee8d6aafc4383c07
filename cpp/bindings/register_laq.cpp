#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <tuple>
#include <vector>

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

// `prev` (None = zeros) as a pointer, after checking it has the gradient's length n.
const float* prev_data(const std::optional<carray<float>>& prev, std::size_t n) {
    if (!prev) return nullptr;
    const std::size_t np = vector_length(*prev, "prev");
    LAQ_CHECK(np == n, "prev has length " << np << " but grad has length " << n);
    return prev->data();
}

// The scale of a received LAQ payload, in the two forms the frames carry: one radius for the
// whole vector (LAQ) or one radius per block of block_size coordinates (LAQ_BLOCK). Each
// decoder binding is written once (Decoders below) for both; a scale holds its checked
// arguments and calls its kernel.
struct OneRadius {
    using Args = std::tuple<float>;
    static constexpr const char* kSuffix = "";
    static constexpr const char* kCheckName = "check_payload";
    static auto arg_names() { return std::make_tuple(py::arg("radius")); }

    OneRadius(std::size_t /*n*/, float r) : radius(r) {}
    void check(const std::uint8_t* in, std::size_t n, int bits) const {
        laq_check_payload(radius, bits, in, n);
    }
    void dequantize(const std::uint8_t* in, std::size_t n, int bits, float* out) const {
        laq_dequantize(in, n, bits, radius, out);
    }
    void accumulate(const std::uint8_t* in, std::size_t n, int bits, float weight,
                    float* inout) const {
        laq_accumulate(in, n, bits, radius, weight, inout);
    }
    void accumulate_divide(const std::uint8_t* in, std::size_t n, int bits, float* inout,
                           float divisor, float* out) const {
        laq_accumulate_divide(in, n, bits, radius, 1.0f, inout, divisor, out);
    }
    double innov_sq(const std::uint8_t* in, std::size_t n, int bits) const {
        return laq_innov_sq(in, n, bits, radius);
    }

    float radius;
};

struct BlockRadii {
    using Args = std::tuple<std::size_t, const carray<float>&>;
    static constexpr const char* kSuffix = "_blocks";
    static constexpr const char* kCheckName = "check_blocks_payload";
    static auto arg_names() {
        return std::make_tuple(py::arg("block_size"), py::arg("radii").noconvert());
    }

    BlockRadii(std::size_t n, std::size_t bs, const carray<float>& r)
        : block_size(bs), radii(r.data()) {
        checked_radii(r, n, bs);
    }
    void check(const std::uint8_t* in, std::size_t n, int bits) const {
        laq_check_blocks_payload(radii, block_size, bits, in, n);
    }
    void dequantize(const std::uint8_t* in, std::size_t n, int bits, float* out) const {
        laq_dequantize_blocks(in, n, bits, block_size, radii, out);
    }
    void accumulate(const std::uint8_t* in, std::size_t n, int bits, float weight,
                    float* inout) const {
        laq_accumulate_blocks(in, n, bits, block_size, radii, weight, inout);
    }
    void accumulate_divide(const std::uint8_t* in, std::size_t n, int bits, float* inout,
                           float divisor, float* out) const {
        laq_accumulate_divide_blocks(in, n, bits, block_size, radii, 1.0f, inout, divisor, out);
    }
    double innov_sq(const std::uint8_t* in, std::size_t n, int bits) const {
        return laq_innov_sq_blocks(in, n, bits, block_size, radii);
    }

    std::size_t block_size;
    const float* radii;
};

// The decoders of a payload with scale S, whose Python arguments follow (packed, n, bits):
// the codes are checked first (checked_packed), then the scale, then the kernel runs with the
// GIL released (raw buffers only; the caller keeps the arrays alive).
template <class S, class Args = typename S::Args>
struct Decoders;

template <class S, class... A>
struct Decoders<S, std::tuple<A...>> {
    static carray<float> dequantize(const carray<std::uint8_t>& packed, std::size_t n, int bits,
                                    A... a) {
        checked_packed(packed, n, bits);
        const S scale(n, a...);
        const std::uint8_t* in = packed.data();
        return fill_new_vector(n, [&](float* dst) { scale.dequantize(in, n, bits, dst); });
    }

    static void accumulate(carray<float>& inout, const carray<std::uint8_t>& packed, std::size_t n,
                           int bits, A... a, float weight) {
        const std::size_t have = writable_vector_length(inout, "aggregate");
        LAQ_CHECK(have == n, "aggregate has length " << have << ", expected n = " << n);
        checked_packed(packed, n, bits);
        const S scale(n, a...);
        const std::uint8_t* in = packed.data();
        float* dst = inout.mutable_data();
        {
            py::gil_scoped_release release;
            scale.accumulate(in, n, bits, weight, dst);
        }
    }

    // inout += dQ, then out = inout / divisor, in one pass (laq_accumulate_divide).
    static void accumulate_divide(carray<float>& inout, carray<float>& out,
                                  const carray<std::uint8_t>& packed, std::size_t n, int bits,
                                  A... a, float divisor) {
        const std::size_t have = writable_vector_length(inout, "inout");
        LAQ_CHECK(have == n, "inout has length " << have << ", expected n = " << n);
        const std::size_t have_out = writable_vector_length(out, "out");
        LAQ_CHECK(have_out == n, "out has length " << have_out << ", expected n = " << n);
        float* dst = inout.mutable_data();
        float* avg = out.mutable_data();
        LAQ_CHECK(avg + n <= dst || dst + n <= avg, "out must not overlap inout");
        checked_packed(packed, n, bits);
        const S scale(n, a...);
        const std::uint8_t* in = packed.data();
        {
            py::gil_scoped_release release;
            scale.accumulate_divide(in, n, bits, dst, divisor, avg);
        }
    }

    static void check(const carray<std::uint8_t>& packed, std::size_t n, int bits, A... a) {
        checked_packed(packed, n, bits);
        const S scale(n, a...);
        scale.check(packed.data(), n, bits);
    }

    static double innov_sq(const carray<std::uint8_t>& packed, std::size_t n, int bits, A... a) {
        checked_packed(packed, n, bits);
        const S scale(n, a...);
        const std::uint8_t* in = packed.data();
        py::gil_scoped_release release;
        return scale.innov_sq(in, n, bits);
    }

    static void define(py::module_ m) {
        const std::string suffix = S::kSuffix;
        std::apply(
            [&](auto... scale_args) {
                m.def(("dequantize" + suffix).c_str(), &dequantize, py::arg("packed").noconvert(),
                      py::arg("n"), py::arg("bits"), scale_args...);
                m.def(("accumulate" + suffix).c_str(), &accumulate, py::arg("inout").noconvert(),
                      py::arg("packed").noconvert(), py::arg("n"), py::arg("bits"), scale_args...,
                      py::arg("weight") = 1.0f,
                      "inout += weight * dQ in place (weight 1: the worker's apply).");
                m.def(("accumulate_divide" + suffix).c_str(), &accumulate_divide,
                      py::arg("inout").noconvert(), py::arg("out").noconvert(),
                      py::arg("packed").noconvert(), py::arg("n"), py::arg("bits"), scale_args...,
                      py::arg("divisor"),
                      "inout += dQ in place, then out = inout / divisor, in one pass.");
                m.def(S::kCheckName, &check, py::arg("packed").noconvert(), py::arg("n"),
                      py::arg("bits"), scale_args...,
                      "Raises ValueError unless the payload is decodable.");
                m.def(("innov_sq" + suffix).c_str(), &innov_sq, py::arg("packed").noconvert(),
                      py::arg("n"), py::arg("bits"), scale_args...,
                      "||dQ||^2 recomputed from the codes (bit-identical to the quantizer's).");
            },
            S::arg_names());
    }
};

// The codes of several payloads of n codes each, checked for their packed size; radii[s]
// points at payload s's radii (`per_payload` of them, checked).
std::vector<LaqCodes> codes_list(const std::vector<carray<std::uint8_t>>& packed,
                                 const std::vector<const float*>& radii, std::size_t n, int bits) {
    std::vector<LaqCodes> src(packed.size());
    for (std::size_t s = 0; s < packed.size(); ++s) {
        checked_packed(packed[s], n, bits);
        src[s] = LaqCodes{packed[s].data(), radii[s]};
    }
    return src;
}

float* checked_inout(carray<float>& inout, std::size_t n) {
    const std::size_t have = writable_vector_length(inout, "aggregate");
    LAQ_CHECK(have == n, "aggregate has length " << have << ", expected n = " << n);
    return inout.mutable_data();
}

// inout += weight * (dQ_0 + ... ) added payload by payload, one pass (laq_accumulate_all).
void accumulate_all(carray<float>& inout, const std::vector<carray<std::uint8_t>>& packed,
                    std::size_t n, int bits, const carray<float>& radius, float weight) {
    float* dst = checked_inout(inout, n);
    const std::size_t have = vector_length(radius, "radius");
    LAQ_CHECK(have == packed.size(),
              "radius has " << have << " entries for " << packed.size() << " payloads");
    std::vector<const float*> radii(packed.size());
    for (std::size_t s = 0; s < packed.size(); ++s) radii[s] = radius.data() + s;
    const std::vector<LaqCodes> src = codes_list(packed, radii, n, bits);
    py::gil_scoped_release release;  // raw buffers only
    laq_accumulate_all(src.data(), src.size(), n, bits, weight, dst);
}

void accumulate_all_blocks(carray<float>& inout, const std::vector<carray<std::uint8_t>>& packed,
                           std::size_t n, int bits, std::size_t block_size,
                           const std::vector<carray<float>>& radii, float weight) {
    float* dst = checked_inout(inout, n);
    LAQ_CHECK(radii.size() == packed.size(),
              "radii has " << radii.size() << " arrays for " << packed.size() << " payloads");
    laq_check_block_size(block_size);
    std::vector<const float*> r(packed.size());
    for (std::size_t s = 0; s < packed.size(); ++s) {
        checked_radii(radii[s], n, block_size);
        r[s] = radii[s].data();
    }
    const std::vector<LaqCodes> src = codes_list(packed, r, n, bits);
    py::gil_scoped_release release;  // raw buffers only
    laq_accumulate_all_blocks(src.data(), src.size(), n, bits, block_size, weight, dst);
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
            const float* p = prev_data(prev, n);
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
        "quantize_blocks",
        [](const carray<float>& grad, const std::optional<carray<float>>& prev, int bits,
           std::size_t block_size) {
            check_bits(bits);
            laq_check_block_size(block_size);
            const std::size_t n = vector_length(grad, "grad");
            LAQ_CHECK(n > 0, "grad must not be empty");
            const float* p = prev_data(prev, n);
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

    m.def("accumulate_all", &accumulate_all, py::arg("inout").noconvert(), py::arg("packed"),
          py::arg("n"), py::arg("bits"), py::arg("radius").noconvert(), py::arg("weight") = 1.0f,
          "inout += weight * dQ for every payload in order, in one pass over inout.");
    m.def("accumulate_all_blocks", &accumulate_all_blocks, py::arg("inout").noconvert(),
          py::arg("packed"), py::arg("n"), py::arg("bits"), py::arg("block_size"), py::arg("radii"),
          py::arg("weight") = 1.0f,
          "inout += weight * dQ for every blockwise payload in order, in one pass over inout.");

    Decoders<OneRadius>::define(m);
    Decoders<BlockRadii>::define(m);

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
