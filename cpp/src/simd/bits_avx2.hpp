// Private header of the AVX2 translation units (cpp/src/simd/*_avx2.cpp): bit packing of 32
// codes per 256-bit register, shared by the pack/unpack kernels and the fused quantizers.
//
// Include it ONLY from files compiled with -mavx2 -mfma. Everything here has internal
// linkage (static inline, no templates, no standard-library calls): an inline function
// with external linkage compiled with -mavx2 could be picked by the linker for a scalar
// translation unit too and execute AVX2 instructions on a CPU without them.
//
// Layout reminder (pack.hpp): 8 consecutive codes of b bits fill exactly b bytes, code j of a
// group at bits [j*b, (j+1)*b) of that little-endian b-byte word. 32 codes = 4 groups =
// 4*b bytes; in a 256-bit register those are the low b bytes of each 64-bit lane.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace laqcore {
namespace avx2 {

// Constants for one bit width b in 1..8, computed once per block.
struct BitConsts {
    __m128i sh_b, sh_2b, sh_4b;  // shift counts b, 2b, 4b (for _mm256_sll/srl_*)
    __m256i compress;            // pshufb: 64-bit lanes' low b bytes -> 2b bytes per 128-bit lane
    __m256i expand;              // pshufb: the inverse
    __m256i mask_b16, mask_2b32, mask_4b64;  // low b / 2b / 4b bits of 16/32/64-bit lanes
};

static inline BitConsts bit_consts(int bits) {
    const auto b = static_cast<unsigned>(bits);
    BitConsts c;
    c.sh_b = _mm_cvtsi32_si128(static_cast<int>(b));
    c.sh_2b = _mm_cvtsi32_si128(static_cast<int>(2 * b));
    c.sh_4b = _mm_cvtsi32_si128(static_cast<int>(4 * b));
    alignas(32) std::int8_t comp[32];
    alignas(32) std::int8_t expd[32];
    for (unsigned k = 0; k < 16; ++k) {
        // Lane byte k of the packed form comes from byte k of qword 0 (k < b), or from
        // byte k - b of qword 1 (b <= k < 2b); the rest is zeroed (index with bit 7 set).
        const int from =
            k < b ? static_cast<int>(k) : (k < 2 * b ? static_cast<int>(8 + k - b) : -1);
        // Unpacked form: qword 0 byte k takes packed byte k (k < b), qword 1 byte k - 8
        // takes packed byte b + k - 8.
        const unsigned q = k / 8;
        const unsigned r = k % 8;
        const int to = r < b ? static_cast<int>(q * b + r) : -1;
        comp[k] = comp[k + 16] = static_cast<std::int8_t>(from);
        expd[k] = expd[k + 16] = static_cast<std::int8_t>(to);
    }
    c.compress = _mm256_load_si256(reinterpret_cast<const __m256i*>(comp));
    c.expand = _mm256_load_si256(reinterpret_cast<const __m256i*>(expd));
    c.mask_b16 = _mm256_set1_epi16(static_cast<short>((1u << b) - 1));
    c.mask_2b32 = _mm256_set1_epi32(static_cast<int>((1u << (2 * b)) - 1));
    c.mask_4b64 = _mm256_set1_epi64x(static_cast<long long>((std::uint64_t{1} << (4 * b)) - 1));
    return c;
}

// 32 byte codes (each < 2^b) -> 4*b packed bytes, left in the low 2b bytes of each 128-bit
// lane. Codes are merged pairwise: 8-bit pairs into 16-bit lanes, then 32, then 64.
static inline __m256i pack32(__m256i x, const BitConsts& c) {
    const __m256i lo8 = _mm256_set1_epi16(0x00FF);
    const __m256i lo16 = _mm256_set1_epi32(0xFFFF);
    const __m256i lo32 = _mm256_set1_epi64x(0xFFFFFFFFLL);
    __m256i t = _mm256_or_si256(_mm256_and_si256(x, lo8),
                                _mm256_sll_epi16(_mm256_srli_epi16(x, 8), c.sh_b));
    t = _mm256_or_si256(_mm256_and_si256(t, lo16),
                        _mm256_sll_epi32(_mm256_srli_epi32(t, 16), c.sh_2b));
    t = _mm256_or_si256(_mm256_and_si256(t, lo32),
                        _mm256_sll_epi64(_mm256_srli_epi64(t, 32), c.sh_4b));
    return _mm256_shuffle_epi8(t, c.compress);
}

// Stores pack32's result: 4*b bytes at out, but writes 16 bytes at out + 2b, so the caller
// must own out[0, 2b + 16). Later stores overwrite the surplus of earlier ones.
static inline void store_packed32(__m256i p, std::size_t b, std::uint8_t* out) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm256_castsi256_si128(p));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * b), _mm256_extracti128_si256(p, 1));
}

// Inverse of pack32 + store_packed32: reads in[0, 2b + 16), returns 32 byte codes.
static inline __m256i unpack32(const std::uint8_t* in, std::size_t b, const BitConsts& c) {
    const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in));
    const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 2 * b));
    __m256i t = _mm256_shuffle_epi8(_mm256_set_m128i(hi, lo), c.expand);
    t = _mm256_or_si256(_mm256_and_si256(t, c.mask_4b64),
                        _mm256_slli_epi64(_mm256_srl_epi64(t, c.sh_4b), 32));
    t = _mm256_or_si256(_mm256_and_si256(t, c.mask_2b32),
                        _mm256_slli_epi32(_mm256_srl_epi32(t, c.sh_2b), 16));
    t = _mm256_or_si256(_mm256_and_si256(t, c.mask_b16),
                        _mm256_slli_epi16(_mm256_srl_epi16(t, c.sh_b), 8));
    return t;
}

// 1-bit special case: bit 0 of each byte -> 32 bits (one movemask instead of the ladder).
static inline std::uint32_t pack32_1bit(__m256i x) {
    return static_cast<std::uint32_t>(_mm256_movemask_epi8(_mm256_slli_epi16(x, 7)));
}

// 2- and 4-bit special cases of pack32 for the fused quantizers (no per-width constants):
// 32 byte codes (each < 2^b) -> their 4b packed bytes, the low 4b bytes of the result.
// Adjacent codes are merged by multiply-adds: byte pairs into 16-bit lanes, then (2 bits)
// word pairs into 32-bit lanes, whose low bytes are gathered in order.
static inline __m128i pack32_4bit(__m256i x) {
    const __m256i pairs = _mm256_maddubs_epi16(x, _mm256_set1_epi16(1 | (16 << 8)));
    // 8 bytes in the low half of each 128-bit lane; the two halves moved together
    return _mm256_castsi256_si128(
        _mm256_permute4x64_epi64(_mm256_packus_epi16(pairs, pairs), 0x08));
}
static inline __m128i pack32_2bit(__m256i x) {
    const __m256i pairs = _mm256_maddubs_epi16(x, _mm256_set1_epi16(1 | (4 << 8)));
    const __m256i quads = _mm256_madd_epi16(pairs, _mm256_set1_epi32(1 | (16 << 16)));
    // the low byte of each 32-bit lane: 4 bytes per 128-bit lane, the two moved together
    const __m256i low = _mm256_shuffle_epi8(
        quads, _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4,
                                8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
    return _mm256_castsi256_si128(
        _mm256_permutevar8x32_epi32(low, _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1)));
}

static inline __m256i unpack32_1bit(std::uint32_t word) {
    // Byte k of the result holds bit k of `word`: broadcast byte k/8 to it, test bit k%8.
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                            2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
    const __m256i x = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(word)), spread);
    return _mm256_min_epu8(_mm256_and_si256(x, bit), _mm256_set1_epi8(1));
}

// Packs the last m (< 8) codes of a block into their ceil(m*b/8) bytes (the layout of a
// whole group, cut short), for the fused quantizers' ends.
static inline void pack_partial(const std::uint8_t* codes, std::size_t m, std::size_t b,
                                std::uint8_t* out) {
    std::uint64_t word = 0;
    for (std::size_t j = 0; j < m; ++j) word |= static_cast<std::uint64_t>(codes[j]) << (j * b);
    const std::size_t nbytes = (m * b + 7) / 8;
    for (std::size_t k = 0; k < nbytes; ++k) out[k] = static_cast<std::uint8_t>(word >> (8 * k));
}

// OR of the 32 bytes of v.
static inline std::uint8_t or_bytes(__m256i v) {
    __m128i x = _mm_or_si128(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    x = _mm_or_si128(x, _mm_srli_si128(x, 8));
    x = _mm_or_si128(x, _mm_srli_si128(x, 4));
    x = _mm_or_si128(x, _mm_srli_si128(x, 2));
    x = _mm_or_si128(x, _mm_srli_si128(x, 1));
    return static_cast<std::uint8_t>(_mm_cvtsi128_si32(x));
}

}  // namespace avx2
}  // namespace laqcore
