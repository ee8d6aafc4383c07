// AVX2 block functions of the LAQ quantizer (laq.cpp holds the drivers and the scalar
// reference; laq.hpp the arithmetic). Every function performs exactly the reference's
// float and double operations, element by element, in the same order:
//   * codes: the reference computes (double(v) + R) / step + 0.5, truncated and clamped. A
//     float32 multiply-based estimate gives the same integer whenever it is not within
//     2^-12 of an integer (its error is below 2^-14); the rare groups where it is take the
//     exact double path (see encode_avx2);
//   * dQ = lut[code] is recomputed as float(double(code) * step' - R) with step' = 2R / L,
//     which is how laq_make_grid fills the table (same operations, hence the same floats);
//   * sums use the 8 lanes of parallel.hpp's LaneSum: lanes 0-3 and 4-7 live in two
//     __m256d registers, and the fixed combination tree is applied at the end (Lanes in
//     lanes_avx2.hpp, shared with the other AVX2 reductions).
// Codes go to a block-sized stack buffer in L1 and are packed with the AVX2 packer; the
// decoders unpack the same way before their table lookups.
//
// Like every *_avx2.cpp file, this one avoids inline functions shared with scalar files
// (bitstream.hpp, std::min, LaneSum::add ...): see bits_avx2.hpp.
#include <cfloat>

#include "bits_avx2.hpp"
#include "kernels_avx2.hpp"
#include "lanes_avx2.hpp"
#include "laqcore/dispatch.hpp"
#include "laqcore/laq.hpp"
#include "laqcore/parallel.hpp"  // kReduceBlock (no calls)

namespace laqcore {
namespace detail {
namespace {

// Packs the last `m` (< 8) codes of a block; the reference's gather_group + store_le.
inline void pack_partial(const std::uint8_t* codes, std::size_t m, std::size_t b,
                         std::uint8_t* out) {
    std::uint64_t word = 0;
    for (std::size_t j = 0; j < m; ++j) word |= static_cast<std::uint64_t>(codes[j]) << (j * b);
    const std::size_t nbytes = (m * b + 7) / 8;
    for (std::size_t k = 0; k < nbytes; ++k) out[k] = static_cast<std::uint8_t>(word >> (8 * k));
}

inline void unpack_partial(const std::uint8_t* in, std::size_t m, std::size_t b,
                           std::uint8_t* codes) {
    const std::size_t nbytes = (m * b + 7) / 8;
    std::uint64_t word = 0;
    for (std::size_t k = 0; k < nbytes; ++k) word |= static_cast<std::uint64_t>(in[k]) << (8 * k);
    const std::uint64_t mask = (std::uint64_t{1} << b) - 1;
    for (std::size_t j = 0; j < m; ++j) codes[j] = static_cast<std::uint8_t>((word >> (j * b)) & mask);
}

// ---- radius ---------------------------------------------------------------------------
LaqRadiusPartial radius_avx2(const float* grad, const float* prev, std::size_t count) {
    FiniteAbs finite_abs;
    __m256 m = _mm256_setzero_ps();
    std::size_t i = 0;
    for (; i + 8 <= count; i += 8) {
        __m256 v = _mm256_loadu_ps(grad + i);
        if (prev) v = _mm256_sub_ps(v, _mm256_loadu_ps(prev + i));
        m = _mm256_max_ps(m, finite_abs(v));  // the maximum is order independent (finite inputs)
    }
    float mx = hmax(m);
    bool bad = finite_abs.any_nonfinite();
    for (; i < count; ++i) {
        const float v = prev ? grad[i] - prev[i] : grad[i];
        const float a = __builtin_fabsf(v);
        bad |= !(a <= FLT_MAX);
        mx = a > mx ? a : mx;
    }
    return {mx, bad};
}

// ---- fused quantize + pack ----------------------------------------------------------------
// Codes of 8 elements by the reference's double formula (exact; the slow path).
inline __m256i codes_exact(__m256 v, __m256d vr, __m256d vstep) {
    const __m256d half = _mm256_set1_pd(0.5);
    const __m256d c_lo =
        _mm256_floor_pd(_mm256_add_pd(_mm256_div_pd(_mm256_add_pd(lo_pd(v), vr), vstep), half));
    const __m256d c_hi =
        _mm256_floor_pd(_mm256_add_pd(_mm256_div_pd(_mm256_add_pd(hi_pd(v), vr), vstep), half));
    // The reference's truncating conversion of x >= 1/2 is this floor; its min(., top) is
    // applied by the caller.
    return _mm256_set_m128i(_mm256_cvttpd_epi32(c_hi), _mm256_cvttpd_epi32(c_lo));
}

// dQ = lut[code] for 8 codes: register permutes for up to 16 table entries, else the
// table's own formula float(double(code) * step' - R) (see laq_make_grid).
struct DqTable {
    int bits;
    __m256 t0, t1;
    __m256d lut_step, r;
    DqTable(const LaqGrid& grid, double lut_step_, double r_)
        : bits(grid.bits),
          t0(_mm256_loadu_ps(grid.lut)),
          t1(_mm256_loadu_ps(grid.lut + 8)),
          lut_step(_mm256_set1_pd(lut_step_)),
          r(_mm256_set1_pd(r_)) {}
    __m256 operator()(__m256i code) const {
        if (bits <= 3) return _mm256_permutevar8x32_ps(t0, code);
        if (bits == 4) {
            const __m256 upper = _mm256_castsi256_ps(_mm256_slli_epi32(code, 28));
            return _mm256_blendv_ps(_mm256_permutevar8x32_ps(t0, code),
                                    _mm256_permutevar8x32_ps(t1, code), upper);
        }
        const __m256d c_lo = _mm256_cvtepi32_pd(_mm256_castsi256_si128(code));
        const __m256d c_hi = _mm256_cvtepi32_pd(_mm256_extracti128_si256(code, 1));
        return _mm256_set_m128(_mm256_cvtpd_ps(_mm256_sub_pd(_mm256_mul_pd(c_hi, lut_step), r)),
                               _mm256_cvtpd_ps(_mm256_sub_pd(_mm256_mul_pd(c_lo, lut_step), r)));
    }
};

LaqSums encode_avx2(const float* grad, const float* prev, std::size_t count, const LaqGrid& grid,
                    std::uint8_t* packed) {
    const auto b = static_cast<std::size_t>(grid.bits);
    const int top_code = (1 << grid.bits) - 1;
    const double r = grid.radius;
    const double lut_step = (2.0 * r) / static_cast<double>(top_code);  // as laq_make_grid
    const __m256d vr = _mm256_set1_pd(r);
    const __m256d vstep = _mm256_set1_pd(grid.step);
    const __m256i vtop = _mm256_set1_epi32(top_code);
    const DqTable dq_of(grid, lut_step, r);

    // Fast path for the codes: x = (v + R) / step + 1/2 in float32 with a multiply, whose
    // absolute error is below 2^-14 for x <= 256.5 (three roundings of relative size
    // 2^-24, plus that of adding 1/2). Whenever x lies at least 2^-12 from every integer,
    // floor(x) is therefore the reference's code; otherwise (and for NaN, never expected)
    // the 8 elements take the exact double path. Huge radii (v + R could overflow float)
    // and tiny steps (1/step could) always take the exact path.
    const double inv_step = 1.0 / grid.step;
    const bool fast = r < 1e30 && inv_step < 1e30;
    const __m256 vr_f = _mm256_set1_ps(grid.radius);
    const __m256 vinv_f = _mm256_set1_ps(static_cast<float>(fast ? inv_step : 0.0));
    const __m256 half_f = _mm256_set1_ps(0.5f);
    const __m256 margin = _mm256_set1_ps(1.0f / 4096.0f);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));

    alignas(32) std::uint8_t codes[kReduceBlock];
    Lanes err, innov;
    const std::size_t full = count / 8 * 8;
    for (std::size_t i = 0; i < full; i += 8) {
        const __m256 g = _mm256_loadu_ps(grad + i);
        const __m256 p = prev ? _mm256_loadu_ps(prev + i) : _mm256_setzero_ps();
        const __m256 v = _mm256_sub_ps(g, p);  // g - 0.0f == g bit for bit, as the reference
        const __m256 x = _mm256_add_ps(_mm256_mul_ps(_mm256_add_ps(v, vr_f), vinv_f), half_f);
        const __m256 x_floor = _mm256_round_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
        const __m256 x_near = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m256 dist = _mm256_and_ps(_mm256_sub_ps(x, x_near), abs_mask);
        // "not (dist >= margin)" is also true for NaN.
        const bool exact_needed =
            !fast || _mm256_movemask_ps(_mm256_cmp_ps(dist, margin, _CMP_NGE_UQ)) != 0;
        __m256i code = exact_needed ? codes_exact(v, vr, vstep) : _mm256_cvttps_epi32(x_floor);
        code = _mm256_min_epi32(code, vtop);  // the reference's min(code, top)
        const __m128i c16 =
            _mm_packus_epi32(_mm256_castsi256_si128(code), _mm256_extracti128_si256(code, 1));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(codes + i), _mm_packus_epi16(c16, c16));
        // dQ = lut[code] and q_new = p + dQ, both float32; the sums in double.
        const __m256 dq = dq_of(code);
        const __m256 q_new = _mm256_add_ps(p, dq);
        err.add_squares(_mm256_sub_pd(lo_pd(q_new), lo_pd(g)),
                        _mm256_sub_pd(hi_pd(q_new), hi_pd(g)));
        innov.add_squares(lo_pd(dq), hi_pd(dq));
    }
    err.spill();
    innov.spill();
    // Last, partial group of the whole vector: the reference's scalar formula, lane j.
    for (std::size_t i = full; i < count; ++i) {
        const float p = prev ? prev[i] : 0.0f;
        const float v = grad[i] - p;
        const double x = (static_cast<double>(v) + r) / grid.step + 0.5;
        const int c = static_cast<int>(x);
        const auto code = static_cast<unsigned>(c < top_code ? c : top_code);
        codes[i] = static_cast<std::uint8_t>(code);
        const float dq = grid.lut[code];
        const float q_new = p + dq;
        const double e = static_cast<double>(q_new) - static_cast<double>(grad[i]);
        err.tail[i - full] += e * e;
        innov.tail[i - full] += static_cast<double>(dq) * static_cast<double>(dq);
    }
    pack_groups_avx2(codes, full / 8, grid.bits, packed);
    if (full < count) pack_partial(codes + full, count - full, b, packed + full / 8 * b);
    return {err.total(), innov.total()};
}

// ---- decoders ---------------------------------------------------------------------------
// The codes of one block, unpacked into codes[count].
inline void unpack_block(const std::uint8_t* packed, std::size_t count, int bits,
                         std::uint8_t* codes) {
    const auto b = static_cast<std::size_t>(bits);
    const std::size_t full = count / 8 * 8;
    unpack_groups_avx2(packed, full / 8, bits, codes);
    if (full < count) unpack_partial(packed + full / 8 * b, count - full, b, codes + full);
}

// table[codes[i .. i+8)] for a table of 2^bits entries (the tables hold kLaqMaxLevels
// floats, so reading entries 0..15 is always in bounds). Up to 16 entries: register
// permutes; more: a gather.
struct Lookup {
    int bits;
    const float* table;
    __m256 t0, t1;
    Lookup(int b, const float* t)
        : bits(b), table(t), t0(_mm256_loadu_ps(t)), t1(_mm256_loadu_ps(t + 8)) {}
    __m256 operator()(const std::uint8_t* codes) const {
        const __m256i idx =
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes)));
        if (bits <= 3) return _mm256_permutevar8x32_ps(t0, idx);
        if (bits == 4) {
            // Bit 3 of the code (moved to the sign bit) picks the upper half of the table.
            const __m256 upper = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28));
            return _mm256_blendv_ps(_mm256_permutevar8x32_ps(t0, idx),
                                    _mm256_permutevar8x32_ps(t1, idx), upper);
        }
        return _mm256_i32gather_ps(table, idx, 4);
    }
};

void decode_store_avx2(const std::uint8_t* packed, std::size_t count, int bits,
                       const float* table, float* out) {
    alignas(32) std::uint8_t codes[kReduceBlock];
    unpack_block(packed, count, bits, codes);
    const Lookup lookup(bits, table);
    const std::size_t full = count / 8 * 8;
    for (std::size_t i = 0; i < full; i += 8) _mm256_storeu_ps(out + i, lookup(codes + i));
    for (std::size_t i = full; i < count; ++i) out[i] = table[codes[i]];
}

void decode_add_avx2(const std::uint8_t* packed, std::size_t count, int bits,
                     const float* table, float* inout) {
    alignas(32) std::uint8_t codes[kReduceBlock];
    unpack_block(packed, count, bits, codes);
    const Lookup lookup(bits, table);
    const std::size_t full = count / 8 * 8;
    for (std::size_t i = 0; i < full; i += 8) {
        _mm256_storeu_ps(inout + i, _mm256_add_ps(_mm256_loadu_ps(inout + i), lookup(codes + i)));
    }
    for (std::size_t i = full; i < count; ++i) inout[i] = inout[i] + table[codes[i]];
}

double decode_sumsq_avx2(const std::uint8_t* packed, std::size_t count, int bits,
                         const float* table) {
    alignas(32) std::uint8_t codes[kReduceBlock];
    unpack_block(packed, count, bits, codes);
    const Lookup lookup(bits, table);
    Lanes s;
    const std::size_t full = count / 8 * 8;
    for (std::size_t i = 0; i < full; i += 8) {
        const __m256 d = lookup(codes + i);
        s.add_squares(lo_pd(d), hi_pd(d));
    }
    s.spill();
    for (std::size_t i = full; i < count; ++i) {
        const auto d = static_cast<double>(table[codes[i]]);
        s.tail[i - full] += d * d;
    }
    return s.total();
}

const LaqBlockKernels kAvx2Kernels = {
    "avx2",           &radius_avx2,       &encode_avx2,
    &decode_store_avx2, &decode_add_avx2, &decode_sumsq_avx2,
};

}  // namespace

const LaqBlockKernels& laq_avx2_kernels() { return kAvx2Kernels; }

}  // namespace detail
}  // namespace laqcore
