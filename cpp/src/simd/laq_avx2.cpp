// AVX2 block functions of the LAQ quantizer (laq.cpp holds the drivers and the scalar
// reference; laq.hpp the arithmetic). Every function performs exactly the reference's
// float and double operations, element by element, in the same order:
//   * codes: the reference computes (double(v) + R) / step + 0.5, truncated and clamped. A
//     float32 FMA estimate gives the same integer whenever it is not within 2^-14 of an
//     integer (its error is below 2^-15); the rare steps where it is take the exact double
//     path (see encode_block);
//   * dQ = lut[code]: register permutes for up to 16 table entries; for 5..8 bits the table's
//     own formula float(double(code) * step' - R) with step' = 2R / L, which is how
//     laq_make_grid fills the table (same operations, hence the same floats);
//   * sums: laq.hpp's scaled float32 terms in the 16 lanes of LaqSumLanes, held in two
//     __m256 (SquareLanes); LaqSumLanes::total() combines them at the end.
// Codes go to a block-sized stack buffer in L1 and are packed with the AVX2 packer; the
// decoders unpack the same way (8-bit codes are read in place).
//
// Like every *_avx2.cpp file, this one avoids inline functions shared with scalar files
// (bitstream.hpp, std::min, LaneSum::add ...): see bits_avx2.hpp.
#include <cfloat>
#include <cstdint>
#include <cstring>

#include "bits_avx2.hpp"
#include "kernels_avx2.hpp"
#include "lanes_avx2.hpp"  // lo_pd, hi_pd
#include "laqcore/dispatch.hpp"
#include "laqcore/laq.hpp"
#include "laqcore/parallel.hpp"  // kReduceBlock (no calls)
#include "prefetch_avx2.hpp"     // prefetch_step

namespace laqcore {
namespace detail {
namespace {

static_assert(kReduceBlock % 32 == 0, "full blocks are whole 32-element steps");

inline void unpack_partial(const std::uint8_t* in, std::size_t m, std::size_t b,
                           std::uint8_t* codes) {
    const std::size_t nbytes = (m * b + 7) / 8;
    std::uint64_t word = 0;
    for (std::size_t k = 0; k < nbytes; ++k) word |= static_cast<std::uint64_t>(in[k]) << (8 * k);
    const std::uint64_t mask = (std::uint64_t{1} << b) - 1;
    for (std::size_t j = 0; j < m; ++j)
        codes[j] = static_cast<std::uint8_t>((word >> (j * b)) & mask);
}

// ---- radius ---------------------------------------------------------------------------
// The reference's integer maximum of |v| bit patterns (laq.cpp: abs_bits), which also
// catches NaN/Inf (patterns >= kInfBits). Two accumulators keep two loads per step in flight.
LaqRadiusPartial radius_avx2(const float* grad, const float* prev, std::size_t count) {
    const __m256i abs_mask = _mm256_set1_epi32(0x7FFFFFFF);
    __m256i m0 = _mm256_setzero_si256();
    __m256i m1 = _mm256_setzero_si256();
    auto abs_bits = [&](std::size_t i) {
        __m256 v = _mm256_loadu_ps(grad + i);
        if (prev) v = _mm256_sub_ps(v, _mm256_loadu_ps(prev + i));
        return _mm256_and_si256(_mm256_castps_si256(v), abs_mask);
    };
    std::size_t i = 0;
    for (; i + 16 <= count; i += 16) {
        m0 = _mm256_max_epu32(m0, abs_bits(i));
        m1 = _mm256_max_epu32(m1, abs_bits(i + 8));
    }
    if (i + 8 <= count) {
        m0 = _mm256_max_epu32(m0, abs_bits(i));
        i += 8;
    }
    __m128i x = _mm_max_epu32(_mm256_castsi256_si128(_mm256_max_epu32(m0, m1)),
                              _mm256_extracti128_si256(_mm256_max_epu32(m0, m1), 1));
    x = _mm_max_epu32(x, _mm_shuffle_epi32(x, 0x4E));
    x = _mm_max_epu32(x, _mm_shuffle_epi32(x, 0xB1));
    auto mx = static_cast<std::uint32_t>(_mm_cvtsi128_si32(x));
    for (; i < count; ++i) {
        const float v = prev ? grad[i] - prev[i] : grad[i];
        std::uint32_t u;
        std::memcpy(&u, &v, sizeof u);
        u &= 0x7FFFFFFFu;
        mx = u > mx ? u : mx;
    }
    if (mx >= 0x7F800000u) return {0.0f, true};
    float r;
    std::memcpy(&r, &mx, sizeof r);
    return {r, false};
}

// laq.hpp's LaqSumLanes (the LAQ sums' 16 float32 lanes) in two registers: lanes 0-7 in
// lo, 8-15 in hi. Element i of a piece goes to lane i % 16, so the 8-element vector at
// offset i (a multiple of 8) goes to lo when i % 16 == 0, else to hi.
struct SquareLanes {
    __m256 lo = _mm256_setzero_ps();
    __m256 hi = _mm256_setzero_ps();
    LaqSumLanes tail{};  // the lanes after the vector part, for the scalar tail and total()

    // Adds (x * scale)^2, each product rounded in float32 (no FMA, as the reference).
    static __m256 square(__m256 x, __m256 scale) {
        const __m256 t = _mm256_mul_ps(x, scale);
        return _mm256_mul_ps(t, t);
    }
    void add(std::size_t i, __m256 x, __m256 scale) {
        if (i % 16 == 0) {
            lo = _mm256_add_ps(lo, square(x, scale));
        } else {
            hi = _mm256_add_ps(hi, square(x, scale));
        }
    }
    void spill() {
        _mm256_storeu_ps(tail.lane, lo);
        _mm256_storeu_ps(tail.lane + 8, hi);
    }
};

// ---- table lookups ----------------------------------------------------------------------
// How dQ = table[code] is found for 8 codes (in 32-bit lanes); chosen once per block.
enum class LutKind { perm8, perm16, formula };

inline LutKind lut_kind(int bits) {
    return bits <= 3 ? LutKind::perm8 : (bits == 4 ? LutKind::perm16 : LutKind::formula);
}

// table[code] with table[c] = weight * float(double(c) * step' - R) (weight 1: the grid's
// lut itself, multiplied by nothing). perm8 / perm16 read the first 8 / 16 entries of
// `table` from registers; `formula` recomputes the entry with the operations of
// laq_make_grid and laq_accumulate.
template <LutKind K, bool kWeighted>
struct Lut {
    __m256 t0, t1, w;
    __m256d step, r;
    Lut(const float* table, double lut_step, double radius, float weight)
        : t0(_mm256_loadu_ps(table)),
          t1(_mm256_loadu_ps(table + 8)),
          w(_mm256_set1_ps(weight)),
          step(_mm256_set1_pd(lut_step)),
          r(_mm256_set1_pd(radius)) {}
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
        const __m256 lut =
            _mm256_set_m128(_mm256_cvtpd_ps(_mm256_sub_pd(_mm256_mul_pd(c_hi, step), r)),
                            _mm256_cvtpd_ps(_mm256_sub_pd(_mm256_mul_pd(c_lo, step), r)));
        return kWeighted ? _mm256_mul_ps(w, lut) : lut;
    }
    // Codes of 8 bytes at `codes`.
    __m256 operator()(const std::uint8_t* codes) const {
        return (*this)(
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes))));
    }
};

// step' of laq_make_grid's table formula.
inline double lut_step_of(const LaqGrid& grid) {
    const double r = grid.radius;
    return (2.0 * r) / static_cast<double>((1 << grid.bits) - 1);
}

// ---- fused quantize + pack ----------------------------------------------------------------
// Codes of 8 elements by the reference's double formula and clamp (exact; the slow path).
inline __m256i codes_exact(__m256 v, __m256d vr, __m256d vstep, __m256i vtop) {
    const __m256d half = _mm256_set1_pd(0.5);
    const __m256d c_lo =
        _mm256_floor_pd(_mm256_add_pd(_mm256_div_pd(_mm256_add_pd(lo_pd(v), vr), vstep), half));
    const __m256d c_hi =
        _mm256_floor_pd(_mm256_add_pd(_mm256_div_pd(_mm256_add_pd(hi_pd(v), vr), vstep), half));
    // The reference's truncating conversion of x >= 1/2 is this floor, then min(., top).
    return _mm256_min_epi32(_mm256_set_m128i(_mm256_cvttpd_epi32(c_hi), _mm256_cvttpd_epi32(c_lo)),
                            vtop);
}

// Per-block constants of the encoder.
struct EncodeConsts {
    __m256d vr, vstep;
    __m256i vtop;
    __m256 vinv, vc0, margin, abs_mask;
};

// Fast-path codes of the 8 elements at offset i (see encode_block); `flag` gets all-ones
// lanes where the estimate is too close to an integer (or NaN) to be trusted.
template <bool kHasPrev>
inline __m256i codes_fast(const float* grad, const float* prev, std::size_t i,
                          const EncodeConsts& k, __m256& flag) {
    __m256 v = _mm256_loadu_ps(grad + i);
    if (kHasPrev) v = _mm256_sub_ps(v, _mm256_loadu_ps(prev + i));
    // x ~ (v + R) / step + 1/2 > 0, so truncation is floor.
    const __m256 x = _mm256_fmadd_ps(v, k.vinv, k.vc0);
    const __m256 x_near = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 dist = _mm256_and_ps(_mm256_sub_ps(x, x_near), k.abs_mask);
    // "not (dist >= margin)" is also true for NaN.
    flag = _mm256_or_ps(flag, _mm256_cmp_ps(dist, k.margin, _CMP_NGE_UQ));
    return _mm256_cvttps_epi32(x);
}

// The reference's codes of the 8 elements at offset i (the slow path).
template <bool kHasPrev>
inline __m256i codes_ref(const float* grad, const float* prev, std::size_t i,
                         const EncodeConsts& k) {
    __m256 v = _mm256_loadu_ps(grad + i);
    if (kHasPrev) v = _mm256_sub_ps(v, _mm256_loadu_ps(prev + i));  // as the reference
    return codes_exact(v, k.vr, k.vstep, k.vtop);
}

// Sums of the 8 elements at offset i of the piece, whose codes are `code`.
template <LutKind K, bool kHasPrev>
inline void sums_group(const float* grad, const float* prev, std::size_t i, __m256i code,
                       const Lut<K, false>& lut, __m256 scale, SquareLanes& err,
                       SquareLanes& innov) {
    // dQ = lut[code] and q_new = p + dQ, both float32 (p + dQ with p = 0.0f as the
    // reference: -0.0f becomes +0.0f).
    const __m256 p = kHasPrev ? _mm256_loadu_ps(prev + i) : _mm256_setzero_ps();
    const __m256 dq = lut(code);
    const __m256 q_new = _mm256_add_ps(p, dq);
    err.add(i, _mm256_sub_ps(q_new, _mm256_loadu_ps(grad + i)), scale);
    innov.add(i, dq, scale);
}

// Packs 32 codes of b in {1, 8} bits (bytes, in order) into their 4b bytes at out, writing
// exactly those bytes. (Packing 2- and 4-bit codes in the loop measured no faster than the
// buffer and pack_groups_avx2: the loop is already short of registers.)
template <int b>
inline void pack_step(__m256i bytes, std::uint8_t* out) {
    static_assert(b == 1 || b == 8, "pack_step handles 1 and 8 bits");
    if constexpr (b == 8) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), bytes);
    } else {
        const std::uint32_t word = avx2::pack32_1bit(bytes);
        std::memcpy(out, &word, 4);
    }
}

// kPack: the code width when pack_step packs straight from the registers, else 0 (block
// buffer and pack_groups_avx2); a template parameter so the loop has no width dispatch.
template <LutKind K, int kPack, bool kHasPrev>
LaqSums encode_block(const float* grad, const float* prev, std::size_t count, const LaqGrid& grid,
                     std::uint8_t* packed) {
    const auto b = static_cast<std::size_t>(grid.bits);
    const int top_code = (1 << grid.bits) - 1;
    const double r = grid.radius;
    const Lut<K, false> lut(grid.lut, lut_step_of(grid), r, 1.0f);

    // Fast path for the codes: x = fma(v, 1/step, R/step + 1/2) in float32, against the
    // reference's x_ref = (double(v) + R) / step + 1/2 (double roundings: |x_ref - x*| <
    // 2^-43 for the exact x* <= L + 1/2 <= 255.5). float(1/step) is off by a relative
    // 2^-24 + 2^-53, at most 2^-17 on |v / step| <= L/2 < 128; c0 = float(R/step + 1/2) is
    // exactly (L+1)/2, a half-integer float, since the double value is within 2^-45 of it;
    // the FMA rounds by at most half an ulp of 256, 2^-16. So |x - x*| < 2^-15, and
    // whenever x lies at least 2^-14 from every integer (x - round(x) is exact in float),
    // floor(x) = floor(x_ref) is the reference's code (which also needs no clamp: x < L +
    // 1). Otherwise (and for NaN, never expected) the step's codes are recomputed by the
    // exact double path. Huge radii and tiny steps (where 1/step could overflow float or be
    // subnormal) always take it: an infinite margin flags every element.
    const double inv_step = 1.0 / grid.step;
    const bool fast = r < 1e30 && inv_step < 1e30;
    EncodeConsts k;
    k.vr = _mm256_set1_pd(r);
    k.vstep = _mm256_set1_pd(grid.step);
    k.vtop = _mm256_set1_epi32(top_code);
    k.vinv = _mm256_set1_ps(static_cast<float>(fast ? inv_step : 0.0));
    k.vc0 = _mm256_set1_ps(static_cast<float>(fast ? r * inv_step + 0.5 : 0.0));
    k.margin = _mm256_set1_ps(fast ? 1.0f / 16384.0f : __builtin_inff());
    k.abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));

    const LaqSumScale sum_scale = laq_sum_scale(grid.radius);
    const __m256 scale = _mm256_set1_ps(sum_scale.scale);

    alignas(32) std::uint8_t codes[kReduceBlock];
    SquareLanes err, innov;
    const std::size_t full = count / 8 * 8;
    std::size_t i = 0;
    // 32 elements per step: all codes first (one branch for the rare exact path), then the
    // sums. The four code vectors become 32 bytes with three packs and a lane permute
    // (packus interleaves the 128-bit lanes; the permute restores the order).
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (; i + 32 <= full; i += 32) {
        prefetch_step(grad + i);
        if (kHasPrev) prefetch_step(prev + i);
        __m256 flag = _mm256_setzero_ps();
        __m256i c0 = codes_fast<kHasPrev>(grad, prev, i, k, flag);
        __m256i c1 = codes_fast<kHasPrev>(grad, prev, i + 8, k, flag);
        __m256i c2 = codes_fast<kHasPrev>(grad, prev, i + 16, k, flag);
        __m256i c3 = codes_fast<kHasPrev>(grad, prev, i + 24, k, flag);
        if (!_mm256_testz_ps(flag, flag)) {
            c0 = codes_ref<kHasPrev>(grad, prev, i, k);
            c1 = codes_ref<kHasPrev>(grad, prev, i + 8, k);
            c2 = codes_ref<kHasPrev>(grad, prev, i + 16, k);
            c3 = codes_ref<kHasPrev>(grad, prev, i + 24, k);
        }
        sums_group<K, kHasPrev>(grad, prev, i, c0, lut, scale, err, innov);
        sums_group<K, kHasPrev>(grad, prev, i + 8, c1, lut, scale, err, innov);
        sums_group<K, kHasPrev>(grad, prev, i + 16, c2, lut, scale, err, innov);
        sums_group<K, kHasPrev>(grad, prev, i + 24, c3, lut, scale, err, innov);
        const __m256i bytes = _mm256_permutevar8x32_epi32(
            _mm256_packus_epi16(_mm256_packus_epi32(c0, c1), _mm256_packus_epi32(c2, c3)), order);
        if constexpr (kPack != 0) {
            pack_step<kPack>(bytes, packed + i / 8 * b);
        } else {
            _mm256_store_si256(reinterpret_cast<__m256i*>(codes + i), bytes);
        }
    }
    const std::size_t packed_from = kPack != 0 ? i : 0;  // a multiple of 32
    for (; i < full; i += 8) {
        __m256 flag = _mm256_setzero_ps();
        __m256i code = codes_fast<kHasPrev>(grad, prev, i, k, flag);
        if (!_mm256_testz_ps(flag, flag)) code = codes_ref<kHasPrev>(grad, prev, i, k);
        sums_group<K, kHasPrev>(grad, prev, i, code, lut, scale, err, innov);
        const __m128i c16 =
            _mm_packus_epi32(_mm256_castsi256_si128(code), _mm256_extracti128_si256(code, 1));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(codes + i), _mm_packus_epi16(c16, c16));
    }
    err.spill();
    innov.spill();
    // Last, partial group of the whole vector: the reference's scalar formula, lane j.
    for (i = full; i < count; ++i) {
        const float p = kHasPrev ? prev[i] : 0.0f;
        const float v = grad[i] - p;
        const double x = (static_cast<double>(v) + r) / grid.step + 0.5;
        const int c = static_cast<int>(x);
        const auto code = static_cast<unsigned>(c < top_code ? c : top_code);
        codes[i] = static_cast<std::uint8_t>(code);
        const float dq = grid.lut[code];
        const float q_new = p + dq;
        laq_add_square(err.tail, i, q_new - grad[i], sum_scale.scale);
        laq_add_square(innov.tail, i, dq, sum_scale.scale);
    }
    if (full > packed_from) {
        pack_groups_avx2(codes + packed_from, (full - packed_from) / 8, grid.bits,
                         packed + packed_from / 8 * b);
    }
    if (full < count) avx2::pack_partial(codes + full, count - full, b, packed + full / 8 * b);
    return {err.tail.total(sum_scale.unscale), innov.tail.total(sum_scale.unscale)};
}

template <LutKind K, int kPack>
LaqSums encode_kind(const float* grad, const float* prev, std::size_t count, const LaqGrid& grid,
                    std::uint8_t* packed) {
    return prev ? encode_block<K, kPack, true>(grad, prev, count, grid, packed)
                : encode_block<K, kPack, false>(grad, nullptr, count, grid, packed);
}

LaqSums encode_avx2(const float* grad, const float* prev, std::size_t count, const LaqGrid& grid,
                    std::uint8_t* packed) {
    // The table lookup of each width (lut_kind) and its packing (pack_step, or 0: buffer).
    switch (grid.bits) {
        case 1:
            return encode_kind<LutKind::perm8, 1>(grad, prev, count, grid, packed);
        case 2:
        case 3:
            return encode_kind<LutKind::perm8, 0>(grad, prev, count, grid, packed);
        case 4:
            return encode_kind<LutKind::perm16, 0>(grad, prev, count, grid, packed);
        case 8:
            return encode_kind<LutKind::formula, 8>(grad, prev, count, grid, packed);
        default:
            break;
    }
    return encode_kind<LutKind::formula, 0>(grad, prev, count, grid, packed);
}

// ---- decoders ---------------------------------------------------------------------------
// The codes of one block, unpacked into codes[count]; 8-bit codes are used in place.
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
inline void with_lut(const LaqGrid& grid, const float* table, float weight, Body&& body) {
    const double step = lut_step_of(grid);
    const double r = grid.radius;
    switch (lut_kind(grid.bits)) {
        case LutKind::perm8:
            return body(Lut<LutKind::perm8, kWeighted>(table, step, r, weight));
        case LutKind::perm16:
            return body(Lut<LutKind::perm16, kWeighted>(table, step, r, weight));
        case LutKind::formula:
            break;
    }
    body(Lut<LutKind::formula, kWeighted>(table, step, r, weight));
}

void decode_store_avx2(const std::uint8_t* packed, std::size_t count, const LaqGrid& grid,
                       float* out) {
    alignas(32) std::uint8_t buf[kReduceBlock];
    const std::uint8_t* codes = block_codes(packed, count, grid.bits, buf);
    const std::size_t full = count / 8 * 8;
    with_lut<false>(grid, grid.lut, 1.0f, [&](const auto& lookup) {
        for (std::size_t i = 0; i < full; i += 8) _mm256_storeu_ps(out + i, lookup(codes + i));
    });
    for (std::size_t i = full; i < count; ++i) out[i] = grid.lut[codes[i]];
}

void decode_add_avx2(const std::uint8_t* packed, std::size_t count, const LaqGrid& grid,
                     const float* table, float weight, float* inout) {
    alignas(32) std::uint8_t buf[kReduceBlock];
    const std::uint8_t* codes = block_codes(packed, count, grid.bits, buf);
    const std::size_t full = count / 8 * 8;
    with_lut<true>(grid, table, weight, [&](const auto& lookup) {
        for (std::size_t i = 0; i < full; i += 8) {
            _mm256_storeu_ps(inout + i,
                             _mm256_add_ps(_mm256_loadu_ps(inout + i), lookup(codes + i)));
        }
    });
    for (std::size_t i = full; i < count; ++i) inout[i] = inout[i] + table[codes[i]];
}

double decode_sumsq_avx2(const std::uint8_t* packed, std::size_t count, const LaqGrid& grid) {
    alignas(32) std::uint8_t buf[kReduceBlock];
    const std::uint8_t* codes = block_codes(packed, count, grid.bits, buf);
    const LaqSumScale sum_scale = laq_sum_scale(grid.radius);
    const __m256 scale = _mm256_set1_ps(sum_scale.scale);
    SquareLanes s;  // the encoder's innov_sq arithmetic (bit-identical result)
    const std::size_t full = count / 8 * 8;
    with_lut<false>(grid, grid.lut, 1.0f, [&](const auto& lookup) {
        for (std::size_t i = 0; i < full; i += 8) s.add(i, lookup(codes + i), scale);
    });
    s.spill();
    for (std::size_t i = full; i < count; ++i) {
        laq_add_square(s.tail, i, grid.lut[codes[i]], sum_scale.scale);
    }
    return s.tail.total(sum_scale.unscale);
}

const LaqBlockKernels kAvx2Kernels = {
    "avx2",       16,  // perm8 / perm16 registers; 5..8 bits use the table's formula
    &radius_avx2, &encode_avx2, &decode_store_avx2, &decode_add_avx2, &decode_sumsq_avx2,
    nullptr,  // quantize_blocks: the drivers' per-block radius and encode
    nullptr,  // accumulate_blocks: the drivers' per-block grid and decode_add
};

}  // namespace

const LaqBlockKernels& laq_avx2_kernels() {
    return kAvx2Kernels;
}

}  // namespace detail
}  // namespace laqcore
