#include <pybind11/stl.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "binding_utils.hpp"
#include "laqcore/entropy.hpp"
#include "laqcore/pack.hpp"

namespace laqcore::bind {
namespace {

// A uint8 array that takes over the vector's buffer (no copy of a large stream).
carray<std::uint8_t> to_array(std::vector<std::uint8_t>&& v) {
    auto* owner = new std::vector<std::uint8_t>(std::move(v));
    py::capsule free_owner(owner,
                           [](void* p) { delete static_cast<std::vector<std::uint8_t>*>(p); });
    return carray<std::uint8_t>(static_cast<py::ssize_t>(owner->size()), owner->data(), free_owner);
}

}  // namespace

void register_entropy(py::module_ m) {
    m.doc() = "Entropy coding of code streams (interleaved rANS; cpp/include/laqcore/entropy.hpp).";

    m.def(
        "encode",
        [](const carray<std::uint8_t>& symbols, int alphabet_bits) {
            const std::size_t n = vector_length(symbols, "symbols");
            const std::uint8_t* in = symbols.data();
            std::vector<std::uint8_t> stream;
            {
                py::gil_scoped_release release;
                stream = entropy_encode(in, n, alphabet_bits);
            }
            return to_array(std::move(stream));
        },
        py::arg("symbols").noconvert(), py::arg("alphabet_bits"),
        "Order-0 rANS stream of symbols in [0, 2**alphabet_bits).");

    m.def(
        "decode",
        [](const carray<std::uint8_t>& stream, std::size_t count, int alphabet_bits) {
            const std::size_t size = vector_length(stream, "stream");
            auto out = new_vector<std::uint8_t>(count);
            const std::uint8_t* in = stream.data();
            std::uint8_t* dst = out.mutable_data();
            {
                py::gil_scoped_release release;
                entropy_decode(in, size, count, alphabet_bits, dst);
            }
            return out;
        },
        py::arg("stream").noconvert(), py::arg("count"), py::arg("alphabet_bits"));

    m.def(
        "encode_packed",
        [](const carray<std::uint8_t>& packed, std::size_t n, int bits) {
            check_bits(bits);
            const std::size_t have = vector_length(packed, "packed");
            LAQ_CHECK(have == packed_size(n, bits),
                      "packed has " << have << " bytes, expected " << packed_size(n, bits));
            const std::uint8_t* in = packed.data();
            EntropyPacked result;
            {
                py::gil_scoped_release release;
                check_padding(in, n, bits);
                result = entropy_encode_packed(in, n, bits);
            }
            return std::make_pair(result.mode, to_array(std::move(result.stream)));
        },
        py::arg("packed").noconvert(), py::arg("n"), py::arg("bits"),
        "Returns (mode, stream): mode 0 codes one symbol per code, 1 one per packed byte, 2 "
        "stores the packed bytes (when coding would not make them smaller).");

    m.def(
        "decode_packed",
        [](const carray<std::uint8_t>& stream, std::size_t n, int bits, int mode) {
            check_bits(bits);
            const std::size_t size = vector_length(stream, "stream");
            auto out = new_vector<std::uint8_t>(packed_size(n, bits));
            const std::uint8_t* in = stream.data();
            std::uint8_t* dst = out.mutable_data();
            {
                py::gil_scoped_release release;
                entropy_decode_packed(in, size, n, bits, mode, dst);
            }
            return out;
        },
        py::arg("stream").noconvert(), py::arg("n"), py::arg("bits"), py::arg("mode"));

    m.def(
        "normalise",
        [](const std::vector<std::uint64_t>& counts, int m) {
            LAQ_CHECK(m >= 1 && m <= kEntropyMaxPrecision, "m must be in [1, 15], got " << m);
            std::size_t present = 0;
            std::uint64_t total = 0;
            for (auto c : counts) {
                present += c != 0 ? 1 : 0;
                total += c;
            }
            LAQ_CHECK(total > 0 && present <= (std::size_t{1} << m),
                      "counts must have a non-zero total and at most 2**m non-zero entries");
            return detail::entropy_normalise(counts, m);
        },
        py::arg("counts"), py::arg("m"),
        "The coder's frequency table of these counts at precision m (sums to 2**m).");
}

}  // namespace laqcore::bind
