// The per-round compressors' kernels (qsgd.hpp, terngrad.hpp, sign.hpp, sparse.hpp;
// docs/algorithms.md "QSGD", "TernGrad", "Sign, sparsifiers, error feedback") and the
// counter RNG (rng.hpp): formulas, determinism, unbiasedness, bad input.
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "laqcore/pack.hpp"
#include "laqcore/qsgd.hpp"
#include "laqcore/rng.hpp"
#include "laqcore/sign.hpp"
#include "laqcore/sparse.hpp"
#include "laqcore/terngrad.hpp"

namespace {
std::vector<float> normal(std::size_t n, unsigned seed) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(gen);
    return v;
}
}  // namespace

LAQ_TEST(rng_is_counter_based_and_in_range) {
    const auto key = laqcore::make_key(1, 2, 3);
    CHECK_EQ(key, laqcore::make_key(1, 2, 3));
    CHECK(key != laqcore::make_key(1, 2, 4));
    for (std::uint64_t i = 0; i < 1000; ++i) {
        const float u = laqcore::uniform01(key, i);
        CHECK(u >= 0.0f && u < 1.0f);
        CHECK_EQ(laqcore::random_bits(key, i), laqcore::random_bits(key, i));
    }
}

LAQ_TEST(qsgd_round_trip_is_unbiased_and_bounded) {
    const std::size_t n = 512;
    const int levels = 7;
    const auto x = normal(n, 11);
    const int bits = laqcore::qsgd_code_bits(levels);
    CHECK_EQ(bits, 4);  // 1 sign bit + ceil(log2(8))
    std::vector<float> scales(laqcore::qsgd_num_buckets(n, 128));
    std::vector<std::uint8_t> packed(laqcore::packed_size(n, bits));
    std::vector<double> mean(n, 0.0);
    std::vector<float> out(n);
    const int trials = 400;
    for (int t = 0; t < trials; ++t) {
        laqcore::qsgd_quantize(x.data(), n, levels, 128, laqcore::QsgdNorm::kL2,
                               laqcore::make_key(0, static_cast<std::uint64_t>(t), 0),
                               scales.data(), packed.data());
        laqcore::qsgd_dequantize(packed.data(), scales.data(), n, levels, 128, out.data());
        for (std::size_t i = 0; i < n; ++i) {
            const std::size_t bucket = i / 128;
            // |x_hat_i| is one of the neighbouring levels of |x_i| * s / scale.
            CHECK(std::fabs(out[i] - x[i]) <= scales[bucket] / levels * 1.0001f);
            mean[i] += out[i];
        }
    }
    // Unbiased: each average is within 5 standard errors of x_i (one draw's standard
    // deviation is at most half a level step, scale / (2 s)).
    int outliers = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const double step = static_cast<double>(scales[i / 128]) / levels;
        const double tol = 5.0 * 0.5 * step / std::sqrt(static_cast<double>(trials));
        outliers += std::fabs(mean[i] / trials - static_cast<double>(x[i])) > tol;
    }
    CHECK_EQ(outliers, 0);
    CHECK_THROWS(laqcore::qsgd_code_bits(0), std::invalid_argument, "");
    CHECK_THROWS(laqcore::qsgd_code_bits(128), std::invalid_argument, "");
}

LAQ_TEST(terngrad_values_are_zero_or_plus_minus_scaler) {
    const std::size_t n = 1000;
    const auto x = normal(n, 12);
    std::vector<std::uint8_t> packed(laqcore::packed_size(n, 2));
    const float s = laqcore::terngrad_quantize(x.data(), n, 0.0f, -1.0f, laqcore::make_key(3, 0, 0),
                                               packed.data());
    float max_abs = 0.0f;
    for (float v : x) max_abs = std::max(max_abs, std::fabs(v));
    CHECK_EQ(s, max_abs);  // no clipping: the scaler is max |x|
    std::vector<float> out(n);
    laqcore::terngrad_dequantize(packed.data(), n, s, out.data());
    int bad = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const bool ok = out[i] == 0.0f || (out[i] == s && x[i] > 0) || (out[i] == -s && x[i] < 0);
        bad += !ok;
    }
    CHECK_EQ(bad, 0);
    // A shared scaler below the local one would make probabilities exceed 1: refused.
    CHECK_THROWS(laqcore::terngrad_quantize(x.data(), n, 0.0f, 0.5f * s, 1, packed.data()),
                 std::invalid_argument, "shared scaler");
}

LAQ_TEST(sign_scale_is_mean_magnitude) {
    const std::vector<float> x = {1.0f, -2.0f, 3.0f, -4.0f, 0.0f};
    std::vector<std::uint8_t> packed(laqcore::packed_size(x.size(), 1));
    const float scale = laqcore::sign_compress(x.data(), x.size(), packed.data());
    CHECK_NEAR(scale, 10.0 / 5.0, 1e-6);
    std::vector<float> out(x.size());
    laqcore::sign_decompress(packed.data(), x.size(), scale, out.data());
    const float expect[5] = {2.0f, -2.0f, 2.0f, -2.0f, 2.0f};  // zero is sent as +
    for (std::size_t i = 0; i < x.size(); ++i) CHECK_EQ(out[i], expect[i]);
}

LAQ_TEST(topk_keeps_the_largest_magnitudes_sorted) {
    const std::vector<float> x = {0.1f, -5.0f, 3.0f, 0.0f, -3.0f, 4.0f};
    std::vector<std::uint32_t> idx(3);
    std::vector<float> values(3);
    laqcore::topk_select(x.data(), x.size(), 3, idx.data(), values.data());
    // |x| = 0.1 5 3 0 3 4: the top three are 5, 4 and one 3 (ties to the lower index: 2).
    CHECK(idx == (std::vector<std::uint32_t>{1, 2, 5}));
    CHECK(values == (std::vector<float>{-5.0f, 3.0f, 4.0f}));
    std::vector<float> dense(x.size());
    laqcore::sparse_scatter(idx.data(), values.data(), 3, x.size(), dense.data());
    CHECK(dense == (std::vector<float>{0.0f, -5.0f, 3.0f, 0.0f, 0.0f, 4.0f}));
    const std::uint32_t unsorted[2] = {3, 1};
    CHECK_THROWS(laqcore::check_sparse_indices(unsorted, 2, 6), std::invalid_argument, "");
}

LAQ_TEST(randk_is_deterministic_per_key) {
    const auto x = normal(100, 13);
    std::vector<std::uint32_t> a(10), b(10), c(10);
    std::vector<float> va(10), vb(10), vc(10);
    laqcore::randk_select(x.data(), 100, 10, 42, a.data(), va.data());
    laqcore::randk_select(x.data(), 100, 10, 42, b.data(), vb.data());
    laqcore::randk_select(x.data(), 100, 10, 43, c.data(), vc.data());
    CHECK(a == b);
    CHECK(a != c);
    laqcore::check_sparse_indices(a.data(), 10, 100);  // strictly increasing, in range
    for (std::size_t j = 0; j < 10; ++j) CHECK_EQ(va[j], x[a[j]]);
}

LAQ_TEST_MAIN()
