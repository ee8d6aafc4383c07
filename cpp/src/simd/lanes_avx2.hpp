// Private header of the AVX2 translation units (cpp/src/simd/*_avx2.cpp): the pieces every
// AVX2 reduction repeats, so that they all follow the scalar reference's order in one place.
//
//  * Lanes: parallel.hpp's LaneSum in two __m256d registers (lanes 0-3 in lo, 4-7 in hi).
//    Element i of a block is added to lane i % 8, exactly as the scalar LaneSum does; after
//    the vector part, spill() stores the lanes so the scalar tail can add the last < 8
//    elements to lanes 0.., and total() applies LaneSum::total()'s combination tree.
//  * FiniteAbs: |x| of 8 floats plus a running "all finite" mask, for the kernels that must
//    report NaN/Inf input (the scalar references test !(|x| <= FLT_MAX) per element).
//  * lo_pd / hi_pd / hmax: float -> double widening of each half (of a register or straight
//    from memory), horizontal max.
//
// Include it ONLY from files compiled with -mavx2 -mfma. Like rng_avx2.hpp, everything here
// has internal linkage (anonymous namespace) and calls no shared inline function (see
// bits_avx2.hpp for why).
#pragma once

#include <immintrin.h>

#include <cfloat>

#include "laqcore/parallel.hpp"  // kSumLanes (LaneSum's order; nothing is called)

namespace laqcore {
namespace detail {
namespace {

static_assert(kSumLanes == 8, "the AVX2 lane sums hold exactly 8 lanes");

inline __m256d lo_pd(__m256 x) {
    return _mm256_cvtps_pd(_mm256_castps256_ps128(x));
}
inline __m256d hi_pd(__m256 x) {
    return _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
}
// The same conversions straight from memory (the load folds into the conversion).
inline __m256d lo_pd(const float* x) {
    return _mm256_cvtps_pd(_mm_loadu_ps(x));
}
inline __m256d hi_pd(const float* x) {
    return _mm256_cvtps_pd(_mm_loadu_ps(x + 4));
}

// Horizontal max of 8 non-negative floats.
inline float hmax(__m256 m) {
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
}

// Lane sums: lanes 0-3 in lo, 4-7 in hi (see LaneSum in parallel.hpp).
struct Lanes {
    __m256d lo = _mm256_setzero_pd();
    __m256d hi = _mm256_setzero_pd();
    double tail[8] = {};  // lanes after the vector part, for the scalar tail

    // Adds 8 doubles (elements 0-3 in a, 4-7 in b) to their lanes.
    void add(__m256d a, __m256d b) {
        lo = _mm256_add_pd(lo, a);
        hi = _mm256_add_pd(hi, b);
    }
    // Adds 8 floats, each widened to double first (as the reference's static_cast<double>).
    void add_widened(__m256 v) { add(lo_pd(v), hi_pd(v)); }
    // Adds the squares a*a, b*b, each product rounded in double (no FMA, as the reference).
    void add_squares(__m256d a, __m256d b) { add(_mm256_mul_pd(a, a), _mm256_mul_pd(b, b)); }

    void spill() {
        _mm256_storeu_pd(tail, lo);
        _mm256_storeu_pd(tail + 4, hi);
    }
    // LaneSum::total(), after spill().
    double total() const {
        return ((tail[0] + tail[1]) + (tail[2] + tail[3])) +
               ((tail[4] + tail[5]) + (tail[6] + tail[7]));
    }
};

// |x| of 8 floats and whether every one seen was finite: NaN and Inf fail the ordered
// compare |x| <= FLT_MAX, so one AND per step collects the test and one movemask reads it.
struct FiniteAbs {
    __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 fmax = _mm256_set1_ps(FLT_MAX);
    __m256 finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));

    __m256 operator()(__m256 v) {
        const __m256 a = _mm256_and_ps(v, abs_mask);
        finite = _mm256_and_ps(finite, _mm256_cmp_ps(a, fmax, _CMP_LE_OQ));  // NaN, Inf -> 0
        return a;
    }
    bool any_nonfinite() const { return _mm256_movemask_ps(finite) != 0xFF; }
};

}  // namespace
}  // namespace detail
}  // namespace laqcore
