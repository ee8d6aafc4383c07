// What bounds the blockwise LAQ quantize+pack at n = 2^24 on one thread (README, "LAQ with a
// blockwise radius"): memcpy of the gradient (the benchmark's baseline), a read-only pass over
// grad and q_prev (the memory floor of a kernel that reads both once), and the kernel itself
// in blocks of 256, on the full vectors and on an 8192-element slice that stays in cache (the
// same element count in total: its arithmetic alone); then the full vectors in blocks of 32
// and 64 (the DDP hook's defaults at 1-3 bits) at 2, 3, 4 and 8 bits (3 bits: a width packed
// from a code buffer, not from the registers). Interleaved, thread CPU time (the machine is
// shared: a descheduled thread does not count); the best and the median of the given number
// of repetitions, each against memcpy's best / median (a loaded guest's thread clock
// sometimes reports an impossibly short sample, which the best keeps and the median does
// not).
//
// Build against the static kernel library of an editable install (build dir build/dev), one
// command line:
//   g++ -O2 -std=c++17 -mavx512f -Icpp/include bench/cpp/laq_block_floor.cpp
//       build/dev/liblaqcore_kernels.a -fopenmp -lpthread -o /tmp/laq_block_floor
// then run /tmp/laq_block_floor 15 (15 repetitions).
#include <immintrin.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "laqcore/dispatch.hpp"
#include "laqcore/laq.hpp"
#include "laqcore/parallel.hpp"

namespace {

double cpu_seconds() {
    timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

volatile float sink;

// Reads x and y once (16 floats per load, two independent maxima).
void read_both(const float* x, const float* y, std::size_t n) {
    __m512 a = _mm512_setzero_ps();
    __m512 b = _mm512_setzero_ps();
    for (std::size_t i = 0; i < n; i += 16) {
        a = _mm512_max_ps(a, _mm512_loadu_ps(x + i));
        b = _mm512_max_ps(b, _mm512_loadu_ps(y + i));
    }
    sink = _mm512_reduce_max_ps(_mm512_max_ps(a, b));
}

}  // namespace

int main(int argc, char** argv) {
    const int reps = argc > 1 ? std::atoi(argv[1]) : 15;
    const std::size_t n = std::size_t{1} << 24;
    const std::size_t hot = 8192;
    const std::size_t block = 256;
    laqcore::set_num_threads(1);
    // The benchmark's inputs: g ~ N(0, 1), q_prev = g + 0.1 N(0, 1).
    std::vector<float> g(n), p(n), copy(n);
    std::mt19937 gen(0);
    std::normal_distribution<float> normal;
    for (std::size_t i = 0; i < n; ++i) {
        g[i] = normal(gen);
        p[i] = g[i] + 0.1f * normal(gen);
    }
    std::vector<std::uint8_t> packed(n);
    std::vector<float> radii(n / 32);
    const int widths[] = {2, 4, 8};
    const int small_widths[] = {2, 3, 4, 8};
    const std::size_t small_blocks[] = {32, 64};
    // 0: memcpy, 1: read both, then per width: full vectors, in-cache slice; then per small
    // width and small block size: full vectors.
    std::vector<std::vector<double>> samples(2 + 2 * 3 + 4 * 2);
    auto run = [&](std::size_t k) {
        if (k >= 8) {
            const int bits = small_widths[(k - 8) / 2];
            laqcore::laq_quantize_blocks(g.data(), p.data(), n, bits, small_blocks[(k - 8) % 2],
                                         radii.data(), packed.data());
        } else if (k == 0) {
            std::memcpy(copy.data(), g.data(), n * sizeof(float));
        } else if (k == 1) {
            read_both(g.data(), p.data(), n);
        } else {
            const int bits = widths[(k - 2) / 2];
            if (k % 2 == 0) {
                laqcore::laq_quantize_blocks(g.data(), p.data(), n, bits, block, radii.data(),
                                             packed.data());
            } else {
                for (std::size_t s = 0; s < n; s += hot) {
                    laqcore::laq_quantize_blocks(g.data(), p.data(), hot, bits, block, radii.data(),
                                                 packed.data());
                }
            }
        }
    };
    for (int r = 0; r < reps; ++r) {
        for (std::size_t k = 0; k < samples.size(); ++k) {
            const double t0 = cpu_seconds();
            run(k);
            samples[k].push_back(cpu_seconds() - t0);
        }
    }
    std::vector<double> best, median;
    for (auto& t : samples) {
        std::sort(t.begin(), t.end());
        best.push_back(t.front());
        median.push_back(t[t.size() / 2]);
    }
    // One row: best and median in ms, each over memcpy's.
    auto row = [&](const char* name, std::size_t k) {
        std::printf("%-34s %8.2f ms %5.2fx | %8.2f ms %5.2fx\n", name, best[k] * 1e3,
                    best[k] / best[0], median[k] * 1e3, median[k] / median[0]);
    };
    std::printf(
        "simd=%s n=2^24 block=%zu threads=1, %d repetitions, thread CPU time; "
        "best | median, x memcpy's best | median\n",
        laqcore::simd_level_name(laqcore::simd_level()), block, reps);
    row("memcpy (64 MiB)", 0);
    row("read grad and q_prev once", 1);
    char name[64];
    for (int w = 0; w < 3; ++w) {
        std::snprintf(name, sizeof name, "%d-bit blockwise quantize+pack", widths[w]);
        row(name, 2 + 2 * w);
        std::snprintf(name, sizeof name, "%d-bit same, in cache (arithmetic)", widths[w]);
        row(name, 3 + 2 * w);
    }
    for (std::size_t k = 8; k < samples.size(); ++k) {
        std::snprintf(name, sizeof name, "%d-bit blockwise, blocks of %zu",
                      small_widths[(k - 8) / 2], small_blocks[(k - 8) % 2]);
        row(name, k);
    }
    return 0;
}
