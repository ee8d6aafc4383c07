// The AVX2 kernel table. Compiled (with -mavx2 -mfma) only when CMake found an x86-64
// compiler that accepts those flags; dispatch.cpp selects it only on CPUs with AVX2/FMA/BMI2.
#include "kernels_avx2.hpp"
#include "laqcore/dispatch.hpp"

namespace laqcore {
namespace detail {

const KernelTable& avx2_kernel_table() {
    static const KernelTable table{
        &pack_groups_avx2,    &unpack_groups_avx2,     &laq_avx2_kernels(), &sumsq_lanes_avx2,
        &qsgd_codes_avx2,     &sign_block_avx2,        &sum_max_block_avx2, &centered_sumsq_avx2,
        &terngrad_codes_avx2, &entropy_avx2_kernels(),
    };
    return table;
}

}  // namespace detail
}  // namespace laqcore
