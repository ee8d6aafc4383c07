// laqcore/entropy.hpp: lossless entropy coding of code streams (interleaved rANS, static
// per-stream frequency table).
//
// Coder (range asymmetric numeral systems, Duda 2013; the word-renormalised interleaved
// variant): each lane holds a state x in [L, 2^31), L = 2^15. With a table of frequencies f_s
// summing to M = 2^m (1 <= m <= 15) and cumulative starts c_s, a symbol s is encoded as
//     if x >= 2^(31-m) * f_s:  emit the low 16 bits of x, x >>= 16      (at most once)
//     x = floor(x / f_s) * M + (x mod f_s) + c_s
// and decoded (in the opposite order) as
//     slot = x mod M,  s = the symbol with c_s <= slot < c_s + f_s,
//     x = f_s * floor(x / M) + slot - c_s,  if x < L: x = x * 2^16 + next 16-bit word.
// The division uses an exact reciprocal: for x < 2^31 and 1 <= f <= 2^15, with
// sh = ceil(log2 f) and r = ceil(2^(31+sh) / f), floor(x / f) = (x * r) >> (31 + sh).
// Symbols are dealt round-robin to `lanes` states (symbol i -> lane i mod lanes) sharing one
// word stream, so consecutive symbols are independent dependency chains. Every lane starts
// encoding at x = L; the decoder requires every lane to end at exactly L and every word to be
// consumed, which rejects most corrupt streams even without the frame CRC.
//
// Parallelism and determinism: the symbols are cut into chunks of kEntropyChunk symbols (the
// last may be shorter), each coded independently with the same table, so chunks are encoded
// and decoded in parallel and the bytes never depend on the thread count. Whole groups of 8
// symbols of an 8-lane chunk go through bulk loops with SIMD variants (dispatch.hpp,
// cpp/src/entropy_kernels.hpp), which code up to 4 chunks in one loop so that their
// dependency chains overlap; every level produces the same bytes and symbols. The encoder
// picks m <= 12; the decoder accepts any m <= 15 (m > 12 takes the scalar steps).
//
// Stream layout (little-endian):
//     byte 0        m | (log2(lanes) << 4)          (m = 0: empty stream, count == 0; then
//                                                    this is the only byte)
//     table         bit stream, LSB first, padded to a byte:
//                     4 bits  k (order of the exp-Golomb codes below)
//                     A bits  index of the one symbol whose frequency is implied (A =
//                             alphabet bits), f_implied = M - sum of the others (>= 1)
//                     for every other symbol s of the alphabet, in order: f_s as an
//                     exp-Golomb code of order k (u = (f >> k) + 1 with bit length w:
//                     w - 1 zero bits, a one bit, the w - 1 low bits of u, the k low bits of f)
//     directory     (chunks - 1) uint32 byte lengths of every chunk but the last
//     chunks        per chunk: lanes uint32 final states (lane 0 first), then the 16-bit
//                   words in the order the decoder reads them
//
// The encoder chooses m (and the exp-Golomb order) to minimise the estimated stream size;
// the frequencies are the symbol counts scaled to M by largest remainders (integer arithmetic,
// every present symbol gets at least 1).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace laqcore {

constexpr int kEntropyMaxPrecision = 15;
constexpr std::size_t kEntropyChunk = std::size_t{1} << 17;  // symbols per chunk (multiple of 8)

// Order-0 entropy coding of count symbols in [0, 2^alphabet_bits), 1 <= alphabet_bits <= 8.
// Throws std::invalid_argument for a symbol outside the alphabet.
std::vector<std::uint8_t> entropy_encode(const std::uint8_t* symbols, std::size_t count,
                                         int alphabet_bits);

// Decodes exactly count symbols into out; throws std::invalid_argument for a stream that is
// truncated, too long or inconsistent (any stream not produced by entropy_encode for this
// count and alphabet is either rejected or decodes to some symbols in the alphabet; it never
// reads outside [data, data + size)).
void entropy_decode(const std::uint8_t* data, std::size_t size, std::size_t count,
                    int alphabet_bits, std::uint8_t* out);

// Packed code streams (pack.hpp layout, n codes of `bits` bits). Three modes:
//   kEntropyCodes:  one symbol per code (alphabet bits = bits, count = n);
//   kEntropyBytes:  one symbol per packed byte (alphabet bits = 8, count = packed_size(n, bits)):
//                   for bits 1, 2, 4 a symbol is a group of 8 / bits codes (their joint law);
//   kEntropyStored: the packed bytes themselves, when coding would not make them smaller
//                   (near-uniform codes: the table and the lanes' states cost more than the
//                   skew saves), so a coded stream is never longer than the packed codes.
enum EntropyMode : int { kEntropyCodes = 0, kEntropyBytes = 1, kEntropyStored = 2 };

struct EntropyPacked {
    int mode = kEntropyCodes;
    std::vector<std::uint8_t> stream;
};

// Encodes the packed codes in the mode whose estimated size is smaller (bytes mode is
// considered only for bits in {1, 2, 4, 8}, where code and byte boundaries agree), or stores
// them (kEntropyStored) when that stream is not shorter than packed_size(n, bits) bytes.
EntropyPacked entropy_encode_packed(const std::uint8_t* packed, std::size_t n, int bits);

// Decodes into packed[packed_size(n, bits)]; throws std::invalid_argument for a bad mode or
// stream (a stored stream of any other length than packed_size(n, bits)), and (codes mode
// never produces it, bytes and stored modes may) non-zero padding bits.
void entropy_decode_packed(const std::uint8_t* data, std::size_t size, std::size_t n, int bits,
                           int mode, std::uint8_t* packed);

namespace detail {
// Exposed for tests: the normalised frequency table of these counts for precision m
// (requires the number of non-zero counts <= 2^m and a non-zero total).
std::vector<std::uint32_t> entropy_normalise(const std::vector<std::uint64_t>& counts, int m);
}  // namespace detail

}  // namespace laqcore
