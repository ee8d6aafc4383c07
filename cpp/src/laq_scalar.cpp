// The portable scalar reference of the LAQ block kernels (laq.hpp) and the grid every
// path shares; the drivers are in laq.cpp.
#include "laqcore/laq.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "laqcore/bitstream.hpp"
#include "laqcore/common.hpp"
#include "laqcore/pack.hpp"
#include "laqcore/parallel.hpp"

namespace laqcore {
namespace {

static_assert(kReduceBlock % 8 == 0, "blocks must start on whole bytes of the packed stream");
static_assert(kLaqSumLanes == 2 * kSumLanes, "LaqSumLanes::total folds two halves");

inline int max_code(int bits) {
    return (1 << bits) - 1;
}

// ---- scalar block kernels ----------------------------------------------------------------

// |v| as the bit pattern of a float with the sign cleared: for non-negative floats the
// unsigned order of the patterns is the numeric order, and +Inf/NaN patterns are the largest
// (>= kInfBits). So one integer max gives both R and the NaN/Inf check, and it vectorizes
// (a float max reduction does not without -ffast-math).
constexpr std::uint32_t kInfBits = 0x7F800000u;

inline std::uint32_t abs_bits(float v) {
    std::uint32_t u;
    std::memcpy(&u, &v, sizeof u);
    return u & 0x7FFFFFFFu;
}

template <bool kHasPrev>
LaqRadiusPartial radius_block_impl(const float* grad, const float* prev, std::size_t count) {
    std::uint32_t m = 0;
    for (std::size_t i = 0; i < count; ++i) {
        const float v = kHasPrev ? grad[i] - prev[i] : grad[i];
        const std::uint32_t a = abs_bits(v);
        m = a > m ? a : m;
    }
    if (m >= kInfBits) return {0.0f, true};
    float r;
    std::memcpy(&r, &m, sizeof r);
    return {r, false};
}

LaqRadiusPartial radius_block_scalar(const float* grad, const float* prev, std::size_t count) {
    return prev ? radius_block_impl<true>(grad, prev, count)
                : radius_block_impl<false>(grad, nullptr, count);
}

// Encodes m (<= 8) consecutive elements starting at element `first` of a piece: returns
// their codes packed in the low m*bits bits of a word and adds each element's two scaled
// squares to its lane (laq.hpp, "Arithmetic"). Inlined with m = 8 for full groups, so each
// inner loop has a constant trip count and the arithmetic of the first one (the division)
// can be vectorized.
template <bool kHasPrev>
inline std::uint64_t encode_group(const float* grad, const float* prev, std::size_t first,
                                  std::size_t m, const LaqGrid& grid, double radius, double step,
                                  int top, float scale, LaqSumLanes& err_sq,
                                  LaqSumLanes& innov_sq) {
    int code[8];
    for (std::size_t j = 0; j < m; ++j) {
        const float p = kHasPrev ? prev[j] : 0.0f;
        const float v = grad[j] - p;  // float32, as the reference (see laq.hpp)
        // x = (v + R) / step + 1/2 >= 1/2: v >= -R holds exactly and rounding keeps the
        // sign, so the truncating conversion is floor(x). The min() guards rounding only.
        const double x = (static_cast<double>(v) + radius) / step + 0.5;
        code[j] = std::min(static_cast<int>(x), top);
    }
    const auto b = static_cast<std::size_t>(grid.bits);
    std::uint64_t word = 0;
    for (std::size_t j = 0; j < m; ++j) {
        word |= static_cast<std::uint64_t>(code[j]) << (j * b);
    }
    for (std::size_t j = 0; j < m; ++j) {
        const float p = kHasPrev ? prev[j] : 0.0f;
        const float dq = grid.lut[code[j]];
        const float q_new = p + dq;  // what the receiver's apply produces
        laq_add_square(err_sq, first + j, q_new - grad[j], scale);
        laq_add_square(innov_sq, first + j, dq, scale);
    }
    return word;
}

template <bool kHasPrev>
LaqSums encode_block_impl(const float* grad, const float* prev, std::size_t count,
                          const LaqGrid& grid, std::uint8_t* packed) {
    const auto b = static_cast<std::size_t>(grid.bits);
    // Copies: `packed` is a byte pointer and may alias anything, so values read through
    // `grid` would otherwise be reloaded after every store.
    const double radius = grid.radius;
    const double step = grid.step;
    const int top = max_code(grid.bits);
    const LaqSumScale scale = laq_sum_scale(grid.radius);
    LaqSumLanes err_sq{};
    LaqSumLanes innov_sq{};
    const std::size_t full = count / 8 * 8;
    for (std::size_t i0 = 0; i0 < full; i0 += 8) {
        const std::uint64_t word =
            encode_group<kHasPrev>(grad + i0, kHasPrev ? prev + i0 : nullptr, i0, 8, grid, radius,
                                   step, top, scale.scale, err_sq, innov_sq);
        store_le(word, packed + i0 / 8 * b, b);
    }
    if (full < count) {
        const std::size_t m = count - full;
        const std::uint64_t word =
            encode_group<kHasPrev>(grad + full, kHasPrev ? prev + full : nullptr, full, m, grid,
                                   radius, step, top, scale.scale, err_sq, innov_sq);
        store_le(word, packed + full / 8 * b, packed_size(m, grid.bits));
    }
    return {err_sq.total(scale.unscale), innov_sq.total(scale.unscale)};
}

LaqSums encode_block_scalar(const float* grad, const float* prev, std::size_t count,
                            const LaqGrid& grid, std::uint8_t* packed) {
    return prev ? encode_block_impl<true>(grad, prev, count, grid, packed)
                : encode_block_impl<false>(grad, nullptr, count, grid, packed);
}

// Calls fn(i, code) for each of the `count` codes of a block, in order. Full groups of 8
// have a constant inner trip count (unrolled); the last, partial group reads only its bytes.
template <class Fn>
inline void for_each_code(const std::uint8_t* packed, std::size_t count, int bits, Fn&& fn) {
    const auto b = static_cast<std::size_t>(bits);
    const std::uint64_t mask = (std::uint64_t{1} << b) - 1;
    const std::size_t full = count / 8 * 8;
    for (std::size_t i0 = 0; i0 < full; i0 += 8) {
        const std::uint64_t word = load_le(packed + i0 / 8 * b, b);
        for (std::size_t j = 0; j < 8; ++j) {
            fn(i0 + j, static_cast<unsigned>((word >> (j * b)) & mask));
        }
    }
    if (full < count) {
        const std::size_t m = count - full;
        const std::uint64_t word = load_le(packed + full / 8 * b, packed_size(m, bits));
        for (std::size_t j = 0; j < m; ++j) {
            fn(full + j, static_cast<unsigned>((word >> (j * b)) & mask));
        }
    }
}

void decode_store_scalar(const std::uint8_t* packed, std::size_t count, const LaqGrid& grid,
                         float* out) {
    for_each_code(packed, count, grid.bits,
                  [&](std::size_t i, unsigned c) { out[i] = grid.lut[c]; });
}

void decode_add_scalar(const std::uint8_t* packed, std::size_t count, const LaqGrid& grid,
                       const float* table, float /*weight: folded into table*/, float* inout) {
    for_each_code(packed, count, grid.bits,
                  [&](std::size_t i, unsigned c) { inout[i] = inout[i] + table[c]; });
}

double decode_sumsq_scalar(const std::uint8_t* packed, std::size_t count, const LaqGrid& grid) {
    const LaqSumScale scale = laq_sum_scale(grid.radius);
    LaqSumLanes s{};  // the encoder's innov_sq arithmetic (bit-identical result)
    for_each_code(packed, count, grid.bits, [&](std::size_t i, unsigned c) {
        laq_add_square(s, i, grid.lut[c], scale.scale);
    });
    return s.total(scale.unscale);
}

const LaqBlockKernels kScalarKernels = {
    "scalar",
    kLaqMaxLevels,
    &radius_block_scalar,
    &encode_block_scalar,
    &decode_store_scalar,
    &decode_add_scalar,
    &decode_sumsq_scalar,
    nullptr,  // quantize_blocks: the drivers' per-block radius and encode
    nullptr,  // accumulate_blocks: the drivers' per-block grid and decode_add
};

}  // namespace

const LaqBlockKernels& laq_scalar_kernels() {
    return kScalarKernels;
}

double LaqSumLanes::total(double unscale) const noexcept {
    LaneSum halves;
    for (std::size_t j = 0; j < kSumLanes; ++j) {
        halves.lane[j] = static_cast<double>(lane[j]) + static_cast<double>(lane[j + kSumLanes]);
    }
    return halves.total() * unscale;
}

void laq_fill_grid(float radius, int bits, LaqGrid& grid, int entries) noexcept {
    const int top = max_code(bits);
    const int last = top < entries - 1 ? top : entries - 1;
    const bool same_width = grid.bits == bits;
    const double r = radius;
    const double step = (2.0 * r) / static_cast<double>(top);
    grid.bits = bits;
    grid.radius = radius;
    // R == 0: every v_i is 0 and the code formula would be 0/0; with a unit step it gives
    // floor(0 + 0.5) = 0 for every element, and the table (built from the true step 0) is 0.
    grid.step = radius > 0.0f ? step : 1.0;
    for (int c = 0; c <= last; ++c) {
        grid.lut[c] = static_cast<float>(static_cast<double>(c) * step - r);
    }
    // The SIMD paths load the first kLaqLutPrefix entries into registers whatever the width;
    // those past 2^bits are zero (still zero if the grid already had this width).
    if (!same_width) {
        for (int c = top + 1; c < kLaqLutPrefix; ++c) grid.lut[c] = 0.0f;
    }
}

void laq_make_grid(float radius, int bits, LaqGrid& grid) {
    check_bits(bits);
    LAQ_CHECK(std::isfinite(radius) && radius >= 0.0f,
              "radius must be finite and >= 0, got " << radius);
    laq_fill_grid(radius, bits, grid);
}

}  // namespace laqcore
