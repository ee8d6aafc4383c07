// laqcore/laq.hpp: the LAQ innovation quantizer (Sun et al., NeurIPS 2019;
// docs/algorithms.md "LAQ innovation quantizer").
//
// Formula (official code `quantd`, written as in the paper):
//     v = g - q_prev,  R = max_i |v_i|,  L = 2^b - 1  (tau = 1/L),
//     c_i = floor((v_i + R) / (2 tau R) + 1/2)  clamped to {0, ..., L},
//     dQ_i = 2 tau R c_i - R.
//
// Arithmetic (chosen so that the numpy reference in tests/reference.py reproduces every code
// bit for bit, and so that sender and receiver agree on dQ to the last bit):
//   * v_i = g_i - q_prev_i is computed in float32 (one correctly rounded subtraction, exactly
//     what numpy does for float32 arrays). Hence R = max|v_i| is a float32 value and goes on
//     the wire as float32 without rounding: the 32-bit radius of the paper's wire cost.
//   * The grid spacing is step = (2.0 * R) / L in double (2R is exact; one rounding).
//   * c_i = floor(((double)v_i + R) / step + 0.5) in double, then clamped to [0, L]. The
//     clamp only guards against rounding: mathematically c_i is already in range.
//   * The dequantized value of a code is the float32 table entry
//         lut[c] = (float)((double)c * step - (double)R),
//     computed by laq_make_grid() from (R, bits) alone. The encoder uses the same table as
//     every decoder, so the sender's dQ equals what a receiver reconstructs, bit for bit.
//     (The kernels are built with -ffp-contract=off, so c*step - R is not fused into an FMA,
//     matching numpy.)
//   * R == 0 (g == q_prev everywhere): the division would be 0/0, so every code is 0 and the
//     table is all zeros (0 * 0 - 0 = +0), i.e. dQ = 0 whatever the codes. Decoders need no
//     special case.
//   * Applying dQ: q_new_i = (float)(q_prev_i + dQ_i), one float32 addition, the same in the
//     encoder (for err_sq) and in laq_decode_add (the worker's apply and the server's
//     accumulate). A server weight w is folded into the table: wlut[c] = (float)w * lut[c] in
//     float32, then aggregate_i += wlut[c_i]; for w = 1 this is exactly the apply.
//   * err_sq = sum_i (q_new_i - g_i)^2 and innov_sq = sum_i dQ_i^2 (the rule's two norms)
//     are summed in float32 lanes, each term scaled by a power of two s from the radius
//     (laq_sum_scale): e_i = (q_new_i - g_i) in float32, then t_i = e_i * s (exact) and
//     t_i * t_i, and likewise dQ_i * s; term i of a piece (laq.hpp's pieces, below) is added
//     in float32 to lane i % kLaqSumLanes, then LaqSumLanes::total() combines the lanes in
//     double and multiplies by 1/s^2 (exact), and the pieces are added left to right in
//     double. Why float32: at 2 and 4 bits the kernel is bound by memory once the sums stop
//     widening every element to double (their arithmetic was 2/3 of the loop). The scale
//     keeps every scaled term below about 12 in magnitude, so no square overflows and only
//     terms below 2^-63 R underflow (far below any quantization error that counts), and a
//     piece's lane sums (at most 1024 terms each) are good to a relative 1e-4 at worst,
//     1e-6 typically, far below what the lazy rule's comparison resolves. Identical for any thread
//     count and SIMD level, reproduced by laqcore._reference.laq_square_pieces, and laq_innov_sq()
//     reproduces innov_sq bit for bit. A difference q_new_i - g_i beyond float32 (possible only for
//     radii near 1e38) makes err_sq infinite, which the quantizer refuses like an overflowing
//     q_new.
//
// Codes are written already packed in the pack.hpp layout (no intermediate code array).
//
// Kernel structure: the global radius is the blockwise quantizer below with one block; its
// pieces are fixed runs of kReduceBlock elements (a multiple of 8, so every piece starts on
// a byte boundary of the packed stream for any bit width), radius pass then encode pass. The
// per-block work is done by the function pointers in LaqBlockKernels; laq_scalar_kernels() is the
// portable reference, and a SIMD variant only has to provide another table that produces identical
// bytes and sums.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace laqcore {

// Largest number of distinct codes (bits = 8).
constexpr int kLaqMaxLevels = 256;
// Table entries a SIMD path may load regardless of the width (zero past 2^bits).
constexpr int kLaqLutPrefix = 64;

// Per-call constants shared by the encoder and the decoders.
struct LaqGrid {
    int bits = 0;
    float radius = 0.0f;            // R (float32, as on the wire)
    double step = 0.0;              // (2R)/L; for R == 0 the code formula uses 1.0 (codes are 0)
    float lut[kLaqMaxLevels] = {};  // dequantized value of each code, see above
};

// Fills grid for (radius, bits): lut[0, 2^bits) as above, lut[2^bits, kLaqLutPrefix) zero.
// radius must be finite and >= 0 (checked).
void laq_make_grid(float radius, int bits, LaqGrid& grid);
// The same without the checks (radius finite and >= 0, bits in range), for parallel regions,
// filling only lut[0, min(2^bits, entries)) (the rest of lut[0, 2^bits) is left as it was).
void laq_fill_grid(float radius, int bits, LaqGrid& grid, int entries = kLaqMaxLevels) noexcept;

// The sums' scale for a radius R >= 0: s = 2^k with k = 127 - clamp(exponent bits of R, 1,
// 253), so R * s lies in [1, 2) for every normal R below 2^127 (in [2, 4) above it, and s
// is 2^126 for R = 0 or subnormal); unscale = 1 / s^2 as a double (exact). Every scaled
// term |t| <= about 3 R s <= 12 (|q_new - g| <= about 3R: the step's rounding plus the
// float32 rounding of q_new, which matters only where ulp(q_prev) is below 2R).
struct LaqSumScale {  // trivial, like LaqSumLanes below
    float scale;
    double unscale;
};
// `static`: every translation unit has its own copy, so the SIMD ones (other ISA flags) share
// no inline function with the scalar ones (cpp/src/simd/bits_avx2.hpp says why), and a
// blockwise kernel pays no call per block.
static inline LaqSumScale laq_sum_scale(float radius) noexcept {
    std::uint32_t r_bits;
    std::memcpy(&r_bits, &radius, sizeof r_bits);
    int biased = static_cast<int>((r_bits >> 23) & 0xFFu);
    biased = biased < 1 ? 1 : (biased > 253 ? 253 : biased);
    const int k = 127 - biased;  // in [-126, 126]: s = 2^k is a normal float
    const auto s_bits = static_cast<std::uint32_t>(k + 127) << 23;
    const auto u_bits = static_cast<std::uint64_t>(1023 - 2 * k) << 52;  // 2^-2k, exact
    LaqSumScale out{};
    std::memcpy(&out.scale, &s_bits, sizeof out.scale);
    std::memcpy(&out.unscale, &u_bits, sizeof out.unscale);
    return out;
}

// The lanes of one piece's sum of squares (see the Arithmetic comment above): term i in
// lane i % kLaqSumLanes, float32; total() = unscale * (LaneSum order over the 8 doubles
// (double)lane[j] + (double)lane[j + 8]).
constexpr std::size_t kLaqSumLanes = 16;
// A trivial type on purpose (value-initialize it: `LaqSumLanes s{};`): the SIMD translation
// units use it too and must share no inline function, not even a constructor, with the
// scalar ones (cpp/src/simd/bits_avx2.hpp says why).
struct LaqSumLanes {
    float lane[kLaqSumLanes];
    double total(double unscale) const noexcept;
};
// Adds term i of a piece, (x * scale)^2, to its lane: the multiply, the square and the
// addition each rounded in float32 (the kernels are built without FMA contraction). `static`
// for the reason laq_sum_scale is.
static inline void laq_add_square(LaqSumLanes& lanes, std::size_t i, float x,
                                  float scale) noexcept {
    const float t = x * scale;
    lanes.lane[i % kLaqSumLanes] += t * t;
}

// Result of the fused quantizer.
struct LaqResult {
    float radius = 0.0f;
    double err_sq = 0.0;    // ||q_prev + dQ - g||^2 (float32 reconstruction, summed in double)
    double innov_sq = 0.0;  // ||dQ||^2
};

// ---- per-block kernels (swappable; see the comment at the top) -----------------------
// All pointers refer to the start of the block; `count` <= kReduceBlock; every block but the
// last has a multiple of 8 elements. `prev` may be nullptr, meaning q_prev = 0.
struct LaqRadiusPartial {
    float max_abs = 0.0f;
    bool nonfinite = false;  // some v_i (hence g_i or q_prev_i, or their difference) not finite
};
struct LaqSums {
    double err_sq = 0.0;
    double innov_sq = 0.0;
};
struct LaqBlockKernels {
    const char* name;
    // Entries of grid.lut (and of decode_add's table) the functions below read for full
    // groups of 8 codes; a trailing partial group (the end of the vector) may read any entry
    // below 2^bits. The drivers fill only these when refilling a grid for each radius block.
    int lut_entries;
    LaqRadiusPartial (*radius)(const float* grad, const float* prev, std::size_t count);
    // Writes packed_size(count, bits) bytes at `packed`; both sums in LaneSum order.
    LaqSums (*encode)(const float* grad, const float* prev, std::size_t count, const LaqGrid& grid,
                      std::uint8_t* packed);
    // out[i] = grid.lut[c_i]
    void (*decode_store)(const std::uint8_t* packed, std::size_t count, const LaqGrid& grid,
                         float* out);
    // inout[i] = inout[i] + table[c_i]   (float32 addition), where table[c] is
    // weight * grid.lut[c] in float32, precomputed by the driver; a SIMD path may recompute
    // the entries from (grid, weight) with the same operations instead of loading them.
    void (*decode_add)(const std::uint8_t* packed, std::size_t count, const LaqGrid& grid,
                       const float* table, float weight, float* inout);
    // sum_i (double)grid.lut[c_i]^2, in LaneSum order (parallel.hpp), like the encoder's
    // innov_sq
    double (*decode_sumsq)(const std::uint8_t* packed, std::size_t count, const LaqGrid& grid);
    // Optional (nullptr: the drivers call radius and encode per block). The blockwise
    // quantizer for block <= kReduceBlock over count elements starting a block: block j
    // covers [j * block, min((j + 1) * block, count)); writes radii[j] (its radius pass's
    // max_abs), the block's codes at packed + j * block * bits / 8, and sums[j] (what encode
    // returns for the block), exactly as radius and encode would. Returns false, with the
    // outputs of that block and later ones unspecified, when a block's radius pass finds a
    // value that is not finite. Lets a SIMD level keep per-block constants in registers and
    // prefetch the next blocks while one is encoded from cache.
    bool (*quantize_blocks)(const float* grad, const float* prev, std::size_t count,
                            std::size_t block, int bits, float* radii, LaqSums* sums,
                            std::uint8_t* packed);
    // Optional (nullptr: the drivers refill a grid and call decode_add per piece). The
    // accumulate over count elements starting a piece, in blocks of block <= kReduceBlock
    // elements as above (the global radius: one block, the piece): block j adds its table
    // weight * lut_j[c] (float32 products, lut_j the grid of radii[j]), exactly as
    // decode_add would.
    void (*accumulate_blocks)(const std::uint8_t* packed, std::size_t count, std::size_t block,
                              int bits, const float* radii, float weight, float* inout);
};

const LaqBlockKernels& laq_scalar_kernels();
// The table the drivers below use: that of the active SIMD level (dispatch.hpp).
const LaqBlockKernels& laq_active_kernels();

// ---- drivers ---------------------------------------------------------------------------
// Fused quantize + pack: packed must hold packed_size(n, bits) bytes. prev may be nullptr
// (q_prev = 0, the stateless compressor). Throws std::invalid_argument for n == 0, bits out
// of range, "grad contains NaN or Inf", "prev contains NaN or Inf", or a difference that
// overflows float32.
LaqResult laq_quantize(const float* grad, const float* prev, std::size_t n, int bits,
                       std::uint8_t* packed);

// Checks a received (radius, bits, packed) triple: radius finite and >= 0, bits in range,
// zero padding bits. Every decoder below calls it first.
void laq_check_payload(float radius, int bits, const std::uint8_t* packed, std::size_t n);

// out[n] = dQ.
void laq_dequantize(const std::uint8_t* packed, std::size_t n, int bits, float radius, float* out);

// inout[n] += weight * dQ, with the weight folded into the table in float32 (see above).
// weight = 1 is the worker's "apply" (q_prev += dQ). weight must be finite.
void laq_accumulate(const std::uint8_t* packed, std::size_t n, int bits, float radius, float weight,
                    float* inout);

// The accumulate above fused with an average: inout[n] += weight * dQ, then
// out[i] = inout[i] / divisor (one float32 division, as numpy's float32 divide), each range
// divided right after its accumulate while it is in cache. The two-phase exchange applies a
// publication to its replica and writes replica / N into the hook's output in one pass.
// divisor must be finite and nonzero; out must not overlap inout (unchecked here).
void laq_accumulate_divide(const std::uint8_t* packed, std::size_t n, int bits, float radius,
                           float weight, float* inout, float divisor, float* out);

// One payload's packed codes and its radius (radii, for the blockwise radius below), for
// the drivers that add several payloads in one pass.
struct LaqCodes {
    const std::uint8_t* packed;
    const float* radii;
};

// inout[n] += weight * dQ_s for s = 0..count-1 in that order (each of n codes of `bits` bits,
// payloads[s].radii pointing at its one radius): bit-identical to count laq_accumulate calls,
// but each range of inout is read and written once (the owner of a two-phase chunk adds
// every uploader's chunk in one pass). Every payload is checked before anything is written.
void laq_accumulate_all(const LaqCodes* payloads, std::size_t count, std::size_t n, int bits,
                        float weight, float* inout);

// ||dQ||^2 recomputed from the packed codes; bit-identical to LaqResult::innov_sq.
double laq_innov_sq(const std::uint8_t* packed, std::size_t n, int bits, float radius);

// ---- blockwise radius ------------------------------------------------------------------
// One radius per block of `block_size` consecutive coordinates: block j covers
// [j * block_size, min((j + 1) * block_size, n)) (the last block may be shorter) and is
// quantized exactly as the global quantizer above quantizes a vector of that block's
// length, with R_j = max over the block of |v_i|. block_size must be a multiple of 8 in
// [8, 2^31], so every block starts on a byte of the packed stream: the codes of blocks
// [s, e) are the bytes [s * block_size * bits / 8, min(e * block_size, n) * bits / 8 rounded
// up) of `packed`, and with radii[s, e) they form the payload of that sub-vector (a frame
// for a contiguous range of blocks is a slice, no re-encoding).
//
// Sum order (err_sq, innov_sq): each block is cut into pieces of at most kReduceBlock
// elements from its start; a piece's sum is in LaneSum order; piece sums are added left to
// right over the whole vector. Independent of the thread count and SIMD level. With
// block_size >= n this is exactly the global quantizer (same radius, codes and sums).
//
// Kernel structure: for block_size <= kReduceBlock each block is read once: its radius is
// computed and the block encoded while it is still in cache (parallel over fixed groups of
// blocks). Larger blocks take two passes over their pieces (all pieces in parallel).
constexpr std::size_t kLaqMaxBlockSize = std::size_t{1} << 31;

// Throws std::invalid_argument unless block_size is a multiple of 8 in [8, 2^31].
void laq_check_block_size(std::size_t block_size);
// ceil(n / block_size): the number of radii.
std::size_t laq_num_radii(std::size_t n, std::size_t block_size);

// radii must hold laq_num_radii(n, block_size) floats, packed packed_size(n, bits) bytes.
// Result: radius = max_j R_j, err_sq and innov_sq as above. Same errors as laq_quantize;
// also throws if a reconstructed q_prev + dQ overflows float32 (|grad| near float32 max).
LaqResult laq_quantize_blocks(const float* grad, const float* prev, std::size_t n, int bits,
                              std::size_t block_size, float* radii, std::uint8_t* packed);
// Every radius finite and >= 0, bits in range, block_size valid, zero padding bits.
void laq_check_blocks_payload(const float* radii, std::size_t block_size, int bits,
                              const std::uint8_t* packed, std::size_t n);
void laq_dequantize_blocks(const std::uint8_t* packed, std::size_t n, int bits,
                           std::size_t block_size, const float* radii, float* out);
// inout += weight * dQ (weight folded into each block's table in float32). Throws if
// weight * max_j R_j overflows float32.
void laq_accumulate_blocks(const std::uint8_t* packed, std::size_t n, int bits,
                           std::size_t block_size, const float* radii, float weight, float* inout);
// laq_accumulate_all with one radius per block (payloads[s].radii: its
// laq_num_radii(n, block_size) radii).
void laq_accumulate_all_blocks(const LaqCodes* payloads, std::size_t count, std::size_t n, int bits,
                               std::size_t block_size, float weight, float* inout);
// laq_accumulate_divide with one radius per block.
void laq_accumulate_divide_blocks(const std::uint8_t* packed, std::size_t n, int bits,
                                  std::size_t block_size, const float* radii, float weight,
                                  float* inout, float divisor, float* out);
double laq_innov_sq_blocks(const std::uint8_t* packed, std::size_t n, int bits,
                           std::size_t block_size, const float* radii);

}  // namespace laqcore
