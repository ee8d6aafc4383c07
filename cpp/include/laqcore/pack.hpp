// laqcore/pack.hpp: packing of 1..8-bit integer codes into bytes, and back.
//
// Packed layout (the wire format of every laqcore payload body):
//   * The codes form one little-endian bit stream: code i occupies stream bits
//     [i*bits, (i+1)*bits), least significant bit first.
//   * Stream bit j is bit (j % 8) of byte (j / 8), counting bit 0 as the least significant.
//     For bits = 4 this puts code 2k in the low nibble of byte k and code 2k+1 in the high
//     nibble; for bits = 3 codes straddle byte boundaries.
//   * The packed size is packed_size(n, bits) = ceil(n * bits / 8) bytes. Unused high bits
//     of the last byte (the padding) are zero; unpack rejects a buffer whose padding is not
//     zero, since that can only be a corrupt or mis-sized buffer.
//   * Equivalent numpy: np.packbits(bit-matrix of the codes, bitorder="little").
//
// Implementation: 8 consecutive codes fill exactly `bits` bytes, so the kernels work on
// groups of 8 codes through a 64-bit accumulator, and groups are independent (parallel).
#pragma once

#include <cstddef>
#include <cstdint>

namespace laqcore {

// ceil(n * bits / 8), computed per group of 8 codes so that it cannot overflow for any n
// (n * bits wraps for n >= 2^61: a decoder trusting a frame's n would then accept a tiny body
// for a huge vector).
constexpr std::size_t packed_size(std::size_t n, int bits) {
    const auto b = static_cast<std::size_t>(bits);
    return n / 8 * b + (n % 8 * b + 7) / 8;
}

// Packs n codes (each < 2^bits) into out[packed_size(n, bits)].
// Throws std::invalid_argument naming the first code that does not fit in `bits` (codes are
// checked in the packing pass itself, so `out` is then left partly written).
void pack_bits(const std::uint8_t* codes, std::size_t n, int bits, std::uint8_t* out);

// Unpacks n codes from packed[packed_size(n, bits)] into codes[n].
// Throws std::invalid_argument if the padding bits of the last byte are not zero.
void unpack_bits(const std::uint8_t* packed, std::size_t n, int bits, std::uint8_t* codes);

// Throws std::invalid_argument if the padding bits of `packed` are not zero.
void check_padding(const std::uint8_t* packed, std::size_t n, int bits);

}  // namespace laqcore
