#include "laqcore/sign.hpp"

#include <cmath>

#include "compress_common.hpp"
#include "laqcore/common.hpp"
#include "laqcore/pack.hpp"

namespace laqcore {

float sign_compress(const float* x, std::size_t n, std::uint8_t* packed, const char* name) {
    LAQ_CHECK(n >= 1, name << " must not be empty");
    // One pass: each reduction block (kReduceBlock, a multiple of kCodeChunk) packs its sign
    // bits chunk by chunk and returns its sum of |x|; blocks fold in order (deterministic).
    static_assert(kReduceBlock % detail::kCodeChunk == 0, "blocks must hold whole chunks");
    const detail::RangeStats st = detail::blocked_reduce(
        0, n, detail::RangeStats{},
        [x, packed](std::size_t lo, std::size_t hi) {
            detail::RangeStats r;
            unsigned nonfinite = 0;
            std::uint8_t codes[detail::kCodeChunk];
            for (std::size_t c = lo; c < hi; c += detail::kCodeChunk) {
                const std::size_t c_end = c + detail::kCodeChunk < hi ? c + detail::kCodeChunk : hi;
                for (std::size_t i = c; i < c_end; ++i) {
                    const float a = std::fabs(x[i]);
                    nonfinite |= detail::not_finite(a) ? 1u : 0u;
                    r.sum += static_cast<double>(a);
                    codes[i - c] = x[i] < 0.0f ? 1 : 0;
                }
                pack_bits(codes, c_end - c, 1, packed + c / 8);
            }
            r.bad = nonfinite != 0;
            return r;
        },
        detail::combine_stats);
    LAQ_CHECK(!st.bad, name << " contains NaN or Inf");
    return static_cast<float>(st.sum / static_cast<double>(n));
}

void sign_decompress(const std::uint8_t* packed, std::size_t n, float scale, float* out) {
    LAQ_CHECK(std::isfinite(scale) && scale >= 0.0f,
              "corrupt sign payload: scale is " << scale << " (must be finite and >= 0)");
    const float table[2] = {scale, -scale};
    detail::decode_packed(packed, n, 1,
                          [&](std::size_t begin, std::size_t end, const std::uint8_t* codes) {
        for (std::size_t i = begin; i < end; ++i) out[i] = table[codes[i - begin]];
    });
}

}  // namespace laqcore
