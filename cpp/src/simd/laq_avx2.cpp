// AVX2 block functions of the LAQ quantizer (laq.cpp holds the drivers and the scalar
// reference; laq.hpp the arithmetic): the fused quantize+pack of one radius (encode), the
// blockwise quantizer (quantize_blocks), which reads each radius block from memory once, the
// decoders and the blockwise accumulate. Every function performs exactly the reference's
// float and double operations, element by element, in the same order:
//   * codes: the reference computes (double(v) + R) / step + 0.5, truncated and clamped. A
//     float32 FMA estimate gives the same integer whenever it is not within 2^-14 of an
//     integer (its error is below 2^-15); the rare steps where it is take the exact double
//     path (laq_simd.hpp: LaqCodeConsts);
//   * dQ = lut[code]: register permutes of the table's first 8 or 16 entries, or for 5..8
//     bits the table's own formula per code, both computed from (R, bits) in registers with
//     laq_fill_grid's operations float(double(c) * step' - R), step' = 2R / L (same
//     operations, hence the same floats), so no LaqGrid table is read or refilled per block;
//   * sums: laq.hpp's scaled float32 terms in the 16 lanes of LaqSumLanes, held in two
//     __m256 (SquareLanes), combined in registers at the end of a piece (LaneTotals);
//   * the end of the input (a partial group of fewer than 8 elements) uses masked loads and
//     stores; its dead lanes add +0.0 to the lane sums, which leaves them unchanged (a lane
//     sum is never -0.0).
// 1-, 2-, 4- and 8-bit codes are packed straight from the registers; other widths go to a code
// buffer in L1 that is packed with the AVX2 packer about every kChunkCodes codes. The decoders
// unpack a block's or chunk's codes into such a buffer (8-bit codes are read in place).
//
// Like every *_avx2.cpp file, this one avoids inline functions shared with scalar files
// (bitstream.hpp, std::min, LaneSum::add ...): see bits_avx2.hpp.
#include <cfloat>
#include <cstdint>
#include <cstring>
#include <type_traits>  // true_type, false_type (types only)

#include "bits_avx2.hpp"
#include "kernels_avx2.hpp"
#include "lanes_avx2.hpp"  // lo_pd, hi_pd
#include "laq_simd.hpp"    // EncodeConstsOf, quantize_blocks_pipelined, Ahead
#include "laqcore/dispatch.hpp"
#include "laqcore/laq.hpp"
#include "laqcore/parallel.hpp"  // kReduceBlock (no calls)
#include "prefetch_avx2.hpp"     // prefetch_step

namespace laqcore {
namespace detail {
namespace {

static_assert(kReduceBlock % 32 == 0, "full blocks are whole 32-element steps");

// kChunkCodes (laq_simd.hpp): codes packed and unpacked per chunk of blocks.
static_assert(2 * kChunkCodes <= kReduceBlock, "a chunk fits the kReduceBlock code buffer");

inline void unpack_partial(const std::uint8_t* in, std::size_t m, std::size_t b,
                           std::uint8_t* codes) {
    const std::size_t nbytes = (m * b + 7) / 8;
    std::uint64_t word = 0;
    for (std::size_t k = 0; k < nbytes; ++k) word |= static_cast<std::uint64_t>(in[k]) << (8 * k);
    const std::uint64_t mask = (std::uint64_t{1} << b) - 1;
    for (std::size_t j = 0; j < m; ++j)
        codes[j] = static_cast<std::uint8_t>((word >> (j * b)) & mask);
}

// All-ones in 32-bit lanes [0, m), zero in the others (m <= 8).
inline __m256i first_lanes(std::size_t m) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(m)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// One vector of 8 elements at offset i: g, q_prev (0.0f without prev) and v = g - q_prev,
// in float32 as the reference (g - 0.0f == g bit for bit). The masked form loads only the
// lanes in `live` (the others read as 0.0f and never touch memory).
template <bool kHasPrev>
struct Elems {
    __m256 g, p, v;
    Elems(const float* grad, const float* prev, std::size_t i)
        : g(_mm256_loadu_ps(grad + i)),
          p(kHasPrev ? _mm256_loadu_ps(prev + i) : _mm256_setzero_ps()),
          v(kHasPrev ? _mm256_sub_ps(g, p) : g) {}
    Elems(const float* grad, const float* prev, std::size_t i, __m256i live)
        : g(_mm256_maskload_ps(grad + i, live)),
          p(kHasPrev ? _mm256_maskload_ps(prev + i, live) : _mm256_setzero_ps()),
          v(kHasPrev ? _mm256_sub_ps(g, p) : g) {}
};

// ---- radius ---------------------------------------------------------------------------
// Running maximum of |v| as bit patterns (the reference's abs_bits order, laq.cpp, which
// also catches NaN/Inf: patterns >= kInfBits).
struct RadiusAcc {
    __m256i m = _mm256_setzero_si256();

    template <bool kHasPrev>
    static __m256i abs_bits(const Elems<kHasPrev>& x) {
        return _mm256_and_si256(_mm256_castps_si256(x.v), _mm256_set1_epi32(0x7FFFFFFF));
    }
    // Elements [i, i + 32): four loads, one dependent max. Always inlined, as codes_exact: a
    // call inside the encode loop, even on a path it rarely takes, clobbers every vector
    // register, and the compiler then keeps the loop's sums and constants on the stack.
    template <bool kHasPrev>
    [[gnu::always_inline]] void add32(const float* grad, const float* prev, std::size_t i) {
        const __m256i a = _mm256_max_epu32(abs_bits(Elems<kHasPrev>(grad, prev, i)),
                                           abs_bits(Elems<kHasPrev>(grad, prev, i + 8)));
        const __m256i b = _mm256_max_epu32(abs_bits(Elems<kHasPrev>(grad, prev, i + 16)),
                                           abs_bits(Elems<kHasPrev>(grad, prev, i + 24)));
        m = _mm256_max_epu32(m, _mm256_max_epu32(a, b));
    }
    // Elements [from, count), from a multiple of 8 (masked lanes read 0.0f).
    template <bool kHasPrev>
    void add_range(const float* grad, const float* prev, std::size_t from, std::size_t count) {
        std::size_t i = from;
        for (; i + 32 <= count; i += 32) add32<kHasPrev>(grad, prev, i);
        for (; i + 8 <= count; i += 8) {
            m = _mm256_max_epu32(m, abs_bits(Elems<kHasPrev>(grad, prev, i)));
        }
        if (i < count) {
            const Elems<kHasPrev> x(grad, prev, i, first_lanes(count - i));
            m = _mm256_max_epu32(m, abs_bits(x));
        }
    }
    LaqRadiusPartial result() const {
        __m128i x = _mm_max_epu32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
        x = _mm_max_epu32(x, _mm_shuffle_epi32(x, 0x4E));
        x = _mm_max_epu32(x, _mm_shuffle_epi32(x, 0xB1));
        const auto mx = static_cast<std::uint32_t>(_mm_cvtsi128_si32(x));
        if (mx >= 0x7F800000u) return {0.0f, true};
        float r;
        std::memcpy(&r, &mx, sizeof r);
        return {r, false};
    }
};

template <bool kHasPrev>
LaqRadiusPartial radius_run(const float* grad, const float* prev, std::size_t count) {
    RadiusAcc acc;
    acc.add_range<kHasPrev>(grad, prev, 0, count);
    return acc.result();
}

LaqRadiusPartial radius_avx2(const float* grad, const float* prev, std::size_t count) {
    return prev ? radius_run<true>(grad, prev, count) : radius_run<false>(grad, nullptr, count);
}

// ---- sums -------------------------------------------------------------------------------
// laq.hpp's LaqSumLanes (the LAQ sums' 16 float32 lanes) in two registers: lanes 0-7 in
// lo, 8-15 in hi. Element i of a piece goes to lane i % 16, so the 8-element vector at
// offset i (a multiple of 8) goes to lo when i % 16 == 0, else to hi.
struct SquareLanes {
    __m256 lo = _mm256_setzero_ps();
    __m256 hi = _mm256_setzero_ps();

    // (x * scale)^2, each product rounded in float32 (no FMA, as the reference).
    static __m256 square(__m256 x, __m256 scale) {
        const __m256 t = _mm256_mul_ps(x, scale);
        return _mm256_mul_ps(t, t);
    }
    void add(std::size_t i, __m256 sq) {
        if (i % 16 == 0) {
            lo = _mm256_add_ps(lo, sq);
        } else {
            hi = _mm256_add_ps(hi, sq);
        }
    }
    // The lanes in memory, for a scalar tail and LaqSumLanes::total().
    LaqSumLanes spill() const {
        LaqSumLanes out;
        _mm256_storeu_ps(out.lane, lo);
        _mm256_storeu_ps(out.lane + 8, hi);
        return out;
    }
};

// The encoder's two sums of a piece.
struct Sums {
    SquareLanes err, innov;
};

// LaqSumLanes::total() of err and innov at once, in registers (laq_simd.hpp's Totals, each
// block's stored at once): (double)lane[j] + (double)lane[j + 8] for j = 0..7, then
// LaneSum::total()'s tree ((h0+h1)+(h2+h3)) + ((h4+h5)+(h6+h7)) with err and innov side by
// side in each instruction, then the unscale. (Batching blocks buys nothing here: the tree's
// levels are already full; a batch held in memory measured slower, a pair held in registers
// no faster.)
struct LaneTotals {
    [[gnu::always_inline]] void add(const BlockLanes<Sums>& block, LaqSums* out) const {
        auto halves_lo = [](const SquareLanes& x) {  // h0..h3
            return _mm256_add_pd(lo_pd(x.lo), lo_pd(x.hi));
        };
        auto halves_hi = [](const SquareLanes& x) {  // h4..h7
            return _mm256_add_pd(hi_pd(x.lo), hi_pd(x.hi));
        };
        const Sums& s = block.lanes;
        const __m256d e_lo = halves_lo(s.err);
        const __m256d i_lo = halves_lo(s.innov);
        const __m256d e_hi = halves_hi(s.err);
        const __m256d i_hi = halves_hi(s.innov);
        // (h0+h1, i0+i1, h2+h3, i2+i3) and (h4+h5, i4+i5, h6+h7, i6+i7)
        const __m256d x =
            _mm256_add_pd(_mm256_unpacklo_pd(e_lo, i_lo), _mm256_unpackhi_pd(e_lo, i_lo));
        const __m256d y =
            _mm256_add_pd(_mm256_unpacklo_pd(e_hi, i_hi), _mm256_unpackhi_pd(e_hi, i_hi));
        // ((h0+h1)+(h2+h3), (i0+i1)+(i2+i3), (h4+h5)+(h6+h7), (i4+i5)+(i6+i7))
        const __m256d q =
            _mm256_add_pd(_mm256_permute2f128_pd(x, y, 0x20), _mm256_permute2f128_pd(x, y, 0x31));
        static_assert(sizeof(LaqSums) == 2 * sizeof(double), "LaqSums: err_sq, innov_sq");
        _mm_storeu_pd(reinterpret_cast<double*>(out),
                      _mm_mul_pd(_mm_add_pd(_mm256_castpd256_pd128(q), _mm256_extractf128_pd(q, 1)),
                                 _mm_set1_pd(block.unscale)));
    }
    void flush() const {}
};

// ---- table lookups ----------------------------------------------------------------------
// How dQ = table[code] is found for 8 codes (in 32-bit lanes); chosen once per block.
enum class LutKind { perm8, perm16, formula };

inline LutKind lut_kind(int bits) {
    return bits <= 3 ? LutKind::perm8 : (bits == 4 ? LutKind::perm16 : LutKind::formula);
}

// float(double(c) * step - R) for the 8 codes c = first .. first + 7 (laq_fill_grid's
// formula; codes past 2^bits - 1 are computed too, never looked up).
inline __m256 table8(__m256d step, __m256d r, double first) {
    const __m256d c0 = _mm256_add_pd(_mm256_setr_pd(0.0, 1.0, 2.0, 3.0), _mm256_set1_pd(first));
    const __m256d c1 = _mm256_add_pd(c0, _mm256_set1_pd(4.0));
    return _mm256_set_m128(_mm256_cvtpd_ps(_mm256_sub_pd(_mm256_mul_pd(c1, step), r)),
                           _mm256_cvtpd_ps(_mm256_sub_pd(_mm256_mul_pd(c0, step), r)));
}

// table[code] with table[c] = weight * float(double(c) * step' - R), step' = 2R / L, the
// grid's lut (weight 1, multiplied by nothing) or the drivers' weighted table (the float32
// product weight * lut[c]), computed from (R, bits, weight) in registers: perm8 / perm16
// permute the first 8 / 16 entries, `formula` evaluates the entry per code.
template <LutKind K, bool kWeighted>
struct Lut {
    __m256d step, r;
    __m256 w, t0, t1;
    Lut(float radius, int bits, float weight)
        : step(_mm256_set1_pd((2.0 * static_cast<double>(radius)) /
                              static_cast<double>((1 << bits) - 1))),
          r(_mm256_set1_pd(radius)),
          w(_mm256_set1_ps(weight)),
          t0(_mm256_setzero_ps()),
          t1(_mm256_setzero_ps()) {
        if (K == LutKind::formula) return;
        t0 = weighted(table8(step, r, 0.0));
        if (K == LutKind::perm16) t1 = weighted(table8(step, r, 8.0));
    }
    __m256 weighted(__m256 lut) const { return kWeighted ? _mm256_mul_ps(w, lut) : lut; }
    __m256 operator()(__m256i code) const {
        if (K == LutKind::perm8) return _mm256_permutevar8x32_ps(t0, code);
        if (K == LutKind::perm16) {
            // Bit 3 of the code (moved to the sign bit) picks the upper half of the table.
            const __m256 upper = _mm256_castsi256_ps(_mm256_slli_epi32(code, 28));
            return _mm256_blendv_ps(_mm256_permutevar8x32_ps(t0, code),
                                    _mm256_permutevar8x32_ps(t1, code), upper);
        }
        const __m256d c_lo = _mm256_cvtepi32_pd(_mm256_castsi256_si128(code));
        const __m256d c_hi = _mm256_cvtepi32_pd(_mm256_extracti128_si256(code, 1));
        return weighted(
            _mm256_set_m128(_mm256_cvtpd_ps(_mm256_sub_pd(_mm256_mul_pd(c_hi, step), r)),
                            _mm256_cvtpd_ps(_mm256_sub_pd(_mm256_mul_pd(c_lo, step), r))));
    }
    // Codes of 8 bytes at `codes`.
    __m256 operator()(const std::uint8_t* codes) const {
        return (*this)(
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes))));
    }
};

// ---- fused quantize + pack ----------------------------------------------------------------
// The code constants of one radius (laq_simd.hpp's LaqCodeConsts, which derives the fast
// path's error bound), broadcast.
struct Broadcast {
    using Vec = __m256;
    Vec operator()(float x) const { return _mm256_set1_ps(x); }
};
using EncodeConsts = EncodeConstsOf<Broadcast>;

// Fast-path codes of v (LaqCodeConsts), and the distance of each estimate from the
// nearest integer.
struct FastCodes {
    __m256i code;
    __m256 dist;
};
inline FastCodes codes_fast(__m256 v, const EncodeConsts& k) {
    // x ~ (v + R) / step + 1/2 > 0, so truncation is floor.
    const __m256 x = _mm256_fmadd_ps(v, k.vinv, k.vc0);
    const __m256 x_near = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    return {_mm256_cvttps_epi32(x), _mm256_and_ps(_mm256_sub_ps(x, x_near), abs_mask)};
}
// All-ones lanes where an estimate is too close to an integer to be trusted ("not >=" is
// also true for NaN, which finite inputs never produce). One compare may test the minimum
// of several vectors' distances: the radius pass rejected NaN/Inf, so every distance is
// finite (and 0 where the fast path is off, with an infinite margin).
inline __m256 near_integer(__m256 dist, const EncodeConsts& k) {
    return _mm256_cmp_ps(dist, k.margin, _CMP_NGE_UQ);
}

// The reference's codes of v (the slow path): floor((double(v) + R) / step + 0.5), then
// min(., L), with LaqGrid::step (laq_fill_grid: 2R / L, or 1 for R = 0).
[[gnu::always_inline]] inline __m256i codes_exact(__m256 v, const EncodeConsts& k) {
    const double r = k.radius;
    const int top = (1 << k.bits) - 1;
    const __m256d vr = _mm256_set1_pd(r);
    const __m256d vstep =
        _mm256_set1_pd(k.radius > 0.0f ? (2.0 * r) / static_cast<double>(top) : 1.0);
    const __m256d half = _mm256_set1_pd(0.5);
    const __m256d c_lo =
        _mm256_floor_pd(_mm256_add_pd(_mm256_div_pd(_mm256_add_pd(lo_pd(v), vr), vstep), half));
    const __m256d c_hi =
        _mm256_floor_pd(_mm256_add_pd(_mm256_div_pd(_mm256_add_pd(hi_pd(v), vr), vstep), half));
    // The reference's truncating conversion of x >= 1/2 is this floor, then min(., top).
    return _mm256_min_epi32(_mm256_set_m128i(_mm256_cvttpd_epi32(c_hi), _mm256_cvttpd_epi32(c_lo)),
                            _mm256_set1_epi32(top));
}

// dQ = lut[code], q_new = p + dQ (both float32; p + dQ with p = 0.0f as the reference: -0.0f
// becomes +0.0f), and the scaled squares of q_new - g and dQ, live lanes only (the others
// +0.0).
template <LutKind K, bool kHasPrev>
inline void add_sums(const Elems<kHasPrev>& e, __m256i code, const Lut<K, false>& lut, __m256 scale,
                     std::size_t i, Sums& sums) {
    const __m256 dq = lut(code);
    const __m256 q_new = _mm256_add_ps(e.p, dq);
    sums.err.add(i, SquareLanes::square(_mm256_sub_ps(q_new, e.g), scale));
    sums.innov.add(i, SquareLanes::square(dq, scale));
}
template <LutKind K, bool kHasPrev>
inline void add_sums(const Elems<kHasPrev>& e, __m256i code, const Lut<K, false>& lut, __m256 scale,
                     std::size_t i, __m256i live, Sums& sums) {
    const __m256 dq = lut(code);
    const __m256 q_new = _mm256_add_ps(e.p, dq);
    const __m256 mask = _mm256_castsi256_ps(live);
    sums.err.add(i, _mm256_and_ps(SquareLanes::square(_mm256_sub_ps(q_new, e.g), scale), mask));
    sums.innov.add(i, _mm256_and_ps(SquareLanes::square(dq, scale), mask));
}

// Where a run's codes go. kPack: the code width when they are packed straight from the
// registers (1, 2, 4, 8), else 0: bytes into a code buffer, packed later by the caller. `out`
// is the run's packed stream (kPack != 0) or its code buffer; i is the offset of the codes
// in the run (a multiple of 8).
// 32 codes, bytes in order.
template <int kPack>
inline void store32(__m256i bytes, std::uint8_t* out, std::size_t i) {
    static_assert(kPack == 0 || kPack == 1 || kPack == 2 || kPack == 4 || kPack == 8,
                  "registers pack 1, 2, 4 and 8 bits");
    std::uint8_t* at = out + i / 8 * (kPack == 0 ? 8 : kPack);
    if constexpr (kPack == 1) {
        const std::uint32_t word = avx2::pack32_1bit(bytes);
        std::memcpy(at, &word, 4);
    } else if constexpr (kPack == 2) {
        _mm_storel_epi64(reinterpret_cast<__m128i*>(at), avx2::pack32_2bit(bytes));
    } else if constexpr (kPack == 4) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(at), avx2::pack32_4bit(bytes));
    } else {  // 8-bit codes are their own packed bytes
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(at), bytes);
    }
}
// The m <= 8 codes of one group (32-bit lanes, zero past m: the zero padding). A packed
// stream may end with this group: only its ceil(m * kPack / 8) bytes are written.
template <int kPack>
inline void store8(__m256i code, std::size_t m, std::uint8_t* out, std::size_t i) {
    const __m128i c16 =
        _mm_packus_epi32(_mm256_castsi256_si128(code), _mm256_extracti128_si256(code, 1));
    const __m128i bytes = _mm_packus_epi16(c16, c16);  // the 8 codes in the low 8 bytes
    if constexpr (kPack == 0) {                        // a code buffer has room for the whole group
        _mm_storel_epi64(reinterpret_cast<__m128i*>(out + i), bytes);
    } else {
        std::uint64_t word;
        if constexpr (kPack == 1) {
            word = static_cast<std::uint32_t>(
                _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_slli_epi32(code, 31))));
        } else if constexpr (kPack == 8) {
            word = static_cast<std::uint64_t>(_mm_cvtsi128_si64(bytes));
        } else {  // the 32-code packer on this group alone (the rest zero)
            const __m256i group = _mm256_set_m128i(_mm_setzero_si128(), bytes);
            word = static_cast<std::uint32_t>(_mm_cvtsi128_si32(
                kPack == 2 ? avx2::pack32_2bit(group) : avx2::pack32_4bit(group)));
        }
        // little-endian; a constant length (one store) for whole groups
        std::uint8_t* at = out + i / 8 * kPack;
        if (m == 8) {
            std::memcpy(at, &word, kPack);
        } else {
            std::memcpy(at, &word, (m * kPack + 7) / 8);
        }
    }
}

// Encodes count (<= kReduceBlock) elements with one radius (`grad` starts a piece): writes
// their codes (see store32) and returns the lane sums of their squares. kAhead: also run the
// radius pass of *ahead (the next block, laq_simd.hpp), 32 elements per step.
template <LutKind K, int kPack, bool kHasPrev, bool kAhead>
Sums encode_run(const float* grad, const float* prev, std::size_t count, const EncodeConsts& k,
                std::uint8_t* out, Ahead<RadiusAcc>* ahead) {
    const Lut<K, false> lut(k.radius, k.bits, 1.0f);
    const __m256 scale = k.sum_scale;
    Sums sums;  // locals, kept in registers (`out` may alias anything)
    RadiusAcc next;
    const float* next_grad = kAhead ? ahead->grad : nullptr;
    const float* next_prev = kAhead ? ahead->prev : nullptr;
    const std::size_t next_count = kAhead ? ahead->count : 0;
    // 32 elements per step: all codes first (one branch for the rare exact path), then the
    // sums. The four code vectors become 32 bytes with three packs and a lane permute
    // (packus interleaves the 128-bit lanes; the permute restores the order).
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    std::size_t i = 0;
    for (; i + 32 <= count; i += 32) {
        prefetch_step(grad + i);
        if (kHasPrev) prefetch_step(prev + i);
        if (kAhead && i + 32 <= next_count) next.add32<kHasPrev>(next_grad, next_prev, i);
        // The inputs are loaded again for the exact path and for the sums, after the codes are
        // stored (which may alias them): keeping them in registers from here would spill.
        const FastCodes f0 = codes_fast(Elems<kHasPrev>(grad, prev, i).v, k);
        const FastCodes f1 = codes_fast(Elems<kHasPrev>(grad, prev, i + 8).v, k);
        const FastCodes f2 = codes_fast(Elems<kHasPrev>(grad, prev, i + 16).v, k);
        const FastCodes f3 = codes_fast(Elems<kHasPrev>(grad, prev, i + 24).v, k);
        __m256i c0 = f0.code;
        __m256i c1 = f1.code;
        __m256i c2 = f2.code;
        __m256i c3 = f3.code;
        const __m256 flag = near_integer(
            _mm256_min_ps(_mm256_min_ps(f0.dist, f1.dist), _mm256_min_ps(f2.dist, f3.dist)), k);
        if (!_mm256_testz_ps(flag, flag)) {
            c0 = codes_exact(Elems<kHasPrev>(grad, prev, i).v, k);
            c1 = codes_exact(Elems<kHasPrev>(grad, prev, i + 8).v, k);
            c2 = codes_exact(Elems<kHasPrev>(grad, prev, i + 16).v, k);
            c3 = codes_exact(Elems<kHasPrev>(grad, prev, i + 24).v, k);
        }
        store32<kPack>(_mm256_permutevar8x32_epi32(_mm256_packus_epi16(_mm256_packus_epi32(c0, c1),
                                                                       _mm256_packus_epi32(c2, c3)),
                                                   order),
                       out, i);
        add_sums<K, kHasPrev>(Elems<kHasPrev>(grad, prev, i), c0, lut, scale, i, sums);
        add_sums<K, kHasPrev>(Elems<kHasPrev>(grad, prev, i + 8), c1, lut, scale, i + 8, sums);
        add_sums<K, kHasPrev>(Elems<kHasPrev>(grad, prev, i + 16), c2, lut, scale, i + 16, sums);
        add_sums<K, kHasPrev>(Elems<kHasPrev>(grad, prev, i + 24), c3, lut, scale, i + 24, sums);
    }
    if constexpr (kAhead) {
        ahead->acc = next;
        ahead->done = i < next_count ? i : next_count / 32 * 32;
    }
    // The rest (< 32 elements): groups of 8, the last one partial at the end of the input.
    for (; i < count; i += 8) {
        if (i % 32 == 0) {  // small blocks never enter the loop above
            prefetch_step(grad + i);
            if (kHasPrev) prefetch_step(prev + i);
        }
        const std::size_t m = count - i < 8 ? count - i : 8;
        const __m256i live = first_lanes(m);
        const Elems<kHasPrev> e =
            m == 8 ? Elems<kHasPrev>(grad, prev, i) : Elems<kHasPrev>(grad, prev, i, live);
        const FastCodes f = codes_fast(e.v, k);
        const __m256 flag = _mm256_and_ps(near_integer(f.dist, k), _mm256_castsi256_ps(live));
        __m256i code = f.code;
        if (!_mm256_testz_ps(flag, flag)) code = codes_exact(e.v, k);
        code = _mm256_and_si256(code, live);
        add_sums<K, kHasPrev>(e, code, lut, scale, i, live, sums);
        store8<kPack>(code, m, out, i);
    }
    return sums;
}

// Packs count byte codes (a run starting on a byte of the stream) into packed.
inline void pack_codes(const std::uint8_t* codes, std::size_t count, int bits,
                       std::uint8_t* packed) {
    const auto b = static_cast<std::size_t>(bits);
    const std::size_t full = count / 8 * 8;
    if (full > 0) pack_groups_avx2(codes, full / 8, bits, packed);
    if (full < count) avx2::pack_partial(codes + full, count - full, b, packed + full / 8 * b);
}

template <LutKind K, int kPack, bool kHasPrev>
LaqSums encode_block(const float* grad, const float* prev, std::size_t count, const LaqGrid& grid,
                     std::uint8_t* packed) {
    const EncodeConsts k(grid.radius, grid.bits);
    Sums sums;
    if constexpr (kPack != 0) {
        sums = encode_run<K, kPack, kHasPrev, false>(grad, prev, count, k, packed, nullptr);
    } else {
        alignas(32) std::uint8_t codes[kReduceBlock];
        sums = encode_run<K, kPack, kHasPrev, false>(grad, prev, count, k, codes, nullptr);
        pack_codes(codes, count, grid.bits, packed);
    }
    LaqSums out;
    LaneTotals().add({sums, k.sum_unscale}, &out);
    return out;
}

// ---- blockwise radius: each block read once (laq_simd.hpp) -----------------------------
// The pipeline's block encoder. Codes of other widths than 1, 2, 4 and 8 bits collect in a
// buffer, packed per chunk of blocks (kChunkCodes) into the `count` elements' stream.
template <LutKind K, int kPack, bool kHasPrev>
struct BlockEncoder {
    int bits;
    std::size_t count;
    std::uint8_t* packed;
    CodeChunk<kPack != 0 ? 1 : kReduceBlock> chunk;

    BlockEncoder(int bits_, std::size_t count_, std::uint8_t* packed_)
        : bits(bits_), count(count_), packed(packed_) {}

    BlockLanes<Sums> operator()(const float* g, const float* p, std::size_t s, std::size_t m,
                                float radius, Ahead<RadiusAcc>* next) {
        const auto b = static_cast<std::size_t>(bits);
        const EncodeConsts k(radius, bits);
        std::uint8_t* out = kPack != 0 ? packed + s / 8 * b : chunk.at(s);
        const Sums block_sums = encode_run<K, kPack, kHasPrev, true>(g, p, m, k, out, next);
        if (kPack == 0) {
            chunk.block_done(s + m, count,
                             [&](const std::uint8_t* codes, std::size_t n, std::size_t first) {
                                 pack_codes(codes, n, bits, packed + first / 8 * b);
                             });
        }
        return {block_sums, k.sum_unscale};
    }
};

// ---- decoders ---------------------------------------------------------------------------
// The codes of one run, unpacked into codes[count]; 8-bit codes are used in place.
inline const std::uint8_t* block_codes(const std::uint8_t* packed, std::size_t count, int bits,
                                       std::uint8_t* codes) {
    if (bits == 8) return packed;
    const auto b = static_cast<std::size_t>(bits);
    const std::size_t full = count / 8 * 8;
    unpack_groups_avx2(packed, full / 8, bits, codes);
    if (full < count) unpack_partial(packed + full / 8 * b, count - full, b, codes + full);
    return codes;
}

// Runs body(lookup) with the Lut of `bits` (K chosen once per block, not per element).
template <bool kWeighted, class Body>
inline void with_lut(float radius, int bits, float weight, Body&& body) {
    switch (lut_kind(bits)) {
        case LutKind::perm8:
            return body(Lut<LutKind::perm8, kWeighted>(radius, bits, weight));
        case LutKind::perm16:
            return body(Lut<LutKind::perm16, kWeighted>(radius, bits, weight));
        case LutKind::formula:
            break;
    }
    body(Lut<LutKind::formula, kWeighted>(radius, bits, weight));
}

// inout[i] = inout[i] + table[codes[i]] for i < count (float32 additions).
template <class Table>
inline void add_codes(const std::uint8_t* codes, std::size_t count, const Table& table,
                      float* inout) {
    const std::size_t full = count / 8 * 8;
    for (std::size_t i = 0; i < full; i += 8) {
        _mm256_storeu_ps(inout + i, _mm256_add_ps(_mm256_loadu_ps(inout + i), table(codes + i)));
    }
    if (full < count) {  // the end of the input: masked, the codes copied (they may end here)
        const __m256i live = first_lanes(count - full);
        alignas(8) std::uint8_t last[8] = {};
        std::memcpy(last, codes + full, count - full);
        _mm256_maskstore_ps(inout + full, live,
                            _mm256_add_ps(_mm256_maskload_ps(inout + full, live), table(last)));
    }
}

void decode_store_avx2(const std::uint8_t* packed, std::size_t count, const LaqGrid& grid,
                       float* out) {
    alignas(32) std::uint8_t buf[kReduceBlock];
    const std::uint8_t* codes = block_codes(packed, count, grid.bits, buf);
    const std::size_t full = count / 8 * 8;
    with_lut<false>(grid.radius, grid.bits, 1.0f, [&](const auto& lookup) {
        for (std::size_t i = 0; i < full; i += 8) _mm256_storeu_ps(out + i, lookup(codes + i));
    });
    for (std::size_t i = full; i < count; ++i) out[i] = grid.lut[codes[i]];
}

void decode_add_avx2(const std::uint8_t* packed, std::size_t count, const LaqGrid& grid,
                     const float*, float weight, float* inout) {
    alignas(32) std::uint8_t buf[kReduceBlock];
    const std::uint8_t* codes = block_codes(packed, count, grid.bits, buf);
    with_lut<true>(grid.radius, grid.bits, weight,
                   [&](const auto& table) { add_codes(codes, count, table, inout); });
}

double decode_sumsq_avx2(const std::uint8_t* packed, std::size_t count, const LaqGrid& grid) {
    alignas(32) std::uint8_t buf[kReduceBlock];
    const std::uint8_t* codes = block_codes(packed, count, grid.bits, buf);
    const LaqSumScale sum_scale = laq_sum_scale(grid.radius);
    const __m256 scale = _mm256_set1_ps(sum_scale.scale);
    SquareLanes s;  // the encoder's innov_sq arithmetic (bit-identical result)
    const std::size_t full = count / 8 * 8;
    with_lut<false>(grid.radius, grid.bits, 1.0f, [&](const auto& lookup) {
        for (std::size_t i = 0; i < full; i += 8) {
            s.add(i, SquareLanes::square(lookup(codes + i), scale));
        }
    });
    LaqSumLanes lanes = s.spill();
    for (std::size_t i = full; i < count; ++i) {
        laq_add_square(lanes, i, grid.lut[codes[i]], sum_scale.scale);
    }
    return lanes.total(sum_scale.unscale);
}

// ---- blockwise accumulate ------------------------------------------------------------------
// Each chunk of blocks (kChunkCodes) is unpacked at once, then every block adds its weighted
// table, computed in registers from its radius.
template <LutKind K>
void accumulate_blocks_impl(const std::uint8_t* packed, std::size_t count, std::size_t block,
                            int bits, const float* radii, float weight, float* inout) {
    const auto b = static_cast<std::size_t>(bits);
    const std::size_t chunk = block < kChunkCodes ? kChunkCodes / block * block : block;
    alignas(32) std::uint8_t buf[kReduceBlock];
    for (std::size_t c = 0, j = 0; c < count; c += chunk) {
        const std::size_t chunk_end = count - c < chunk ? count : c + chunk;
        const std::uint8_t* codes = block_codes(packed + c / 8 * b, chunk_end - c, bits, buf);
        for (std::size_t s = c; s < chunk_end; s += block, ++j) {
            const std::size_t m = chunk_end - s < block ? chunk_end - s : block;
            add_codes(codes + (s - c), m, Lut<K, true>(radii[j], bits, weight), inout + s);
        }
    }
}

// ---- the table lookup and the packing of each width (lut_kind, store32) ---------------------
template <LutKind K, int kPack>
struct Width {
    static constexpr LutKind kind = K;
    static constexpr int pack = kPack;
};

// Calls body(Width<K, kPack>{}) for `bits`, so each width gets its own loop.
template <class Body>
auto by_width(int bits, Body&& body) {
    switch (bits) {
        case 1:
            return body(Width<LutKind::perm8, 1>{});
        case 2:
            return body(Width<LutKind::perm8, 2>{});
        case 3:
            return body(Width<LutKind::perm8, 0>{});
        case 4:
            return body(Width<LutKind::perm16, 4>{});
        case 8:
            return body(Width<LutKind::formula, 8>{});
        default:
            break;
    }
    return body(Width<LutKind::formula, 0>{});
}

// Calls body(std::true_type{}, prev) with a q_prev, body(std::false_type{}, nullptr) without.
template <class Body>
auto with_prev(const float* prev, Body&& body) {
    return prev ? body(std::true_type{}, prev) : body(std::false_type{}, nullptr);
}

LaqSums encode_avx2(const float* grad, const float* prev, std::size_t count, const LaqGrid& grid,
                    std::uint8_t* packed) {
    return by_width(grid.bits, [&](auto w) {
        return with_prev(prev, [&](auto has_prev, const float* p) {
            using W = decltype(w);
            return encode_block<W::kind, W::pack, decltype(has_prev)::value>(grad, p, count, grid,
                                                                             packed);
        });
    });
}

bool quantize_blocks_avx2(const float* grad, const float* prev, std::size_t count,
                          std::size_t block, int bits, float* radii, LaqSums* sums,
                          std::uint8_t* packed) {
    return by_width(bits, [&](auto w) {
        return with_prev(prev, [&](auto has_prev, const float* p) {
            using W = decltype(w);
            constexpr bool kHasPrev = decltype(has_prev)::value;
            BlockEncoder<W::kind, W::pack, kHasPrev> encode{bits, count, packed};
            return quantize_blocks_pipelined<RadiusAcc, LaneTotals, kHasPrev>(grad, p, count, block,
                                                                              radii, sums, encode);
        });
    });
}

void accumulate_blocks_avx2(const std::uint8_t* packed, std::size_t count, std::size_t block,
                            int bits, const float* radii, float weight, float* inout) {
    by_width(bits, [&](auto w) {
        accumulate_blocks_impl<decltype(w)::kind>(packed, count, block, bits, radii, weight, inout);
    });
}

const LaqBlockKernels kAvx2Kernels = {
    "avx2",
    0,  // every full group's table entry is computed in registers (Lut); tails read grid.lut
    &radius_avx2,
    &encode_avx2,
    &decode_store_avx2,
    &decode_add_avx2,
    &decode_sumsq_avx2,
    &quantize_blocks_avx2,
    &accumulate_blocks_avx2,
};

}  // namespace

const LaqBlockKernels& laq_avx2_kernels() {
    return kAvx2Kernels;
}

}  // namespace detail
}  // namespace laqcore
