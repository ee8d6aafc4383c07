// Private header: the AVX2 block functions (declarations only, no intrinsics), collected into
// the AVX2 kernel table by dispatch_avx2.cpp. Same contracts as the scalar entries of
// KernelTable in laqcore/dispatch.hpp, and bit-identical results.
#pragma once

#include <cstddef>
#include <cstdint>

namespace laqcore {
struct LaqBlockKernels;
namespace detail {
struct EntropyBlockKernels;

std::uint8_t pack_groups_avx2(const std::uint8_t* codes, std::size_t groups, int bits,
                              std::uint8_t* out);
void unpack_groups_avx2(const std::uint8_t* packed, std::size_t groups, int bits,
                        std::uint8_t* codes);

// laq_avx2.cpp
const LaqBlockKernels& laq_avx2_kernels();

// entropy_avx2.cpp: the rANS bulk loops, 8 lanes in one register
const EntropyBlockKernels& entropy_avx2_kernels();

// reduce_avx2.cpp, qsgd_avx2.cpp
double sumsq_lanes_avx2(const float* x, std::size_t count);
void qsgd_codes_avx2(const float* x, std::size_t begin, std::size_t end, std::size_t n,
                     const float* scales, std::size_t bucket_size, int levels, std::uint64_t key,
                     std::uint8_t* codes);
double sign_block_avx2(const float* x, std::size_t count, std::uint8_t* packed, bool* nonfinite);
void sum_max_block_avx2(const float* x, std::size_t count, double* sum, float* max_abs,
                        bool* nonfinite);
double centered_sumsq_avx2(const float* x, std::size_t count, double mean);
void terngrad_codes_avx2(const float* x, std::size_t begin, std::size_t end, float threshold,
                         float scaler, std::uint64_t key, std::uint8_t* codes);

}  // namespace detail
}  // namespace laqcore
