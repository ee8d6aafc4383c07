#include "laqcore/sign.hpp"

#include <cmath>

#include "compress_common.hpp"
#include "laqcore/common.hpp"
#include "laqcore/dispatch.hpp"
#include "laqcore/pack.hpp"

namespace laqcore {

float sign_compress(const float* x, std::size_t n, std::uint8_t* packed, const char* name) {
    LAQ_CHECK(n >= 1, name << " must not be empty");
    // One pass: each reduction block packs its sign bits and returns its sum of |x| (in
    // LaneSum order, by the SIMD-dispatched block function); blocks fold in order.
    const auto block = kernels().sign_block;  // resolved outside the parallel region
    const detail::RangeStats st = detail::blocked_reduce(
        0, n, detail::RangeStats{},
        [x, packed, block](std::size_t lo, std::size_t hi) {
            detail::RangeStats r;
            r.sum = block(x + lo, hi - lo, packed + lo / 8, &r.bad);  // lo is a multiple of 8
            return r;
        },
        detail::combine_stats);
    LAQ_CHECK(!st.bad, name << " contains NaN or Inf");
    return static_cast<float>(st.sum / static_cast<double>(n));
}

namespace detail {

// The scalar reference of KernelTable::sign_block.
double sign_block_scalar(const float* x, std::size_t count, std::uint8_t* packed, bool* nonfinite) {
    LaneSum sum;
    unsigned bad = 0;
    std::uint8_t codes[kCodeChunk];
    for (std::size_t c = 0; c < count; c += kCodeChunk) {
        const std::size_t c_end = c + kCodeChunk < count ? c + kCodeChunk : count;
        for (std::size_t i = c; i < c_end; ++i) {
            const float a = std::fabs(x[i]);
            bad |= not_finite(a) ? 1u : 0u;
            sum.lane[i % kSumLanes] += static_cast<double>(a);
            codes[i - c] = x[i] < 0.0f ? 1 : 0;
        }
        pack_bits(codes, c_end - c, 1, packed + c / 8);
    }
    *nonfinite = bad != 0;
    return sum.total();
}

}  // namespace detail

void sign_decompress(const std::uint8_t* packed, std::size_t n, float scale, float* out) {
    LAQ_CHECK(std::isfinite(scale) && scale >= 0.0f,
              "corrupt sign payload: scale is " << scale << " (must be finite and >= 0)");
    const float table[2] = {scale, -scale};
    detail::decode_packed(packed, n, 1,
                          [&](std::size_t begin, std::size_t end, const std::uint8_t* codes) {
                              for (std::size_t i = begin; i < end; ++i)
                                  out[i] = table[codes[i - begin]];
                          });
}

}  // namespace laqcore
