// laqcore/rng.hpp: a stateless, counter-based random number generator.
//
// Stochastic rounding (QSGD, TernGrad, rand-k, ...) must give the same codes whatever the
// number of threads. A generator with state shared by a thread cannot promise that, so every
// random number here is a pure function of (key, counter):
//
//     key     = make_key(seed, step, stream)    // one per call of a kernel
//     bits_i  = random_bits(key, i)              // i = element index (the counter)
//
// The mixing function is the splitmix64 finaliser (Steele, Lea & Flood 2014), which passes
// BigCrush when applied to a Weyl sequence; that is exactly what random_bits does.
// tests/reference.py re-implements these three functions in numpy; keep them in sync.
#pragma once

#include <cstdint>

namespace laqcore {

constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ULL;

inline std::uint64_t mix64(std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// Key of one kernel call: `step` is the iteration, `stream` separates independent uses
// within one step (e.g. worker id, or coordinate selection vs. rounding).
inline std::uint64_t make_key(std::uint64_t seed, std::uint64_t step, std::uint64_t stream) {
    std::uint64_t k = mix64(seed + kGolden);
    k = mix64(k ^ (step + 0x632BE59BD9B4E019ULL));
    k = mix64(k ^ (stream + 0x8CB92BA72F3D8DD7ULL));
    return k;
}

inline std::uint64_t random_bits(std::uint64_t key, std::uint64_t counter) {
    return mix64(key + (counter + 1) * kGolden);
}

// Uniform float in [0, 1) with 24 random bits (every value exactly representable).
inline float uniform01(std::uint64_t key, std::uint64_t counter) {
    return static_cast<float>(random_bits(key, counter) >> 40) * (1.0f / 16777216.0f);
}

}  // namespace laqcore
