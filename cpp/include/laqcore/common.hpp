// laqcore/common.hpp: error conventions shared by every kernel.
//
// User errors (bad sizes, bits out of range, non-finite input) throw std::invalid_argument,
// which pybind11 turns into ValueError. A finite input whose result leaves the range of its
// floating-point type (LAQ_CHECK_RANGE: an innovation, a bucket norm or a rotation's sums in
// float32, an iterate distance in float64) throws std::overflow_error, which the bindings
// turn into laqcore._core.FloatRangeError, both an OverflowError and a ValueError: a caller
// can tell it from bad input (a DDP hook drops such a step on every rank instead of failing
// on one; the simulator reads a step that overflows as divergence) while code that catches
// ValueError keeps working. Broken internal invariants throw std::logic_error (RuntimeError
// in Python): never abort() inside a Python process.
//
// Nothing may throw inside an OpenMP parallel region (an exception escaping a region
// terminates the process). Kernels check their arguments before the region, and report
// failures found inside it (e.g. a NaN) through a flag that is checked after the region.
#pragma once

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

namespace laqcore {

#define LAQ_CHECK_THROW_(cond, msg, exception)    \
    do {                                          \
        if (!(cond)) {                            \
            std::ostringstream laq_check_os_;     \
            laq_check_os_ << msg;                 \
            throw exception(laq_check_os_.str()); \
        }                                         \
    } while (0)

#define LAQ_CHECK(cond, msg) LAQ_CHECK_THROW_(cond, msg, std::invalid_argument)
#define LAQ_CHECK_RANGE(cond, msg) LAQ_CHECK_THROW_(cond, msg, std::overflow_error)

#define LAQ_ASSERT(cond)                                                                      \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            throw std::logic_error(std::string("laqcore internal error: ") + #cond + " at " + \
                                   __FILE__ + ":" + std::to_string(__LINE__));                \
        }                                                                                     \
    } while (0)

// Bit widths supported by the packed code formats.
constexpr int kMinBits = 1;
constexpr int kMaxBits = 8;

inline void check_bits(int bits) {
    LAQ_CHECK(bits >= kMinBits && bits <= kMaxBits,
              "bits must be an integer in [1, 8], got " << bits);
}

}  // namespace laqcore
