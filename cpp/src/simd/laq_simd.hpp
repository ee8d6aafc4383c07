// Private header of the SIMD LAQ translation units (laq_avx2.cpp, laq_avx512.cpp): what their
// encoders share, written once: the code constants of a radius (LaqCodeConsts, with the
// fast path's error bound) and the blockwise quantizer's software pipeline
// (LaqBlockKernels::quantize_blocks) over each level's radius accumulator and block encoder.
//
// Pipeline: each block is read from memory once: block j + 1's radius pass runs inside block j's
// encode loop (the encoder advances an Ahead by its step size), so its loads overlap the encoder's
// arithmetic, and the chain from a radius to the encoder's constants (a horizontal max, a
// division or two) runs while the previous block is still being encoded. The encoder hands
// back a block's float32 lane sums (BlockLanes) to the level's Totals, which turns them into
// LaqSumLanes::total()s (a tree of cross-lane permutes per sum) one block at a time (AVX2) or
// four at once (AVX-512: each permute then carries all eight sums, fewer permutes per block
// at blocks of 32 and 64).
//
// No intrinsics; everything has internal linkage (anonymous namespace), so each ISA's
// translation unit compiles its own copy (see bits_avx2.hpp for why nothing may be shared).
#pragma once

#include <cstddef>
#include <cstdint>

#include "laqcore/laq.hpp"

namespace laqcore {
namespace detail {
namespace {

// The code constants of one radius, from (R, bits) alone; each level broadcasts them.
// Fast path for the codes: x = fma(v, 1/step, R/step + 1/2) in float32, against the
// reference's x_ref = (double(v) + R) / step + 1/2 (double roundings: |x_ref - x*| < 2^-43
// for the exact x* <= L + 1/2 <= 255.5). 1/step enters as the float32 quotient L / (2R) (2R
// is exact), one rounding of a value within 2^-53 of 1/step, so off by a relative 2^-24 +
// 2^-53, at most 2^-17 on |v / step| <= L/2 < 128; R/step + 1/2 is (L+1)/2 to within 2^-45,
// and that float is the constant; the FMA rounds by at most half an ulp of 256, 2^-16. So
// |x - x*| < 2^-15, and whenever x lies at least `margin` = 2^-14 from every integer (x -
// round(x) is exact in float), floor(x) = floor(x_ref) is the reference's code (which also
// needs no clamp: x < L + 1). Otherwise (and for NaN, never expected) the codes are
// recomputed by the exact double path. Huge radii and tiny steps (where 1/step could
// overflow float or be subnormal), and R = 0, always take it: an infinite margin flags every
// element. One float division per radius; step itself is only needed by the exact path.
struct LaqCodeConsts {
    float inv, c0, margin;
    LaqSumScale sum;  // laq.hpp's scale of the sums' terms
};
inline LaqCodeConsts laq_code_consts(float radius, int bits) {
    const int top = (1 << bits) - 1;
    const float inv = static_cast<float>(top) / (2.0f * radius);  // +Inf for R = 0
    const bool fast = radius < 1e30f && inv < 1e30f;
    return {fast ? inv : 0.0f, fast ? 0.5f * static_cast<float>(top + 1) : 0.0f,
            fast ? 1.0f / 16384.0f : __builtin_inff(), laq_sum_scale(radius)};
}

// LaqCodeConsts in a level's registers: Broadcast()(x) puts a float in every lane of a
// Broadcast::Vec (the register type is named inside Broadcast, not passed as a template
// argument: GCC drops a vector type's attributes there and -Wignored-attributes says so).
// radius and bits stay for the exact path (codes_exact).
template <class Broadcast>
struct EncodeConstsOf {
    using Vec = typename Broadcast::Vec;
    Vec vinv, vc0, margin, sum_scale;
    double sum_unscale;
    float radius;
    int bits;
    EncodeConstsOf(float radius_, int bits_) : radius(radius_), bits(bits_) {
        const LaqCodeConsts c = laq_code_consts(radius, bits);
        const Broadcast set1;
        vinv = set1(c.inv);
        vc0 = set1(c.c0);
        margin = set1(c.margin);
        sum_scale = set1(c.sum.scale);
        sum_unscale = c.sum.unscale;
    }
};

// Codes buffered before they are packed (the blockwise kernels pack and unpack several small
// blocks at once, so the packer's per-call constants are paid about once per kChunkCodes
// codes; the buffer stays in L1). A chunk is whole blocks: with blocks below kChunkCodes it
// holds fewer than 2 * kChunkCodes codes, else one block, at most kReduceBlock.
constexpr std::size_t kChunkCodes = 1024;

// The blockwise encoders' code buffer for the widths a level does not pack straight from its
// registers: block [s, end)'s codes, one byte each, go to at(s); block_done(end, count, pack)
// then hands the chunk to pack(codes, n, first) (its n codes starting at element `first`)
// once it holds kChunkCodes codes or the input's count elements end. kCapacity: 1 where the
// level packs from its registers (the buffer unused), else kReduceBlock.
template <std::size_t kCapacity>
struct CodeChunk {
    std::size_t first = 0;  // the element of codes[0]
    alignas(64) std::uint8_t codes[kCapacity];

    std::uint8_t* at(std::size_t s) { return codes + (s - first); }
    template <class Pack>
    void block_done(std::size_t end, std::size_t count, Pack&& pack) {
        if (end - first >= kChunkCodes || end == count) {
            pack(codes, end - first, first);
            first = end;
        }
    }
};

// The next block's radius pass, carried out inside the encode loop of the current one:
// elements [0, count) of (grad, prev); the encoder leaves the partial maximum in acc and the
// elements it covered (from 0) in done. Radius: the level's running maximum of |v| bit
// patterns, with add_range<kHasPrev>(grad, prev, from, count) and result().
template <class Radius>
struct Ahead {
    const float* grad;
    const float* prev;
    std::size_t count;
    Radius acc;
    std::size_t done;
};

// A block's lane sums (the level's registers of laq.hpp's LaqSumLanes, err_sq and innov_sq)
// and the unscale of its radius, on their way to the level's totals.
template <class Lanes>
struct BlockLanes {
    Lanes lanes;
    double unscale;
};

// The blockwise quantizer over count elements in blocks of `block` (contract in laq.hpp):
// writes radii[j] and sums[j] for block j = [s, s + m): encode(grad_s, prev_s, s, m, R_j, &next)
// writes the block's codes, returns its BlockLanes and runs (part of) next's radius pass;
// Totals (default-constructed, one per call) turns them into sums: add(block_lanes, &sums[j])
// stores, now or at a later add or flush(), LaqSumLanes::total() of err_sq and innov_sq times
// the unscale (a level may so combine several blocks' totals in one permute tree). prev_s is
// nullptr without a q_prev. Returns false at the first block whose radius pass finds a value
// that is not finite (the sums of the blocks before it written).
template <class Radius, class Totals, bool kHasPrev, class Encode>
bool quantize_blocks_pipelined(const float* grad, const float* prev, std::size_t count,
                               std::size_t block, float* radii, LaqSums* sums, Encode&& encode) {
    auto at = [&](const float* x, std::size_t s) { return kHasPrev ? x + s : nullptr; };
    auto length = [&](std::size_t s) { return count - s < block ? count - s : block; };
    Totals totals;
    Radius acc;
    acc.template add_range<kHasPrev>(grad, at(prev, 0), 0, length(0));
    for (std::size_t s = 0, j = 0; s < count; s += block, ++j) {
        const LaqRadiusPartial part = acc.result();
        if (part.nonfinite) {
            totals.flush();
            return false;
        }
        radii[j] = part.max_abs;
        const std::size_t t = s + block;
        Ahead<Radius> next{grad, prev, 0, Radius(), 0};
        if (t < count) next = {grad + t, at(prev, t), length(t), Radius(), 0};
        totals.add(encode(grad + s, at(prev, s), s, length(s), part.max_abs, &next), sums + j);
        next.acc.template add_range<kHasPrev>(next.grad, next.prev, next.done, next.count);
        acc = next.acc;
    }
    totals.flush();
    return true;
}

}  // namespace
}  // namespace detail
}  // namespace laqcore
