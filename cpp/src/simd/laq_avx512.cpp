// AVX-512 block functions of the LAQ quantizer: the fused quantize+pack of one radius
// (encode), 16 elements per register, and the blockwise quantizer (quantize_blocks), which
// reads each radius block from memory once: block j + 1's radius pass runs inside block j's
// encode loop, and the encoder's constants (step, table) are computed in registers from the
// radius, so a block costs no table refill. The global radius pass and the decoders are the
// AVX2 ones, already bound by memory. Same arithmetic, element by element, as the scalar
// reference in laq_scalar.cpp and as laq_avx2.cpp (laq_simd.hpp derives the fast path's error
// bound and holds the blockwise pipeline both levels use):
//   * codes: a float32 FMA estimate, trusted when at least 2^-14 from every integer; a step
//     of 64 elements with any element closer takes the reference's double division;
//   * dQ = lut[code] from register permutes of the table's first 16/32/64 entries (each
//     computed with laq_fill_grid's formula float(double(c) * step' - R)) or, for 7 and 8
//     bits, that formula per code;
//   * sums: one __m512 holds the 16 float32 lanes of laq.hpp's LaqSumLanes (element i of a
//     piece in lane i % 16, the scaled term t = x * s squared, multiply and add rounded
//     separately); at the end of a piece the two halves are widened, added and combined
//     with LaneSum::total()'s tree, err_sq and innov_sq of four blocks in the same
//     instructions (LaneTotals);
//   * 1-, 2-, 4- and 8-bit codes are packed straight from the registers, 64 at a time
//     (pack64); other widths go through a buffer of whole blocks (laq_simd.hpp's CodeChunk)
//     and the AVX2 packer, once per ~kChunkCodes codes.
// Partial vectors (the end of a block or of the input) use masked loads and masked sums
// instead of a scalar tail: masked lanes add +0.0, which leaves a lane sum (never -0.0)
// unchanged.
//
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's AVX-512 intrinsics fill their unused pass-through operands with
// _mm512_undefined_*(), which -Wuninitialized reports at every inlined call; spurious here.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <type_traits>  // integral_constant (a type only)

#include "bits_avx2.hpp"  // avx2::pack_partial
#include "kernels_avx2.hpp"
#include "kernels_avx512.hpp"
#include "laq_simd.hpp"  // quantize_blocks_pipelined, Ahead
#include "laqcore/dispatch.hpp"
#include "laqcore/laq.hpp"
#include "laqcore/parallel.hpp"  // kReduceBlock, kSumLanes, LaneSum's order (no calls)
#include "prefetch_avx2.hpp"     // prefetch_step

namespace laqcore {
namespace detail {
namespace {

static_assert(kSumLanes == 8, "one __m512d holds the 8 lane sums");
static_assert(kLaqSumLanes == 16, "one __m512 holds the 16 float32 lanes of LaqSumLanes");

inline __mmask16 first_lanes(std::size_t m) {  // m <= 16
    return static_cast<__mmask16>((1u << m) - 1u);
}

// ---- per-radius constants ---------------------------------------------------------------
// Everything the encoder needs for one radius is computed in registers from (R, bits) with
// laq_fill_grid's operations (a LaqGrid in memory is never read), so the blockwise kernel
// pays no table refill per block.

// float(double(c) * step' - R) for the 16 codes c = first .. first + 15, step' = 2R / L: the
// table's own formula (laq_fill_grid), hence the same floats.
// With `upper` false only the first 8 (the rest zero): enough for up to 3 bits.
inline __m512 table16(__m512d step, __m512d r, double first, bool upper = true) {
    const __m512d c0 = _mm512_add_pd(_mm512_setr_pd(0, 1, 2, 3, 4, 5, 6, 7), _mm512_set1_pd(first));
    const __m256 lo = _mm512_cvtpd_ps(_mm512_sub_pd(_mm512_mul_pd(c0, step), r));
    if (!upper) return _mm512_zextps256_ps512(lo);
    const __m512d c1 = _mm512_add_pd(c0, _mm512_set1_pd(8.0));
    const __m256 hi = _mm512_cvtpd_ps(_mm512_sub_pd(_mm512_mul_pd(c1, step), r));
    return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}

// perm16: bits 1..4, perm32: 5, perm64: 6, formula: 7 and 8 (see encode_avx512).
enum class LutKind { perm16, perm32, perm64, formula };

// grid.lut[code] for 16 codes: permutes of the table's first 16/32/64 entries held in
// registers, or (7 and 8 bits) the table's formula evaluated per code.
template <LutKind K>
struct Lut {
    __m512d step, r;
    __m512 t0, t1, t2, t3;
    Lut(float radius, int bits)
        : step(_mm512_set1_pd((2.0 * static_cast<double>(radius)) /
                              static_cast<double>((1 << bits) - 1))),
          r(_mm512_set1_pd(radius)) {
        if (K == LutKind::formula) return;
        t0 = table16(step, r, 0.0, bits > 3);
        if (K == LutKind::perm16) return;
        t1 = table16(step, r, 16.0);
        if (K == LutKind::perm32) return;
        t2 = table16(step, r, 32.0);
        t3 = table16(step, r, 48.0);
    }
    __m512 operator()(__m512i code) const {
        if (K == LutKind::perm16) return _mm512_permutexvar_ps(code, t0);
        if (K == LutKind::perm32) return _mm512_permutex2var_ps(t0, code, t1);
        if (K == LutKind::perm64) {
            const __mmask16 upper = _mm512_test_epi32_mask(code, _mm512_set1_epi32(32));
            return _mm512_mask_blend_ps(upper, _mm512_permutex2var_ps(t0, code, t1),
                                        _mm512_permutex2var_ps(t2, code, t3));
        }
        const __m512d c_lo = _mm512_cvtepi32_pd(_mm512_castsi512_si256(code));
        const __m512d c_hi = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(code, 1));
        const __m256 d_lo = _mm512_cvtpd_ps(_mm512_sub_pd(_mm512_mul_pd(c_lo, step), r));
        const __m256 d_hi = _mm512_cvtpd_ps(_mm512_sub_pd(_mm512_mul_pd(c_hi, step), r));
        return _mm512_insertf32x8(_mm512_castps256_ps512(d_lo), d_hi, 1);
    }
};

// The code constants of one radius (laq_simd.hpp's LaqCodeConsts, which derives the fast
// path's error bound), broadcast.
struct Broadcast {
    using Vec = __m512;
    Vec operator()(float x) const { return _mm512_set1_ps(x); }
};
using EncodeConsts = EncodeConstsOf<Broadcast>;

// ---- fused quantize + pack ----------------------------------------------------------------
// One vector of 16 elements at offset i, of which the lanes in `live` are real.
template <bool kHasPrev>
struct Elems {
    __m512 g, p, v;
    Elems(const float* grad, const float* prev, std::size_t i, __mmask16 live)
        : g(_mm512_maskz_loadu_ps(live, grad + i)),
          p(kHasPrev ? _mm512_maskz_loadu_ps(live, prev + i) : _mm512_setzero_ps()),
          v(kHasPrev ? _mm512_sub_ps(g, p) : g) {}  // g - 0.0f == g bit for bit
};

// Fast-path codes: the estimate x = fma(v, 1/step, R/step + 1/2) truncated (x > 0, so
// truncation is floor, and x < L + 1), and frac = x - round_to_nearest(x) (AVX512DQ's
// vreduceps with 0 fraction bits kept), whose magnitude says whether x is within the margin
// of an integer.
struct FastCodes {
    __m512i code;
    __m512 frac;
};
inline FastCodes codes_fast(__m512 v, const EncodeConsts& k) {
    const __m512 x = _mm512_fmadd_ps(v, k.vinv, k.vc0);
    return {_mm512_cvttps_epi32(x),
            _mm512_reduce_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
// The live lanes whose estimate is too close to an integer to be trusted ("not >=" is
// also true for NaN, which the finite inputs never produce).
inline __mmask16 near_integer(__m512 frac, const EncodeConsts& k, __mmask16 live) {
    return _mm512_mask_cmp_ps_mask(live, _mm512_abs_ps(frac), k.margin, _CMP_NGE_UQ);
}
// min(|a|, |b|) with the sign cleared, one instruction (AVX512DQ's vrangeps: imm 0b1010 =
// smaller magnitude, sign cleared). Comparing the minimum of four vectors' |frac| with the
// margin flags a step exactly when near_integer would flag one of its vectors: the fracs
// are finite (the radius pass rejected NaN/Inf, and |x| <= L + 1), and a denormal frac
// read as zero (DAZ) can only add a flag, i.e. one more exact recomputation.
inline __m512 min_abs(__m512 a, __m512 b) {
    return _mm512_range_ps(a, b, 0x0A);
}

// The reference's codes: floor((double(v) + R) / step + 0.5), then min(., L), with
// LaqGrid::step (laq_fill_grid: 2R / L, or 1 for R = 0).
inline __m512i codes_exact(__m512 v, const EncodeConsts& k) {
    const double r = k.radius;
    const int top = (1 << k.bits) - 1;
    const __m512d vr = _mm512_set1_pd(r);
    const __m512d vstep =
        _mm512_set1_pd(k.radius > 0.0f ? (2.0 * r) / static_cast<double>(top) : 1.0);
    const __m512d half = _mm512_set1_pd(0.5);
    auto one = [&](__m256 h) {
        const __m512d x =
            _mm512_add_pd(_mm512_div_pd(_mm512_add_pd(_mm512_cvtps_pd(h), vr), vstep), half);
        return _mm512_cvttpd_epi32(
            _mm512_roundscale_pd(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC));
    };
    const __m512i c = _mm512_inserti64x4(_mm512_castsi256_si512(one(_mm512_castps512_ps256(v))),
                                         one(_mm512_extractf32x8_ps(v, 1)), 1);
    return _mm512_min_epi32(c, _mm512_set1_epi32(top));
}

// The 16 float32 lanes of err_sq and innov_sq (laq.hpp's LaqSumLanes), one __m512 each.
struct Sums {
    __m512 err = _mm512_setzero_ps();
    __m512 innov = _mm512_setzero_ps();
};

// (x * s)^2 of the live lanes, +0.0 in the others (which leaves a lane sum unchanged).
inline __m512 scaled_square(__m512 x, __m512 s, __mmask16 live) {
    const __m512 t = _mm512_maskz_mul_ps(live, x, s);
    return _mm512_mul_ps(t, t);
}

// Adds the scaled squares of the live lanes to the lane sums (see the header comment).
template <LutKind K, bool kHasPrev>
inline void add_sums(const Elems<kHasPrev>& e, __m512i code, const Lut<K>& lut,
                     const EncodeConsts& k, __mmask16 live, Sums& sums) {
    const __m512 dq = lut(code);
    const __m512 q_new = _mm512_add_ps(e.p, dq);  // p + dQ in float32, as the apply
    sums.err = _mm512_add_ps(sums.err, scaled_square(_mm512_sub_ps(q_new, e.g), k.sum_scale, live));
    sums.innov = _mm512_add_ps(sums.innov, scaled_square(dq, k.sum_scale, live));
}

// Packs 64 codes of b in {1, 2, 4, 8} bits (16 per vector, 32-bit lanes, in order) into
// the low 8b bytes of the result, in the pack.hpp layout (code j at bits [j*b, (j+1)*b) of
// the little-endian stream). Two saturating packs make bytes (each 128-bit lane then holds
// 4 codes of each vector) and one dword permute restores the order; adjacent codes are
// then merged by multiply-adds (byte pairs, then word pairs) and the results narrowed.
template <int b>
inline __m512i pack64(__m512i c0, __m512i c1, __m512i c2, __m512i c3) {
    static_assert(b == 1 || b == 2 || b == 4 || b == 8, "pack64 handles 1, 2, 4 and 8 bits");
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512i bytes = _mm512_permutexvar_epi32(
        order, _mm512_packus_epi16(_mm512_packus_epi32(c0, c1), _mm512_packus_epi32(c2, c3)));
    if constexpr (b == 8) {
        return bytes;
    } else if constexpr (b == 1) {
        const auto word = static_cast<long long>(_mm512_test_epi8_mask(bytes, bytes));
        return _mm512_castsi128_si512(_mm_cvtsi64_si128(word));
    } else {
        // Byte pairs: code 2m + code 2m+1 << b in each 16-bit lane.
        const __m512i pairs = _mm512_maddubs_epi16(bytes, _mm512_set1_epi16(1 | (1 << (8 + b))));
        if constexpr (b == 4) return _mm512_castsi256_si512(_mm512_cvtepi16_epi8(pairs));
        // b == 2: word pairs, 4 codes in each 32-bit lane
        const __m512i quads = _mm512_madd_epi16(pairs, _mm512_set1_epi32(1 | (16 << 16)));
        return _mm512_castsi128_si512(_mm512_cvtepi32_epi8(quads));
    }
}

// Stores the 8b bytes of 64 packed codes.
template <int b>
inline void store64(__m512i packed, std::uint8_t* out) {
    if constexpr (b == 8) {
        _mm512_storeu_si512(out, packed);
    } else if constexpr (b == 4) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm512_castsi512_si256(packed));
    } else if constexpr (b == 2) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_castsi512_si128(packed));
    } else {
        _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm512_castsi512_si128(packed));
    }
}

// Running maximum of |v| as bit patterns (the reference's abs_bits order, which also
// catches NaN/Inf: patterns >= kInfBits), two accumulators.
struct RadiusAcc {
    __m512i m0 = _mm512_setzero_si512();
    __m512i m1 = _mm512_setzero_si512();

    template <bool kHasPrev>
    static __m512i abs_bits(const float* grad, const float* prev, std::size_t i, __mmask16 live) {
        const Elems<kHasPrev> x(grad, prev, i, live);
        return _mm512_and_si512(_mm512_castps_si512(x.v), _mm512_set1_epi32(0x7FFFFFFF));
    }
    // Elements [i, i + 32).
    template <bool kHasPrev>
    void add32(const float* grad, const float* prev, std::size_t i) {
        m0 = _mm512_max_epu32(m0, abs_bits<kHasPrev>(grad, prev, i, 0xFFFF));
        m1 = _mm512_max_epu32(m1, abs_bits<kHasPrev>(grad, prev, i + 16, 0xFFFF));
    }
    // Elements [from, count), any from (masked lanes load 0.0f).
    template <bool kHasPrev>
    void add_range(const float* grad, const float* prev, std::size_t from, std::size_t count) {
        std::size_t i = from;
        for (; i + 32 <= count; i += 32) add32<kHasPrev>(grad, prev, i);
        for (; i < count; i += 16) {
            const __mmask16 live = first_lanes(count - i < 16 ? count - i : 16);
            m0 = _mm512_max_epu32(m0, abs_bits<kHasPrev>(grad, prev, i, live));
        }
    }
    LaqRadiusPartial result() const {
        const std::uint32_t mx = _mm512_reduce_max_epu32(_mm512_max_epu32(m0, m1));
        if (mx >= 0x7F800000u) return {0.0f, true};
        float r;
        std::memcpy(&r, &mx, sizeof r);
        return {r, false};
    }
};

// Stores the b * kVectors * 2 bytes of 16 * kVectors packed codes (pack64's result).
template <int b, int kVectors>
inline void store_packed(__m512i packed, std::uint8_t* out) {
    if constexpr (kVectors == 4) {
        store64<b>(packed, out);
    } else if constexpr (b == 8) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm512_castsi512_si256(packed));
    } else if constexpr (b == 4) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_castsi512_si128(packed));
    } else if constexpr (b == 2) {
        _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm512_castsi512_si128(packed));
    } else {
        const int word = _mm_cvtsi128_si32(_mm512_castsi512_si128(packed));
        std::memcpy(out, &word, sizeof word);
    }
}

// Encodes count (<= kReduceBlock) elements with one radius: writes their codes at `packed`
// and returns the lane sums of their squares (lane i % 8 for element i, counted from `grad`,
// which starts a piece). kPack: the code width when pack64 packs straight from the
// registers, else 0: then `packed` receives one byte per code, for the caller to pack with
// the AVX2 packer (pack_codes). kPrefetch: prefetch the input
// kPrefetchBytes ahead of the encoder, spread over the steps. kAhead: also run the radius
// pass of `ahead` (the next block), as many elements per step as the step encodes. Inlined
// into the block loop, so a small block's constants and sums stay in registers.
template <LutKind K, int kPack, bool kHasPrev, bool kPrefetch, bool kAhead>
[[gnu::always_inline]] inline Sums encode_run(const float* grad, const float* prev,
                                              std::size_t count, const Lut<K>& lut,
                                              const EncodeConsts& k, std::size_t b,
                                              std::uint8_t* packed, Ahead<RadiusAcc>* ahead) {
    std::uint8_t* const codes = packed;  // kPack == 0: a byte per code
    Sums sums;                           // locals, kept in registers (`packed` may alias anything)
    RadiusAcc next;
    const float* next_grad = kAhead ? ahead->grad : nullptr;
    const float* next_prev = kAhead ? ahead->prev : nullptr;
    const std::size_t next_count = kAhead ? ahead->count : 0;
    std::size_t next_done = 0;  // elements of the next block in `next`, from its start
    constexpr bool direct = kPack != 0;
    constexpr __mmask16 all = 0xFFFF;
    // kVectors (4 or 2) whole vectors at i, one branch for all: 64-element steps, then one of
    // 32 (a block of 32, or the rest of a longer one), so only a block's last < 32 elements
    // take the masked path below.
    auto step = [&](std::size_t i, auto vectors) {
        constexpr int kVectors = decltype(vectors)::value;
        for (int h = 0; h < kVectors; h += 2) {
            if (kPrefetch) {
                prefetch_step(grad + i + 16 * h);
                if (kHasPrev) prefetch_step(prev + i + 16 * h);
            }
            if (kAhead && next_done + 32 <= next_count) {  // in order from the next block's start
                next.add32<kHasPrev>(next_grad, next_prev, next_done);
                next_done += 32;
            }
        }
        __m512i c[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                        _mm512_setzero_si512()};
        __m512 frac[4];
        for (int q = 0; q < kVectors; ++q) {
            const FastCodes f = codes_fast(Elems<kHasPrev>(grad, prev, i + 16 * q, all).v, k);
            c[q] = f.code;
            frac[q] = f.frac;
        }
        __m512 nearest = min_abs(frac[0], frac[1]);
        if (kVectors == 4) nearest = min_abs(nearest, min_abs(frac[2], frac[3]));
        if (near_integer(nearest, k, all) != 0) {  // rare: one predictable branch
            for (int q = 0; q < kVectors; ++q) {
                c[q] = codes_exact(Elems<kHasPrev>(grad, prev, i + 16 * q, all).v, k);
            }
        }
        for (int q = 0; q < kVectors; ++q) {
            const std::size_t at = i + 16 * static_cast<std::size_t>(q);
            add_sums<K, kHasPrev>(Elems<kHasPrev>(grad, prev, at, all), c[q], lut, k, all, sums);
        }
        if constexpr (direct) {
            store_packed<kPack, kVectors>(pack64<kPack>(c[0], c[1], c[2], c[3]),
                                          packed + i / 8 * b);
        } else {
            for (int q = 0; q < kVectors; ++q) {
                _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + i + 16 * q),
                                 _mm512_cvtepi32_epi8(c[q]));
            }
        }
    };
    std::size_t i = 0;
    for (; i + 64 <= count; i += 64) step(i, std::integral_constant<int, 4>());
    if (i + 32 <= count) {
        step(i, std::integral_constant<int, 2>());
        i += 32;
    }
    if (kAhead) {
        ahead->acc = next;
        ahead->done = next_done;
    }
    // The rest (< 32 elements): up to two vectors, the last one partial (masked lanes).
    const std::size_t rest = count - i;
    if (rest > 0) {
        __m512i c[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                        _mm512_setzero_si512()};
        // A constant trip count (unrolled, so c[] stays in registers), vectors past the end
        // skipped.
#pragma GCC unroll 2
        for (std::size_t q = 0; q < 2; ++q) {
            if (16 * q >= rest) continue;
            const std::size_t at = i + 16 * q;
            if (kPrefetch && q == 0) {  // blocks below 32 never enter the steps above
                prefetch_step(grad + at);
                if (kHasPrev) prefetch_step(prev + at);
            }
            const __mmask16 live = first_lanes(count - at < 16 ? count - at : 16);
            const Elems<kHasPrev> x(grad, prev, at, live);
            const FastCodes f = codes_fast(x.v, k);
            const __m512i cx = near_integer(f.frac, k, live) != 0 ? codes_exact(x.v, k) : f.code;
            add_sums<K, kHasPrev>(x, cx, lut, k, live, sums);
            c[q] = _mm512_maskz_mov_epi32(live, cx);  // dead lanes: code 0, the zero padding
        }
        if constexpr (direct) {
            // ceil(rest * b / 8) bytes: whole groups of 8 codes and the input's last, partial one.
            const std::size_t nbytes = (rest * b + 7) / 8;
            const __mmask64 bytes = nbytes >= 64 ? ~__mmask64{0} : (__mmask64{1} << nbytes) - 1;
            _mm512_mask_storeu_epi8(packed + i / 8 * b, bytes,
                                    pack64<kPack>(c[0], c[1], c[2], c[3]));
        } else {
            for (std::size_t q = 0; 16 * q < rest; ++q) {
                _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + i + 16 * q),
                                 _mm512_cvtepi32_epi8(c[q]));
            }
        }
    }
    return sums;
}

// Packs count byte codes (a run starting on a byte of the stream) into packed: whole groups
// of 8 with the AVX2 packer, then the input's last, partial group.
inline void pack_codes(const std::uint8_t* codes, std::size_t count, std::size_t b,
                       std::uint8_t* packed) {
    const std::size_t full = count / 8 * 8;
    if (full > 0) pack_groups_avx2(codes, full / 8, static_cast<int>(b), packed);
    if (full < count) avx2::pack_partial(codes + full, count - full, b, packed + full / 8 * b);
}

// LaqSumLanes::total() of err and innov for four blocks at once (laq_simd.hpp's Totals; the
// blocks added are consecutive, sums[j], sums[j + 1], ..): each sum's halves widened and
// added, then LaneSum::total()'s tree over the eight sums e0, i0, .. e3, i3, every permute and
// add carrying all of them (14 permutes for four blocks, where one block's tree alone takes
// 6), then the unscales; the results are sums[j, j + 4) in memory order, one store.
struct LaneTotals {
    static constexpr std::size_t kBatch = 4;
    static_assert(sizeof(LaqSums) == 2 * sizeof(double), "LaqSums: err_sq, innov_sq, no padding");
    // The waiting blocks' lanes (whole-register stores and loads); past `waiting` zero or
    // an earlier batch's, computed and never stored.
    __m512 err[kBatch], innov[kBatch];
    double unscale[kBatch] = {};
    LaqSums* first = nullptr;  // where the first waiting block's sums go
    std::size_t waiting = 0;

    LaneTotals() {
        for (std::size_t q = 0; q < kBatch; ++q) err[q] = innov[q] = _mm512_setzero_ps();
    }
    [[gnu::always_inline]] void add(const BlockLanes<Sums>& block, LaqSums* out) {
        if (waiting == 0) first = out;
        err[waiting] = block.lanes.err;
        innov[waiting] = block.lanes.innov;
        unscale[waiting] = block.unscale;
        if (++waiting == kBatch) flush();
    }
    [[gnu::always_inline]] void flush() {
        if (waiting == 0) return;
        auto halves = [](__m512 x) {  // (double)lane[j] + (double)lane[j + 8], j = 0..7
            return _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(x)),
                                 _mm512_cvtps_pd(_mm512_extractf32x8_ps(x, 1)));
        };
        // Pairwise sums of adjacent lanes of the sequence a, b: (a0+a1, a2+a3, .., b6+b7).
        auto pairs = [](__m512d a, __m512d b) {
            const __m512i even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
            const __m512i odd = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
            return _mm512_add_pd(_mm512_permutex2var_pd(a, even, b),
                                 _mm512_permutex2var_pd(a, odd, b));
        };
        __m512d quarter[kBatch];  // (h0+h1, h2+h3, h4+h5, h6+h7) of err, then of innov
        for (std::size_t q = 0; q < kBatch; ++q)
            quarter[q] = pairs(halves(err[q]), halves(innov[q]));
        // (h0+h1)+(h2+h3), (h4+h5)+(h6+h7) of e0, i0, e1, i1, then of e2, i2, e3, i3; then
        // their sums: e0, i0, .. e3, i3
        const __m512d totals = pairs(pairs(quarter[0], quarter[1]), pairs(quarter[2], quarter[3]));
        const __m512d scale = _mm512_setr_pd(unscale[0], unscale[0], unscale[1], unscale[1],
                                             unscale[2], unscale[2], unscale[3], unscale[3]);
        const auto live = static_cast<__mmask8>((1u << (2 * waiting)) - 1u);
        _mm512_mask_storeu_pd(reinterpret_cast<double*>(first), live, _mm512_mul_pd(totals, scale));
        waiting = 0;
    }
};

template <LutKind K, int kPack, bool kHasPrev>
LaqSums encode_block(const float* grad, const float* prev, std::size_t count, const LaqGrid& grid,
                     std::uint8_t* packed) {
    const EncodeConsts k(grid.radius, grid.bits);
    const auto b = static_cast<std::size_t>(grid.bits);
    alignas(64) std::uint8_t codes[kPack != 0 ? 1 : kReduceBlock];
    const Sums sums = encode_run<K, kPack, kHasPrev, true, false>(
        grad, prev, count, Lut<K>(grid.radius, grid.bits), k, b, kPack != 0 ? packed : codes,
        nullptr);
    if (kPack == 0) pack_codes(codes, count, b, packed);
    LaqSums out;
    LaneTotals totals;
    totals.add({sums, k.sum_unscale}, &out);
    totals.flush();
    return out;
}

// ---- blockwise radius: each block read once (laq_simd.hpp) -----------------------------
template <LutKind K, int kPack, bool kHasPrev>
bool quantize_blocks_impl(const float* grad, const float* prev, std::size_t count,
                          std::size_t block, int bits, float* radii, LaqSums* sums,
                          std::uint8_t* packed) {
    const auto b = static_cast<std::size_t>(bits);
    CodeChunk<kPack != 0 ? 1 : kReduceBlock> chunk;  // widths without a register packer
    return quantize_blocks_pipelined<RadiusAcc, LaneTotals, kHasPrev>(
        grad, prev, count, block, radii, sums,
        [&](const float* g, const float* p, std::size_t s, std::size_t m, float radius,
            Ahead<RadiusAcc>* next) __attribute__((always_inline)) {  // one loop, no calls
            const EncodeConsts k(radius, bits);
            const Sums block_sums = encode_run<K, kPack, kHasPrev, true, true>(
                g, p, m, Lut<K>(radius, bits), k, b, kPack != 0 ? packed + s / 8 * b : chunk.at(s),
                next);
            if (kPack == 0) {
                chunk.block_done(s + m, count,
                                 [&](const std::uint8_t* codes, std::size_t n, std::size_t first) {
                                     pack_codes(codes, n, b, packed + first / 8 * b);
                                 });
            }
            return BlockLanes<Sums>{block_sums, k.sum_unscale};
        });
}

// ---- blockwise accumulate ------------------------------------------------------------------
// Unpacks 16 codes of b bits (1..8) into 32-bit lanes: the 2b bytes are broadcast to every
// 128-bit lane, each lane gathers the (at most two) bytes holding its code, shifts it down
// and masks it.
struct Unpack16 {
    __m512i gather, shift, mask;
    std::size_t b;
    explicit Unpack16(int bits) : b(static_cast<std::size_t>(bits)) {
        alignas(64) std::int8_t idx[64];
        alignas(64) std::int32_t sh[16];
        for (int j = 0; j < 16; ++j) {
            const int bit = j * bits;
            for (int k = 0; k < 4; ++k) {  // the code's bytes, the rest zeroed (bit 7 set)
                const int byte = bit / 8 + k;
                idx[4 * j + k] =
                    static_cast<std::int8_t>(k < 2 && byte * 8 < bit + bits ? byte : -1);
            }
            sh[j] = bit % 8;
        }
        gather = _mm512_load_si512(idx);
        shift = _mm512_load_si512(sh);
        mask = _mm512_set1_epi32((1 << bits) - 1);
    }
    // Codes [i, i + m) of a run starting on a byte (i a multiple of 16, m <= 16).
    __m512i operator()(const std::uint8_t* packed, std::size_t i, std::size_t m) const {
        if (b == 8) {  // one byte per code: widen them
            return _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(first_lanes(m), packed + i));
        }
        const std::size_t nbytes = (m * b + 7) / 8;
        const __m128i bytes =
            _mm_maskz_loadu_epi8(static_cast<__mmask16>((1u << nbytes) - 1u), packed + i / 8 * b);
        const __m512i all = _mm512_broadcast_i32x4(bytes);
        return _mm512_and_si512(_mm512_srlv_epi32(_mm512_shuffle_epi8(all, gather), shift), mask);
    }
};

// table[c] = weight * lut[c] in float32 (the drivers' weighted table): the register tables
// multiplied once per block, or the formula's value times the weight.
template <LutKind K>
struct WeightedLut {
    Lut<K> lut;
    __m512 w;
    WeightedLut(float radius, int bits, float weight)
        : lut(radius, bits), w(_mm512_set1_ps(weight)) {
        if (K == LutKind::formula) return;
        lut.t0 = _mm512_mul_ps(w, lut.t0);
        if (K == LutKind::perm16) return;
        lut.t1 = _mm512_mul_ps(w, lut.t1);
        if (K == LutKind::perm32) return;
        lut.t2 = _mm512_mul_ps(w, lut.t2);
        lut.t3 = _mm512_mul_ps(w, lut.t3);
    }
    __m512 operator()(__m512i code) const {
        return K == LutKind::formula ? _mm512_mul_ps(w, lut(code)) : lut(code);
    }
};

template <LutKind K>
void accumulate_blocks_impl(const std::uint8_t* packed, std::size_t count, std::size_t block,
                            int bits, const float* radii, float weight, float* inout) {
    const Unpack16 unpack(bits);
    const auto b = static_cast<std::size_t>(bits);
    for (std::size_t s = 0, j = 0; s < count; s += block, ++j) {
        const std::size_t m = count - s < block ? count - s : block;
        const WeightedLut<K> table(radii[j], bits, weight);
        const std::uint8_t* in = packed + s / 8 * b;
        float* out = inout + s;
        std::size_t i = 0;
        for (; i + 32 <= m; i += 32) {
            prefetch_step(out + i);
            for (std::size_t q = i; q < i + 32; q += 16) {
                const __m512 add = table(unpack(in, q, 16));
                _mm512_storeu_ps(out + q, _mm512_add_ps(_mm512_loadu_ps(out + q), add));
            }
        }
        for (; i < m; i += 16) {
            const std::size_t r = m - i < 16 ? m - i : 16;
            const __mmask16 live = first_lanes(r);
            const __m512 add = table(unpack(in, i, r));
            _mm512_mask_storeu_ps(out + i, live,
                                  _mm512_add_ps(_mm512_maskz_loadu_ps(live, out + i), add));
        }
    }
}

// ---- the table lookup and the packing of each width (see LutKind and pack64) ----------------
// Calls Fn::template run<K, kPack>(args...) for `bits`.
template <class Fn, class... Args>
auto by_width(int bits, Args&&... args) {
    switch (bits) {
        case 1:
            return Fn::template run<LutKind::perm16, 1>(args...);
        case 2:
            return Fn::template run<LutKind::perm16, 2>(args...);
        case 3:
            return Fn::template run<LutKind::perm16, 0>(args...);
        case 4:
            return Fn::template run<LutKind::perm16, 4>(args...);
        case 5:
            return Fn::template run<LutKind::perm32, 0>(args...);
        case 6:
            return Fn::template run<LutKind::perm64, 0>(args...);
        case 7:
            return Fn::template run<LutKind::formula, 0>(args...);
        default:
            break;
    }
    return Fn::template run<LutKind::formula, 8>(args...);
}

struct EncodeFn {
    template <LutKind K, int kPack>
    static LaqSums run(const float* grad, const float* prev, std::size_t count, const LaqGrid& grid,
                       std::uint8_t* packed) {
        return prev ? encode_block<K, kPack, true>(grad, prev, count, grid, packed)
                    : encode_block<K, kPack, false>(grad, nullptr, count, grid, packed);
    }
};

struct QuantizeBlocksFn {
    template <LutKind K, int kPack>
    static bool run(const float* grad, const float* prev, std::size_t count, std::size_t block,
                    int bits, float* radii, LaqSums* sums, std::uint8_t* packed) {
        return prev ? quantize_blocks_impl<K, kPack, true>(grad, prev, count, block, bits, radii,
                                                           sums, packed)
                    : quantize_blocks_impl<K, kPack, false>(grad, nullptr, count, block, bits,
                                                            radii, sums, packed);
    }
};

LaqSums encode_avx512(const float* grad, const float* prev, std::size_t count, const LaqGrid& grid,
                      std::uint8_t* packed) {
    return by_width<EncodeFn>(grid.bits, grad, prev, count, grid, packed);
}

struct AccumulateBlocksFn {
    template <LutKind K, int>
    static void run(const std::uint8_t* packed, std::size_t count, std::size_t block, int bits,
                    const float* radii, float weight, float* inout) {
        accumulate_blocks_impl<K>(packed, count, block, bits, radii, weight, inout);
    }
};

void accumulate_blocks_avx512(const std::uint8_t* packed, std::size_t count, std::size_t block,
                              int bits, const float* radii, float weight, float* inout) {
    by_width<AccumulateBlocksFn>(bits, packed, count, block, bits, radii, weight, inout);
}

bool quantize_blocks_avx512(const float* grad, const float* prev, std::size_t count,
                            std::size_t block, int bits, float* radii, LaqSums* sums,
                            std::uint8_t* packed) {
    return by_width<QuantizeBlocksFn>(bits, grad, prev, count, block, bits, radii, sums, packed);
}

}  // namespace

const LaqBlockKernels& laq_avx512_kernels() {
    // Built on first use (not at static initialisation) because it copies the AVX2 table,
    // which lives in another translation unit.
    static const LaqBlockKernels table = [] {
        LaqBlockKernels t = laq_avx2_kernels();
        t.name = "avx512";
        t.encode = &encode_avx512;
        t.quantize_blocks = &quantize_blocks_avx512;
        t.accumulate_blocks = &accumulate_blocks_avx512;
        return t;
    }();
    return table;
}

}  // namespace detail
}  // namespace laqcore
