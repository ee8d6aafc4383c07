// Bit packing (pack.hpp): documented layout, round trips for every width, bad input.
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "laqcore/pack.hpp"

using laqcore::pack_bits;
using laqcore::packed_size;
using laqcore::unpack_bits;

LAQ_TEST(packed_size_is_ceil_of_bits_over_8) {
    CHECK_EQ(packed_size(0, 3), std::size_t{0});
    CHECK_EQ(packed_size(1, 1), std::size_t{1});
    CHECK_EQ(packed_size(8, 3), std::size_t{3});
    CHECK_EQ(packed_size(9, 3), std::size_t{4});
    CHECK_EQ(packed_size(1000, 8), std::size_t{1000});
    for (int bits = 1; bits <= 8; ++bits)
        for (std::size_t n = 0; n < 40; ++n) CHECK_EQ(packed_size(n, bits), (n * bits + 7) / 8);
}

LAQ_TEST(layout_is_a_little_endian_bit_stream) {
    // 4 bits: code 2k in the low nibble of byte k, code 2k+1 in the high nibble.
    const std::uint8_t codes4[3] = {0x1, 0x2, 0x3};
    std::uint8_t out4[2] = {0xFF, 0xFF};
    pack_bits(codes4, 3, 4, out4);
    CHECK_EQ(int{out4[0]}, 0x21);
    CHECK_EQ(int{out4[1]}, 0x03);
    // 3 bits: codes 5, 3, 6 -> stream bits 101 110 011 (LSB first) -> bytes 0xDD, 0x01.
    const std::uint8_t codes3[3] = {5, 3, 6};
    std::uint8_t out3[2] = {0, 0};
    pack_bits(codes3, 3, 3, out3);
    CHECK_EQ(int{out3[0]}, 5 | (3 << 3) | ((6 & 0x3) << 6));
    CHECK_EQ(int{out3[1]}, 6 >> 2);
}

LAQ_TEST(round_trip_every_width_and_length) {
    std::mt19937 gen(7);
    for (int bits = 1; bits <= 8; ++bits) {
        for (std::size_t n : {std::size_t{1}, std::size_t{7}, std::size_t{8}, std::size_t{9},
                              std::size_t{1000}, std::size_t{70001}}) {
            std::vector<std::uint8_t> codes(n);
            for (auto& c : codes) c = static_cast<std::uint8_t>(gen() & ((1u << bits) - 1));
            std::vector<std::uint8_t> packed(packed_size(n, bits));
            pack_bits(codes.data(), n, bits, packed.data());
            std::vector<std::uint8_t> back(n);
            unpack_bits(packed.data(), n, bits, back.data());
            CHECK(back == codes);
        }
    }
}

LAQ_TEST(bad_input_is_refused) {
    std::uint8_t codes[2] = {0, 1};
    std::uint8_t packed[2] = {0, 0};
    CHECK_THROWS(pack_bits(codes, 2, 0, packed), std::invalid_argument, "bits");
    CHECK_THROWS(pack_bits(codes, 2, 9, packed), std::invalid_argument, "bits");
    // A code that does not fit its width.
    std::uint8_t wide[1] = {4};
    CHECK_THROWS(pack_bits(wide, 1, 2, packed), std::invalid_argument, "does not fit");
    // Non-zero padding bits can only come from a corrupt or mis-sized buffer.
    const std::uint8_t padded[1] = {0x80};
    std::uint8_t back[1];
    CHECK_THROWS(unpack_bits(padded, 1, 3, back), std::invalid_argument, "padding");
}

LAQ_TEST_MAIN()
