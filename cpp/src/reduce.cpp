// Scalar reference of the lane-order reductions in the kernel table (dispatch.hpp). The order
// is parallel.hpp's LaneSum: element i of the range goes to lane i % 8, lanes combined by
// LaneSum::total(). The AVX2 versions (simd/reduce_avx2.cpp) reproduce it bit for bit.
#include "laqcore/dispatch.hpp"
#include "laqcore/parallel.hpp"

namespace laqcore {
namespace detail {

double sumsq_lanes_scalar(const float* x, std::size_t count) {
    LaneSum s;
    for (std::size_t i = 0; i < count; ++i) {
        const double v = x[i];
        s.lane[i % kSumLanes] += v * v;
    }
    return s.total();
}

}  // namespace detail
}  // namespace laqcore
