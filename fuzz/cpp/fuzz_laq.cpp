// libFuzzer harness: the LAQ decoders (what a server runs on bytes a worker sent) and the
// quantizer, against the formula of cpp/include/laqcore/laq.hpp.
//
// Input: byte 0 = mode (bit 0) and bits (1 + (byte0 >> 1) % 8); bytes 1..4 = radius as raw
// float32 bits (NaN, Inf, negative, subnormal all reachable).
//   * decode mode: the rest is a packed payload body. laq_check_payload must accept it iff
//     radius is finite and >= 0 and the padding bits are zero; then laq_dequantize must give
//     (float)(c * (2R / L) - R) for each code c (read bit by bit), laq_accumulate(weight 1)
//     into zeros must give the same vector, and laq_innov_sq its squared norm.
//   * quantize mode: byte 1 picks the block size, the rest is a float32 gradient. Non-finite
//     input must be refused with std::invalid_argument; otherwise every code must dequantize
//     to within tau * R of the gradient (plus float32 rounding of the table). The same input
//     is also quantized blockwise (block_size = 8 * (1 + byte1 % 8)): every block's radius is
//     its max |g|, every code within tau * R_j, and the blockwise dequantize, accumulate and
//     innov_sq agree with each other.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "fuzz_common.hpp"
#include "laqcore/laq.hpp"
#include "laqcore/pack.hpp"
#include "laqcore/parallel.hpp"  // kReduceBlock

using laqcore_fuzz::require;

namespace {

// How far laq.hpp's sums of squares may be from the exact sum of n terms (laq.hpp,
// "Arithmetic"): a lane adds at most kReduceBlock / kLaqSumLanes float32 terms, each square
// and each addition rounded once (relative 2^-24 each), and a scaled term below 2^-126
// (subnormal) may be off by 2^-149 before the unscale.
double square_sum_tolerance(std::size_t n, double exact, float radius) {
    using laqcore::kLaqSumLanes;
    const std::size_t per_lane =
        (std::min(n, laqcore::kReduceBlock) + kLaqSumLanes - 1) / kLaqSumLanes;
    const double relative = static_cast<double>(per_lane + 2) * 0x1p-24;
    const double subnormal = static_cast<double>(n) * 0x1p-148;
    return relative * exact + subnormal * laqcore::laq_sum_scale(radius).unscale;
}

void fuzz_decode(int bits, float radius, const std::vector<std::uint8_t>& packed) {
    const std::size_t n = laqcore_fuzz::codes_for_exact_size(packed.size(), bits);
    if (n == 0 || n == SIZE_MAX) return;
    const bool valid =
        std::isfinite(radius) && radius >= 0.0f &&
        laqcore_fuzz::reference_padding_is_zero(packed.data(), packed.size(), n, bits);
    try {
        laqcore::laq_check_payload(radius, bits, packed.data(), n);
    } catch (const std::invalid_argument&) {
        require(!valid);
        return;
    }
    require(valid);

    std::vector<float> out(n);
    laqcore::laq_dequantize(packed.data(), n, bits, radius, out.data());
    const double levels = static_cast<double>((1u << bits) - 1u);
    const double step = 2.0 * static_cast<double>(radius) / levels;
    // ||dQ||^2 by Neumaier's compensated summation (error ~2 ulp of the sum, whatever n;
    // a 36904-code input once made a plain serial reference, not the kernel, wrong). Each
    // square of a float is exact in double, so the sum is the only rounding.
    double sumsq = 0.0;
    double carry = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
        const double c = laqcore_fuzz::reference_code(packed.data(), i, bits);
        const auto want = static_cast<float>(c * step - static_cast<double>(radius));
        require(out[i] == want || (radius == 0.0f && out[i] == 0.0f));
        const double term = static_cast<double>(out[i]) * static_cast<double>(out[i]);
        const double t = sumsq + term;
        carry += std::fabs(sumsq) >= term ? (sumsq - t) + term : (term - t) + sumsq;
        sumsq = t;
    }
    sumsq += carry;

    std::vector<float> acc(n, 0.0f);
    laqcore::laq_accumulate(packed.data(), n, bits, radius, 1.0f, acc.data());
    for (std::size_t i = 0; i < n; ++i) require(acc[i] == out[i] || (acc[i] == 0 && out[i] == 0));

    const double innov = laqcore::laq_innov_sq(packed.data(), n, bits, radius);
    require(std::fabs(innov - sumsq) <= square_sum_tolerance(n, sumsq, radius));
}

void fuzz_quantize_blocks(int bits, std::size_t block, const std::vector<float>& grad) {
    const std::size_t n = grad.size();
    std::vector<std::uint8_t> packed(laqcore::packed_size(n, bits));
    std::vector<float> radii(laqcore::laq_num_radii(n, block));
    const laqcore::LaqResult res = laqcore::laq_quantize_blocks(grad.data(), nullptr, n, bits,
                                                                block, radii.data(), packed.data());
    std::vector<float> dq(n);
    laqcore::laq_dequantize_blocks(packed.data(), n, bits, block, radii.data(), dq.data());
    std::vector<float> acc(n, 0.0f);
    laqcore::laq_accumulate_blocks(packed.data(), n, bits, block, radii.data(), 1.0f, acc.data());
    double sumsq = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t j = i / block;
        double r_j = 0.0;
        for (std::size_t k = j * block; k < std::min(n, (j + 1) * block); ++k)
            r_j = std::max(r_j, std::fabs(static_cast<double>(grad[k])));
        require(static_cast<double>(radii[j]) == r_j);
        const double tol = r_j / static_cast<double>((1u << bits) - 1u) + 1e-6 * r_j + 1e-44;
        require(std::fabs(static_cast<double>(dq[i]) - static_cast<double>(grad[i])) <= tol);
        require(acc[i] == dq[i] || (acc[i] == 0 && dq[i] == 0));
        sumsq += static_cast<double>(dq[i]) * static_cast<double>(dq[i]);
    }
    const double innov = laqcore::laq_innov_sq_blocks(packed.data(), n, bits, block, radii.data());
    require(innov == res.innov_sq);  // the decoder reproduces the encoder's sum exactly
    const float r_max = *std::max_element(radii.begin(), radii.end());
    require(std::fabs(innov - sumsq) <= square_sum_tolerance(n, sumsq, r_max));
}

void fuzz_quantize(int bits, std::uint8_t block_byte, const std::uint8_t* data, std::size_t size) {
    const std::size_t n = size / sizeof(float);
    if (n == 0) return;
    std::vector<float> grad(n);
    bool finite = true;
    for (std::size_t i = 0; i < n; ++i) {
        grad[i] = laqcore_fuzz::load_float(data + 4 * i);
        finite = finite && std::isfinite(grad[i]);
    }
    std::vector<std::uint8_t> packed(laqcore::packed_size(n, bits));
    laqcore::LaqResult res;
    try {
        res = laqcore::laq_quantize(grad.data(), nullptr, n, bits, packed.data());
    } catch (const std::invalid_argument&) {
        require(!finite);
        return;
    }
    require(finite);
    std::vector<float> dq(n);
    laqcore::laq_dequantize(packed.data(), n, bits, res.radius, dq.data());
    const double r = res.radius;
    const double tol = r / static_cast<double>((1u << bits) - 1u) + 1e-6 * r + 1e-44;
    for (std::size_t i = 0; i < n; ++i) {
        require(std::fabs(static_cast<double>(grad[i])) <= r);
        require(std::fabs(static_cast<double>(dq[i]) - static_cast<double>(grad[i])) <= tol);
    }
    fuzz_quantize_blocks(bits, 8 * (1 + static_cast<std::size_t>(block_byte) % 8), grad);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 5) return 0;
    const bool quantize_mode = data[0] & 1u;
    const int bits = 1 + (data[0] >> 1) % 8;
    if (quantize_mode) {
        fuzz_quantize(bits, data[1], data + 2, size - 2);
        return 0;
    }
    const float radius = laqcore_fuzz::load_float(data + 1);
    const std::vector<std::uint8_t> packed(data + 5, data + size);
    fuzz_decode(bits, radius, packed);
    return 0;
}
