#include <utility>

#include "binding_utils.hpp"
#include "laqcore/pack.hpp"
#include "laqcore/terngrad.hpp"

namespace laqcore::bind {

void register_terngrad(py::module_ m) {
    m.doc() =
        "TernGrad ternarization (formulas and code mapping: cpp/include/laqcore/terngrad.hpp).";

    m.def(
        "scaler",
        [](const carray<float>& x, float clip_factor) {
            const std::size_t n = vector_length(x, "x");
            const float* in = x.data();
            float threshold = 0.0f;
            float s = 0.0f;
            {
                // Safe: only the raw buffer of a live numpy array is read.
                py::gil_scoped_release release;
                s = terngrad_scaler(in, n, clip_factor, &threshold, "x");
            }
            return std::make_pair(s, threshold);
        },
        py::arg("x").noconvert(), py::arg("clip_factor"),
        "Returns (local scaler, clipping threshold) of x.");

    m.def(
        "quantize",
        [](const carray<float>& x, float clip_factor, float shared_scaler, std::uint64_t key) {
            const std::size_t n = vector_length(x, "x");
            auto packed = new_vector<std::uint8_t>(packed_size(n, kTernGradBits));
            const float* in = x.data();
            std::uint8_t* pk = packed.mutable_data();
            float s = 0.0f;
            {
                py::gil_scoped_release release;  // raw buffers only (see above)
                s = terngrad_quantize(in, n, clip_factor, shared_scaler, key, pk, "x");
            }
            return std::make_pair(s, std::move(packed));
        },
        py::arg("x").noconvert(), py::arg("clip_factor"), py::arg("shared_scaler"), py::arg("key"),
        "Returns (scaler, packed 2-bit codes). shared_scaler < 0 uses the local scaler.");

    m.def(
        "dequantize",
        [](const carray<std::uint8_t>& packed, std::size_t n, float scaler) {
            return decode_packed(packed, n, kTernGradBits, [&](const std::uint8_t* pk, float* dst) {
                terngrad_dequantize(pk, n, scaler, dst);
            });
        },
        py::arg("packed").noconvert(), py::arg("n"), py::arg("scaler"));
}

}  // namespace laqcore::bind
