#include <string>
#include <utility>

#include "binding_utils.hpp"
#include "laqcore/pack.hpp"
#include "laqcore/qsgd.hpp"

namespace laqcore::bind {

void register_qsgd(py::module_ m) {
    m.doc() = "QSGD bucketed stochastic quantization (formulas: cpp/include/laqcore/qsgd.hpp).";

    m.def("code_bits", &qsgd_code_bits, py::arg("levels"),
          "Bits of one (sign, level) code: 1 + ceil(log2(levels + 1)).");
    m.def("num_buckets", &qsgd_num_buckets, py::arg("n"), py::arg("bucket_size"));

    m.def(
        "quantize",
        [](const carray<float>& x, int levels, std::size_t bucket_size, const std::string& norm,
           std::uint64_t key) {
            const std::size_t n = vector_length(x, "x");
            static_cast<void>(qsgd_code_bits(levels));  // levels checked before any allocation
            const QsgdNorm nm = parse_qsgd_norm(norm);
            const float* in = x.data();
            return new_qsgd_codes(n, levels, bucket_size, [&](float* sc, std::uint8_t* pk) {
                qsgd_quantize(in, n, levels, bucket_size, nm, key, sc, pk, "x");
            });
        },
        py::arg("x").noconvert(), py::arg("levels"), py::arg("bucket_size"), py::arg("norm"),
        py::arg("key"), "Returns (scales float32[num_buckets], packed codes uint8).");

    m.def(
        "dequantize",
        [](const carray<std::uint8_t>& packed, const carray<float>& scales, std::size_t n,
           int levels, std::size_t bucket_size) {
            const int bits = qsgd_code_bits(levels);
            const std::size_t nb = qsgd_num_buckets(n, bucket_size);
            LAQ_CHECK(vector_length(scales, "scales") == nb,
                      "scales has " << scales.shape(0) << " entries, expected " << nb);
            const float* sc = scales.data();
            return decode_packed(packed, n, bits, [&](const std::uint8_t* pk, float* dst) {
                qsgd_dequantize(pk, sc, n, levels, bucket_size, dst);
            });
        },
        py::arg("packed").noconvert(), py::arg("scales").noconvert(), py::arg("n"),
        py::arg("levels"), py::arg("bucket_size"));
}

}  // namespace laqcore::bind
