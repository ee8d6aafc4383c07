// Private header: the AVX-512 block functions (declarations only, no intrinsics), collected
// into the AVX-512 kernel table by dispatch_avx512.cpp. Kernels without an AVX-512 version
// use their AVX2 one (kernels_avx2.hpp). Same contracts and bit-identical results.
#pragma once

namespace laqcore {
struct LaqBlockKernels;
namespace detail {

// laq_avx512.cpp: radius and encode in AVX-512, the decoders from the AVX2 table.
const LaqBlockKernels& laq_avx512_kernels();

}  // namespace detail
}  // namespace laqcore
