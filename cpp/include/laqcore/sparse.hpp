// laqcore/sparse.hpp: top-k and rand-k sparsification (Stich et al. 2018; docs/algorithms.md
// "Sign, sparsifiers, error feedback"), the scatter that undoes them, and the dense copy used by
// the identity compressor.
//
// Output of a selection: k indices (uint32, strictly increasing) and the k values x[idx].
// Vectors longer than 2^32 - 1 are rejected (indices are uint32 on the wire).
//
// Selection rule (both): every coordinate i gets a 64-bit key
//     key_i = (primary_i << 32) | (0xFFFFFFFF - i)
// and the k largest keys are kept, indices ascending. The low half makes all keys distinct,
// so the kept set is unique: among equal primaries the LOWER index wins, whatever the
// thread count or algorithm. Small inputs use std::nth_element on all keys; inputs of at
// least kMinParallel elements use a parallel radix step (histogram of the top 16 key bits,
// nth_element only inside the bin holding the k-th key, then a compaction of all keys >= it
// in index order). Neither sorts all n keys.
//   * top-k:  primary_i = the IEEE-754 bit pattern of |x_i|, which for non-negative floats
//             orders exactly like the value, so the k largest |x_i| are kept
//             (ties -> lower index; -0.0 and +0.0 are equal).
//   * rand-k: primary_i = the high 32 bits of random_bits(key, i) (rng.hpp), so the kept set
//             is a uniformly random k-subset (up to 32-bit ties, broken by lower index)
//             that depends only on (key, n, k).
// Both reject NaN/Inf ("<name> contains NaN or Inf") in their first pass over x.
#pragma once

#include <cstddef>
#include <cstdint>

namespace laqcore {

constexpr std::size_t kMaxSparseLength = 0xFFFFFFFFu;

void topk_select(const float* x, std::size_t n, std::size_t k, std::uint32_t* idx, float* values,
                 const char* name = "x");

void randk_select(const float* x, std::size_t n, std::size_t k, std::uint64_t key,
                  std::uint32_t* idx, float* values, const char* name = "x");

// Throws std::invalid_argument unless idx[0..k) is strictly increasing and < n.
void check_sparse_indices(const std::uint32_t* idx, std::size_t k, std::size_t n);

// out[0..n) = 0, then out[idx[j]] = values[j]; validates the indices first.
void sparse_scatter(const std::uint32_t* idx, const float* values, std::size_t k, std::size_t n,
                    float* out);

// out = x, rejecting NaN/Inf in the same pass (the "none" compressor's payload body).
void dense_copy(const float* x, std::size_t n, float* out, const char* name = "x");

}  // namespace laqcore
