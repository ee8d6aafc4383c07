// LAQ with a bit width per block (laqcore/laq_widths.hpp says what and why).
#include "laqcore/laq_widths.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "laqcore/common.hpp"
#include "laqcore/laq.hpp"

namespace laqcore {
namespace {

// float32(2^(-e/2)) for e = 0..7: 1, 1/sqrt2, 1/2, ... (hex literals: exact float32 values,
// the correctly rounded ones, laqcore._reference.WIDTHS_RADIUS_SCALE holds the same).
constexpr float kRadiusScale[kExponentLevels] = {
    0x1p+0f, 0x1.6a09e6p-1f, 0x1p-1f, 0x1.6a09e6p-2f,
    0x1p-2f, 0x1.6a09e6p-3f, 0x1p-3f, 0x1.6a09e6p-4f,
};

// LSB-first bit stream writer / reader (the body layout of the header).
class BitWriter {
  public:
    explicit BitWriter(std::vector<std::uint8_t>& out) : out_(out) {}
    void put(std::uint32_t value, int bits) {
        acc_ |= static_cast<std::uint64_t>(value) << fill_;
        fill_ += bits;
        while (fill_ >= 8) {
            out_.push_back(static_cast<std::uint8_t>(acc_));
            acc_ >>= 8;
            fill_ -= 8;
        }
    }
    void flush() {
        if (fill_ > 0) out_.push_back(static_cast<std::uint8_t>(acc_));
        acc_ = 0;
        fill_ = 0;
    }

  private:
    std::vector<std::uint8_t>& out_;
    std::uint64_t acc_ = 0;
    int fill_ = 0;
};

class BitReader {
  public:
    explicit BitReader(const std::uint8_t* in) : in_(in) {}
    // The next `bits` (<= 25) bits: the bytes they span (at most 4), least significant first.
    // Reads only bytes that hold some of those bits, so never past a body whose length the
    // fields were checked against.
    std::uint32_t get(int bits) {
        const std::size_t byte = pos_ >> 3;
        const int shift = static_cast<int>(pos_ & 7);
        const int nbytes = (shift + bits + 7) >> 3;
        std::uint32_t word = 0;
        for (int k = 0; k < nbytes; ++k)
            word |= static_cast<std::uint32_t>(in_[byte + static_cast<std::size_t>(k)]) << (8 * k);
        pos_ += static_cast<std::size_t>(bits);
        return (word >> shift) & ((1u << bits) - 1u);
    }
    void seek(std::size_t pos) { pos_ = pos; }

  private:
    const std::uint8_t* in_;
    std::size_t pos_ = 0;
};

// Entry k of block j in the per-block tables of kWidthFields entries (err, cost).
std::size_t slot(std::size_t j, int k) {
    return j * kWidthFields + static_cast<std::size_t>(k);
}

// Longest vector (so that n + block - 1 and the bit counts never wrap).
constexpr std::size_t kMaxWidthsLength = std::size_t{1} << 62;

std::size_t num_blocks(std::size_t n, std::size_t block) {
    return (n + block - 1) / block;
}
std::size_t block_len(std::size_t n, std::size_t block, std::size_t j) {
    return std::min(block, n - j * block);
}

// LAQ's code for v on the grid (laq.hpp's formula; R > 0, |v| <= R). (double)v + R is exact
// and >= 0 (two floats), so x >= 0.5 and truncation is floor(x), without the libm call the
// portable build would make for std::floor.
int grid_code(float v, const LaqGrid& grid) {
    const int top = (1 << grid.bits) - 1;
    const double x = (static_cast<double>(v) + static_cast<double>(grid.radius)) / grid.step + 0.5;
    const int c = static_cast<int>(x);
    return c < top ? c : top;
}

// The fields a checked body holds: table index per block, exponent per sent block, and where
// the codes start.
struct Fields {
    std::vector<std::uint8_t> index;
    std::vector<std::uint8_t> exponent;  // per block; only sent blocks' are meaningful
    std::size_t code_bit = 0;            // bit offset of the first code
    std::size_t total_bits = 0;
};

Fields read_fields(const std::uint8_t* body, std::size_t nbytes, std::size_t n, std::size_t block,
                   const LaqWidthsTable& table, bool checked) {
    const std::size_t nb = num_blocks(n, block);
    const std::size_t field_bits = nb * kWidthFieldBits;
    if (!checked) {  // before allocating anything by n: a corrupt header may claim any n
        LAQ_CHECK((field_bits + 7) / 8 <= nbytes,
                  "corrupt LAQ_WIDTHS frame: " << nbytes << " body bytes cannot hold the " << nb
                                               << " width fields");
    }
    Fields f;
    f.index.resize(nb);
    f.exponent.assign(nb, 0);
    BitReader r(body);
    std::size_t sent = 0, code_bits = 0;
    for (std::size_t j = 0; j < nb; ++j) {
        f.index[j] = static_cast<std::uint8_t>(r.get(kWidthFieldBits));
        const int w = table.w[f.index[j]];
        if (w > 0) {
            ++sent;
            code_bits += static_cast<std::size_t>(w) * block_len(n, block, j);
        }
    }
    f.code_bit = field_bits + sent * kExponentBits;
    f.total_bits = f.code_bit + code_bits;
    if (!checked) {
        LAQ_CHECK((f.total_bits + 7) / 8 == nbytes, "corrupt LAQ_WIDTHS frame: body has "
                                                        << nbytes << " bytes, its fields need "
                                                        << (f.total_bits + 7) / 8);
    }
    for (std::size_t j = 0; j < nb; ++j) {
        if (table.w[f.index[j]] > 0)
            f.exponent[j] = static_cast<std::uint8_t>(r.get(kExponentBits));
    }
    return f;
}

// Calls visit(j, i0, count, grid) for every sent block with its grid filled and the reader at
// its first code.
template <class Visit>
void for_sent_blocks(const Fields& f, std::size_t n, std::size_t block, const LaqWidthsTable& table,
                     float r_max, BitReader& r, Visit&& visit) {
    LaqGrid grid;
    r.seek(f.code_bit);
    for (std::size_t j = 0; j < f.index.size(); ++j) {
        const int w = table.w[f.index[j]];
        if (w == 0) continue;
        const float radius = r_max * kRadiusScale[f.exponent[j]];
        laq_fill_grid(radius, w, grid, 1 << w);
        visit(j, j * block, block_len(n, block, j), grid);
    }
}

}  // namespace

float laq_widths_radius_scale(int e) noexcept {
    return kRadiusScale[e];
}

void laq_check_width_table(const LaqWidthsTable& table) {
    LAQ_CHECK(table.w[0] == 0, "the width table's first entry must be 0, got " << table.w[0]);
    for (int k = 1; k < kWidthFields; ++k) {
        LAQ_CHECK(table.w[k] > table.w[k - 1] && table.w[k] <= kMaxBits,
                  "the width table must increase strictly from 0 to at most 8, got "
                      << table.w[0] << ", " << table.w[1] << ", " << table.w[2] << ", "
                      << table.w[3]);
    }
}

void laq_check_width_block(std::size_t block) {
    LAQ_CHECK(block >= 8 && block <= kMaxWidthBlock && block % 8 == 0,
              "block_size must be a multiple of 8 in [8, " << kMaxWidthBlock << "], got " << block);
}

LaqWidthsResult laq_quantize_widths(const float* grad, const float* prev, std::size_t n,
                                    std::size_t block, const LaqWidthsTable& table, double budget,
                                    double cap) {
    LAQ_CHECK(n > 0, "grad must not be empty");
    laq_check_width_block(block);
    laq_check_width_table(table);
    LAQ_CHECK(budget >= 0.0, "budget must be >= 0 (+inf allowed), got " << budget);
    LAQ_CHECK(cap >= 0.0 && std::isfinite(cap), "cap must be finite and >= 0, got " << cap);
    const std::size_t nb = num_blocks(n, block);

    // v, the block maxima and R_max.
    std::vector<float> v(n);
    std::vector<float> block_max(nb, 0.0f);
    float r_max = 0.0f;
    for (std::size_t i = 0; i < n; ++i) {
        LAQ_CHECK(std::isfinite(grad[i]), "grad contains NaN or Inf");
        const float p = prev ? prev[i] : 0.0f;
        LAQ_CHECK(std::isfinite(p), "prev contains NaN or Inf");
        v[i] = grad[i] - p;
        LAQ_CHECK_RANGE(std::isfinite(v[i]), "the innovation grad - prev overflows float32");
        float& m = block_max[i / block];
        m = std::max(m, std::fabs(v[i]));
        r_max = std::max(r_max, m);
    }

    // Exponents, and every block's error at every table width (index 0: ||v_j||^2).
    std::vector<std::uint8_t> exponent(nb, 0);
    std::vector<double> err(nb * kWidthFields, 0.0);
    LaqGrid grid;
    double v_sq = 0.0;
    for (std::size_t j = 0; j < nb; ++j) {
        const std::size_t i0 = j * block, count = block_len(n, block, j);
        double e0 = 0.0;
        for (std::size_t i = i0; i < i0 + count; ++i) {
            e0 += static_cast<double>(v[i]) * static_cast<double>(v[i]);
        }
        err[j * kWidthFields] = e0;
        v_sq += e0;
        if (block_max[j] == 0.0f) continue;
        int e = kExponentLevels - 1;
        while (r_max * kRadiusScale[e] < block_max[j]) --e;  // e = 0 always qualifies
        exponent[j] = static_cast<std::uint8_t>(e);
        const float radius = r_max * kRadiusScale[e];
        for (int k = 1; k < kWidthFields; ++k) {
            laq_fill_grid(radius, table.w[k], grid, 1 << table.w[k]);
            double ek = 0.0;
            for (std::size_t i = i0; i < i0 + count; ++i) {
                const double d = static_cast<double>(grid.lut[grid_code(v[i], grid)]) -
                                 static_cast<double>(v[i]);
                ek += d * d;
            }
            err[slot(j, k)] = ek;
        }
    }
    const double target = std::min(budget, cap * v_sq);

    // Lagrangian allocation (header): pick(lam) per block, total error in block order.
    std::vector<std::uint8_t> best(nb), pick(nb);
    std::vector<double> cost(nb * kWidthFields);
    for (std::size_t j = 0; j < nb; ++j) {
        for (int k = 0; k < kWidthFields; ++k) {
            const int w = table.w[k];
            cost[slot(j, k)] =
                kWidthFieldBits +
                (w > 0 ? kExponentBits +
                             static_cast<double>(w) * static_cast<double>(block_len(n, block, j))
                       : 0.0);
        }
        best[j] = block_max[j] == 0.0f ? 0 : kWidthFields - 1;
    }
    auto total_at = [&](double lam) {
        double total = 0.0;
        for (std::size_t j = 0; j < nb; ++j) {
            int arg = 0;
            if (block_max[j] != 0.0f) {
                const double* e = &err[j * kWidthFields];
                const double* c = &cost[j * kWidthFields];
                double lo = e[0] + lam * c[0];
                for (int k = 1; k < kWidthFields; ++k) {
                    const double x = e[k] + lam * c[k];
                    if (x < lo) {
                        lo = x;
                        arg = k;
                    }
                }
            }
            pick[j] = static_cast<std::uint8_t>(arg);
            total += err[slot(j, arg)];
        }
        return total;
    };
    double widest = 0.0;
    for (std::size_t j = 0; j < nb; ++j) widest += err[j * kWidthFields + best[j]];
    if (widest <= target) {
        int lo = -64, hi = 64;
        while (hi - lo > 1) {
            const int mid = (lo + hi) >> 1;
            if (total_at(std::ldexp(1.0, mid)) <= target) {
                best = pick;
                lo = mid;
            } else {
                hi = mid;
            }
        }
        double a = std::ldexp(1.0, lo), b = std::ldexp(1.0, lo + 1);
        for (int it = 0; it < 40; ++it) {
            const double m = 0.5 * (a + b);
            if (total_at(m) <= target) {
                best = pick;
                a = m;
            } else {
                b = m;
            }
        }
    }

    // Encode: fields, exponents, codes; dQ, err_sq and innov_sq.
    LaqWidthsResult out;
    out.r_max = r_max;
    std::size_t body_bits = nb * kWidthFieldBits;
    for (std::size_t j = 0; j < nb; ++j) {
        const int w = table.w[best[j]];
        if (w > 0)
            body_bits += kExponentBits + static_cast<std::size_t>(w) * block_len(n, block, j);
    }
    out.body.reserve((body_bits + 7) / 8);
    BitWriter wr(out.body);
    for (std::size_t j = 0; j < nb; ++j) wr.put(best[j], kWidthFieldBits);
    for (std::size_t j = 0; j < nb; ++j) {
        if (best[j] > 0) wr.put(exponent[j], kExponentBits);
    }
    for (std::size_t j = 0; j < nb; ++j) {
        const std::size_t i0 = j * block, count = block_len(n, block, j);
        const int w = table.w[best[j]];
        if (w > 0) laq_fill_grid(r_max * kRadiusScale[exponent[j]], w, grid, 1 << w);
        for (std::size_t i = i0; i < i0 + count; ++i) {
            const float p = prev ? prev[i] : 0.0f;
            float dq = 0.0f, q_new = p;
            if (w > 0) {
                const int c = grid_code(v[i], grid);
                wr.put(static_cast<std::uint32_t>(c), w);
                dq = grid.lut[c];
                q_new = p + dq;
                LAQ_CHECK_RANGE(std::isfinite(q_new),
                                "the reconstruction prev + dQ overflows float32");
            }
            const double d = static_cast<double>(q_new) - static_cast<double>(grad[i]);
            out.err_sq += d * d;
            out.innov_sq += static_cast<double>(dq) * static_cast<double>(dq);
        }
    }
    wr.flush();
    return out;
}

std::size_t laq_widths_check(const std::uint8_t* body, std::size_t nbytes, std::size_t n,
                             std::size_t block, const LaqWidthsTable& table, float r_max) {
    LAQ_CHECK(n > 0 && n <= kMaxWidthsLength,
              "corrupt LAQ_WIDTHS frame: n must be in [1, 2^62], got " << n);
    laq_check_width_block(block);
    laq_check_width_table(table);
    LAQ_CHECK(std::isfinite(r_max) && r_max >= 0.0f,
              "corrupt LAQ_WIDTHS frame: r_max must be finite and >= 0, got " << r_max);
    const Fields f = read_fields(body, nbytes, n, block, table, false);
    const std::size_t pad = f.total_bits % 8;
    if (pad != 0) {
        LAQ_CHECK((body[nbytes - 1] >> pad) == 0,
                  "corrupt LAQ_WIDTHS frame: padding bits not zero");
    }
    for (std::size_t j = 0; j < f.index.size(); ++j) {
        if (table.w[f.index[j]] > 0) {
            LAQ_CHECK(r_max > 0.0f, "corrupt LAQ_WIDTHS frame: a block is sent but r_max is 0");
            // A radius that rounds to 0 cannot hold the block's nonzero maximum.
            LAQ_CHECK(r_max * kRadiusScale[f.exponent[j]] > 0.0f,
                      "corrupt LAQ_WIDTHS frame: a block's radius underflows to 0");
        }
    }
    return nbytes;
}

void laq_widths_fields(const std::uint8_t* body, std::size_t n, std::size_t block,
                       const LaqWidthsTable& table, float r_max, std::int8_t* widths,
                       float* radii) {
    const Fields f = read_fields(body, 0, n, block, table, true);
    for (std::size_t j = 0; j < f.index.size(); ++j) {
        const int w = table.w[f.index[j]];
        widths[j] = static_cast<std::int8_t>(w);
        radii[j] = w > 0 ? r_max * kRadiusScale[f.exponent[j]] : 0.0f;
    }
}

void laq_widths_decode(const std::uint8_t* body, std::size_t n, std::size_t block,
                       const LaqWidthsTable& table, float r_max, float weight, bool store,
                       float* inout) {
    const Fields f = read_fields(body, 0, n, block, table, true);
    if (store) std::fill(inout, inout + n, 0.0f);
    BitReader r(body);
    float scaled[kLaqMaxLevels];
    for_sent_blocks(f, n, block, table, r_max, r,
                    [&](std::size_t, std::size_t i0, std::size_t count, const LaqGrid& grid) {
                        const int levels = 1 << grid.bits;
                        for (int c = 0; c < levels; ++c) {
                            scaled[c] = store ? grid.lut[c] : weight * grid.lut[c];
                        }
                        for (std::size_t i = i0; i < i0 + count; ++i) {
                            const float d = scaled[r.get(grid.bits)];
                            inout[i] = store ? d : inout[i] + d;
                        }
                    });
}

double laq_widths_innov_sq(const std::uint8_t* body, std::size_t n, std::size_t block,
                           const LaqWidthsTable& table, float r_max) {
    const Fields f = read_fields(body, 0, n, block, table, true);
    BitReader r(body);
    double total = 0.0;
    for_sent_blocks(f, n, block, table, r_max, r,
                    [&](std::size_t, std::size_t, std::size_t count, const LaqGrid& grid) {
                        for (std::size_t i = 0; i < count; ++i) {
                            const double d = grid.lut[r.get(grid.bits)];
                            total += d * d;
                        }
                    });
    return total;
}

}  // namespace laqcore
