#include "laqcore/pack.hpp"

#include <cstring>

#include "laqcore/common.hpp"
#include "laqcore/parallel.hpp"

namespace laqcore {
namespace {

// Packs `count` (<= 8) codes into `bits` bytes' worth of a 64-bit little-endian word.
inline std::uint64_t gather_group(const std::uint8_t* codes, std::size_t count, int bits) {
    std::uint64_t acc = 0;
    for (std::size_t j = 0; j < count; ++j) {
        acc |= static_cast<std::uint64_t>(codes[j]) << (j * static_cast<std::size_t>(bits));
    }
    return acc;
}

inline void store_le(std::uint64_t word, std::uint8_t* out, std::size_t nbytes) {
    for (std::size_t k = 0; k < nbytes; ++k) out[k] = static_cast<std::uint8_t>(word >> (8 * k));
}

inline std::uint64_t load_le(const std::uint8_t* in, std::size_t nbytes) {
    std::uint64_t word = 0;
    for (std::size_t k = 0; k < nbytes; ++k) word |= static_cast<std::uint64_t>(in[k]) << (8 * k);
    return word;
}

}  // namespace

void pack_bits(const std::uint8_t* codes, std::size_t n, int bits, std::uint8_t* out) {
    check_bits(bits);
    const auto b = static_cast<std::size_t>(bits);
    const std::uint8_t limit_mask = static_cast<std::uint8_t>(0xFFu << bits);  // 0 for bits = 8

    // Validate first (serially cheap OR-reduction), so no partial output is ever returned.
    std::uint8_t bad = 0;
    for (std::size_t i = 0; i < n; ++i) bad |= static_cast<std::uint8_t>(codes[i] & limit_mask);
    if (bad) {
        for (std::size_t i = 0; i < n; ++i) {
            LAQ_CHECK((codes[i] & limit_mask) == 0,
                      "code " << int(codes[i]) << " at index " << i << " does not fit in "
                              << bits << " bits (max " << ((1 << bits) - 1) << ")");
        }
    }

    const std::size_t full_groups = n / 8;
    const auto groups_signed = static_cast<std::int64_t>(full_groups);
#ifdef LAQCORE_HAVE_OPENMP
#pragma omp parallel for schedule(static) if (n >= kMinParallel)
#endif
    for (std::int64_t g = 0; g < groups_signed; ++g) {
        const auto gi = static_cast<std::size_t>(g);
        store_le(gather_group(codes + 8 * gi, 8, bits), out + b * gi, b);
    }
    const std::size_t tail = n - 8 * full_groups;
    if (tail) {
        const std::size_t tail_bytes = packed_size(tail, bits);
        store_le(gather_group(codes + 8 * full_groups, tail, bits), out + b * full_groups,
                 tail_bytes);
    }
}

void check_padding(const std::uint8_t* packed, std::size_t n, int bits) {
    check_bits(bits);
    const std::size_t used_bits = n * static_cast<std::size_t>(bits);
    const std::size_t nbytes = packed_size(n, bits);
    if (used_bits % 8 == 0 || nbytes == 0) return;
    const auto pad_mask = static_cast<std::uint8_t>(0xFFu << (used_bits % 8));
    LAQ_CHECK((packed[nbytes - 1] & pad_mask) == 0,
              "corrupt packed buffer: padding bits of the last byte are not zero "
              "(buffer does not hold " << n << " codes of " << bits << " bits)");
}

void unpack_bits(const std::uint8_t* packed, std::size_t n, int bits, std::uint8_t* codes) {
    check_padding(packed, n, bits);
    const auto b = static_cast<std::size_t>(bits);
    const std::uint64_t code_mask = (std::uint64_t{1} << b) - 1;
    const std::size_t full_groups = n / 8;
    const auto groups_signed = static_cast<std::int64_t>(full_groups);
#ifdef LAQCORE_HAVE_OPENMP
#pragma omp parallel for schedule(static) if (n >= kMinParallel)
#endif
    for (std::int64_t g = 0; g < groups_signed; ++g) {
        const auto gi = static_cast<std::size_t>(g);
        const std::uint64_t word = load_le(packed + b * gi, b);
        for (std::size_t j = 0; j < 8; ++j) {
            codes[8 * gi + j] = static_cast<std::uint8_t>((word >> (j * b)) & code_mask);
        }
    }
    const std::size_t tail = n - 8 * full_groups;
    if (tail) {
        const std::uint64_t word = load_le(packed + b * full_groups, packed_size(tail, bits));
        for (std::size_t j = 0; j < tail; ++j) {
            codes[8 * full_groups + j] = static_cast<std::uint8_t>((word >> (j * b)) & code_mask);
        }
    }
}

}  // namespace laqcore
