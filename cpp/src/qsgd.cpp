#include "laqcore/qsgd.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "compress_common.hpp"
#include "laqcore/common.hpp"
#include "laqcore/dispatch.hpp"
#include "laqcore/pack.hpp"
#include "laqcore/parallel.hpp"
#include "laqcore/rng.hpp"

namespace laqcore {
namespace {

using detail::RangeStats;

// End of bucket j, written so that huge bucket sizes cannot overflow (start < n always).
inline std::size_t bucket_end(std::size_t j, std::size_t bucket_size, std::size_t n) {
    const std::size_t start = j * bucket_size;
    return n - start > bucket_size ? start + bucket_size : n;
}

// The (sign, level) code of one coordinate; formula in qsgd.hpp.
inline std::uint8_t qsgd_code(float v, float scale, float s, int levels, float u) {
    float r = scale > 0.0f ? (std::fabs(v) / scale) * s : 0.0f;
    r = r < s ? r : s;  // float rounding can push r a hair above s; also keeps the cast defined
    const int l = static_cast<int>(r);  // r >= 0: truncation is floor
    int level = l + (u < r - static_cast<float>(l) ? 1 : 0);
    level = level < levels ? level : levels;
    const int neg = (v < 0.0f && level > 0) ? 1 : 0;
    return static_cast<std::uint8_t>(2 * level + neg);
}

}  // namespace

int qsgd_code_bits(int levels) {
    LAQ_CHECK(levels >= 1 && levels <= kQsgdMaxLevels,
              "levels must be an integer in [1, "
                  << kQsgdMaxLevels
                  << "] (a sign bit plus "
                     "ceil(log2(levels + 1)) level bits must fit in 8 bits), got "
                  << levels);
    int level_bits = 0;
    while ((1 << level_bits) < levels + 1) ++level_bits;
    return 1 + level_bits;
}

std::size_t qsgd_num_buckets(std::size_t n, std::size_t bucket_size) {
    LAQ_CHECK(bucket_size >= 1, "bucket_size must be >= 1, got " << bucket_size);
    return n / bucket_size + (n % bucket_size != 0 ? 1 : 0);
}

void qsgd_scales(const float* x, std::size_t n, std::size_t bucket_size, QsgdNorm norm,
                 float* scales, const char* name) {
    const std::size_t nb = qsgd_num_buckets(n, bucket_size);
    const auto sumsq_block = kernels().sumsq;  // resolved outside the parallel region
    std::atomic<int> bad{0};
    // Many small buckets: one thread per bucket. Few large buckets: blocked_reduce
    // parallelises inside each bucket instead. Both give the same bits (fixed blocks).
    parallel_for(nb, n >= kMinParallel && bucket_size < kMinParallel, [&](std::size_t j) {
        const std::size_t begin = j * bucket_size;
        const std::size_t end = bucket_end(j, bucket_size, n);
        if (norm == QsgdNorm::kL2) {
            // Each block's sum of squares in LaneSum order (the SIMD-dispatched kernel).
            const double sumsq = detail::blocked_reduce(
                begin, end, 0.0,
                [x, sumsq_block](std::size_t lo, std::size_t hi) {
                    return sumsq_block(x + lo, hi - lo);
                },
                [](double a, double b) { return a + b; });
            // Squares of finite floats cannot overflow a double, so a non-finite sum
            // means a non-finite input (bit 0). A finite norm can still exceed FLT_MAX
            // (e.g. a bucket of values near 3e38): that is bit 1, reported separately.
            const float scale = static_cast<float>(std::sqrt(sumsq));
            bad.fetch_or(std::isfinite(sumsq) ? (std::isfinite(scale) ? 0 : 2) : 1,
                         std::memory_order_relaxed);
            scales[j] = scale;
        } else {
            const RangeStats st = detail::blocked_reduce(
                begin, end, RangeStats{},
                [x](std::size_t lo, std::size_t hi) {
                    RangeStats r;
                    unsigned nonfinite = 0;
                    for (std::size_t i = lo; i < hi; ++i) {
                        const float a = std::fabs(x[i]);
                        nonfinite |= detail::not_finite(a) ? 1u : 0u;
                        r.max_abs = a > r.max_abs ? a : r.max_abs;
                    }
                    r.bad = nonfinite != 0;
                    return r;
                },
                detail::combine_stats);
            bad.fetch_or(st.bad ? 1 : 0, std::memory_order_relaxed);
            scales[j] = st.max_abs;
        }
    });
    LAQ_CHECK(!(bad.load() & 1), name << " contains NaN or Inf");
    LAQ_CHECK_RANGE(!(bad.load() & 2),
                    "the L2 norm of a bucket of "
                        << name << " overflows float32; use norm='max' or rescale the input");
}

void qsgd_encode(const float* x, std::size_t n, int levels, std::size_t bucket_size,
                 const float* scales, std::uint64_t key, std::uint8_t* packed) {
    const int bits = qsgd_code_bits(levels);
    qsgd_num_buckets(n, bucket_size);            // validates bucket_size
    const auto codes_of = kernels().qsgd_codes;  // SIMD level chosen at run time
    detail::encode_packed(n, bits, packed,
                          [&](std::size_t begin, std::size_t end, std::uint8_t* codes) {
                              codes_of(x, begin, end, n, scales, bucket_size, levels, key, codes);
                          });
}

namespace detail {

// The scalar reference of the code loop (KernelTable::qsgd_codes).
void qsgd_codes_scalar(const float* x, std::size_t begin, std::size_t end, std::size_t n,
                       const float* scales, std::size_t bucket_size, int levels, std::uint64_t key,
                       std::uint8_t* codes) {
    const float s = static_cast<float>(levels);
    std::size_t j = begin / bucket_size;
    std::size_t j_end = bucket_end(j, bucket_size, n);
    float scale = scales[j];
    for (std::size_t i = begin; i < end; ++i) {
        if (i == j_end) {
            ++j;
            j_end = bucket_end(j, bucket_size, n);
            scale = scales[j];
        }
        codes[i - begin] = qsgd_code(x[i], scale, s, levels, uniform01(key, i));
    }
}

}  // namespace detail

void qsgd_quantize(const float* x, std::size_t n, int levels, std::size_t bucket_size,
                   QsgdNorm norm, std::uint64_t key, float* scales, std::uint8_t* packed,
                   const char* name) {
    qsgd_code_bits(levels);  // reject bad levels before reading the data
    qsgd_scales(x, n, bucket_size, norm, scales, name);
    qsgd_encode(x, n, levels, bucket_size, scales, key, packed);
}

void qsgd_dequantize(const std::uint8_t* packed, const float* scales, std::size_t n, int levels,
                     std::size_t bucket_size, float* out) {
    const int bits = qsgd_code_bits(levels);
    const std::size_t nb = qsgd_num_buckets(n, bucket_size);
    for (std::size_t j = 0; j < nb; ++j) {
        LAQ_CHECK(std::isfinite(scales[j]) && scales[j] >= 0.0f,
                  "corrupt QSGD payload: scale of bucket " << j << " is " << scales[j]
                                                           << " (must be finite and >= 0)");
    }
    const float s = static_cast<float>(levels);
    const auto max_level = static_cast<unsigned>(levels);
    detail::decode_packed(
        packed, n, bits, [&](std::size_t begin, std::size_t end, const std::uint8_t* codes) {
            unsigned worst = 0;
            // One bucket's run of the chunk at a time: the inner loop has no bucket test, so
            // the compiler vectorises it (per element the same operations as before).
            for (std::size_t i = begin; i < end;) {
                const std::size_t j = i / bucket_size;
                const std::size_t stop = std::min(end, bucket_end(j, bucket_size, n));
                const float scale = scales[j];
                const float step = scale / s;
                const std::uint8_t* c_at = codes + (i - begin);
                float* out_at = out + i;
                const std::size_t m = stop - i;
                for (std::size_t k = 0; k < m; ++k) {
                    const unsigned c = c_at[k];
                    const unsigned level = c >> 1;
                    worst = level > worst ? level : worst;
                    // level * (scale / s) <= scale in exact arithmetic; the rounded product
                    // can exceed it (to inf for scale near FLT_MAX): clamp, so a valid frame
                    // never decodes to a non-finite value.
                    const float prod = static_cast<float>(level) * step;
                    const float v = prod < scale ? prod : scale;
                    out_at[k] = (c & 1u) ? -v : v;
                }
                i = stop;
            }
            // Thrown inside a chunk: for_each_chunk carries it out of the parallel region.
            LAQ_CHECK(worst <= max_level, "corrupt QSGD payload: a code has level "
                                              << worst << " but levels = " << levels);
        });
}

}  // namespace laqcore
