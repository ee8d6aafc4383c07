// Private to entropy.cpp and simd/entropy_*.cpp: the per-symbol tables of the rANS coder
// (arithmetic in laqcore/entropy.hpp) and the bulk loops over whole groups of 8 symbols of an
// 8-lane chunk, which have SIMD variants (dispatch.hpp). Types and constants only: the SIMD
// files must not share inline functions with scalar ones.
#pragma once

#include <cstddef>
#include <cstdint>

namespace laqcore {
namespace detail {

constexpr std::uint32_t kRansLow = std::uint32_t{1} << 15;  // L: states live in [L, 2^31)
constexpr std::size_t kRansGroup = 8;                       // lanes of a many-lane chunk

// The encoder uses precisions m <= kRansSlotMaxPrecision only (the decoder accepts up to
// kEntropyMaxPrecision).
constexpr int kRansSlotMaxPrecision = 12;

// Encoder entry of symbol s (f = f_s != 0, c = c_s, M = 2^m <= 2^12, sh = ceil(log2 f)).
// The SIMD encoder gathers words 0 and 1 and derives x_max = (M - cmpl) * 2^(31 - m) and
// shift = 31 + sh from them.
struct EncSymbol {
    std::uint32_t rcp = 0;    // ceil(2^shift / f)
    std::uint32_t meta = 0;   // c | (M - f) << 12 | sh << 24
    std::uint32_t x_max = 0;  // f * 2^(31 - m): renormalise when x >= x_max
    std::uint32_t shift = 0;  // 31 + sh
};
static_assert(sizeof(EncSymbol) == 16, "the SIMD encoder reads words 0 and 1 of 4");

// Decoder slot entry for precision m <= kRansSlotMaxPrecision, one 32-bit word per slot
// (one gather): (f - 1) | (slot - c) << 12 | s << 24.

// One 8-lane chunk in the encoder's bulk loop.
struct RansEncodeCursor {
    std::uint32_t x[kRansGroup];  // x[j]: state of lane j
    std::uint8_t* p;              // words are written below p
    const std::uint8_t* symbols;  // the chunk's first symbol; group g = symbols[8g, 8g + 8)
    std::size_t groups;           // groups [0, groups) are still to encode, the last first
};

// One 8-lane chunk in the decoder's bulk loop.
struct RansDecodeCursor {
    std::uint32_t x[kRansGroup];
    const std::uint8_t* p;    // next word
    const std::uint8_t* end;  // end of the chunk's bytes
    std::uint8_t* out;        // where the next group's symbols go
    std::size_t groups;       // whole groups still to decode
};

// Independent chunks coded in one loop, so that their dependency chains overlap.
constexpr int kRansMaxCursors = 4;

// Bulk loops over whole groups of 8 symbols of 1..kRansMaxCursors chunks; every cursor
// ends where a serial loop over its own chunk would, whatever the others do.
struct EntropyBlockKernels {
    // Encodes every remaining group of each cursor, inside a group lane 7 first (the order
    // the decoder reverses). p moves down by 2 bytes per emitted word; writes may reach 16
    // bytes below the lowest word (the SIMD path stores whole registers), which the
    // caller's buffer must hold.
    void (*encode_groups)(RansEncodeCursor* cursors, int count, int m, const EncSymbol* enc);
    // Decodes the groups of each cursor while at least 16 bytes remain in [p, end) (a group
    // reads at most 8 words). slots: the slot entries for precision m <= kRansSlotMaxPrecision.
    void (*decode_groups)(RansDecodeCursor* cursors, int count, int m, const std::uint32_t* slots);
};

// The scalar reference (entropy.cpp); every SIMD variant reproduces it bit for bit.
const EntropyBlockKernels& entropy_scalar_kernels();

}  // namespace detail
}  // namespace laqcore
