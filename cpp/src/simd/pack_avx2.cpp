// AVX2 block functions of the bit packing kernels (pack.cpp holds the drivers and the scalar
// reference). 32 codes per step; the groups a step cannot finish without touching bytes past
// this block's slice of the output are left to the scalar reference, so concurrent blocks
// never write each other's bytes.
#include "bits_avx2.hpp"
#include "kernels_avx2.hpp"
#include "laqcore/dispatch.hpp"

namespace laqcore {
namespace detail {

std::uint8_t pack_groups_avx2(const std::uint8_t* codes, std::size_t groups, int bits,
                              std::uint8_t* out) {
    const auto b = static_cast<std::size_t>(bits);
    const std::size_t nbytes = b * groups;
    __m256i seen = _mm256_setzero_si256();
    std::size_t g = 0;  // groups done
    if (bits == 8) {
        // Packing 8-bit codes is a copy, and every byte is a valid code (nothing to OR).
        for (; g + 4 <= groups; g += 4) {
            const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + 8 * g));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8 * g), x);
        }
    } else if (bits == 1) {
        for (; g + 4 <= groups; g += 4) {
            const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + 8 * g));
            seen = _mm256_or_si256(seen, x);
            const std::uint32_t word = avx2::pack32_1bit(x);
            std::memcpy(out + g, &word, 4);
        }
    } else {
        const avx2::BitConsts c = avx2::bit_consts(bits);
        for (; g + 4 <= groups && b * g + 2 * b + 16 <= nbytes; g += 4) {
            const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + 8 * g));
            seen = _mm256_or_si256(seen, x);
            avx2::store_packed32(avx2::pack32(x, c), b, out + b * g);
        }
    }
    const auto rest = pack_groups_scalar(codes + 8 * g, groups - g, bits, out + b * g);
    return static_cast<std::uint8_t>(avx2::or_bytes(seen) | rest);
}

void unpack_groups_avx2(const std::uint8_t* packed, std::size_t groups, int bits,
                        std::uint8_t* codes) {
    const auto b = static_cast<std::size_t>(bits);
    const std::size_t nbytes = b * groups;
    std::size_t g = 0;
    if (bits == 8) {
        for (; g + 4 <= groups; g += 4) {
            const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(packed + 8 * g));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + 8 * g), x);
        }
    } else if (bits == 1) {
        for (; g + 4 <= groups; g += 4) {
            std::uint32_t word;
            std::memcpy(&word, packed + g, 4);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + 8 * g),
                                avx2::unpack32_1bit(word));
        }
    } else {
        const avx2::BitConsts c = avx2::bit_consts(bits);
        for (; g + 4 <= groups && b * g + 2 * b + 16 <= nbytes; g += 4) {
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + 8 * g),
                                avx2::unpack32(packed + b * g, b, c));
        }
    }
    unpack_groups_scalar(packed + b * g, groups - g, bits, codes + 8 * g);
}

}  // namespace detail
}  // namespace laqcore
