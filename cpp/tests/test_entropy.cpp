// rANS entropy coder (entropy.hpp): round trips on adversarial histograms, the same stream on
// every SIMD level and thread count, and rejection of truncated streams. Run under ASan
// (tools/sanitize.sh) it also checks that the bulk loops stay inside their buffers.
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "laqcore/dispatch.hpp"
#include "laqcore/entropy.hpp"
#include "laqcore/parallel.hpp"

using laqcore::entropy_decode;
using laqcore::entropy_encode;

namespace {

// Symbols of the named histogram over 2^bits symbols.
std::vector<std::uint8_t> symbols_of(int kind, std::size_t n, int bits, std::mt19937& gen) {
    const unsigned K = 1u << bits;
    std::geometric_distribution<unsigned> geo(0.3);
    std::vector<std::uint8_t> s(n);
    for (std::size_t i = 0; i < n; ++i) {
        unsigned v = 0;
        switch (kind) {
            case 0:  // skewed
                v = geo(gen);
                v = v < K ? v : K - 1;
                break;
            case 1:  // one symbol
                v = K - 1;
                break;
            case 2:  // all symbols equally frequent
                v = static_cast<unsigned>(i % K);
                break;
            default:  // uniform random
                v = gen() % K;
        }
        s[i] = static_cast<std::uint8_t>(v);
    }
    return s;
}

}  // namespace

LAQ_TEST(round_trip_same_stream_on_every_level_and_thread_count) {
    std::mt19937 gen(3);
    const std::size_t chunk = laqcore::kEntropyChunk;
    const auto levels = laqcore::available_simd_levels();
    const laqcore::SimdLevel active = laqcore::simd_level();
    const int threads = laqcore::get_num_threads();
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{4095}, std::size_t{4096},
                          chunk + 3, 5 * chunk + 13}) {
        for (int bits : {1, 4, 8}) {
            for (int kind = 0; kind < 4; ++kind) {
                const std::vector<std::uint8_t> s = symbols_of(kind, n, bits, gen);
                laqcore::set_simd_level(laqcore::SimdLevel::scalar);
                laqcore::set_num_threads(1);
                const std::vector<std::uint8_t> expected = entropy_encode(s.data(), n, bits);
                for (laqcore::SimdLevel level : levels) {
                    laqcore::set_simd_level(level);
                    for (int t : {1, 2}) {
                        laqcore::set_num_threads(t);
                        CHECK(entropy_encode(s.data(), n, bits) == expected);
                        // Exactly sized copy: ASan flags a read past the end.
                        const std::vector<std::uint8_t> exact(expected);
                        std::vector<std::uint8_t> back(n);
                        entropy_decode(exact.data(), exact.size(), n, bits, back.data());
                        CHECK(back == s);
                    }
                }
            }
        }
    }
    laqcore::set_simd_level(active);
    laqcore::set_num_threads(threads);
}

LAQ_TEST(truncated_streams_are_rejected) {
    std::mt19937 gen(5);
    const std::size_t n = 20000;
    const std::vector<std::uint8_t> s = symbols_of(0, n, 4, gen);
    const std::vector<std::uint8_t> stream = entropy_encode(s.data(), n, 4);
    std::vector<std::uint8_t> back(n);
    for (std::size_t cut : {std::size_t{0}, std::size_t{1}, stream.size() / 2, stream.size() - 1}) {
        const std::vector<std::uint8_t> part(stream.begin(),
                                             stream.begin() + static_cast<std::ptrdiff_t>(cut));
        CHECK_THROWS(entropy_decode(part.data(), part.size(), n, 4, back.data()),
                     std::invalid_argument, "corrupt entropy-coded stream");
    }
}

LAQ_TEST_MAIN()
