#include "laqcore/terngrad.hpp"

#include <cmath>
#include <limits>

#include "compress_common.hpp"
#include "laqcore/common.hpp"
#include "laqcore/dispatch.hpp"
#include "laqcore/rng.hpp"

namespace laqcore {

float terngrad_scaler(const float* x, std::size_t n, float clip_factor, float* threshold,
                      const char* name) {
    LAQ_CHECK(n >= 1, name << " must not be empty");
    LAQ_CHECK(std::isfinite(clip_factor), "clip_factor must be finite, got " << clip_factor);
    // Block functions of the active SIMD level (resolved outside the parallel regions).
    const KernelTable& kern = kernels();
    // Pass 1: sum (for the mean), max |x| and the NaN/Inf check together.
    const detail::RangeStats st = detail::blocked_reduce(
        0, n, detail::RangeStats{},
        [x, &kern](std::size_t lo, std::size_t hi) {
            detail::RangeStats r;
            kern.sum_max_block(x + lo, hi - lo, &r.sum, &r.max_abs, &r.bad);
            return r;
        },
        detail::combine_stats);
    LAQ_CHECK(!st.bad, name << " contains NaN or Inf");

    float thr = std::numeric_limits<float>::infinity();
    if (clip_factor > 0.0f) {
        // Pass 2 (only when clipping): the centred sum of squares, for a variance that does
        // not cancel catastrophically when |mean| >> sigma.
        const double mean = st.sum / static_cast<double>(n);
        const double ss = detail::blocked_reduce(
            0, n, 0.0,
            [x, mean, &kern](std::size_t lo, std::size_t hi) {
                return kern.centered_sumsq(x + lo, hi - lo, mean);
            },
            [](double a, double b) { return a + b; });
        const double sigma = std::sqrt(ss / static_cast<double>(n));
        // A constant vector (sigma 0: every vector of length 1, a chunk of equal values) has
        // no outliers to clip; c * 0 would clip it to zero and the hooks' TernGrad would never
        // move such a parameter. Left unclipped, it is ternarized at s = max |x| (unbiased).
        if (sigma > 0.0) thr = static_cast<float>(static_cast<double>(clip_factor) * sigma);
    }
    *threshold = thr;
    return st.max_abs < thr ? st.max_abs : thr;
}

void terngrad_encode(const float* x, std::size_t n, float threshold, float scaler,
                     std::uint64_t key, std::uint8_t* packed) {
    LAQ_CHECK(std::isfinite(scaler) && scaler >= 0.0f,
              "scaler must be finite and >= 0, got " << scaler);
    const auto codes_of = kernels().terngrad_codes;  // SIMD level chosen at run time
    detail::encode_packed(n, kTernGradBits, packed,
                          [&](std::size_t begin, std::size_t end, std::uint8_t* codes) {
                              codes_of(x, begin, end, threshold, scaler, key, codes);
                          });
}

// Scalar references of the TernGrad entries of KernelTable (dispatch.hpp). Sums follow
// parallel.hpp's LaneSum order so that the SIMD versions reproduce them exactly.
namespace detail {

void sum_max_block_scalar(const float* x, std::size_t count, double* sum, float* max_abs,
                          bool* nonfinite) {
    LaneSum s;
    float m = 0.0f;
    unsigned bad = 0;
    for (std::size_t i = 0; i < count; ++i) {
        const float a = std::fabs(x[i]);
        bad |= not_finite(a) ? 1u : 0u;
        m = a > m ? a : m;
        s.lane[i % kSumLanes] += static_cast<double>(x[i]);
    }
    *sum = s.total();
    *max_abs = m;
    *nonfinite = bad != 0;
}

double centered_sumsq_scalar(const float* x, std::size_t count, double mean) {
    LaneSum s;
    for (std::size_t i = 0; i < count; ++i) {
        const double d = static_cast<double>(x[i]) - mean;
        s.lane[i % kSumLanes] += d * d;
    }
    return s.total();
}

void terngrad_codes_scalar(const float* x, std::size_t begin, std::size_t end, float threshold,
                           float scaler, std::uint64_t key, std::uint8_t* codes) {
    for (std::size_t i = begin; i < end; ++i) {
        const float v = x[i];
        const float a = std::fabs(v) < threshold ? std::fabs(v) : threshold;
        const float p = scaler > 0.0f ? a / scaler : 0.0f;
        const unsigned keep = uniform01(key, i) < p ? 1u : 0u;
        // keep=0 -> 0; keep=1 -> 1 (+) or 2 (-)
        codes[i - begin] = static_cast<std::uint8_t>(keep << (v < 0.0f ? 1 : 0));
    }
}

}  // namespace detail

float terngrad_quantize(const float* x, std::size_t n, float clip_factor, float shared_scaler,
                        std::uint64_t key, std::uint8_t* packed, const char* name) {
    float threshold = 0.0f;
    const float local = terngrad_scaler(x, n, clip_factor, &threshold, name);
    float scaler = local;
    if (shared_scaler >= 0.0f || std::isnan(shared_scaler)) {
        LAQ_CHECK(std::isfinite(shared_scaler),
                  "shared scaler must be finite, got " << shared_scaler);
        LAQ_CHECK(shared_scaler >= local, "shared scaler " << shared_scaler
                                                           << " is smaller than this tensor's "
                                                              "max |g| after clipping ("
                                                           << local
                                                           << "); the shared scaler must be the "
                                                              "maximum of the workers' scalers");
        scaler = shared_scaler;
    }
    terngrad_encode(x, n, threshold, scaler, key, packed);
    return scaler;
}

void terngrad_dequantize(const std::uint8_t* packed, std::size_t n, float scaler, float* out) {
    LAQ_CHECK(std::isfinite(scaler) && scaler >= 0.0f,
              "corrupt TernGrad payload: scaler is " << scaler << " (must be finite and >= 0)");
    const float table[4] = {0.0f, scaler, -scaler, 0.0f};
    detail::decode_packed(packed, n, kTernGradBits,
                          [&](std::size_t begin, std::size_t end, const std::uint8_t* codes) {
                              unsigned invalid = 0;
                              for (std::size_t i = begin; i < end; ++i) {
                                  const unsigned c = codes[i - begin];
                                  invalid |= (c == 3u) ? 1u : 0u;
                                  out[i] = table[c];
                              }
                              LAQ_CHECK(!invalid,
                                        "corrupt TernGrad payload: code 3 is not a ternary code");
                          });
}

}  // namespace laqcore
