#include <algorithm>
#include <memory>
#include <string>
#include <utility>

#include "binding_utils.hpp"
#include "laqcore/pack.hpp"
#include "laqcore/qsgd.hpp"
#include "laqcore/rotation.hpp"

namespace laqcore::bind {

void register_rotation(py::module_ m) {
    m.doc() =
        "Randomized Hadamard rotation + QSGD quantization (cpp/include/laqcore/rotation.hpp).";

    m.def("padded_size", &rotation_padded_size, py::arg("n"),
          "Smallest power of two >= n: the rotated length.");

    m.def(
        "fwht",
        [](const carray<float>& x) {
            const std::size_t N = vector_length(x, "x");
            const float* in = x.data();
            return fill_new_vector(N, [&](float* dst) {
                std::copy(in, in + N, dst);
                fwht(dst, N);
            });
        },
        py::arg("x").noconvert(), "Unnormalised Walsh-Hadamard transform H_N x (N a power of 2).");

    m.def(
        "forward",
        [](const carray<float>& x, std::uint64_t key) {
            const std::size_t n = vector_length(x, "x");
            const float* in = x.data();
            return fill_new_vector(rotation_padded_size(n),
                                   [&](float* dst) { rotation_forward(in, n, key, dst); });
        },
        py::arg("x").noconvert(), py::arg("key"), "y = H D x' / sqrt(N) (length N).");

    m.def(
        "inverse",
        [](const carray<float>& y, std::size_t n, std::uint64_t key) {
            const std::size_t N = rotation_padded_size(n);
            LAQ_CHECK(vector_length(y, "y") == N, "y has " << y.shape(0)
                                                           << " entries, the rotation of n = " << n
                                                           << " has " << N);
            const float* in = y.data();
            return fill_new_vector(n, [&](float* dst) {
                std::unique_ptr<float[]> scratch(new float[N]);
                std::copy(in, in + N, scratch.get());
                rotation_inverse(scratch.get(), n, key, dst);
            });
        },
        py::arg("y").noconvert(), py::arg("n"), py::arg("key"),
        "The first n entries of D H y / sqrt(N).");

    m.def(
        "compress",
        [](const carray<float>& x, int levels, std::size_t bucket_size, const std::string& norm,
           std::uint64_t rotation_key, std::uint64_t rounding_key) {
            const std::size_t n = vector_length(x, "x");
            const std::size_t N = rotation_padded_size(n);
            static_cast<void>(qsgd_code_bits(levels));  // levels checked before any allocation
            const QsgdNorm nm = parse_qsgd_norm(norm);
            const float* in = x.data();
            return new_qsgd_codes(N, levels, bucket_size, [&](float* sc, std::uint8_t* pk) {
                std::unique_ptr<float[]> y(new float[N]);
                rotation_forward(in, n, rotation_key, y.get());
                qsgd_quantize(y.get(), N, levels, bucket_size, nm, rounding_key, sc, pk, "x");
            });
        },
        py::arg("x").noconvert(), py::arg("levels"), py::arg("bucket_size"), py::arg("norm"),
        py::arg("rotation_key"), py::arg("rounding_key"),
        "Rotate then QSGD-quantize: (scales[ceil(N / bucket_size)], packed N codes).");

    m.def(
        "decompress",
        [](const carray<std::uint8_t>& packed, const carray<float>& scales, std::size_t n,
           int levels, std::size_t bucket_size, std::uint64_t rotation_key) {
            const std::size_t N = rotation_padded_size(n);
            const int bits = qsgd_code_bits(levels);
            const std::size_t nb = qsgd_num_buckets(N, bucket_size);
            LAQ_CHECK(vector_length(scales, "scales") == nb,
                      "scales has " << scales.shape(0) << " entries, expected " << nb);
            LAQ_CHECK(
                vector_length(packed, "packed") == packed_size(N, bits),
                "packed has " << packed.shape(0) << " bytes, expected " << packed_size(N, bits));
            const std::uint8_t* pk = packed.data();
            const float* sc = scales.data();
            return fill_new_vector(n, [&](float* dst) {
                std::unique_ptr<float[]> y(new float[N]);
                qsgd_dequantize(pk, sc, N, levels, bucket_size, y.get());
                rotation_inverse(y.get(), n, rotation_key, dst);
            });
        },
        py::arg("packed").noconvert(), py::arg("scales").noconvert(), py::arg("n"),
        py::arg("levels"), py::arg("bucket_size"), py::arg("rotation_key"));
}

}  // namespace laqcore::bind
