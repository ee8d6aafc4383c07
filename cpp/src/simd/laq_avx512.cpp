// AVX-512 block function of the LAQ quantizer: the fused quantize+pack, 16 elements per
// register. The radius pass and the decoders are the AVX2 ones, which are already bound by
// memory (a 512-bit radius pass measured slightly slower than the AVX2 one). Same
// arithmetic, element by element, as the scalar reference in laq.cpp and as laq_avx2.cpp
// (whose encode_block comment derives the fast path's error bound):
//   * codes: a float32 FMA estimate, trusted when at least 2^-14 from every integer; a
//     vector with any element closer takes the reference's double division;
//   * dQ = lut[code] from register permutes (up to 64 entries) or, for 7 and 8 bits, the
//     table's own formula float(double(code) * step' - R);
//   * sums: one __m512d holds the 8 lanes of parallel.hpp's LaneSum; elements i..i+7 of a
//     16-element vector go to lanes 0..7 before elements i+8..i+15, so every lane adds its
//     elements in the reference's order. Squares use a multiply and an add (for dQ the
//     square is exact, so this is also what an FMA would give; the add has the shorter
//     latency on the one dependency chain per sum);
//   * 1-, 2-, 4- and 8-bit codes are packed straight from the registers (pack16); other
//     widths go through a block buffer and the AVX2 packer.
// Partial vectors (the end of the whole input) use masked loads and masked sums instead of
// a scalar tail: masked lanes add +0.0, which leaves a lane sum (never -0.0) unchanged.
//
// Compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl (plus the AVX2 flags) and used
// only on CPUs that report all of them (dispatch.cpp). Like the AVX2 files, it shares no
// inline function with external linkage with other translation units (see bits_avx2.hpp).
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's AVX-512 intrinsics fill their unused pass-through operands with
// _mm512_undefined_*(), which -Wuninitialized reports at every inlined call; spurious here.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "bits_avx2.hpp"  // avx2::pack_partial
#include "kernels_avx2.hpp"
#include "kernels_avx512.hpp"
#include "laqcore/dispatch.hpp"
#include "laqcore/laq.hpp"
#include "laqcore/parallel.hpp"  // kReduceBlock, kSumLanes, LaneSum's order (no calls)
#include "prefetch_avx2.hpp"     // prefetch_step

namespace laqcore {
namespace detail {
namespace {

static_assert(kSumLanes == 8, "one __m512d holds the 8 lane sums");

// LaneSum::total() of the 8 lanes in s.
inline double lane_total(__m512d s) {
    alignas(64) double l[8];
    _mm512_store_pd(l, s);
    return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

inline __mmask16 first_lanes(std::size_t m) {  // m <= 16
    return static_cast<__mmask16>((1u << m) - 1u);
}

// ---- table lookups ----------------------------------------------------------------------
// perm16: bits 1..4, perm32: 5, perm64: 6, formula: 7 and 8 (see encode_avx512).
enum class LutKind { perm16, perm32, perm64, formula };

// grid.lut[code] for 16 codes: permutes of the table's first 16/32/64 entries held in
// registers (the table has kLaqMaxLevels entries, so these loads are in bounds), or the
// table's formula with laq_make_grid's operations.
template <LutKind K>
struct Lut {
    __m512 t0, t1, t2, t3;
    __m512d step, r;
    explicit Lut(const LaqGrid& grid)
        : t0(_mm512_loadu_ps(grid.lut)),
          t1(_mm512_loadu_ps(grid.lut + 16)),
          t2(_mm512_loadu_ps(grid.lut + 32)),
          t3(_mm512_loadu_ps(grid.lut + 48)),
          step(_mm512_set1_pd((2.0 * static_cast<double>(grid.radius)) /
                              static_cast<double>((1 << grid.bits) - 1))),
          r(_mm512_set1_pd(grid.radius)) {}
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

// ---- fused quantize + pack ----------------------------------------------------------------
struct EncodeConsts {
    __m512d vr, vstep;
    __m512i vtop;
    __m512 vinv, vc0, margin;
};

// One vector of 16 elements at offset i, of which the lanes in `live` are real.
template <bool kHasPrev>
struct Elems {
    __m512 g, p, v;
    Elems(const float* grad, const float* prev, std::size_t i, __mmask16 live)
        : g(_mm512_maskz_loadu_ps(live, grad + i)),
          p(kHasPrev ? _mm512_maskz_loadu_ps(live, prev + i) : _mm512_setzero_ps()),
          v(kHasPrev ? _mm512_sub_ps(g, p) : g) {}  // g - 0.0f == g bit for bit
};

// Fast-path codes; `flag` gets the live lanes whose estimate is within the margin of an
// integer (or NaN: "not >=" is true for it). x > 0, so truncation is floor, and x < L + 1.
inline __m512i codes_fast(__m512 v, const EncodeConsts& k, __mmask16 live, __mmask16& flag) {
    const __m512 x = _mm512_fmadd_ps(v, k.vinv, k.vc0);
    // x - round_to_nearest(x) (AVX512DQ's vreduceps with 0 fraction bits kept).
    const __m512 frac = _mm512_reduce_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    flag |= _mm512_mask_cmp_ps_mask(live, _mm512_abs_ps(frac), k.margin, _CMP_NGE_UQ);
    return _mm512_cvttps_epi32(x);
}

// The reference's codes: floor((double(v) + R) / step + 0.5), then min(., L).
inline __m512i codes_exact(__m512 v, const EncodeConsts& k) {
    const __m512d half = _mm512_set1_pd(0.5);
    auto one = [&](__m256 h) {
        const __m512d x =
            _mm512_add_pd(_mm512_div_pd(_mm512_add_pd(_mm512_cvtps_pd(h), k.vr), k.vstep), half);
        return _mm512_cvttpd_epi32(
            _mm512_roundscale_pd(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC));
    };
    const __m512i c = _mm512_inserti64x4(_mm512_castsi256_si512(one(_mm512_castps512_ps256(v))),
                                         one(_mm512_extractf32x8_ps(v, 1)), 1);
    return _mm512_min_epi32(c, k.vtop);
}

// Adds the squares of the live lanes to the lane sums (see the header comment).
template <LutKind K, bool kHasPrev>
inline void add_sums(const Elems<kHasPrev>& e, __m512i code, const Lut<K>& lut, __mmask16 live,
                     __m512d& err, __m512d& innov) {
    const __m512 dq = lut(code);
    const __m512 q_new = _mm512_add_ps(e.p, dq);  // p + dQ in float32, as the apply
    const auto lo8 = static_cast<__mmask8>(live);
    const auto hi8 = static_cast<__mmask8>(live >> 8);
    const __m512d e_lo = _mm512_maskz_sub_pd(lo8, _mm512_cvtps_pd(_mm512_castps512_ps256(q_new)),
                                             _mm512_cvtps_pd(_mm512_castps512_ps256(e.g)));
    const __m512d e_hi = _mm512_maskz_sub_pd(hi8, _mm512_cvtps_pd(_mm512_extractf32x8_ps(q_new, 1)),
                                             _mm512_cvtps_pd(_mm512_extractf32x8_ps(e.g, 1)));
    const __m512d d_lo = _mm512_maskz_cvtps_pd(lo8, _mm512_castps512_ps256(dq));
    const __m512d d_hi = _mm512_maskz_cvtps_pd(hi8, _mm512_extractf32x8_ps(dq, 1));
    err = _mm512_add_pd(err, _mm512_mul_pd(e_lo, e_lo));
    innov = _mm512_add_pd(innov, _mm512_mul_pd(d_lo, d_lo));
    err = _mm512_add_pd(err, _mm512_mul_pd(e_hi, e_hi));
    innov = _mm512_add_pd(innov, _mm512_mul_pd(d_hi, d_hi));
}

// Packs 16 codes of b in {1, 2, 4, 8} bits (32-bit lanes) straight into their 2b bytes of
// the pack.hpp layout (code j at bits [j*b, (j+1)*b) of the little-endian stream): pairs
// of lanes are merged by shifting 64-bit lanes, then narrowed.
template <int b>
inline void pack16(__m512i c, std::uint8_t* out) {
    static_assert(b == 1 || b == 2 || b == 4 || b == 8, "pack16 handles 1, 2, 4 and 8 bits");
    if constexpr (b == 8) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtepi32_epi8(c));
    } else if constexpr (b == 1) {
        const auto bits = static_cast<std::uint16_t>(_mm512_test_epi32_mask(c, c));
        std::memcpy(out, &bits, 2);
    } else {
        // Each 64-bit lane: code 2k in bits 0..b-1, code 2k+1 in bits b..2b-1.
        const __m512i pairs = _mm512_or_si512(c, _mm512_srli_epi64(c, 32 - b));
        if constexpr (b == 4) {  // one byte per pair: 8 bytes
            _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm512_cvtepi64_epi8(pairs));
        } else {  // b == 2: 4-bit pairs, merged again in 32-bit lanes: 4 bytes
            const __m128i w = _mm512_cvtepi64_epi16(pairs);
            const __m128i quads = _mm_or_si128(w, _mm_srli_epi32(w, 12));
            const auto word =
                static_cast<std::uint32_t>(_mm_cvtsi128_si32(_mm_cvtepi32_epi8(quads)));
            std::memcpy(out, &word, 4);
        }
    }
}

// kPack: the code width when pack16 packs straight from the registers, else 0 (block
// buffer and the AVX2 packer); a template parameter so the loop has no width dispatch.
template <LutKind K, int kPack, bool kHasPrev>
LaqSums encode_block(const float* grad, const float* prev, std::size_t count, const LaqGrid& grid,
                     std::uint8_t* packed) {
    const double r = grid.radius;
    const Lut<K> lut(grid);
    // The fast path's constants and error bound are those of laq_avx2.cpp's encode_block.
    const double inv_step = 1.0 / grid.step;
    const bool fast = r < 1e30 && inv_step < 1e30;
    EncodeConsts k;
    k.vr = _mm512_set1_pd(r);
    k.vstep = _mm512_set1_pd(grid.step);
    k.vtop = _mm512_set1_epi32((1 << grid.bits) - 1);
    k.vinv = _mm512_set1_ps(static_cast<float>(fast ? inv_step : 0.0));
    k.vc0 = _mm512_set1_ps(static_cast<float>(fast ? r * inv_step + 0.5 : 0.0));
    k.margin = _mm512_set1_ps(fast ? 1.0f / 16384.0f : __builtin_inff());

    alignas(64) std::uint8_t codes[kReduceBlock];
    __m512d err = _mm512_setzero_pd();
    __m512d innov = _mm512_setzero_pd();
    const auto b = static_cast<std::size_t>(grid.bits);
    constexpr bool direct = kPack != 0;
    std::size_t i = 0;
    for (; i + 32 <= count; i += 32) {  // two vectors per step, one branch for both
        prefetch_step(grad + i);
        if (kHasPrev) prefetch_step(prev + i);
        const Elems<kHasPrev> x(grad, prev, i, 0xFFFF);
        const Elems<kHasPrev> y(grad, prev, i + 16, 0xFFFF);
        __mmask16 flag_x = 0;
        __mmask16 flag_y = 0;
        __m512i cx = codes_fast(x.v, k, 0xFFFF, flag_x);
        __m512i cy = codes_fast(y.v, k, 0xFFFF, flag_y);
        if ((flag_x | flag_y) != 0) {  // rare: one predictable branch in the common case
            if (flag_x != 0) cx = codes_exact(x.v, k);
            if (flag_y != 0) cy = codes_exact(y.v, k);
        }
        add_sums<K, kHasPrev>(x, cx, lut, 0xFFFF, err, innov);
        add_sums<K, kHasPrev>(y, cy, lut, 0xFFFF, err, innov);
        if constexpr (direct) {
            pack16<kPack>(cx, packed + i / 8 * b);
            pack16<kPack>(cy, packed + (i + 16) / 8 * b);
        } else {
            _mm_store_si128(reinterpret_cast<__m128i*>(codes + i), _mm512_cvtepi32_epi8(cx));
            _mm_store_si128(reinterpret_cast<__m128i*>(codes + i + 16), _mm512_cvtepi32_epi8(cy));
        }
    }
    // The end of the input: masked vectors, codes through the buffer and the packer.
    const std::size_t packed_from = direct ? i : 0;
    for (; i < count; i += 16) {
        const std::size_t m = count - i < 16 ? count - i : 16;
        const __mmask16 live = first_lanes(m);
        const Elems<kHasPrev> x(grad, prev, i, live);
        __mmask16 flag = 0;
        __m512i cx = codes_fast(x.v, k, live, flag);
        if (flag != 0) cx = codes_exact(x.v, k);
        add_sums<K, kHasPrev>(x, cx, lut, live, err, innov);
        _mm512_mask_cvtepi32_storeu_epi8(codes + i, live, cx);
    }
    const std::size_t full = count / 8 * 8;  // packed_from is a multiple of 32
    if (full > packed_from) {
        pack_groups_avx2(codes + packed_from, (full - packed_from) / 8, grid.bits,
                         packed + packed_from / 8 * b);
    }
    if (full < count) avx2::pack_partial(codes + full, count - full, b, packed + full / 8 * b);
    return {lane_total(err), lane_total(innov)};
}

template <LutKind K, int kPack>
LaqSums encode_kind(const float* grad, const float* prev, std::size_t count, const LaqGrid& grid,
                    std::uint8_t* packed) {
    return prev ? encode_block<K, kPack, true>(grad, prev, count, grid, packed)
                : encode_block<K, kPack, false>(grad, nullptr, count, grid, packed);
}

LaqSums encode_avx512(const float* grad, const float* prev, std::size_t count, const LaqGrid& grid,
                      std::uint8_t* packed) {
    // The table lookup and the packing of each width (see LutKind and pack16).
    switch (grid.bits) {
        case 1:
            return encode_kind<LutKind::perm16, 1>(grad, prev, count, grid, packed);
        case 2:
            return encode_kind<LutKind::perm16, 2>(grad, prev, count, grid, packed);
        case 3:
            return encode_kind<LutKind::perm16, 0>(grad, prev, count, grid, packed);
        case 4:
            return encode_kind<LutKind::perm16, 4>(grad, prev, count, grid, packed);
        case 5:
            return encode_kind<LutKind::perm32, 0>(grad, prev, count, grid, packed);
        case 6:
            return encode_kind<LutKind::perm64, 0>(grad, prev, count, grid, packed);
        case 7:
            return encode_kind<LutKind::formula, 0>(grad, prev, count, grid, packed);
        default:
            break;
    }
    return encode_kind<LutKind::formula, 8>(grad, prev, count, grid, packed);
}

}  // namespace

const LaqBlockKernels& laq_avx512_kernels() {
    // Built on first use (not at static initialisation) because it copies the AVX2 table,
    // which lives in another translation unit.
    static const LaqBlockKernels table = [] {
        LaqBlockKernels t = laq_avx2_kernels();
        t.name = "avx512";
        t.lut_entries = kLaqLutPrefix;  // perm64 registers; 7 and 8 bits use the formula
        t.encode = &encode_avx512;
        return t;
    }();
    return table;
}

}  // namespace detail
}  // namespace laqcore
