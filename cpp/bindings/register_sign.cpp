#include <utility>

#include "binding_utils.hpp"
#include "laqcore/pack.hpp"
#include "laqcore/sign.hpp"

namespace laqcore::bind {

void register_sign(py::module_ m) {
    m.doc() = "Scaled sign compression (layout: cpp/include/laqcore/sign.hpp).";

    m.def(
        "compress",
        [](const carray<float>& x) {
            const std::size_t n = vector_length(x, "x");
            auto packed = new_vector<std::uint8_t>(packed_size(n, 1));
            const float* in = x.data();
            std::uint8_t* pk = packed.mutable_data();
            float scale = 0.0f;
            {
                // Safe: only raw buffers owned by live numpy arrays are touched.
                py::gil_scoped_release release;
                scale = sign_compress(in, n, pk, "x");
            }
            return std::make_pair(scale, std::move(packed));
        },
        py::arg("x").noconvert(), "Returns (scale = ||x||_1 / n, packed sign bits).");

    m.def(
        "decompress",
        [](const carray<std::uint8_t>& packed, std::size_t n, float scale) {
            return decode_packed(packed, n, 1, [&](const std::uint8_t* pk, float* dst) {
                sign_decompress(pk, n, scale, dst);
            });
        },
        py::arg("packed").noconvert(), py::arg("n"), py::arg("scale"));
}

}  // namespace laqcore::bind
