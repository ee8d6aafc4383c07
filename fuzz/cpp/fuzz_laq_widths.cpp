// libFuzzer harness: LAQ with a width per block (cpp/include/laqcore/laq_widths.hpp), the
// decoders a server runs on a LAQ_WIDTHS body a worker sent, and the quantizer.
//
// Input: byte 0 = mode (bit 0) and the width table ((byte0 >> 1) % 3: {0,2,3,4}, {0,1,2,8},
// {0,3,5,6}); byte 1 = block (8 * (1 + byte1 % 8)) and, in quantize mode, the budget
// ((byte1 >> 3) % 4: 0, 1e-3, 1, +inf); bytes 2..5 = R_max as raw float32 bits (NaN, Inf,
// negative, subnormal reachable); bytes 6..7 = n - 1 (uint16, decode mode).
//   * decode mode: the rest is a body. laq_widths_check either refuses it with
//     std::invalid_argument or accepts it; then the fields give each block's width (from the
//     table) and radius (0 for a block not sent), the decoded dQ is finite, 0 outside the
//     blocks sent and within each block's radius, the accumulate (weight 1) into zeros equals
//     the dequantize, and innov_sq is the sequential sum of the squares.
//   * quantize mode: the rest is a float32 gradient (prev = 0, cap 0.3). Non-finite input is
//     refused; otherwise the body passes the check, dQ is within the block grid's half step
//     of g in every block sent (plus float32 rounding), and innov_sq matches the decoder's.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "fuzz_common.hpp"
#include "laqcore/laq_widths.hpp"

using laqcore_fuzz::require;

namespace {

constexpr laqcore::LaqWidthsTable kTables[3] = {{{0, 2, 3, 4}}, {{0, 1, 2, 8}}, {{0, 3, 5, 6}}};

double sequential_sumsq(const std::vector<float>& x) {
    double total = 0.0;
    for (float v : x) total += static_cast<double>(v) * static_cast<double>(v);
    return total;
}

void fuzz_decode(const laqcore::LaqWidthsTable& table, std::size_t block, float r_max,
                 std::size_t n, const std::vector<std::uint8_t>& body) {
    try {
        laqcore::laq_widths_check(body.data(), body.size(), n, block, table, r_max);
    } catch (const std::invalid_argument&) {
        return;
    }
    const std::size_t nb = (n + block - 1) / block;
    std::vector<std::int8_t> widths(nb);
    std::vector<float> radii(nb);
    laqcore::laq_widths_fields(body.data(), n, block, table, r_max, widths.data(), radii.data());
    std::vector<float> dq(n), acc(n, 0.0f);
    laqcore::laq_widths_decode(body.data(), n, block, table, r_max, 1.0f, true, dq.data());
    laqcore::laq_widths_decode(body.data(), n, block, table, r_max, 1.0f, false, acc.data());
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t j = i / block;
        const int w = widths[j];
        require(w == 0 || w == table.w[1] || w == table.w[2] || w == table.w[3]);
        require(std::isfinite(dq[i]) && dq[i] == acc[i]);
        if (w == 0) {
            require(dq[i] == 0.0f && radii[j] == 0.0f);
        } else {
            require(radii[j] > 0.0f && std::fabs(dq[i]) <= radii[j]);
        }
    }
    const double innov = laqcore::laq_widths_innov_sq(body.data(), n, block, table, r_max);
    require(innov == sequential_sumsq(dq));
}

void fuzz_quantize(const laqcore::LaqWidthsTable& table, std::size_t block, double budget,
                   const std::vector<float>& g) {
    bool finite = true;
    for (float x : g) finite = finite && std::isfinite(x);
    laqcore::LaqWidthsResult r;
    try {
        r = laqcore::laq_quantize_widths(g.data(), nullptr, g.size(), block, table, budget, 0.3);
    } catch (const std::invalid_argument&) {
        require(!finite);
        return;
    }
    require(finite);
    const std::size_t n = g.size();
    laqcore::laq_widths_check(r.body.data(), r.body.size(), n, block, table, r.r_max);
    const std::size_t nb = (n + block - 1) / block;
    std::vector<std::int8_t> widths(nb);
    std::vector<float> radii(nb);
    laqcore::laq_widths_fields(r.body.data(), n, block, table, r.r_max, widths.data(),
                               radii.data());
    std::vector<float> dq(n);
    laqcore::laq_widths_decode(r.body.data(), n, block, table, r.r_max, 1.0f, true, dq.data());
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t j = i / block;
        const int w = widths[j];
        if (w == 0) continue;
        require(radii[j] >= std::fabs(g[i]));  // the block's radius covers it
        const double half_step = static_cast<double>(radii[j]) / ((1 << w) - 1);
        // float32 rounding of the grid table: relative, or one subnormal step for tiny radii
        const double slack = 1e-6 * static_cast<double>(radii[j]) + 0x1p-149;
        require(std::fabs(static_cast<double>(dq[i]) - g[i]) <= half_step + slack);
    }
    require(r.innov_sq == sequential_sumsq(dq));
    require(std::isfinite(r.err_sq) && r.err_sq >= 0.0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 8) return 0;
    const bool decode = (data[0] & 1u) == 0;
    const laqcore::LaqWidthsTable& table = kTables[(data[0] >> 1) % 3];
    const std::size_t block = 8 * (1 + static_cast<std::size_t>(data[1] % 8));
    const float r_max = laqcore_fuzz::load_float(data + 2);
    if (decode) {
        const std::size_t n =
            1 + (static_cast<std::size_t>(data[6]) | static_cast<std::size_t>(data[7]) << 8);
        fuzz_decode(table, block, r_max, n, std::vector<std::uint8_t>(data + 8, data + size));
        return 0;
    }
    constexpr double kBudgets[4] = {0.0, 1e-3, 1.0, HUGE_VAL};
    const std::size_t count = (size - 8) / sizeof(float);
    if (count == 0) return 0;
    std::vector<float> g(count);
    for (std::size_t i = 0; i < count; ++i) g[i] = laqcore_fuzz::load_float(data + 8 + 4 * i);
    fuzz_quantize(table, block, kBudgets[(data[1] >> 3) % 4], g);
    return 0;
}
