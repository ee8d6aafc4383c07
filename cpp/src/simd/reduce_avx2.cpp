// AVX2 lane-order reductions (scalar reference: reduce.cpp). Lanes 0-3 and 4-7 of
// parallel.hpp's LaneSum live in two __m256d accumulators; every element is added to its
// own lane in the same order as the reference, and the lanes are combined by the same tree.
#include <immintrin.h>

#include "kernels_avx2.hpp"
#include "lanes_avx2.hpp"

namespace laqcore {
namespace detail {

double sumsq_lanes_avx2(const float* x, std::size_t count) {
    Lanes s;
    const std::size_t full = count / 8 * 8;
    for (std::size_t i = 0; i < full; i += 8) s.add_squares(lo_pd(x + i), hi_pd(x + i));
    s.spill();
    for (std::size_t i = full; i < count; ++i) {
        const double v = x[i];
        s.tail[i - full] += v * v;
    }
    return s.total();
}

}  // namespace detail
}  // namespace laqcore
