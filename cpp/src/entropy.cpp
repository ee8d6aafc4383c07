// Interleaved rANS coder of code streams (format and arithmetic in laqcore/entropy.hpp).
#include "laqcore/entropy.hpp"

#include <algorithm>
#include <cstring>
#include <memory>

#include "compress_common.hpp"
#include "entropy_kernels.hpp"
#include "entropy_table.hpp"
#include "laqcore/common.hpp"
#include "laqcore/dispatch.hpp"
#include "laqcore/pack.hpp"
#include "laqcore/parallel.hpp"

namespace laqcore {
namespace detail {
namespace {

// One encoding step of symbol entry e on the state x (word renormalisation first).
inline void encode_step(std::uint32_t& x, std::uint8_t*& p, const EncSymbol& e) {
    std::uint32_t v = x;
    // Branch-free renormalisation (the branch is unpredictable): the word is always written
    // below p, and p moves down only when it is emitted.
    const std::uint32_t emit = v >= e.x_max ? 1u : 0u;
    p[-2] = static_cast<std::uint8_t>(v);
    p[-1] = static_cast<std::uint8_t>(v >> 8);
    p -= 2 * emit;
    v >>= 16 * emit;
    const auto q = static_cast<std::uint32_t>((std::uint64_t{v} * e.rcp) >> e.shift);
    x = v + (e.meta & 0xFFFu) + q * ((e.meta >> 12) & 0xFFFu);
}

// ---- scalar reference of the bulk loops (entropy_kernels.hpp) ---------------------------

void encode_groups_scalar(RansEncodeCursor* cursors, int count, int /*m*/, const EncSymbol* enc) {
    for (int k = 0; k < count; ++k) {
        RansEncodeCursor& c = cursors[k];
        for (; c.groups > 0; --c.groups) {
            const std::uint8_t* s = c.symbols + (c.groups - 1) * kRansGroup;
            for (std::size_t j = kRansGroup; j-- > 0;) encode_step(c.x[j], c.p, enc[s[j]]);
        }
    }
}

void decode_groups_scalar(RansDecodeCursor* cursors, int count, int m, const std::uint32_t* slots) {
    const std::uint32_t mask = (std::uint32_t{1} << m) - 1;
    for (int k = 0; k < count; ++k) {
        RansDecodeCursor& c = cursors[k];
        for (; c.groups > 0 && c.end - c.p >= 2 * static_cast<std::ptrdiff_t>(kRansGroup);
             --c.groups, c.out += kRansGroup) {
            for (std::size_t j = 0; j < kRansGroup; ++j) {
                std::uint32_t v = c.x[j];
                const std::uint32_t e = slots[v & mask];
                c.out[j] = static_cast<std::uint8_t>(e >> 24);
                v = ((e & 0xFFFu) + 1) * (v >> m) + ((e >> 12) & 0xFFFu);
                // The next word is read unconditionally and used only if the state needs
                // it (branch-free; the branch would be unpredictable).
                const std::uint32_t word = std::uint32_t{c.p[0]} | std::uint32_t{c.p[1]} << 8;
                const std::uint32_t need = v < kRansLow ? 1u : 0u;
                c.x[j] = need ? (v << 16) | word : v;
                c.p += 2 * need;
            }
        }
    }
}

}  // namespace

const EntropyBlockKernels& entropy_scalar_kernels() {
    static const EntropyBlockKernels table{&encode_groups_scalar, &decode_groups_scalar};
    return table;
}

}  // namespace detail

namespace {

using detail::EncSymbol;
using detail::EntropyTable;
using detail::kRansGroup;
using detail::RansDecodeCursor;
using detail::RansEncodeCursor;

constexpr std::uint32_t kStateLow = detail::kRansLow;        // L
constexpr std::uint32_t kStateEnd = std::uint32_t{1} << 31;  // states stay below 2^31
// Streams of fewer symbols use one lane: every lane costs 4 bytes of final state.
constexpr std::size_t kManyLanesFrom = 4096;
constexpr int kManyLanesLog2 = 3;
static_assert(std::size_t{1} << kManyLanesLog2 == kRansGroup, "bulk loops are 8 lanes wide");
static_assert(kEntropyChunk >= kManyLanesFrom, "a one-lane stream is a single chunk");

std::vector<EncSymbol> encoder_table(const EntropyTable& t) {
    LAQ_ASSERT(t.m >= 1 && t.m <= detail::kRansSlotMaxPrecision);
    std::vector<EncSymbol> enc(t.freq.size());
    const std::uint32_t M = std::uint32_t{1} << t.m;
    std::uint32_t cum = 0;
    for (std::size_t s = 0; s < t.freq.size(); ++s) {
        const std::uint32_t f = t.freq[s];
        EncSymbol& e = enc[s];
        if (f != 0) {
            int sh = 0;
            while ((std::uint32_t{1} << sh) < f) ++sh;
            e.shift = static_cast<std::uint32_t>(31 + sh);
            e.rcp = static_cast<std::uint32_t>(((std::uint64_t{1} << e.shift) + f - 1) / f);
            e.x_max = (kStateLow >> t.m << 16) * f;
            // c < M, M - f < M and sh <= m fit their fields for m <= 12.
            e.meta = cum | (M - f) << 12 | static_cast<std::uint32_t>(sh) << 24;
        }
        cum += f;
    }
    return enc;
}

struct DecTable {
    int m = 0;
    std::vector<std::uint8_t> sym;     // slot -> symbol
    std::vector<std::uint32_t> entry;  // slot -> f_s | (slot - c_s) << 16
    std::vector<std::uint32_t> slots;  // m <= kRansSlotMaxPrecision: the bulk loops' table
};

DecTable decoder_table(const EntropyTable& t) {
    DecTable d;
    d.m = t.m;
    const std::size_t M = std::size_t{1} << t.m;
    const bool packed = t.m <= detail::kRansSlotMaxPrecision;
    d.sym.resize(M);
    d.entry.resize(M);
    d.slots.resize(packed ? M : 0);
    std::size_t slot = 0;
    for (std::size_t s = 0; s < t.freq.size(); ++s) {
        const auto symbol = static_cast<std::uint32_t>(s);
        for (std::uint32_t j = 0; j < t.freq[s]; ++j, ++slot) {
            d.sym[slot] = static_cast<std::uint8_t>(s);
            d.entry[slot] = t.freq[s] | (j << 16);
            // f - 1 and j fit in 12 bits for m <= 12 (f <= 2^m).
            if (packed) d.slots[slot] = (t.freq[s] - 1) | j << 12 | symbol << 24;
        }
    }
    return d;
}

// One decoding step with a bounds check on the word read; false if the stream ran out.
inline bool decode_step(std::uint32_t& x, const std::uint8_t*& p, const std::uint8_t* end,
                        const DecTable& dt, std::uint8_t& out) {
    const std::uint32_t slot = x & ((std::uint32_t{1} << dt.m) - 1);
    const std::uint32_t e = dt.entry[slot];
    out = dt.sym[slot];
    std::uint32_t v = (e & 0xFFFFu) * (x >> dt.m) + (e >> 16);
    bool ok = true;
    if (v < kStateLow) {
        if (end - p < 2) {
            ok = false;
            v = kStateLow;  // keeps the state defined; the chunk is rejected anyway
        } else {
            v = (v << 16) | std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8;
            p += 2;
        }
    }
    x = v;
    return ok;
}

inline void put_u32(std::uint8_t* p, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

inline std::uint32_t get_u32(const std::uint8_t* p) {
    return std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 |
           std::uint32_t{p[3]} << 24;
}

// Bytes a chunk's buffer holds: one word per symbol, the states, and the 16 bytes the bulk
// encoder may write below its lowest word (entropy_kernels.hpp).
std::size_t chunk_capacity(std::size_t count, std::size_t lanes) {
    return 2 * count + 4 * lanes + 16;
}

// A one-lane stream into the buffer ending at `end` (written backwards); returns its start.
std::uint8_t* encode_one_lane(const std::uint8_t* symbols, std::size_t count, const EncSymbol* enc,
                              std::uint8_t* end) {
    std::uint32_t x = kStateLow;
    std::uint8_t* p = end;
    for (std::size_t i = count; i-- > 0;) detail::encode_step(x, p, enc[symbols[i]]);
    p -= 4;
    put_u32(p, x);
    return p;
}

// An 8-lane chunk, in three phases so that the bulk loop can code two chunks at once: the
// tail (the last count mod 8 symbols, symbol i in lane i mod 8) ...
void encode_begin(RansEncodeCursor& c, const std::uint8_t* symbols, std::size_t count,
                  const EncSymbol* enc, std::uint8_t* end) {
    for (std::uint32_t& v : c.x) v = kStateLow;
    c.p = end;
    std::size_t i = count;
    while (i % kRansGroup != 0) {
        --i;
        detail::encode_step(c.x[i % kRansGroup], c.p, enc[symbols[i]]);
    }
    c.symbols = symbols;
    c.groups = i / kRansGroup;
}

// ... the bulk loop (whole groups, EntropyBlockKernels::encode_groups), then the states,
// lane 0 first; returns the chunk's first byte.
std::uint8_t* encode_end(RansEncodeCursor& c) {
    for (std::size_t j = kRansGroup; j-- > 0;) {
        c.p -= 4;
        put_u32(c.p, c.x[j]);
    }
    return c.p;
}

// Decodes a one-lane stream; false for an inconsistent one.
bool decode_one_lane(const std::uint8_t* data, std::size_t size, std::size_t count,
                     const DecTable& dt, std::uint8_t* out) {
    if (size < 4) return false;
    std::uint32_t x = get_u32(data);
    if (x < kStateLow || x >= kStateEnd) return false;
    const std::uint8_t* p = data + 4;
    const std::uint8_t* end = data + size;
    bool ok = true;
    for (std::size_t i = 0; i < count; ++i) ok &= decode_step(x, p, end, dt, out[i]);
    return ok && p == end && x == kStateLow;
}

// An 8-lane chunk: its states (false if one is out of range) ...
bool decode_begin(RansDecodeCursor& c, const std::uint8_t* data, std::size_t size,
                  std::size_t count, std::uint8_t* out) {
    if (size < 4 * kRansGroup) return false;
    for (std::size_t j = 0; j < kRansGroup; ++j) {
        c.x[j] = get_u32(data + 4 * j);
        if (c.x[j] < kStateLow || c.x[j] >= kStateEnd) return false;
    }
    c.p = data + 4 * kRansGroup;
    c.end = data + size;
    c.out = out;
    c.groups = count / kRansGroup;
    return true;
}

// ... the bulk loop (EntropyBlockKernels::decode_groups, which stops 16 bytes before the
// end), then checked steps up to count symbols (chunk_out: the chunk's first symbol); false
// unless every word is consumed and every lane ends at L.
bool decode_end(RansDecodeCursor& c, std::size_t count, const DecTable& dt,
                std::uint8_t* chunk_out) {
    bool ok = true;
    for (auto i = static_cast<std::size_t>(c.out - chunk_out); i < count; ++i) {
        ok &= decode_step(c.x[i % kRansGroup], c.p, c.end, dt, chunk_out[i]);
    }
    if (!ok || c.p != c.end) return false;
    for (std::uint32_t v : c.x) {
        if (v != kStateLow) return false;
    }
    return true;
}

void check_alphabet(int alphabet_bits) {
    LAQ_CHECK(alphabet_bits >= 1 && alphabet_bits <= 8,
              "alphabet_bits must be in [1, 8], got " << alphabet_bits);
}

// Stream of count symbols with an already chosen table.
std::vector<std::uint8_t> encode_with_table(const std::uint8_t* symbols, std::size_t count,
                                            const EntropyTable& table) {
    std::vector<std::uint8_t> out;
    const int lanes_log2 = count >= kManyLanesFrom ? kManyLanesLog2 : 0;
    const std::size_t lanes = std::size_t{1} << lanes_log2;
    out.push_back(static_cast<std::uint8_t>(table.m | (lanes_log2 << 4)));
    detail::entropy_write_table(table, out);
    const std::vector<EncSymbol> enc = encoder_table(table);
    const detail::EntropyBlockKernels& kern = *kernels().entropy;

    const std::size_t nchunks = num_blocks(count, kEntropyChunk);
    const std::size_t cap = chunk_capacity(kEntropyChunk, lanes);
    // Uninitialised: every byte copied out below has been written by the encoder.
    std::unique_ptr<std::uint8_t[]> scratch_owner(new std::uint8_t[nchunks * cap]);
    std::uint8_t* scratch = scratch_owner.get();
    std::vector<std::size_t> first(nchunks), length(nchunks);
    auto record = [&](std::size_t c, const std::uint8_t* start) {
        first[c] = static_cast<std::size_t>(start - scratch);
        length[c] = (c + 1) * cap - first[c];
    };
    if (lanes_log2 == 0) {
        record(0, encode_one_lane(symbols, count, enc.data(), scratch + cap));
    } else {
        // Chunks in runs of kRansMaxCursors, coded together by the bulk loop.
        const auto run = static_cast<std::size_t>(detail::kRansMaxCursors);
        parallel_for(num_blocks(nchunks, run), count >= kMinParallel, [&](std::size_t r) {
            RansEncodeCursor cursors[detail::kRansMaxCursors];
            const std::size_t c0 = r * run;
            const std::size_t c1 = std::min(nchunks, c0 + run);
            for (std::size_t c = c0; c < c1; ++c) {
                const std::size_t begin = c * kEntropyChunk;
                encode_begin(cursors[c - c0], symbols + begin,
                             std::min(count - begin, kEntropyChunk), enc.data(),
                             scratch + (c + 1) * cap);
            }
            kern.encode_groups(cursors, static_cast<int>(c1 - c0), table.m, enc.data());
            for (std::size_t c = c0; c < c1; ++c) record(c, encode_end(cursors[c - c0]));
        });
    }
    std::size_t total = out.size() + 4 * (nchunks - 1);
    for (std::size_t c = 0; c < nchunks; ++c) total += length[c];
    out.reserve(total);  // appended below without zero-filling first
    for (std::size_t c = 0; c + 1 < nchunks; ++c) {
        LAQ_ASSERT(length[c] < (std::size_t{1} << 32));
        std::uint8_t len[4];
        put_u32(len, static_cast<std::uint32_t>(length[c]));
        out.insert(out.end(), len, len + 4);
    }
    for (std::size_t c = 0; c < nchunks; ++c) {
        out.insert(out.end(), scratch + first[c], scratch + first[c] + length[c]);
    }
    return out;
}

}  // namespace

std::vector<std::uint8_t> entropy_encode(const std::uint8_t* symbols, std::size_t count,
                                         int alphabet_bits) {
    check_alphabet(alphabet_bits);
    if (count == 0) return std::vector<std::uint8_t>(1, 0);
    const std::vector<std::uint64_t> counts = detail::entropy_histogram(symbols, count);
    for (std::size_t s = std::size_t{1} << alphabet_bits; s < 256; ++s) {
        LAQ_CHECK(counts[s] == 0, "symbol " << s << " is outside the alphabet of "
                                            << (1 << alphabet_bits) << " symbols");
    }
    double est = 0.0;
    const EntropyTable table = detail::entropy_choose_table(counts, alphabet_bits, est);
    return encode_with_table(symbols, count, table);
}

void entropy_decode(const std::uint8_t* data, std::size_t size, std::size_t count,
                    int alphabet_bits, std::uint8_t* out) {
    check_alphabet(alphabet_bits);
    LAQ_CHECK(size >= 1, "corrupt entropy-coded stream: empty");
    const int m = data[0] & 0x0F;
    const int lanes_log2 = data[0] >> 4;
    if (count == 0) {
        LAQ_CHECK(size == 1 && data[0] == 0,
                  "corrupt entropy-coded stream: an empty stream is the single byte 0");
        return;
    }
    LAQ_CHECK(m >= 1, "corrupt entropy-coded stream: precision 0 for a non-empty stream");
    LAQ_CHECK(lanes_log2 == (count >= kManyLanesFrom ? kManyLanesLog2 : 0),
              "corrupt entropy-coded stream: lane count " << (1 << lanes_log2)
                                                          << " does not match the stream length");
    std::size_t pos = 1;
    const EntropyTable table = detail::entropy_read_table(data, size, pos, m, alphabet_bits);
    const DecTable dt = decoder_table(table);
    const detail::EntropyBlockKernels& kern = *kernels().entropy;
    const std::size_t nchunks = num_blocks(count, kEntropyChunk);
    LAQ_CHECK(size - pos >= 4 * (nchunks - 1),
              "corrupt entropy-coded stream: chunk directory truncated");
    std::vector<std::size_t> offset(nchunks + 1);
    offset[0] = pos + 4 * (nchunks - 1);
    for (std::size_t c = 0; c + 1 < nchunks; ++c) {
        const std::size_t len = get_u32(data + pos + 4 * c);
        LAQ_CHECK(len <= size - offset[c],
                  "corrupt entropy-coded stream: chunk " << c << " overruns");
        offset[c + 1] = offset[c] + len;
    }
    offset[nchunks] = size;
    std::vector<unsigned char> good(nchunks, 0);
    auto chunk_size = [&](std::size_t c) { return offset[c + 1] - offset[c]; };
    if (lanes_log2 == 0) {
        good[0] = decode_one_lane(data + offset[0], chunk_size(0), count, dt, out) ? 1 : 0;
    } else {
        const auto run = static_cast<std::size_t>(detail::kRansMaxCursors);
        parallel_for(num_blocks(nchunks, run), count >= kMinParallel, [&](std::size_t r) {
            RansDecodeCursor cursors[detail::kRansMaxCursors];
            std::size_t which[detail::kRansMaxCursors];
            int started = 0;
            const std::size_t c0 = r * run;
            const std::size_t c1 = std::min(nchunks, c0 + run);
            for (std::size_t c = c0; c < c1; ++c) {
                const std::size_t begin = c * kEntropyChunk;
                if (decode_begin(cursors[started], data + offset[c], chunk_size(c),
                                 std::min(count - begin, kEntropyChunk), out + begin)) {
                    which[started++] = c;
                }
            }
            if (!dt.slots.empty()) kern.decode_groups(cursors, started, m, dt.slots.data());
            for (int k = 0; k < started; ++k) {
                const std::size_t begin = which[k] * kEntropyChunk;
                good[which[k]] =
                    decode_end(cursors[k], std::min(count - begin, kEntropyChunk), dt, out + begin)
                        ? 1
                        : 0;
            }
        });
    }
    for (std::size_t c = 0; c < nchunks; ++c) {
        LAQ_CHECK(good[c],
                  "corrupt entropy-coded stream: chunk " << c << " does not decode exactly");
    }
}

namespace {

// The coded stream of entropy_encode_packed, before its comparison with the packed bytes.
EntropyPacked encode_packed_coded(const std::uint8_t* packed, std::size_t n, int bits) {
    EntropyPacked result;
    const std::size_t nbytes = packed_size(n, bits);
    if (n == 0) {
        result.stream.assign(1, 0);
        return result;
    }
    const bool byte_aligned = bits == 1 || bits == 2 || bits == 4 || bits == 8;
    if (byte_aligned) {
        // One histogram of the packed bytes gives both modes' statistics.
        const std::vector<std::uint64_t> bytes = detail::entropy_histogram(packed, nbytes);
        std::vector<std::uint64_t> codes(256, 0);
        const int per = 8 / bits;
        const unsigned cmask = (1u << bits) - 1;
        for (unsigned b = 0; b < 256; ++b) {
            for (int g = 0; g < per; ++g) codes[(b >> (g * bits)) & cmask] += bytes[b];
        }
        // The padding codes of the last byte are zeros that are not part of the stream.
        codes[0] -= static_cast<std::uint64_t>(nbytes * static_cast<std::size_t>(per) - n);
        double est_codes = 0.0, est_bytes = 0.0;
        const EntropyTable t_codes = detail::entropy_choose_table(codes, bits, est_codes);
        const EntropyTable t_bytes = detail::entropy_choose_table(bytes, 8, est_bytes);
        const auto lane_bytes = [](std::size_t count) {
            return 32.0 * (count >= kManyLanesFrom ? double{1 << kManyLanesLog2} : 1.0);
        };
        // Bytes mode codes 8 / bits codes per rANS step, so it is preferred unless codes mode
        // is estimated at least 1% smaller.
        if (bits == 8 || est_bytes + lane_bytes(nbytes) <= 1.01 * (est_codes + lane_bytes(n))) {
            result.mode = kEntropyBytes;
            result.stream = encode_with_table(packed, nbytes, bits == 8 ? t_codes : t_bytes);
            return result;
        }
        std::vector<std::uint8_t> symbols(n);
        unpack_bits(packed, n, bits, symbols.data());
        result.mode = kEntropyCodes;
        result.stream = encode_with_table(symbols.data(), n, t_codes);
        return result;
    }
    std::vector<std::uint8_t> symbols(n);
    unpack_bits(packed, n, bits, symbols.data());
    result.mode = kEntropyCodes;
    result.stream = entropy_encode(symbols.data(), n, bits);
    return result;
}

}  // namespace

EntropyPacked entropy_encode_packed(const std::uint8_t* packed, std::size_t n, int bits) {
    check_bits(bits);
    EntropyPacked result = encode_packed_coded(packed, n, bits);
    const std::size_t nbytes = packed_size(n, bits);
    // Near-uniform codes (scaled sign, TernGrad on flat vectors) do not shrink: the table and
    // the lanes' 4-byte states would make the frame larger than the plain one.
    if (n > 0 && result.stream.size() >= nbytes) {
        result.mode = kEntropyStored;
        result.stream.assign(packed, packed + nbytes);
    }
    return result;
}

void entropy_decode_packed(const std::uint8_t* data, std::size_t size, std::size_t n, int bits,
                           int mode, std::uint8_t* packed) {
    check_bits(bits);
    const std::size_t nbytes = packed_size(n, bits);
    if (mode == kEntropyBytes) {
        entropy_decode(data, size, nbytes, 8, packed);
        check_padding(packed, n, bits);
        return;
    }
    if (mode == kEntropyStored) {
        LAQ_CHECK(size == nbytes, "corrupt entropy-coded stream: stored codes have "
                                      << size << " bytes, expected " << nbytes);
        std::copy(data, data + size, packed);
        check_padding(packed, n, bits);
        return;
    }
    LAQ_CHECK(mode == kEntropyCodes, "corrupt entropy-coded stream: unknown symbol mode " << mode);
    std::vector<std::uint8_t> symbols(n);
    entropy_decode(data, size, n, bits, symbols.data());
    pack_bits(symbols.data(), n, bits, packed);
}

}  // namespace laqcore
