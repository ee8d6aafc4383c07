// laqcore/bitstream.hpp: little-endian byte access to the packed code stream (pack.hpp).
//
// Eight codes of `bits` bits fill exactly `bits` bytes, so kernels that read or write packed
// codes work on groups of 8 codes held in one 64-bit word: code j of a group sits at bits
// [j*bits, (j+1)*bits) of the word, and the word's bytes are stored least significant first.
// These helpers are byte-by-byte, hence independent of the host's endianness.
#pragma once

#include <cstddef>
#include <cstdint>

namespace laqcore {

// Stores the low `nbytes` (<= 8) bytes of `word` at out[0..nbytes), least significant first.
inline void store_le(std::uint64_t word, std::uint8_t* out, std::size_t nbytes) {
    for (std::size_t k = 0; k < nbytes; ++k) out[k] = static_cast<std::uint8_t>(word >> (8 * k));
}

// Reads `nbytes` (<= 8) bytes as the low bytes of a little-endian word.
inline std::uint64_t load_le(const std::uint8_t* in, std::size_t nbytes) {
    std::uint64_t word = 0;
    for (std::size_t k = 0; k < nbytes; ++k) word |= static_cast<std::uint64_t>(in[k]) << (8 * k);
    return word;
}

}  // namespace laqcore
