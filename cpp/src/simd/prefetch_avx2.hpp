// Private header of the SIMD translation units (cpp/src/simd/*_avx2.cpp, *_avx512.cpp):
// software prefetch for the LAQ encoders' two input streams (grad and q_prev).
//
// The encoders do enough arithmetic per element that the hardware prefetcher alone leaves
// them waiting on DRAM at large n: measured on the AVX-512 encoder at n = 2^24 (AMD Zen 5
// guest, a busy machine, best of 7): about 0.38-0.39 ns/element without prefetch, and with
// distances of 1, 2, 4, 8 and 16 KiB per stream about 0.38, 0.34, 0.29, 0.27 and 0.27.
//
// Internal linkage only (see bits_avx2.hpp for why); SSE intrinsics only.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace laqcore {
namespace detail {
namespace {

constexpr std::uintptr_t kPrefetchBytes = 8192;

// Prefetches the two cache lines of a 32-float step kPrefetchBytes ahead of p. Prefetches do
// not fault, and the address is formed as an integer (no pointer past the array), so
// running ahead of the end of the input is harmless.
inline void prefetch_step(const float* p) {
    const auto a = reinterpret_cast<std::uintptr_t>(p) + kPrefetchBytes;
    _mm_prefetch(reinterpret_cast<const char*>(a), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(a + 64), _MM_HINT_T0);
}

}  // namespace
}  // namespace detail
}  // namespace laqcore
