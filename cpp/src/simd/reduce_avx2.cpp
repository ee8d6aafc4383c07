// AVX2 lane-order reductions (scalar reference: reduce.cpp). Lanes 0-3 and 4-7 of
// parallel.hpp's LaneSum live in two __m256d accumulators; every element is added to its
// own lane in the same order as the reference, and the lanes are combined by the same tree.
#include <immintrin.h>

#include "kernels_avx2.hpp"

namespace laqcore {
namespace detail {

double sumsq_lanes_avx2(const float* x, std::size_t count) {
    __m256d lo = _mm256_setzero_pd();
    __m256d hi = _mm256_setzero_pd();
    const std::size_t full = count / 8 * 8;
    for (std::size_t i = 0; i < full; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256d a = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        const __m256d b = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        lo = _mm256_add_pd(lo, _mm256_mul_pd(a, a));
        hi = _mm256_add_pd(hi, _mm256_mul_pd(b, b));
    }
    double lane[8];
    _mm256_storeu_pd(lane, lo);
    _mm256_storeu_pd(lane + 4, hi);
    for (std::size_t i = full; i < count; ++i) {
        const double v = x[i];
        lane[i - full] += v * v;
    }
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

}  // namespace detail
}  // namespace laqcore
