// The lazy upload rule's native pieces (lazy_rule.hpp; docs/algorithms.md "Lazy upload rule"):
// the iterate-difference history, its weights and right-hand side, squared distances.
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "laqcore/lazy_rule.hpp"

using laqcore::IterateHistory;

LAQ_TEST(explicit_weights_most_recent_first) {
    IterateHistory h(3, {1.0, 2.0, 3.0}, 0.0, 0);
    h.push(10.0);
    h.push(20.0);
    h.push(30.0);
    // xi_1 * diff_1 (the latest, 30) + xi_2 * 20 + xi_3 * 10
    CHECK_EQ(h.weighted_sum(), 1.0 * 30.0 + 2.0 * 20.0 + 3.0 * 10.0);
    h.push(40.0);  // the oldest (10) drops out
    CHECK_EQ(h.weighted_sum(), 1.0 * 40.0 + 2.0 * 30.0 + 3.0 * 20.0);
    CHECK_EQ(h.size(), std::size_t{3});
    CHECK_EQ(h.count(), std::uint64_t{4});
    // (1 / (alpha^2 M^2)) * sum: alpha = 0.5, M = 2 -> factor 1.
    CHECK_EQ(h.rhs(0.5, 2), h.weighted_sum());
    CHECK_EQ(h.rhs(0.25, 2), 4.0 * h.weighted_sum());
}

LAQ_TEST(official_schedule_warm_up_then_ck_over_d) {
    IterateHistory h(10, {}, 0.8, 0);
    for (int k = 1; k <= 3; ++k) h.push(1.0);
    CHECK_NEAR(h.weight(1), 0.8 / 3.0, 1e-15);  // warm-up: ck / k
    CHECK_EQ(h.weight(4), 0.0);                 // nothing pushed that far back
    for (int k = 4; k <= 25; ++k) h.push(1.0);
    CHECK_NEAR(h.weight(1), 0.08, 1e-15);  // steady state: ck / D
    CHECK_NEAR(h.weighted_sum(), 0.8, 1e-12);
}

LAQ_TEST(num_terms_limits_the_sum) {
    IterateHistory h(4, {}, 0.8, 3);  // SLAQ: d = 1..D-1
    for (int k = 0; k < 10; ++k) h.push(1.0);
    CHECK_EQ(h.weight(4), 0.0);
    CHECK_NEAR(h.weighted_sum(), 3 * 0.8 / 4, 1e-12);
}

LAQ_TEST(restore_reproduces_a_saved_history) {
    IterateHistory a(5, {}, 0.8, 0);
    for (int k = 1; k <= 7; ++k) a.push(0.1 * k);
    IterateHistory b(5, {}, 0.8, 0);
    b.restore(a.recent(), a.count());
    CHECK_EQ(b.weighted_sum(), a.weighted_sum());
    CHECK(b.recent() == a.recent());
}

LAQ_TEST(bad_input_is_refused) {
    CHECK_THROWS(IterateHistory(0, {}, 0.8, 0), std::invalid_argument, "");
    CHECK_THROWS(IterateHistory(3, {1.0, 2.0}, 0.8, 0), std::invalid_argument, "");
    IterateHistory h(3, {}, 0.8, 0);
    CHECK_THROWS(h.push(-1.0), std::invalid_argument, "");
    CHECK_THROWS(h.rhs(0.0, 1), std::invalid_argument, "alpha");
    CHECK_THROWS(h.rhs(0.1, 0), std::invalid_argument, "num_workers");
}

LAQ_TEST(squared_distance_float_and_double) {
    const std::vector<float> a = {1.0f, 2.0f, 3.0f};
    const std::vector<float> b = {1.5f, 0.0f, 3.0f};
    CHECK_EQ(laqcore::squared_distance(a.data(), b.data(), 3), 0.25 + 4.0);
    const std::vector<double> c = {1.0, -1.0};
    const std::vector<double> d = {0.0, 1.0};
    CHECK_EQ(laqcore::squared_distance(c.data(), d.data(), 2), 1.0 + 4.0);
}

LAQ_TEST(segment_squares_per_segment) {
    const std::vector<float> a = {1.0f, 2.0f, 3.0f, -1.0f, 0.5f};
    const std::vector<float> b = {1.5f, 0.0f, 3.0f, 1.0f, 0.5f};
    const std::vector<std::int64_t> offsets = {0, 2, 2, 5};  // an empty middle segment
    std::vector<double> dist(3, -1.0), norm(3, -1.0);
    laqcore::segment_squares(a.data(), b.data(), offsets.data(), 3, dist.data(), norm.data());
    CHECK_EQ(dist[0], 0.25 + 4.0);
    CHECK_EQ(norm[0], 1.0 + 4.0);
    CHECK_EQ(dist[1], 0.0);
    CHECK_EQ(norm[1], 0.0);
    CHECK_EQ(dist[2], laqcore::squared_distance(a.data() + 2, b.data() + 2, 3));
    CHECK_EQ(norm[2], 9.0 + 1.0 + 0.25);
    std::vector<float> bad = a;
    bad[3] = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS(
        laqcore::segment_squares(bad.data(), b.data(), offsets.data(), 3, dist.data(), norm.data()),
        std::invalid_argument, "a contains NaN or Inf (first at index 3)");
}

LAQ_TEST(add_scaled_rounds_the_product_first) {
    // (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24 rounds (to even) to 1 + 2^-11 in float32; added to -1
    // that gives 2^-11. A fused multiply-add would keep the product exact: 2^-11 + 2^-24.
    const float e = std::ldexp(1.0f, -12);
    std::vector<float> inout = {-1.0f, 2.0f, -3.0f, 0.0f};
    const std::vector<float> x = {1.0f + e, 4.0f, 0.5f, -1.0f};
    laqcore::add_scaled(inout.data(), x.data(), 1.0f + e, 1);
    CHECK_EQ(inout[0], std::ldexp(1.0f, -11));
    CHECK_EQ(inout[1], 2.0f);  // n = 1: only the first element
    laqcore::add_scaled(inout.data() + 1, x.data() + 1, 0.5f, 3);
    CHECK_EQ(inout[1], 4.0f);
    CHECK_EQ(inout[2], -2.75f);
    CHECK_EQ(inout[3], -0.5f);
    laqcore::add_scaled(inout.data(), x.data(), 0.5f, 0);  // n = 0: nothing written
    CHECK_EQ(inout[1], 4.0f);
}

LAQ_TEST(add_scaled_difference_rounds_each_step) {
    // a - b = (1 + 2^-12) exactly; times (1 + 2^-12) rounds to 1 + 2^-11 as above, so with
    // x = -1 the result is 2^-11 (a fused multiply-add would give 2^-11 + 2^-24).
    const float e = std::ldexp(1.0f, -12);
    std::vector<float> out = {7.0f, 7.0f, 7.0f};
    const std::vector<float> x = {-1.0f, 1.0f, 0.0f};
    const std::vector<float> a = {3.0f + e, 2.0f, 1.0f};
    const std::vector<float> b = {2.0f, 4.0f, 0.5f};
    laqcore::add_scaled_difference(out.data(), x.data(), a.data(), b.data(), 1.0f + e, 1);
    CHECK_EQ(out[0], std::ldexp(1.0f, -11));
    CHECK_EQ(out[1], 7.0f);  // n = 1: only the first element
    laqcore::add_scaled_difference(out.data() + 1, x.data() + 1, a.data() + 1, b.data() + 1, 0.5f,
                                   2);
    CHECK_EQ(out[1], 0.0f);        // 1 + 0.5 (2 - 4)
    CHECK_EQ(out[2], 0.25f);       // 0 + 0.5 (1 - 0.5)
    std::vector<float> inout = x;  // out may be x itself
    laqcore::add_scaled_difference(inout.data(), inout.data(), a.data(), b.data(), 0.5f, 3);
    CHECK_EQ(inout[1], 0.0f);
}

LAQ_TEST_MAIN()
