// The randomized Hadamard rotation (rotation.hpp; docs/algorithms.md "Rotation quantizer"):
// the transform against the Sylvester matrix written out, the forward rotation against its
// formula, orthogonality, identical results for any thread count, bad input.
#include <bitset>
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "laqcore/parallel.hpp"
#include "laqcore/rng.hpp"
#include "laqcore/rotation.hpp"

namespace {

// Small integers: every sum of the transform is exact in float32, so any order of the
// butterflies must give exactly the matrix product.
std::vector<float> small_ints(std::size_t n, unsigned seed) {
    std::mt19937 gen(seed);
    std::uniform_int_distribution<int> dist(-3, 3);
    std::vector<float> v(n);
    for (auto& x : v) x = static_cast<float>(dist(gen));
    return v;
}

// H_N x with H[i][j] = (-1)^popcount(i & j) (the Sylvester construction), in double.
std::vector<double> hadamard_times(const std::vector<float>& x) {
    const std::size_t N = x.size();
    std::vector<double> y(N, 0.0);
    for (std::size_t i = 0; i < N; ++i) {
        double acc = 0.0;
        for (std::size_t j = 0; j < N; ++j) {
            const bool odd = std::bitset<64>(i & j).count() % 2 != 0;
            acc += (odd ? -1.0 : 1.0) * x[j];
        }
        y[i] = acc;
    }
    return y;
}

// d_i of the header: -1 iff bit (i mod 64) of random_bits(key, i / 64) is set.
float sign_of(std::uint64_t key, std::size_t i) {
    return ((laqcore::random_bits(key, i / 64) >> (i % 64)) & 1u) != 0 ? -1.0f : 1.0f;
}

double norm(const std::vector<float>& v, std::size_t n) {
    double s = 0.0;
    for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(v[i]) * v[i];
    return std::sqrt(s);
}

}  // namespace

LAQ_TEST(padded_size_is_the_next_power_of_two) {
    CHECK_EQ(laqcore::rotation_padded_size(1), std::size_t{1});
    CHECK_EQ(laqcore::rotation_padded_size(2), std::size_t{2});
    CHECK_EQ(laqcore::rotation_padded_size(3), std::size_t{4});
    CHECK_EQ(laqcore::rotation_padded_size(4096), std::size_t{4096});
    CHECK_EQ(laqcore::rotation_padded_size(4097), std::size_t{8192});
    CHECK_THROWS(laqcore::rotation_padded_size(0), std::invalid_argument, "non-empty");
    CHECK_THROWS(laqcore::rotation_padded_size((std::size_t{1} << 62) + 1), std::invalid_argument,
                 "too long");
}

LAQ_TEST(fwht_is_the_sylvester_matrix_product) {
    // 2 * kFwhtBlock: the stages across blocks run too.
    for (std::size_t N : {std::size_t{1}, std::size_t{2}, std::size_t{8}, std::size_t{64},
                          2 * laqcore::kFwhtBlock}) {
        std::vector<float> x = small_ints(N, static_cast<unsigned>(N));
        const std::vector<double> want = hadamard_times(x);
        laqcore::fwht(x.data(), N);
        bool same = true;
        for (std::size_t i = 0; i < N; ++i) same = same && static_cast<double>(x[i]) == want[i];
        CHECK(same);
    }
    std::vector<float> x(12, 1.0f);
    CHECK_THROWS(laqcore::fwht(x.data(), 12), std::invalid_argument, "power-of-two");
}

LAQ_TEST(forward_is_the_formula_and_inverse_undoes_it) {
    const std::uint64_t key = laqcore::make_key(5, 7, 1);
    for (std::size_t n : {std::size_t{1}, std::size_t{5}, std::size_t{1000}, std::size_t{5000}}) {
        const std::vector<float> x = small_ints(n, static_cast<unsigned>(n) + 1);
        const std::size_t N = laqcore::rotation_padded_size(n);
        // (1/sqrt(N)) H_N D x': the signed, padded vector's exact transform, one rounding by s.
        std::vector<float> signed_x(N, 0.0f);
        for (std::size_t i = 0; i < n; ++i) signed_x[i] = sign_of(key, i) * x[i];
        const std::vector<double> hx = hadamard_times(signed_x);
        const float s = static_cast<float>(1.0 / std::sqrt(static_cast<double>(N)));
        std::vector<float> y(N);
        laqcore::rotation_forward(x.data(), n, key, y.data());
        bool same = true;
        for (std::size_t i = 0; i < N; ++i) same = same && y[i] == static_cast<float>(hx[i]) * s;
        CHECK(same);
        CHECK_NEAR(norm(y, N), norm(x, n), 1e-5 * (1.0 + norm(x, n)));  // orthogonal
        std::vector<float> back(n);
        laqcore::rotation_inverse(y.data(), n, key, back.data());
        double err = 0.0;
        for (std::size_t i = 0; i < n; ++i) err = std::fmax(err, std::fabs(back[i] - x[i]));
        CHECK(err <= 1e-5);
    }
}

LAQ_TEST(same_result_for_any_thread_count) {
    const int threads = laqcore::get_num_threads();
    const std::size_t n = 3 * laqcore::kMinParallel + 11;  // parallel, several blocks
    const std::size_t N = laqcore::rotation_padded_size(n);
    std::mt19937 gen(9);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> x(n);
    for (auto& v : x) v = dist(gen);
    const std::uint64_t key = laqcore::make_key(1, 2, 3);
    laqcore::set_num_threads(1);
    std::vector<float> want(N), want_back(n);
    laqcore::rotation_forward(x.data(), n, key, want.data());
    std::vector<float> scratch(want);
    laqcore::rotation_inverse(scratch.data(), n, key, want_back.data());
    for (int t : {2, 3}) {
        laqcore::set_num_threads(t);
        std::vector<float> y(N), back(n);
        laqcore::rotation_forward(x.data(), n, key, y.data());
        CHECK(y == want);
        laqcore::rotation_inverse(y.data(), n, key, back.data());
        CHECK(back == want_back);
    }
    laqcore::set_num_threads(threads);
}

LAQ_TEST(non_finite_input_is_rejected) {
    std::vector<float> x(100, 1.0f), y(128);
    x[77] = std::nanf("");
    CHECK_THROWS(laqcore::rotation_forward(x.data(), 100, 1, y.data()), std::invalid_argument,
                 "x contains NaN or Inf");
    x[77] = INFINITY;
    CHECK_THROWS(laqcore::rotation_forward(x.data(), 100, 1, y.data()), std::invalid_argument,
                 "NaN or Inf");
}

LAQ_TEST(input_beyond_the_float32_range_of_the_sums_is_an_overflow_error) {
    // N = 128: the limit is FLT_MAX / 128^1.5; just below it the rotation and its inverse
    // stay finite, just above it the forward rotation throws.
    const double limit = laqcore::rotation_input_limit(128);
    CHECK(limit > 2.3e35 && limit < 2.4e35);
    std::vector<float> x(100, 1.0f), y(128), back(100);
    x[3] = static_cast<float>(0.999 * limit);
    laqcore::rotation_forward(x.data(), 100, 1, y.data());
    for (float v : y) CHECK(std::isfinite(v));
    laqcore::rotation_inverse(y.data(), 100, 1, back.data());
    for (float v : back) CHECK(std::isfinite(v));
    x[3] = static_cast<float>(-1.001 * limit);
    CHECK_THROWS(laqcore::rotation_forward(x.data(), 100, 1, y.data()), std::overflow_error,
                 "overflows float32");
}

LAQ_TEST_MAIN()
