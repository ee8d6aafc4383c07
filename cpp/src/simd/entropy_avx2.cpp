// AVX2 bulk loops of the rANS coder (entropy.cpp holds the drivers and the scalar reference,
// laqcore/entropy.hpp the arithmetic and the stream layout). The 8 lanes of a chunk live in
// one register; per group of 8 symbols:
//   * decode: one gather of the packed slot entries, the state update with a 32-bit
//     multiply, and the renormalisation of the lanes below L from the next words, which the
//     lanes read in lane order: the k-th lane that needs a word (counting from lane 0) takes
//     the k-th word, so 8 words are loaded and permuted into place by a table indexed by
//     the mask of those lanes;
//   * encode: two gathers of the symbols' EncSymbol words, the renormalisation (the words
//     of the emitting lanes are compressed, by a table permute, into the top of a 16-byte
//     store that ends at the write pointer: lane 0's word lowest, as the scalar encoder
//     writes lane 7 first going down), and floor(x / f) by the exact reciprocal with two
//     64-bit multiplies (even and odd lanes).
// The integer operations are the reference's, so the bytes and symbols are identical.
//
// Like every *_avx2.cpp file, this one uses no inline functions shared with scalar files
// (see bits_avx2.hpp).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "../entropy_kernels.hpp"
#include "kernels_avx2.hpp"

namespace laqcore {
namespace detail {
namespace {

// Permutations indexed by an 8-bit lane mask.
struct PermTables {
    std::uint8_t dec[256][8];  // lane j <- word (number of mask lanes below j)
    std::uint8_t enc[256][8];  // position 8 - count + k <- the k-th mask lane
    std::uint8_t count[256];   // lanes in the mask
};

constexpr PermTables make_perm_tables() {
    PermTables t{};
    for (int mask = 0; mask < 256; ++mask) {
        int rank = 0;
        for (int j = 0; j < 8; ++j) {
            if ((mask >> j) & 1) t.dec[mask][j] = static_cast<std::uint8_t>(rank++);
        }
        t.count[mask] = static_cast<std::uint8_t>(rank);
        int pos = 8 - rank;
        for (int j = 0; j < 8; ++j) {
            if ((mask >> j) & 1) t.enc[mask][pos++] = static_cast<std::uint8_t>(j);
        }
    }
    return t;
}

constexpr PermTables kPerm = make_perm_tables();

static inline __m256i load_perm(const std::uint8_t* row) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row)));
}

// One chunk's state in registers.
struct EncodeLane {
    __m256i x;
    std::uint8_t* p;
};

struct EncodeConsts {
    const int* table;     // the EncSymbol words
    __m128i shift_x_max;  // 31 - m
    __m256i M, low12, low32, shift_base;
};

// Encodes group g of `symbols` (lane 7 first, as the scalar loop).
static inline void encode_group(EncodeLane& s, const std::uint8_t* symbols, std::size_t g,
                                const EncodeConsts& k) {
    const __m256i idx = _mm256_slli_epi32(
        _mm256_cvtepu8_epi32(
            _mm_loadl_epi64(reinterpret_cast<const __m128i*>(symbols + g * kRansGroup))),
        2);
    const __m256i rcp = _mm256_i32gather_epi32(k.table, idx, 4);
    const __m256i meta = _mm256_i32gather_epi32(k.table + 1, idx, 4);
    const __m256i bias = _mm256_and_si256(meta, k.low12);
    const __m256i cmpl = _mm256_and_si256(_mm256_srli_epi32(meta, 12), k.low12);
    const __m256i shift = _mm256_add_epi32(_mm256_srli_epi32(meta, 24), k.shift_base);
    const __m256i x_max = _mm256_sll_epi32(_mm256_sub_epi32(k.M, cmpl), k.shift_x_max);
    __m256i X = s.x;
    // x >= x_max (unsigned: x_max may be 2^31).
    const __m256i emit = _mm256_cmpeq_epi32(_mm256_max_epu32(X, x_max), X);
    const int mask = _mm256_movemask_ps(_mm256_castsi256_ps(emit));
    // Low 16 bits of the emitting lanes (packus saturates, so the high bits must go).
    const __m256i words = _mm256_permutevar8x32_epi32(
        _mm256_srli_epi32(_mm256_slli_epi32(X, 16), 16), load_perm(kPerm.enc[mask]));
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(words, words), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(s.p - 16), _mm256_castsi256_si128(packed));
    s.p -= 2 * kPerm.count[mask];
    X = _mm256_blendv_epi8(X, _mm256_srli_epi32(X, 16), emit);
    // q = (x * rcp) >> shift in 64 bits, even and odd lanes separately.
    const __m256i even =
        _mm256_srlv_epi64(_mm256_mul_epu32(X, rcp), _mm256_and_si256(shift, k.low32));
    const __m256i odd =
        _mm256_srlv_epi64(_mm256_mul_epu32(_mm256_srli_epi64(X, 32), _mm256_srli_epi64(rcp, 32)),
                          _mm256_srli_epi64(shift, 32));
    const __m256i q = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    s.x = _mm256_add_epi32(_mm256_add_epi32(X, bias), _mm256_mullo_epi32(q, cmpl));
}

static inline EncodeLane load_encoder(const RansEncodeCursor& c) {
    return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.x)), c.p};
}

static inline void store_encoder(const EncodeLane& s, RansEncodeCursor& c) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c.x), s.x);
    c.p = s.p;
}

// The groups the NC cursors all have left, coded in one loop (their chains overlap).
template <int NC>
void encode_joint(RansEncodeCursor* cursors, const EncodeConsts& k) {
    EncodeLane s[NC];
    std::size_t common = cursors[0].groups;
    for (int i = 0; i < NC; ++i) {
        s[i] = load_encoder(cursors[i]);
        common = cursors[i].groups < common ? cursors[i].groups : common;
    }
    // Local copies: the stores through p could alias the cursors.
    const std::uint8_t* sym[NC];
    std::size_t g[NC];
    for (int i = 0; i < NC; ++i) {
        sym[i] = cursors[i].symbols;
        g[i] = cursors[i].groups;
    }
    for (std::size_t t = 0; t < common; ++t) {
        for (int i = 0; i < NC; ++i) encode_group(s[i], sym[i], g[i] - 1 - t, k);
    }
    for (int i = 0; i < NC; ++i) {
        store_encoder(s[i], cursors[i]);
        cursors[i].groups = g[i] - common;
    }
}

void encode_groups_avx2(RansEncodeCursor* cursors, int count, int m, const EncSymbol* enc) {
    const EncodeConsts k{reinterpret_cast<const int*>(enc), _mm_cvtsi32_si128(31 - m),
                         _mm256_set1_epi32(1 << m),         _mm256_set1_epi32(0xFFF),
                         _mm256_set1_epi64x(0xFFFFFFFF),    _mm256_set1_epi32(31)};
    static_assert(kRansMaxCursors == 4, "joint loops for 2 to 4 cursors");
    if (count == 4) encode_joint<4>(cursors, k);
    if (count == 3) encode_joint<3>(cursors, k);
    if (count == 2) encode_joint<2>(cursors, k);
    for (int i = 0; i < count; ++i) {
        RansEncodeCursor& c = cursors[i];
        EncodeLane s = load_encoder(c);
        for (std::size_t g = c.groups; g > 0; --g) encode_group(s, c.symbols, g - 1, k);
        store_encoder(s, c);
        c.groups = 0;
    }
}

struct DecodeLane {
    __m256i x;
    const std::uint8_t* p;
};

struct DecodeConsts {
    const int* table;  // slot entries
    __m128i shift_m;
    __m256i slot_mask, low12, one, state_low;
};

// Decodes one group into out[0, 8).
static inline void decode_group(DecodeLane& s, std::uint8_t* out, const DecodeConsts& k) {
    __m256i X = s.x;
    const __m256i e = _mm256_i32gather_epi32(k.table, _mm256_and_si256(X, k.slot_mask), 4);
    const __m256i f = _mm256_add_epi32(_mm256_and_si256(e, k.low12), k.one);
    const __m256i offset = _mm256_and_si256(_mm256_srli_epi32(e, 12), k.low12);
    X = _mm256_add_epi32(_mm256_mullo_epi32(f, _mm256_srl_epi32(X, k.shift_m)), offset);
    // States are below 2^31, so the signed compare is x < L.
    const __m256i need = _mm256_cmpgt_epi32(k.state_low, X);
    const int mask = _mm256_movemask_ps(_mm256_castsi256_ps(need));
    const __m256i words =
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s.p)));
    const __m256i mine = _mm256_permutevar8x32_epi32(words, load_perm(kPerm.dec[mask]));
    s.x = _mm256_blendv_epi8(X, _mm256_or_si256(_mm256_slli_epi32(X, 16), mine), need);
    s.p += 2 * kPerm.count[mask];
    // Symbols: byte 3 of every entry, lanes 0-3 then 4-7.
    const __m256i sym = _mm256_srli_epi32(e, 24);
    const __m256i s8 = _mm256_packus_epi16(_mm256_packus_epi32(sym, sym), sym);
    const __m128i both =
        _mm_unpacklo_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out), both);
}

static inline bool can_decode(std::size_t groups, const std::uint8_t* end, const DecodeLane& s) {
    return groups > 0 && end - s.p >= 16;
}

static inline DecodeLane load_decoder(const RansDecodeCursor& c) {
    return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.x)), c.p};
}

static inline void store_decoder(const DecodeLane& s, RansDecodeCursor& c) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c.x), s.x);
    c.p = s.p;
}

template <int NC>
void decode_joint(RansDecodeCursor* cursors, const DecodeConsts& k) {
    DecodeLane s[NC];
    // Local copies: the symbol stores could alias the cursors.
    std::size_t g[NC];
    std::uint8_t* out[NC];
    const std::uint8_t* end[NC];
    for (int i = 0; i < NC; ++i) {
        s[i] = load_decoder(cursors[i]);
        g[i] = cursors[i].groups;
        out[i] = cursors[i].out;
        end[i] = cursors[i].end;
    }
    for (;;) {
        bool all = true;
        for (int i = 0; i < NC; ++i) all = all && can_decode(g[i], end[i], s[i]);
        if (!all) break;
        for (int i = 0; i < NC; ++i) {
            decode_group(s[i], out[i], k);
            --g[i];
            out[i] += kRansGroup;
        }
    }
    for (int i = 0; i < NC; ++i) {
        store_decoder(s[i], cursors[i]);
        cursors[i].groups = g[i];
        cursors[i].out = out[i];
    }
}

void decode_groups_avx2(RansDecodeCursor* cursors, int count, int m, const std::uint32_t* slots) {
    const DecodeConsts k{reinterpret_cast<const int*>(slots),
                         _mm_cvtsi32_si128(m),
                         _mm256_set1_epi32((1 << m) - 1),
                         _mm256_set1_epi32(0xFFF),
                         _mm256_set1_epi32(1),
                         _mm256_set1_epi32(static_cast<int>(kRansLow))};
    if (count == 4) decode_joint<4>(cursors, k);
    if (count == 3) decode_joint<3>(cursors, k);
    if (count == 2) decode_joint<2>(cursors, k);
    for (int i = 0; i < count; ++i) {
        RansDecodeCursor& c = cursors[i];
        DecodeLane s = load_decoder(c);
        std::size_t g = c.groups;
        std::uint8_t* o = c.out;
        for (; can_decode(g, c.end, s); --g, o += kRansGroup) decode_group(s, o, k);
        store_decoder(s, c);
        c.groups = g;
        c.out = o;
    }
}

}  // namespace

const EntropyBlockKernels& entropy_avx2_kernels() {
    static const EntropyBlockKernels table{&encode_groups_avx2, &decode_groups_avx2};
    return table;
}

}  // namespace detail
}  // namespace laqcore
