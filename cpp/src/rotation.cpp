// Randomized Hadamard rotation (formulas and arithmetic in laqcore/rotation.hpp).
#include "laqcore/rotation.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "laqcore/common.hpp"
#include "laqcore/parallel.hpp"
#include "laqcore/rng.hpp"

namespace laqcore {
namespace {

// One butterfly stage of half-width h on x[0 .. 2h*groups): pairs (j, j + h) of each group
// of 2h. The inner loop is contiguous, so it vectorises for h >= the vector width.
inline void stage(float* x, std::size_t len, std::size_t h) {
    for (std::size_t g = 0; g < len; g += 2 * h) {
        float* a = x + g;
        float* b = x + g + h;
        for (std::size_t j = 0; j < h; ++j) {
            const float u = a[j];
            const float v = b[j];
            a[j] = u + v;
            b[j] = u - v;
        }
    }
}

// Stages 1, 2, 4 merged into one pass over groups of 8 (short strides do not vectorise
// stage by stage); the same operations, in the same order per element, as three stages.
inline void first_three_stages(float* x, std::size_t len) {
    for (std::size_t g = 0; g < len; g += 8) {
        float* p = x + g;
        float t[8];
        for (int i = 0; i < 8; i += 2) {
            t[i] = p[i] + p[i + 1];
            t[i + 1] = p[i] - p[i + 1];
        }
        float u[8];
        for (int i = 0; i < 8; i += 4) {
            u[i] = t[i] + t[i + 2];
            u[i + 1] = t[i + 1] + t[i + 3];
            u[i + 2] = t[i] - t[i + 2];
            u[i + 3] = t[i + 1] - t[i + 3];
        }
        for (int i = 0; i < 4; ++i) {
            p[i] = u[i] + u[i + 4];
            p[i + 4] = u[i] - u[i + 4];
        }
    }
}

// All stages h < min(N, kFwhtBlock) of one block of `len` floats.
inline void block_stages(float* x, std::size_t len) {
    std::size_t h = 1;
    if (len >= 8) {
        first_three_stages(x, len);
        h = 8;
    }
    for (; h < len; h *= 2) stage(x, len, h);
}

// Sign-bit masks of 8 consecutive elements for each byte of random bits: element k of a
// row has the float sign bit set where bit k of the row's index is. A table (8 KiB, in L1
// beside the block) because the baseline these loops compile for, SSE2, has no per-lane
// variable shift: with it, flipping 8 signs is two 4-lane XORs with a row.
struct SignMasks {
    std::uint32_t row[256][8];
};

constexpr SignMasks make_sign_masks() {
    SignMasks t{};
    for (unsigned b = 0; b < 256; ++b) {
        for (unsigned k = 0; k < 8; ++k) t.row[b][k] = ((b >> k) & 1u) << 31;
    }
    return t;
}

constexpr SignMasks kSignMasks = make_sign_masks();

// Flips the sign bits of v[i, i + 8) where the low byte of `bits` has a 1 (exact).
inline void flip8(float* v, std::uint64_t bits) {
    const std::uint32_t* mask = kSignMasks.row[bits & 0xFFu];
    std::uint32_t u[8];
    std::memcpy(u, v, sizeof u);
    for (int k = 0; k < 8; ++k) u[k] ^= mask[k];
    std::memcpy(v, u, sizeof u);
}

// Applies the signs d_i to v[begin, end) in place (begin a multiple of 64 or the start):
// d_i is bit i % 64 of random_bits(key, i / 64).
inline void apply_signs(std::uint64_t key, std::size_t begin, std::size_t end, float* v) {
    std::size_t i = begin;
    while (i < end) {
        const std::uint64_t word = random_bits(key, i / 64);
        const std::size_t stop = (i / 64 + 1) * 64 < end ? (i / 64 + 1) * 64 : end;
        if (i % 64 == 0 && stop - i == 64) {  // a whole word: 8 rows of the table
            for (int byte = 0; byte < 8; ++byte) flip8(v + i + 8 * byte, word >> (8 * byte));
            i = stop;
            continue;
        }
        for (; i < stop; ++i) {  // a ragged end (vectors shorter than 64)
            std::uint32_t bits;
            std::memcpy(&bits, &v[i], sizeof bits);
            bits ^= static_cast<std::uint32_t>((word >> (i % 64)) & 1u) << 31;
            std::memcpy(&v[i], &bits, sizeof bits);
        }
    }
}

// Copies x[begin, end) into out, zeros past n (the padding), and returns max |x_i| over the
// block as the float's bit pattern: with the sign bit cleared, the unsigned order of the
// patterns is the order of the floats, and NaN and Inf are exactly the patterns >= the
// infinity's. Integer lanes vectorise (a float maximum with NaN rules does not, without
// -ffast-math), and one comparison afterwards finds a NaN or Inf.
inline std::uint32_t copy_block(const float* x, std::size_t n, std::size_t begin, std::size_t end,
                                float* out) {
    const std::size_t live = end < n ? end : (begin < n ? n : begin);
    std::uint32_t top = 0;
    for (std::size_t i = begin; i < live; ++i) {
        std::uint32_t u;
        std::memcpy(&u, &x[i], sizeof u);
        const std::uint32_t a = u & 0x7FFFFFFFu;
        top = a > top ? a : top;
        out[i] = x[i];
    }
    for (std::size_t i = live; i < end; ++i) out[i] = 0.0f;
    return top;
}

constexpr std::uint32_t kInfinityBits = 0x7F800000u;

}  // namespace

std::size_t rotation_padded_size(std::size_t n) {
    LAQ_CHECK(n >= 1, "the rotation needs a non-empty vector");
    LAQ_CHECK(n <= (std::size_t{1} << 62), "vector too long for the rotation: n = " << n);
    std::size_t N = 1;
    while (N < n) N *= 2;
    return N;
}

namespace {

// Stages h >= block (h < N): butterflies (j, j + h) across blocks. Two consecutive stages
// (h, 2h) are done in one pass over quadruples (j, j + h, j + 2h, j + 3h): the same two
// operations per element in the same order as two separate stages, with half the passes over
// memory. Each pass is cut into runs of `block` indices (parallel; block divides h).
void cross_stages(float* x, std::size_t N, std::size_t block) {
    std::size_t h = block;
    while (h < N) {
        if (4 * h <= N) {
            for_each_block(
                N / 4,
                [&](std::size_t, std::size_t begin, std::size_t end) {
                    const std::size_t g = begin / h;  // group of 4h
                    float* a = x + 4 * h * g + begin % h;
                    float* b = a + h;
                    float* c = a + 2 * h;
                    float* d = a + 3 * h;
                    for (std::size_t j = 0; j < end - begin; ++j) {
                        const float a1 = a[j] + b[j];
                        const float b1 = a[j] - b[j];
                        const float c1 = c[j] + d[j];
                        const float d1 = c[j] - d[j];
                        a[j] = a1 + c1;
                        c[j] = a1 - c1;
                        b[j] = b1 + d1;
                        d[j] = b1 - d1;
                    }
                },
                block);
            h *= 4;
        } else {
            for_each_block(
                N / 2,
                [&](std::size_t, std::size_t begin, std::size_t end) {
                    const std::size_t g = begin / h;
                    float* a = x + 2 * h * g + begin % h;
                    float* b = a + h;
                    for (std::size_t j = 0; j < end - begin; ++j) {
                        const float u = a[j];
                        const float v = b[j];
                        a[j] = u + v;
                        b[j] = u - v;
                    }
                },
                block);
            h *= 2;
        }
    }
}

inline float inv_sqrt(std::size_t N) {
    return static_cast<float>(1.0 / std::sqrt(static_cast<double>(N)));
}

}  // namespace

void fwht(float* x, std::size_t N) {
    LAQ_CHECK(N >= 1 && (N & (N - 1)) == 0, "fwht needs a power-of-two length, got " << N);
    const std::size_t block = N < kFwhtBlock ? N : kFwhtBlock;
    for_each_block(
        N,
        [&](std::size_t, std::size_t begin, std::size_t end) {
            block_stages(x + begin, end - begin);
        },
        block);
    cross_stages(x, N, block);
}

double rotation_input_limit(std::size_t N) {
    const double n = static_cast<double>(N);
    return static_cast<double>(std::numeric_limits<float>::max()) / (n * std::sqrt(n));
}

void rotation_forward(const float* x, std::size_t n, std::uint64_t key, float* out) {
    const std::size_t N = rotation_padded_size(n);
    const std::size_t block = N < kFwhtBlock ? N : kFwhtBlock;
    // Signs and the in-block stages fused, block by block (the block stays in L1); the
    // copy also finds max|x| per block (a maximum: the same for any thread count). On the
    // pool like every other loop: an OpenMP region here ignored set_num_threads, crashed
    // under a huge OMP_NUM_THREADS and hung in a forked child.
    const std::size_t nb = num_blocks(N, block);
    std::vector<std::uint32_t> block_top(nb, 0);  // max |x| per block, as bit patterns
    std::uint32_t* const top_of = block_top.data();
    // The lambda takes the pointers by value, not the enclosing frame by reference: the loops
    // then keep them in registers.
    for_each_block(
        N,
        [x, n, key, out, top_of](std::size_t b, std::size_t begin, std::size_t end) {
            top_of[b] = copy_block(x, n, begin, end, out);
            apply_signs(key, begin, end, out);
            block_stages(out + begin, end - begin);
        },
        block);
    std::uint32_t top = 0;
    for (std::size_t b = 0; b < nb; ++b) top = block_top[b] > top ? block_top[b] : top;
    const bool bad = top >= kInfinityBits;
    float amax = 0.0f;
    std::memcpy(&amax, &top, sizeof amax);
    LAQ_CHECK(!bad, "x contains NaN or Inf");
    const double limit = rotation_input_limit(N);
    LAQ_CHECK_RANGE(static_cast<double>(amax) <= limit,
                    "the rotation of a vector with max|x| = "
                        << amax << " overflows float32: its " << N
                        << "-point Hadamard transform and the inverse need max|x| <= 3.4e38 / "
                           "N^1.5 = "
                        << limit
                        << " (scale the vector down, or use a compressor without the rotation)");
    cross_stages(out, N, block);
    const float s = inv_sqrt(N);
    for_each_block(N, [&](std::size_t, std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i) out[i] *= s;
    });
}

void rotation_inverse(float* y, std::size_t n, std::uint64_t key, float* out) {
    const std::size_t N = rotation_padded_size(n);
    fwht(y, N);
    const float s = inv_sqrt(N);
    for_each_block(n, [&](std::size_t, std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i) out[i] = y[i] * s;
        apply_signs(key, begin, end, out);
    });
}

}  // namespace laqcore
