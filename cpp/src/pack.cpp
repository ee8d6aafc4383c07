#include "laqcore/pack.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "laqcore/bitstream.hpp"
#include "laqcore/common.hpp"
#include "laqcore/dispatch.hpp"
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

}  // namespace

// Packing and unpacking stream through memory: each parallel block covers
// kPackBlockGroups groups of 8 codes (32 KiB of codes), large enough that the per-block
// call and the SIMD tail cost nothing, small enough to balance any thread count.
constexpr std::size_t kPackBlockGroups = std::size_t{1} << 12;

namespace detail {

std::uint8_t pack_groups_scalar(const std::uint8_t* codes, std::size_t groups, int bits,
                                std::uint8_t* out) {
    const auto b = static_cast<std::size_t>(bits);
    std::uint8_t seen = 0;
    for (std::size_t g = 0; g < groups; ++g) {
        for (std::size_t j = 0; j < 8; ++j) seen |= codes[8 * g + j];
        store_le(gather_group(codes + 8 * g, 8, bits), out + b * g, b);
    }
    return seen;
}

void unpack_groups_scalar(const std::uint8_t* packed, std::size_t groups, int bits,
                          std::uint8_t* codes) {
    const auto b = static_cast<std::size_t>(bits);
    const std::uint64_t code_mask = (std::uint64_t{1} << b) - 1;
    for (std::size_t g = 0; g < groups; ++g) {
        const std::uint64_t word = load_le(packed + b * g, b);
        for (std::size_t j = 0; j < 8; ++j) {
            codes[8 * g + j] = static_cast<std::uint8_t>((word >> (j * b)) & code_mask);
        }
    }
}

}  // namespace detail

// Packing is a few instructions per code: below 2^18 codes waking a helper thread costs
// more than it saves.
constexpr std::size_t kMinParallelPack = kMinParallel * 4;

void pack_bits(const std::uint8_t* codes, std::size_t n, int bits, std::uint8_t* out) {
    check_bits(bits);
    const auto pack_groups =
        kernels().pack_groups;  // may throw (bad LAQCORE_SIMD): not in a region
    const auto b = static_cast<std::size_t>(bits);
    const std::size_t full_groups = n / 8;
    const std::size_t nblocks = num_blocks(full_groups, kPackBlockGroups);

    // Codes are validated in the same pass as they are packed (the block functions return
    // the OR of every code they read): one read of the input instead of two. A bad code
    // therefore leaves `out` partly written; the error is raised before anyone sees it.
    std::atomic<unsigned> seen_blocks{0};
    parallel_for(nblocks, n >= kMinParallelPack, [&](std::size_t blk) {
        const std::size_t g0 = blk * kPackBlockGroups;
        const std::size_t g1 = std::min(g0 + kPackBlockGroups, full_groups);
        seen_blocks.fetch_or(pack_groups(codes + 8 * g0, g1 - g0, bits, out + b * g0),
                             std::memory_order_relaxed);
    });
    auto seen = static_cast<std::uint8_t>(seen_blocks.load());
    const std::size_t tail = n - 8 * full_groups;
    if (tail) {
        for (std::size_t i = 8 * full_groups; i < n; ++i)
            seen = static_cast<std::uint8_t>(seen | codes[i]);
        store_le(gather_group(codes + 8 * full_groups, tail, bits), out + b * full_groups,
                 packed_size(tail, bits));
    }

    if (bits < 8 && (seen >> bits) != 0) {
        for (std::size_t i = 0; i < n; ++i) {
            LAQ_CHECK((codes[i] >> bits) == 0,
                      "code " << int(codes[i]) << " at index " << i << " does not fit in " << bits
                              << " bits (max " << ((1 << bits) - 1) << ")");
        }
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
              "(buffer does not hold "
                  << n << " codes of " << bits << " bits)");
}

void unpack_bits(const std::uint8_t* packed, std::size_t n, int bits, std::uint8_t* codes) {
    check_padding(packed, n, bits);
    const auto unpack_groups = kernels().unpack_groups;
    const auto b = static_cast<std::size_t>(bits);
    const std::uint64_t code_mask = (std::uint64_t{1} << b) - 1;
    const std::size_t full_groups = n / 8;
    const std::size_t nblocks = num_blocks(full_groups, kPackBlockGroups);
    parallel_for(nblocks, n >= kMinParallelPack, [&](std::size_t blk) {
        const std::size_t g0 = blk * kPackBlockGroups;
        const std::size_t g1 = std::min(g0 + kPackBlockGroups, full_groups);
        unpack_groups(packed + b * g0, g1 - g0, bits, codes + 8 * g0);
    });
    const std::size_t tail = n - 8 * full_groups;
    if (tail) {
        const std::uint64_t word = load_le(packed + b * full_groups, packed_size(tail, bits));
        for (std::size_t j = 0; j < tail; ++j) {
            codes[8 * full_groups + j] = static_cast<std::uint8_t>((word >> (j * b)) & code_mask);
        }
    }
}

}  // namespace laqcore
