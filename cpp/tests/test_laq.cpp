// LAQ innovation quantizer (laq.hpp; docs/algorithms.md "LAQ innovation quantizer"): codes
// against the formula, the fused sums, the decoders, bad input and thread-count identity.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "laqcore/laq.hpp"
#include "laqcore/pack.hpp"
#include "laqcore/parallel.hpp"

namespace {

std::vector<float> normal(std::size_t n, unsigned seed, float scale = 1.0f) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(gen);
    return v;
}

struct Quantized {
    laqcore::LaqResult result;
    std::vector<std::uint8_t> packed;
};

Quantized quantize(const std::vector<float>& g, const std::vector<float>* prev, int bits) {
    Quantized q;
    q.packed.assign(laqcore::packed_size(g.size(), bits), 0);
    q.result = laqcore::laq_quantize(g.data(), prev ? prev->data() : nullptr, g.size(), bits,
                                     q.packed.data());
    return q;
}

}  // namespace

LAQ_TEST(codes_follow_the_formula) {
    const std::size_t n = 1000;
    const auto g = normal(n, 1);
    const auto prev = normal(n, 2, 0.5f);
    for (int bits = 1; bits <= 8; ++bits) {
        const auto q = quantize(g, &prev, bits);
        float radius = 0.0f;
        for (std::size_t i = 0; i < n; ++i) radius = std::max(radius, std::fabs(g[i] - prev[i]));
        CHECK_EQ(q.result.radius, radius);
        const int levels = (1 << bits) - 1;
        const double step = 2.0 * static_cast<double>(radius) / levels;
        std::vector<std::uint8_t> codes(n);
        laqcore::unpack_bits(q.packed.data(), n, bits, codes.data());
        int mismatches = 0;
        for (std::size_t i = 0; i < n; ++i) {
            const double v = static_cast<double>(g[i] - prev[i]);
            double c = std::floor((v + radius) / step + 0.5);
            c = std::min(std::max(c, 0.0), static_cast<double>(levels));
            mismatches += static_cast<int>(codes[i]) != static_cast<int>(c);
        }
        CHECK_EQ(mismatches, 0);
    }
}

LAQ_TEST(sums_match_the_decoded_innovation) {
    const std::size_t n = 5000;
    const auto g = normal(n, 3);
    const auto prev = normal(n, 4, 0.1f);
    const int bits = 4;
    const auto q = quantize(g, &prev, bits);
    std::vector<float> dq(n);
    laqcore::laq_dequantize(q.packed.data(), n, bits, q.result.radius, dq.data());
    double innov = 0.0, err = 0.0, max_err = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
        innov += static_cast<double>(dq[i]) * dq[i];
        const double e = static_cast<double>(prev[i] + dq[i]) - g[i];
        err += e * e;
        max_err = std::max(max_err, std::fabs(e));
    }
    // float32 lane sums (laq.hpp, "Arithmetic"): 313 terms per lane here, each rounding
    // once on the square and once on the addition, so within 630 * 2^-24 = 3.8e-5.
    CHECK_NEAR(q.result.innov_sq, innov, 4e-5 * innov);
    CHECK_NEAR(q.result.err_sq, err, 4e-5 * err + 1e-12);
    // |eps_i| <= tau R (half a grid step), up to float32 rounding of the reconstruction.
    const double half_step = q.result.radius / ((1 << bits) - 1);
    CHECK(max_err <= half_step * (1.0 + 1e-5));
    // ||dQ||^2 recomputed from the codes is the encoder's, bit for bit.
    CHECK_EQ(laqcore::laq_innov_sq(q.packed.data(), n, bits, q.result.radius), q.result.innov_sq);
}

LAQ_TEST(accumulate_adds_weighted_innovation) {
    const std::size_t n = 777;
    const auto g = normal(n, 5);
    const int bits = 3;
    const auto q = quantize(g, nullptr, bits);
    std::vector<float> dq(n), acc(n, 1.0f);
    laqcore::laq_dequantize(q.packed.data(), n, bits, q.result.radius, dq.data());
    laqcore::laq_accumulate(q.packed.data(), n, bits, q.result.radius, 1.0f, acc.data());
    int wrong = 0;
    for (std::size_t i = 0; i < n; ++i) wrong += acc[i] != 1.0f + dq[i];
    CHECK_EQ(wrong, 0);
}

LAQ_TEST(zero_innovation_gives_zero_codes) {
    const auto g = normal(100, 6);
    const auto q = quantize(g, &g, 4);
    CHECK_EQ(q.result.radius, 0.0f);
    CHECK_EQ(q.result.innov_sq, 0.0);
    bool all_zero = true;
    for (auto b : q.packed) all_zero = all_zero && b == 0;
    CHECK(all_zero);
}

LAQ_TEST(bad_input_is_refused) {
    auto g = normal(10, 7);
    std::vector<std::uint8_t> packed(10);
    CHECK_THROWS(laqcore::laq_quantize(g.data(), nullptr, 0, 4, packed.data()),
                 std::invalid_argument, "");
    CHECK_THROWS(laqcore::laq_quantize(g.data(), nullptr, 10, 9, packed.data()),
                 std::invalid_argument, "bits");
    g[3] = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS(laqcore::laq_quantize(g.data(), nullptr, 10, 4, packed.data()),
                 std::invalid_argument, "NaN or Inf");
    const float inf = std::numeric_limits<float>::infinity();
    CHECK_THROWS(laqcore::laq_check_payload(inf, 4, packed.data(), 10), std::invalid_argument, "");
    CHECK_THROWS(laqcore::laq_check_payload(-1.0f, 4, packed.data(), 10), std::invalid_argument,
                 "");
}

LAQ_TEST(identical_for_any_thread_count) {
    // Longer than the parallel threshold and several reduction blocks.
    const std::size_t n = laqcore::kMinParallel + 3 * laqcore::kReduceBlock + 5;
    const auto g = normal(n, 8);
    const auto prev = normal(n, 9, 0.3f);
    const int saved = laqcore::get_num_threads();
    laqcore::set_num_threads(1);
    const auto one = quantize(g, &prev, 5);
    laqcore::set_num_threads(4);
    const auto four = quantize(g, &prev, 5);
    laqcore::set_num_threads(saved);
    CHECK(one.packed == four.packed);
    CHECK(std::memcmp(&one.result.err_sq, &four.result.err_sq, sizeof(double)) == 0);
    CHECK(std::memcmp(&one.result.innov_sq, &four.result.innov_sq, sizeof(double)) == 0);
}

LAQ_TEST_MAIN()
