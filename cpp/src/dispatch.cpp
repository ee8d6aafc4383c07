#include "laqcore/dispatch.hpp"

#include <atomic>
#include <cstdlib>

#include "entropy_kernels.hpp"
#include "laqcore/common.hpp"
#include "laqcore/laq.hpp"

namespace laqcore {
namespace {

bool cpu_supports(SimdLevel level) {
    switch (level) {
        case SimdLevel::scalar:
            return true;
        case SimdLevel::avx2:
#if defined(LAQCORE_HAVE_AVX2) && (defined(__GNUC__) || defined(__clang__))
            // __builtin_cpu_init is needed when this runs before constructors (it is
            // idempotent and cheap otherwise). The AVX2 files are compiled with -mavx2 -mfma;
            // BMI2 is required as well so that the level means the x86-64-v3 core that
            // every AVX2 CPU in practice has.
            __builtin_cpu_init();
            return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                   __builtin_cpu_supports("bmi2");
#else
            return false;
#endif
        case SimdLevel::avx512:
#if defined(LAQCORE_HAVE_AVX512) && (defined(__GNUC__) || defined(__clang__))
            // The AVX-512 table keeps the AVX2 kernels it does not replace.
            return cpu_supports(SimdLevel::avx2) && __builtin_cpu_supports("avx512f") &&
                   __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                   __builtin_cpu_supports("avx512vl");
#else
            return false;
#endif
    }
    return false;
}

const KernelTable& table_of(SimdLevel level) {
#ifdef LAQCORE_HAVE_AVX2
    if (level == SimdLevel::avx2) return detail::avx2_kernel_table();
#endif
#ifdef LAQCORE_HAVE_AVX512
    if (level == SimdLevel::avx512) return detail::avx512_kernel_table();
#endif
    LAQ_ASSERT(level == SimdLevel::scalar);
    return detail::scalar_kernel_table();
}

SimdLevel best_level() {
    const auto levels = available_simd_levels();
    return levels.back();
}

SimdLevel initial_level() {
    const char* env = std::getenv("LAQCORE_SIMD");
    return parse_simd_level(env ? std::string(env) : std::string(), "LAQCORE_SIMD");
}

// The active level. Written by set_simd_level (and the first-use initialisation) and read
// once per kernel call before any parallel region; an atomic int makes a concurrent switch
// from another Python thread well defined (that call uses either the old or the new table).
std::atomic<int>& active_slot() {
    // Function-local static: initialised once, thread-safely, on first use. If LAQCORE_SIMD
    // is invalid the initialiser throws and is retried on the next call.
    static std::atomic<int> slot{static_cast<int>(initial_level())};
    return slot;
}

}  // namespace

const char* simd_level_name(SimdLevel level) {
    switch (level) {
        case SimdLevel::scalar:
            return "scalar";
        case SimdLevel::avx2:
            return "avx2";
        case SimdLevel::avx512:
            return "avx512";
    }
    return "unknown";
}

std::vector<SimdLevel> available_simd_levels() {
    std::vector<SimdLevel> levels{SimdLevel::scalar};
    if (cpu_supports(SimdLevel::avx2)) levels.push_back(SimdLevel::avx2);
    if (cpu_supports(SimdLevel::avx512)) levels.push_back(SimdLevel::avx512);
    return levels;
}

SimdLevel parse_simd_level(const std::string& name, const char* what) {
    if (name.empty() || name == "auto") return best_level();
    for (SimdLevel level : {SimdLevel::scalar, SimdLevel::avx2, SimdLevel::avx512}) {
        if (name != simd_level_name(level)) continue;
        LAQ_CHECK(cpu_supports(level), what << "=" << name << " is not available on this machine"
                                            << " (not compiled in, or the CPU lacks it)");
        return level;
    }
    LAQ_CHECK(false,
              what << " must be one of 'auto', 'scalar', 'avx2', 'avx512', got '" << name << "'");
    return SimdLevel::scalar;  // unreachable: LAQ_CHECK(false, ...) always throws
}

SimdLevel simd_level() {
    return static_cast<SimdLevel>(active_slot().load());
}

void set_simd_level(SimdLevel level) {
    LAQ_CHECK(cpu_supports(level),
              "SIMD level " << simd_level_name(level) << " is not available on this machine");
    active_slot().store(static_cast<int>(level));
}

const KernelTable& kernels() {
    return table_of(simd_level());
}

namespace detail {

const KernelTable& scalar_kernel_table() {
    static const KernelTable table{
        &pack_groups_scalar,       &unpack_groups_scalar,  &laq_scalar_kernels(),
        &sumsq_lanes_scalar,       &qsgd_codes_scalar,     &sign_block_scalar,
        &sum_max_block_scalar,     &centered_sumsq_scalar, &terngrad_codes_scalar,
        &entropy_scalar_kernels(),
    };
    return table;
}

}  // namespace detail
}  // namespace laqcore
