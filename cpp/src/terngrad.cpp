#include "laqcore/terngrad.hpp"

#include <cmath>
#include <limits>

#include "compress_common.hpp"
#include "laqcore/common.hpp"
#include "laqcore/rng.hpp"

namespace laqcore {

float terngrad_scaler(const float* x, std::size_t n, float clip_factor, float* threshold,
                      const char* name) {
    LAQ_CHECK(n >= 1, name << " must not be empty");
    LAQ_CHECK(std::isfinite(clip_factor), "clip_factor must be finite, got " << clip_factor);
    // Pass 1: sum (for the mean), max |x| and the NaN/Inf check together.
    const detail::RangeStats st = detail::blocked_reduce(
        0, n, detail::RangeStats{},
        [x](std::size_t lo, std::size_t hi) {
            detail::RangeStats r;
            unsigned nonfinite = 0;
            for (std::size_t i = lo; i < hi; ++i) {
                const float a = std::fabs(x[i]);
                nonfinite |= detail::not_finite(a) ? 1u : 0u;
                r.max_abs = a > r.max_abs ? a : r.max_abs;
                r.sum += static_cast<double>(x[i]);
            }
            r.bad = nonfinite != 0;
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
            [x, mean](std::size_t lo, std::size_t hi) {
                double s = 0.0;
                for (std::size_t i = lo; i < hi; ++i) {
                    const double d = static_cast<double>(x[i]) - mean;
                    s += d * d;
                }
                return s;
            },
            [](double a, double b) { return a + b; });
        const double sigma = std::sqrt(ss / static_cast<double>(n));
        thr = static_cast<float>(static_cast<double>(clip_factor) * sigma);
    }
    *threshold = thr;
    return st.max_abs < thr ? st.max_abs : thr;
}

void terngrad_encode(const float* x, std::size_t n, float threshold, float scaler,
                     std::uint64_t key, std::uint8_t* packed) {
    LAQ_CHECK(std::isfinite(scaler) && scaler >= 0.0f,
              "scaler must be finite and >= 0, got " << scaler);
    detail::encode_packed(n, kTernGradBits, packed,
                          [&](std::size_t begin, std::size_t end, std::uint8_t* codes) {
        for (std::size_t i = begin; i < end; ++i) {
            const float v = x[i];
            const float a = std::fabs(v) < threshold ? std::fabs(v) : threshold;
            const float p = scaler > 0.0f ? a / scaler : 0.0f;
            const unsigned keep = uniform01(key, i) < p ? 1u : 0u;
            // keep=0 -> 0; keep=1 -> 1 (+) or 2 (-)
            codes[i - begin] = static_cast<std::uint8_t>(keep << (v < 0.0f ? 1 : 0));
        }
    });
}

float terngrad_quantize(const float* x, std::size_t n, float clip_factor, float shared_scaler,
                        std::uint64_t key, std::uint8_t* packed, const char* name) {
    float threshold = 0.0f;
    const float local = terngrad_scaler(x, n, clip_factor, &threshold, name);
    float scaler = local;
    if (shared_scaler >= 0.0f || std::isnan(shared_scaler)) {
        LAQ_CHECK(std::isfinite(shared_scaler),
                  "shared scaler must be finite, got " << shared_scaler);
        LAQ_CHECK(shared_scaler >= local,
                  "shared scaler " << shared_scaler << " is smaller than this tensor's "
                  "max |g| after clipping (" << local << "); the shared scaler must be the "
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
        LAQ_CHECK(!invalid, "corrupt TernGrad payload: code 3 is not a ternary code");
    });
}

}  // namespace laqcore
