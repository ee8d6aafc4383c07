#include "binding_utils.hpp"
#include "laqcore/pack.hpp"

namespace laqcore::bind {

void register_pack(py::module_ m) {
    m.doc() = "Bit packing of 1..8-bit codes (layout: see cpp/include/laqcore/pack.hpp).";

    m.def("packed_size", &packed_size, py::arg("n"), py::arg("bits"),
          "Bytes needed for n codes of `bits` bits: ceil(n * bits / 8).");

    m.def(
        "pack_bits",
        [](const carray<std::uint8_t>& codes, int bits) {
            check_bits(bits);
            const std::size_t n = vector_length(codes, "codes");
            auto out = new_vector<std::uint8_t>(packed_size(n, bits));
            const std::uint8_t* in = codes.data();
            std::uint8_t* dst = out.mutable_data();
            {
                // Safe: only raw buffers owned by live numpy arrays are touched.
                py::gil_scoped_release release;
                pack_bits(in, n, bits, dst);
            }
            return out;
        },
        py::arg("codes").noconvert(), py::arg("bits"));

    m.def(
        "unpack_bits",
        [](const carray<std::uint8_t>& packed, int bits, std::size_t n) {
            check_bits(bits);
            const std::size_t have = vector_length(packed, "packed");
            const std::size_t need = packed_size(n, bits);
            LAQ_CHECK(have == need, "packed buffer has " << have << " bytes but " << n
                                                         << " codes of " << bits
                                                         << " bits need exactly " << need);
            auto out = new_vector<std::uint8_t>(n);
            const std::uint8_t* in = packed.data();
            std::uint8_t* dst = out.mutable_data();
            {
                py::gil_scoped_release release;
                unpack_bits(in, n, bits, dst);
            }
            return out;
        },
        py::arg("packed").noconvert(), py::arg("bits"), py::arg("n"));
}

}  // namespace laqcore::bind
