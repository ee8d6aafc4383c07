// laqcore/dispatch.hpp: run-time choice of the SIMD code path.
//
// Every hot kernel is split into a serial *block function* (one contiguous slice of the
// input, no threads, no allocation) and a driver in cpp/src/<kernel>.cpp that validates
// the arguments, splits the input into blocks and runs them under OpenMP. The block
// functions exist once per instruction set:
//
//   * scalar: portable C++17, always compiled; this is the reference every other path must
//     reproduce bit for bit (same codes, same packed bytes, same float results).
//   * avx2:   cpp/src/simd/*_avx2.cpp, compiled with per-source -mavx2 -mfma flags only when
//     the compiler targets x86-64 and accepts them (CMakeLists.txt), and used only when the
//     CPU reports AVX2, FMA and BMI2 at run time (__builtin_cpu_supports). Every hot kernel
//     has an entry: pack/unpack, LAQ (quantize+pack, dequantize, accumulate, ||dQ||^2),
//     QSGD, TernGrad, scaled sign and the rANS entropy coder's bulk loops.
//   * avx512: cpp/src/simd/*_avx512.cpp (-mavx512f -mavx512bw -mavx512dq -mavx512vl on top
//     of the AVX2 flags), used when the CPU reports those as well. It replaces only the
//     kernels that are compute-bound in AVX2 (the LAQ radius and quantize+pack passes) and
//     takes every other entry from the AVX2 table.
//
// The drivers call kernels() once per call, before any parallel region, and use the
// returned table of function pointers (C++17, no templates over the ISA). The table is
// chosen once, on first use: the best level the CPU supports, unless the environment
// variable LAQCORE_SIMD names one ("scalar", "avx2", "avx512" or "auto"). set_simd_level() switches
// it at run time, which tests and the benchmark use to compare paths in one process.
//
// Bit-identical results across levels are a hard rule. The kernels library is compiled
// with -ffp-contract=off, so the scalar reference never fuses a*b+c, and the SIMD paths
// perform exactly the scalar code's float operations in the same order (no reassociation,
// sums in parallel.hpp's fixed block order, and no FMA except where it provably rounds like
// the reference: an estimate that is checked and redone exactly when in doubt, or a*a + s
// with a float32 a, whose square is exact in double).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace laqcore {

struct LaqBlockKernels;  // laq.hpp
namespace detail {
struct EntropyBlockKernels;  // cpp/src/entropy_kernels.hpp (private)
}

enum class SimdLevel : int { scalar = 0, avx2 = 1, avx512 = 2 };

// Serial block functions, one table per SIMD level. Every entry is filled for every level
// (a level without a specialised version of a kernel points at the scalar one).
struct KernelTable {
    // Packs `groups` full groups of 8 codes (8 * groups codes) into bits * groups bytes.
    // Returns the bitwise OR of all codes read, so the caller can validate them afterwards
    // (a code c fits in `bits` bits iff (c >> bits) == 0) without a second pass.
    std::uint8_t (*pack_groups)(const std::uint8_t* codes, std::size_t groups, int bits,
                                std::uint8_t* out);
    // Unpacks `groups` full groups: bits * groups bytes into 8 * groups codes.
    void (*unpack_groups)(const std::uint8_t* packed, std::size_t groups, int bits,
                          std::uint8_t* codes);
    // The LAQ quantizer's block functions (laq.hpp documents their contracts).
    const LaqBlockKernels* laq;
    // sum_i (double)x_i^2 over x[0, count) in LaneSum order (parallel.hpp); NaN/Inf
    // propagate to the result.
    double (*sumsq)(const float* x, std::size_t count);
    // QSGD codes of elements [begin, end) into codes[0, end - begin) (qsgd.hpp formula);
    // scales has one entry per bucket of bucket_size elements of the length-n vector.
    void (*qsgd_codes)(const float* x, std::size_t begin, std::size_t end, std::size_t n,
                       const float* scales, std::size_t bucket_size, int levels, std::uint64_t key,
                       std::uint8_t* codes);
    // Scaled-sign block (sign.hpp): packs the bits [x_i < 0] of x[0, count) into
    // packed[packed_size(count, 1)] and returns sum_i |x_i| in LaneSum order; sets
    // *nonfinite when some x_i is NaN or Inf.
    double (*sign_block)(const float* x, std::size_t count, std::uint8_t* packed, bool* nonfinite);
    // TernGrad (terngrad.hpp). Block statistics: sum_i x_i in LaneSum order, max |x_i|,
    // and whether some x_i is NaN or Inf.
    void (*sum_max_block)(const float* x, std::size_t count, double* sum, float* max_abs,
                          bool* nonfinite);
    // sum_i (double(x_i) - mean)^2 in LaneSum order.
    double (*centered_sumsq)(const float* x, std::size_t count, double mean);
    // Ternary codes of elements [begin, end) into codes[0, end - begin).
    void (*terngrad_codes)(const float* x, std::size_t begin, std::size_t end, float threshold,
                           float scaler, std::uint64_t key, std::uint8_t* codes);
    // The rANS coder's bulk loops over whole groups of 8 symbols (entropy.cpp drivers).
    const detail::EntropyBlockKernels* entropy;
};

// The table of the active level (chosen on first use, see above). Throws
// std::invalid_argument if LAQCORE_SIMD holds an unknown or unavailable level.
const KernelTable& kernels();

// The active level.
SimdLevel simd_level();

// Levels usable on this machine (compiled in and supported by the CPU), scalar first.
std::vector<SimdLevel> available_simd_levels();

// Makes `level` the active one. Throws std::invalid_argument if it is not available.
void set_simd_level(SimdLevel level);

const char* simd_level_name(SimdLevel level);

// "scalar" / "avx2" / "avx512" -> level; "auto" (or "") -> best available. Throws
// std::invalid_argument naming `what` for anything else or for an unavailable level.
SimdLevel parse_simd_level(const std::string& name, const char* what);

namespace detail {
// Per-level tables. scalar_kernel_table() is defined in dispatch.cpp from the scalar block
// functions below; avx2_kernel_table() in simd/dispatch_avx2.cpp and avx512_kernel_table()
// in simd/dispatch_avx512.cpp, only when compiled.
const KernelTable& scalar_kernel_table();
#ifdef LAQCORE_HAVE_AVX2
const KernelTable& avx2_kernel_table();
#endif
#ifdef LAQCORE_HAVE_AVX512
const KernelTable& avx512_kernel_table();
#endif

// Scalar reference block functions (defined next to their drivers, e.g. pack.cpp). The
// SIMD files call them for the tails they do not vectorise.
std::uint8_t pack_groups_scalar(const std::uint8_t* codes, std::size_t groups, int bits,
                                std::uint8_t* out);
void unpack_groups_scalar(const std::uint8_t* packed, std::size_t groups, int bits,
                          std::uint8_t* codes);
double sumsq_lanes_scalar(const float* x, std::size_t count);  // reduce.cpp
void qsgd_codes_scalar(const float* x, std::size_t begin, std::size_t end, std::size_t n,
                       const float* scales, std::size_t bucket_size, int levels, std::uint64_t key,
                       std::uint8_t* codes);  // qsgd.cpp
double sign_block_scalar(const float* x, std::size_t count, std::uint8_t* packed,
                         bool* nonfinite);  // sign.cpp
void sum_max_block_scalar(const float* x, std::size_t count, double* sum, float* max_abs,
                          bool* nonfinite);                                    // terngrad.cpp
double centered_sumsq_scalar(const float* x, std::size_t count, double mean);  // terngrad.cpp
void terngrad_codes_scalar(const float* x, std::size_t begin, std::size_t end, float threshold,
                           float scaler, std::uint64_t key, std::uint8_t* codes);  // terngrad.cpp
}  // namespace detail

}  // namespace laqcore
