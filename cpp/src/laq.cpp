// The LAQ drivers (laq.hpp): the global and the blockwise radius, both run over the
// per-block kernels of the active SIMD level. laq_scalar.cpp holds the reference kernels
// and the grid.
#include "laqcore/laq.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "laqcore/common.hpp"
#include "laqcore/dispatch.hpp"
#include "laqcore/pack.hpp"
#include "laqcore/parallel.hpp"

namespace laqcore {
namespace {

// Byte offset of element `begin` in the packed stream; exact because every piece starts on
// a multiple of 8 elements (block sizes and kReduceBlock are multiples of 8).
inline std::size_t packed_offset(std::size_t begin, int bits) {
    return begin / 8 * static_cast<std::size_t>(bits);
}
static_assert(kReduceBlock % 8 == 0, "pieces must start on whole bytes of the packed stream");

// Names the input that made the radius pass fail (error path only, so a serial scan).
[[noreturn]] void report_nonfinite(const float* grad, const float* prev, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
        LAQ_CHECK(std::isfinite(grad[i]), "grad contains NaN or Inf (first at index " << i << ")");
    }
    if (prev) {
        for (std::size_t i = 0; i < n; ++i) {
            LAQ_CHECK(std::isfinite(prev[i]),
                      "prev contains NaN or Inf (first at index " << i << ")");
        }
    }
    LAQ_CHECK_RANGE(false, "the innovation grad - prev overflows float32 (|grad - prev| > "
                               << std::numeric_limits<float>::max() << ")");
    LAQ_ASSERT(false);  // unreachable: LAQ_CHECK_RANGE(false, ...) always throws
}

// The pieces of laq.hpp's sum order: radius block j is cut into runs of at most kReduceBlock
// elements from its start. Pieces are processed in fixed groups (one task each, possibly in
// parallel): `group` pieces per task, chosen so a task covers about kReduceBlock elements.
struct Pieces {
    std::size_t n, block, per_block, count, group;
    Pieces(std::size_t n_, std::size_t block_) : n(n_), block(block_) {
        per_block = num_blocks(block, kReduceBlock);
        const std::size_t nb = num_blocks(n, block);
        count = (nb - 1) * per_block + num_blocks(n - (nb - 1) * block, kReduceBlock);
        group = block < kReduceBlock ? kReduceBlock / block : 1;
    }
    std::size_t tasks() const { return num_blocks(count, group); }
    // Runs fn(t, first, last) for every task t, whose pieces are [first, last).
    template <class Fn>
    void run_tasks(Fn&& fn) const {
        parallel_for(tasks(), n >= kMinParallel,
                     [&](std::size_t t) { fn(t, t * group, std::min(count, (t + 1) * group)); });
    }
    // Runs fn(grid, p, blk, begin, end) for every piece p (radius block blk, elements
    // [begin, end)); `grid` is scratch space shared by the pieces of one task.
    template <class Fn>
    void run(Fn&& fn) const {
        run_tasks([&](std::size_t, std::size_t first, std::size_t last) {
            LaqGrid grid;
            for (std::size_t p = first; p < last; ++p) {
                const std::size_t blk = p / per_block;
                const std::size_t begin = blk * block + (p % per_block) * kReduceBlock;
                const std::size_t end = std::min({begin + kReduceBlock, (blk + 1) * block, n});
                fn(grid, p, blk, begin, end);
            }
        });
    }
};

// Grid (and weighted table) entries to refill for the piece ending at `end`: what the
// kernels read for full groups of 8, or every code's entry for the piece holding the
// vector's trailing partial group; never more than max(2^bits, kLaqLutPrefix).
inline int lut_entries(const LaqBlockKernels& k, std::size_t end, std::size_t n, int bits) {
    const int need = end == n && n % 8 != 0 ? kLaqMaxLevels : k.lut_entries;
    return std::min(need, std::max(1 << bits, kLaqLutPrefix));
}

inline std::size_t global_block(std::size_t n) {
    return (n + 7) / 8 * 8;  // one radius block covering the whole vector
}

LaqResult quantize_impl(const float* grad, const float* prev, std::size_t n, int bits,
                        std::size_t block, float* radii, std::uint8_t* packed) {
    check_bits(bits);
    LAQ_CHECK(n > 0, "grad must not be empty");
    const LaqBlockKernels& k = laq_active_kernels();
    const Pieces ps(n, block);
    const std::size_t nb = num_blocks(n, block);
    std::vector<LaqSums> sums(ps.count);
    bool bad = false;
    auto encode = [&](LaqGrid& grid, std::size_t p, std::size_t blk, std::size_t begin,
                      std::size_t end) {
        laq_fill_grid(radii[blk], bits, grid, lut_entries(k, end, n, bits));
        sums[p] = k.encode(grad + begin, prev ? prev + begin : nullptr, end - begin, grid,
                           packed + packed_offset(begin, bits));
    };
    if (ps.per_block == 1 && k.quantize_blocks != nullptr) {
        // One piece per block, the SIMD level's fused kernel over each task's blocks.
        std::vector<char> nonfinite(ps.tasks(), 0);
        ps.run_tasks([&](std::size_t t, std::size_t first, std::size_t last) {
            const std::size_t begin = first * block;
            const std::size_t end = std::min(last * block, n);
            nonfinite[t] = !k.quantize_blocks(
                grad + begin, prev ? prev + begin : nullptr, end - begin, block, bits,
                radii + first, sums.data() + first, packed + packed_offset(begin, bits));
        });
        for (char f : nonfinite) bad = bad || f != 0;
    } else if (ps.per_block == 1) {
        // One piece per block: radius and codes in one read of the block (still in cache).
        std::vector<char> nonfinite(ps.count, 0);
        ps.run(
            [&](LaqGrid& grid, std::size_t p, std::size_t blk, std::size_t begin, std::size_t end) {
                const LaqRadiusPartial part =
                    k.radius(grad + begin, prev ? prev + begin : nullptr, end - begin);
                if (part.nonfinite) {
                    nonfinite[p] = 1;
                    return;
                }
                radii[blk] = part.max_abs;
                encode(grid, p, blk, begin, end);
            });
        for (char f : nonfinite) bad = bad || f != 0;
    } else {
        // Blocks larger than a piece: all radius partials first, then the codes.
        std::vector<LaqRadiusPartial> parts(ps.count);
        ps.run([&](LaqGrid&, std::size_t p, std::size_t, std::size_t begin, std::size_t end) {
            parts[p] = k.radius(grad + begin, prev ? prev + begin : nullptr, end - begin);
        });
        std::fill(radii, radii + nb, 0.0f);
        for (std::size_t p = 0; p < ps.count; ++p) {
            float& r = radii[p / ps.per_block];
            r = std::max(r, parts[p].max_abs);
            bad = bad || parts[p].nonfinite;
        }
        if (!bad) ps.run(encode);
    }
    if (bad) report_nonfinite(grad, prev, n);
    LaqResult r;
    for (const auto& s : sums) {  // piece order: deterministic
        r.err_sq += s.err_sq;
        r.innov_sq += s.innov_sq;
    }
    r.radius = *std::max_element(radii, radii + nb);
    // q_new = q_prev + dQ is rounded to float32 (what every receiver's apply computes); an
    // overflow there shows as an infinite err_sq. Refused here, at the sender.
    LAQ_CHECK_RANGE(std::isfinite(r.err_sq),
                    "the quantized gradient q_prev + dQ overflows float32 (|grad| within one "
                    "quantization step of the float32 maximum "
                        << std::numeric_limits<float>::max() << "); scale the gradient down");
    return r;
}

void check_blocks_impl(const float* radii, std::size_t block, int bits, const std::uint8_t* packed,
                       std::size_t n) {
    check_bits(bits);
    LAQ_CHECK(n > 0, "n must be >= 1");
    const std::size_t nb = num_blocks(n, block);
    for (std::size_t j = 0; j < nb; ++j) {
        LAQ_CHECK(std::isfinite(radii[j]) && radii[j] >= 0.0f,
                  "radius must be finite and >= 0, got " << radii[j] << " (block " << j << ")");
    }
    check_padding(packed, n, bits);
}

void dequantize_impl(const std::uint8_t* packed, std::size_t n, int bits, std::size_t block,
                     const float* radii, float* out) {
    check_blocks_impl(radii, block, bits, packed, n);
    const LaqBlockKernels& k = laq_active_kernels();
    Pieces(n, block).run(
        [&](LaqGrid& grid, std::size_t, std::size_t blk, std::size_t begin, std::size_t end) {
            laq_fill_grid(radii[blk], bits, grid, lut_entries(k, end, n, bits));
            k.decode_store(packed + packed_offset(begin, bits), end - begin, grid, out + begin);
        });
}

// out[i] = inout[i] / divisor over [begin, end): the correctly rounded float32 quotient, as
// numpy's float32 divide. For a power-of-two divisor whose reciprocal is a normal float32
// (the hook's 2, 4, 8 ranks) x * (1 / divisor) is the same real number as x / divisor, so it
// rounds to the same float32 (subnormal results included) and the cheaper product is used;
// any other divisor is divided (x * (1/3) rounds differently from x / 3).
void divide_range(const float* inout, std::size_t begin, std::size_t end, float divisor,
                  float* out) {
    int exponent = 0;
    const float mantissa = std::frexp(divisor, &exponent);
    const float recip = 1.0f / divisor;
    if (std::fabs(mantissa) == 0.5f && std::isnormal(recip)) {
        for (std::size_t i = begin; i < end; ++i) out[i] = inout[i] * recip;
    } else {
        for (std::size_t i = begin; i < end; ++i) out[i] = inout[i] / divisor;
    }
}

// inout += weight * dQ_s for every payload s in order; with out, also out = inout / divisor.
// Each task's range gets every payload's codes and then the divide while it is still in
// cache (one pass over inout, however many payloads); per element the additions happen in
// payload order, exactly as one accumulate per payload would do them.
void accumulate_impl(const LaqCodes* src, std::size_t count, std::size_t n, int bits,
                     std::size_t block, float weight, float* inout, float* out = nullptr,
                     float divisor = 1.0f) {
    LAQ_CHECK(std::isfinite(weight), "weight must be finite, got " << weight);
    LAQ_CHECK(out == nullptr || (std::isfinite(divisor) && divisor != 0.0f),
              "divisor must be finite and nonzero, got " << divisor);
    for (std::size_t s = 0; s < count; ++s) {
        const float* radii = src[s].radii;
        check_blocks_impl(radii, block, bits, src[s].packed, n);
        // |table[c]| = |weight * lut[c]| <= |weight| * R_j (|lut[c]| <= R_j), so one product
        // with the largest radius decides whether any table entry overflows.
        const float r_max = *std::max_element(radii, radii + num_blocks(n, block));
        LAQ_CHECK_RANGE(std::isfinite(weight * r_max), "weight * dQ overflows float32 (weight "
                                                           << weight << ", radius " << r_max
                                                           << ")");
    }
    const LaqBlockKernels& k = laq_active_kernels();
    const Pieces ps(n, block);
    if (k.accumulate_blocks != nullptr && ps.per_block == 1) {  // each task's whole blocks
        ps.run_tasks([&](std::size_t, std::size_t first, std::size_t last) {
            const std::size_t begin = first * block;
            const std::size_t end = std::min(last * block, n);
            for (std::size_t s = 0; s < count; ++s) {
                k.accumulate_blocks(src[s].packed + packed_offset(begin, bits), end - begin, block,
                                    bits, src[s].radii + first, weight, inout + begin);
            }
            if (out != nullptr) divide_range(inout, begin, end, divisor, out);
        });
        return;
    }
    if (k.accumulate_blocks != nullptr) {  // pieces of larger blocks (the global radius)
        ps.run([&](LaqGrid&, std::size_t, std::size_t blk, std::size_t begin, std::size_t end) {
            for (std::size_t s = 0; s < count; ++s) {
                k.accumulate_blocks(src[s].packed + packed_offset(begin, bits), end - begin,
                                    end - begin, bits, src[s].radii + blk, weight, inout + begin);
            }
            if (out != nullptr) divide_range(inout, begin, end, divisor, out);
        });
        return;
    }
    ps.run([&](LaqGrid& grid, std::size_t, std::size_t blk, std::size_t begin, std::size_t end) {
        const int entries = lut_entries(k, end, n, bits);
        for (std::size_t s = 0; s < count; ++s) {
            laq_fill_grid(src[s].radii[blk], bits, grid, entries);
            // The weight is folded into the block's table (one float32 product per code value).
            float table[kLaqMaxLevels];
            for (int c = 0; c < entries; ++c) table[c] = weight * grid.lut[c];
            k.decode_add(src[s].packed + packed_offset(begin, bits), end - begin, grid, table,
                         weight, inout + begin);
        }
        if (out != nullptr) divide_range(inout, begin, end, divisor, out);
    });
}

double innov_sq_impl(const std::uint8_t* packed, std::size_t n, int bits, std::size_t block,
                     const float* radii) {
    check_blocks_impl(radii, block, bits, packed, n);
    const LaqBlockKernels& k = laq_active_kernels();
    const Pieces ps(n, block);
    std::vector<double> sums(ps.count);
    ps.run([&](LaqGrid& grid, std::size_t p, std::size_t blk, std::size_t begin, std::size_t end) {
        laq_fill_grid(radii[blk], bits, grid, lut_entries(k, end, n, bits));
        sums[p] = k.decode_sumsq(packed + packed_offset(begin, bits), end - begin, grid);
    });
    double total = 0.0;
    for (double s : sums) total += s;  // piece order, as the encoder's innov_sq
    return total;
}

}  // namespace

// The SIMD level chosen at run time (dispatch.hpp); every table gives identical results.
const LaqBlockKernels& laq_active_kernels() {
    return *kernels().laq;
}

// ---- global radius: one block covering the whole vector ----------------------------------
LaqResult laq_quantize(const float* grad, const float* prev, std::size_t n, int bits,
                       std::uint8_t* packed) {
    float radius = 0.0f;
    return quantize_impl(grad, prev, n, bits, global_block(n), &radius, packed);
}

void laq_check_payload(float radius, int bits, const std::uint8_t* packed, std::size_t n) {
    check_bits(bits);
    LAQ_CHECK(std::isfinite(radius) && radius >= 0.0f,
              "radius must be finite and >= 0, got " << radius);
    check_padding(packed, n, bits);
}

void laq_dequantize(const std::uint8_t* packed, std::size_t n, int bits, float radius, float* out) {
    dequantize_impl(packed, n, bits, global_block(n), &radius, out);
}

void laq_accumulate(const std::uint8_t* packed, std::size_t n, int bits, float radius, float weight,
                    float* inout) {
    const LaqCodes one{packed, &radius};
    accumulate_impl(&one, 1, n, bits, global_block(n), weight, inout);
}

void laq_accumulate_divide(const std::uint8_t* packed, std::size_t n, int bits, float radius,
                           float weight, float* inout, float divisor, float* out) {
    const LaqCodes one{packed, &radius};
    accumulate_impl(&one, 1, n, bits, global_block(n), weight, inout, out, divisor);
}

void laq_accumulate_all(const LaqCodes* payloads, std::size_t count, std::size_t n, int bits,
                        float weight, float* inout) {
    accumulate_impl(payloads, count, n, bits, global_block(n), weight, inout);
}

double laq_innov_sq(const std::uint8_t* packed, std::size_t n, int bits, float radius) {
    return innov_sq_impl(packed, n, bits, global_block(n), &radius);
}

// ---- blockwise radius ----------------------------------------------------------------------
void laq_check_block_size(std::size_t block_size) {
    LAQ_CHECK(block_size >= 8 && block_size <= kLaqMaxBlockSize && block_size % 8 == 0,
              "block_size must be a multiple of 8 in [8, 2^31], got " << block_size);
}

std::size_t laq_num_radii(std::size_t n, std::size_t block_size) {
    laq_check_block_size(block_size);
    return num_blocks(n, block_size);
}

LaqResult laq_quantize_blocks(const float* grad, const float* prev, std::size_t n, int bits,
                              std::size_t block_size, float* radii, std::uint8_t* packed) {
    laq_check_block_size(block_size);
    return quantize_impl(grad, prev, n, bits, block_size, radii, packed);
}

void laq_check_blocks_payload(const float* radii, std::size_t block_size, int bits,
                              const std::uint8_t* packed, std::size_t n) {
    laq_check_block_size(block_size);
    check_blocks_impl(radii, block_size, bits, packed, n);
}

void laq_dequantize_blocks(const std::uint8_t* packed, std::size_t n, int bits,
                           std::size_t block_size, const float* radii, float* out) {
    laq_check_block_size(block_size);
    dequantize_impl(packed, n, bits, block_size, radii, out);
}

void laq_accumulate_blocks(const std::uint8_t* packed, std::size_t n, int bits,
                           std::size_t block_size, const float* radii, float weight, float* inout) {
    laq_check_block_size(block_size);
    const LaqCodes one{packed, radii};
    accumulate_impl(&one, 1, n, bits, block_size, weight, inout);
}

void laq_accumulate_all_blocks(const LaqCodes* payloads, std::size_t count, std::size_t n, int bits,
                               std::size_t block_size, float weight, float* inout) {
    laq_check_block_size(block_size);
    accumulate_impl(payloads, count, n, bits, block_size, weight, inout);
}

void laq_accumulate_divide_blocks(const std::uint8_t* packed, std::size_t n, int bits,
                                  std::size_t block_size, const float* radii, float weight,
                                  float* inout, float divisor, float* out) {
    laq_check_block_size(block_size);
    const LaqCodes one{packed, radii};
    accumulate_impl(&one, 1, n, bits, block_size, weight, inout, out, divisor);
}

double laq_innov_sq_blocks(const std::uint8_t* packed, std::size_t n, int bits,
                           std::size_t block_size, const float* radii) {
    laq_check_block_size(block_size);
    return innov_sq_impl(packed, n, bits, block_size, radii);
}

}  // namespace laqcore
