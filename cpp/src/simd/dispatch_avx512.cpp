// The AVX-512 kernel table: the AVX2 table with the kernels that gain from 16-wide
// registers replaced (the LAQ radius and quantize+pack passes, which are compute-bound in
// AVX2; the others are bound by memory or by their RNG's 64-bit multiplies already).
// Compiled only when CMake found a compiler that accepts the AVX-512 flags; dispatch.cpp
// selects it only on CPUs with AVX-512 F/BW/DQ/VL besides AVX2/FMA/BMI2.
#include "kernels_avx2.hpp"
#include "kernels_avx512.hpp"
#include "laqcore/dispatch.hpp"

namespace laqcore {
namespace detail {

const KernelTable& avx512_kernel_table() {
    static const KernelTable table = [] {
        KernelTable t = avx2_kernel_table();
        t.laq = &laq_avx512_kernels();
        return t;
    }();
    return table;
}

}  // namespace detail
}  // namespace laqcore
