// Interleaved rANS coder of code streams (format and arithmetic in laqcore/entropy.hpp).
#include "laqcore/entropy.hpp"

#include <algorithm>
#include <cstring>
#include <memory>

#include "compress_common.hpp"
#include "entropy_table.hpp"
#include "laqcore/common.hpp"
#include "laqcore/pack.hpp"
#include "laqcore/parallel.hpp"

namespace laqcore {
namespace {

using detail::EntropyTable;

constexpr std::uint32_t kStateLow = std::uint32_t{1} << 15;  // L
constexpr std::uint32_t kStateEnd = std::uint32_t{1} << 31;  // states stay below 2^31
// Streams of fewer symbols use one lane: every lane costs 4 bytes of final state.
constexpr std::size_t kManyLanesFrom = 4096;
constexpr int kManyLanesLog2 = 3;

struct EncSymbol {
    std::uint32_t x_max = 0;  // renormalise when x >= x_max
    std::uint32_t rcp = 0;    // reciprocal of f (see entropy.hpp)
    std::uint16_t bias = 0;   // c_s
    std::uint16_t cmpl = 0;   // M - f_s
    std::uint32_t shift = 0;  // 31 + ceil(log2 f_s)
};

std::vector<EncSymbol> encoder_table(const EntropyTable& t) {
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
            e.bias = static_cast<std::uint16_t>(cum);    // < M <= 2^15
            e.cmpl = static_cast<std::uint16_t>(M - f);  // f == M: 0
        }
        cum += f;
    }
    return enc;
}

struct DecTable {
    std::vector<std::uint8_t> sym;     // slot -> symbol
    std::vector<std::uint32_t> entry;  // slot -> f_s | (slot - c_s) << 16
};

DecTable decoder_table(const EntropyTable& t) {
    DecTable d;
    const std::size_t M = std::size_t{1} << t.m;
    d.sym.resize(M);
    d.entry.resize(M);
    std::size_t slot = 0;
    for (std::size_t s = 0; s < t.freq.size(); ++s) {
        for (std::uint32_t j = 0; j < t.freq[s]; ++j, ++slot) {
            d.sym[slot] = static_cast<std::uint8_t>(s);
            d.entry[slot] = t.freq[s] | (j << 16);
        }
    }
    return d;
}

inline void put_u32(std::uint8_t* p, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

inline std::uint32_t get_u32(const std::uint8_t* p) {
    return std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 |
           std::uint32_t{p[3]} << 24;
}

std::size_t chunk_capacity(std::size_t count, std::size_t lanes) {
    return 2 * count + 4 * lanes;
}

// Encodes symbols[0..count) into the buffer ending at `end` (writing backwards); returns the
// first byte written. The buffer must hold chunk_capacity(count, lanes) bytes.
template <std::size_t Lanes>
std::uint8_t* encode_chunk(const std::uint8_t* symbols, std::size_t count, const EncSymbol* enc,
                           std::uint8_t* end) {
    std::uint32_t x[Lanes];
    for (std::size_t j = 0; j < Lanes; ++j) x[j] = kStateLow;
    std::uint8_t* p = end;
    auto step = [&](std::size_t i, std::size_t j) {
        const EncSymbol& e = enc[symbols[i]];
        std::uint32_t v = x[j];
        // Branch-free renormalisation (the branch is unpredictable): the word is always
        // written below p, and p moves down only when it is emitted. p - 2 stays inside the
        // buffer: it holds one word per symbol plus the states written last.
        const std::uint32_t emit = v >= e.x_max ? 1u : 0u;
        p[-2] = static_cast<std::uint8_t>(v);
        p[-1] = static_cast<std::uint8_t>(v >> 8);
        p -= 2 * emit;
        v >>= 16 * emit;
        const auto q = static_cast<std::uint32_t>((std::uint64_t{v} * e.rcp) >> e.shift);
        x[j] = v + e.bias + q * e.cmpl;
    };
    std::size_t i = count;
    // Tail (the last count mod Lanes symbols), then whole groups of Lanes.
    while (i % Lanes != 0) {
        --i;
        step(i, i % Lanes);
    }
    while (i != 0) {
        i -= Lanes;
        for (std::size_t j = Lanes; j-- > 0;) step(i + j, j);
    }
    for (std::size_t j = Lanes; j-- > 0;) {
        p -= 4;
        put_u32(p, x[j]);
    }
    return p;
}

// Decodes count symbols from data[0..size); returns false for an inconsistent chunk.
template <std::size_t Lanes>
bool decode_chunk(const std::uint8_t* data, std::size_t size, std::size_t count, int m,
                  const DecTable& dt, std::uint8_t* out) {
    if (size < 4 * Lanes) return false;
    std::uint32_t x[Lanes];
    for (std::size_t j = 0; j < Lanes; ++j) {
        x[j] = get_u32(data + 4 * j);
        if (x[j] < kStateLow || x[j] >= kStateEnd) return false;
    }
    const std::uint8_t* p = data + 4 * Lanes;
    const std::uint8_t* end = data + size;
    const std::uint32_t mask = (std::uint32_t{1} << m) - 1;
    const std::uint8_t* sym = dt.sym.data();
    const std::uint32_t* entry = dt.entry.data();
    bool ok = true;
    // Fast step: at least 2 bytes remain, so the next word is read unconditionally and used
    // only if the state needs it (branch-free; the branch would be unpredictable).
    auto fast_step = [&](std::size_t i, std::size_t j) {
        std::uint32_t v = x[j];
        const std::uint32_t slot = v & mask;
        const std::uint32_t e = entry[slot];
        out[i] = sym[slot];
        v = (e & 0xFFFFu) * (v >> m) + (e >> 16);
        const std::uint32_t word = std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8;
        const std::uint32_t need = v < kStateLow ? 1u : 0u;
        x[j] = need ? (v << 16) | word : v;
        p += 2 * need;
    };
    auto step = [&](std::size_t i, std::size_t j) {
        std::uint32_t v = x[j];
        const std::uint32_t slot = v & mask;
        const std::uint32_t e = entry[slot];
        out[i] = sym[slot];
        v = (e & 0xFFFFu) * (v >> m) + (e >> 16);
        if (v < kStateLow) {
            if (end - p < 2) {
                ok = false;
                v = kStateLow;  // keeps the state defined; the chunk is rejected anyway
            } else {
                v = (v << 16) | std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8;
                p += 2;
            }
        }
        x[j] = v;
    };
    std::size_t i = 0;
    const std::size_t whole = count - count % Lanes;
    // A group of Lanes symbols reads at most Lanes words.
    for (; i < whole && end - p >= static_cast<std::ptrdiff_t>(2 * Lanes); i += Lanes) {
        for (std::size_t j = 0; j < Lanes; ++j) fast_step(i + j, j);
    }
    for (; i < whole; i += Lanes) {
        for (std::size_t j = 0; j < Lanes; ++j) step(i + j, j);
    }
    for (; i < count; ++i) step(i, i % Lanes);
    if (!ok || p != end) return false;
    for (std::size_t j = 0; j < Lanes; ++j) {
        if (x[j] != kStateLow) return false;
    }
    return true;
}

std::uint8_t* encode_any(const std::uint8_t* symbols, std::size_t count, int lanes_log2,
                         const EncSymbol* enc, std::uint8_t* end) {
    return lanes_log2 == 0
               ? encode_chunk<1>(symbols, count, enc, end)
               : encode_chunk<std::size_t{1} << kManyLanesLog2>(symbols, count, enc, end);
}

bool decode_any(const std::uint8_t* data, std::size_t size, std::size_t count, int lanes_log2,
                int m, const DecTable& dt, std::uint8_t* out) {
    switch (lanes_log2) {
        case 0:
            return decode_chunk<1>(data, size, count, m, dt, out);
        case kManyLanesLog2:
            return decode_chunk<std::size_t{1} << kManyLanesLog2>(data, size, count, m, dt, out);
        default:
            return false;
    }
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

    const std::size_t nchunks = num_blocks(count, kEntropyChunk);
    const std::size_t cap = chunk_capacity(kEntropyChunk, lanes);
    // Uninitialised: every byte copied out below has been written by the encoder.
    std::unique_ptr<std::uint8_t[]> scratch_owner(new std::uint8_t[nchunks * cap]);
    std::uint8_t* scratch = scratch_owner.get();
    std::vector<std::size_t> first(nchunks), length(nchunks);
    for_each_block(
        count,
        [&](std::size_t c, std::size_t begin, std::size_t end_sym) {
            std::uint8_t* end = scratch + (c + 1) * cap;
            std::uint8_t* start =
                encode_any(symbols + begin, end_sym - begin, lanes_log2, enc.data(), end);
            first[c] = static_cast<std::size_t>(start - scratch);
            length[c] = static_cast<std::size_t>(end - start);
        },
        kEntropyChunk);
    std::size_t total = out.size() + 4 * (nchunks - 1);
    for (std::size_t c = 0; c < nchunks; ++c) total += length[c];
    std::size_t pos = out.size();
    out.resize(total);
    for (std::size_t c = 0; c + 1 < nchunks; ++c) {
        LAQ_ASSERT(length[c] < (std::size_t{1} << 32));
        put_u32(out.data() + pos, static_cast<std::uint32_t>(length[c]));
        pos += 4;
    }
    for (std::size_t c = 0; c < nchunks; ++c) {
        std::memcpy(out.data() + pos, scratch + first[c], length[c]);
        pos += length[c];
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
    for_each_block(
        count,
        [&](std::size_t c, std::size_t begin, std::size_t end_sym) {
            good[c] = decode_any(data + offset[c], offset[c + 1] - offset[c], end_sym - begin,
                                 lanes_log2, m, dt, out + begin)
                          ? 1
                          : 0;
        },
        kEntropyChunk);
    for (std::size_t c = 0; c < nchunks; ++c) {
        LAQ_CHECK(good[c],
                  "corrupt entropy-coded stream: chunk " << c << " does not decode exactly");
    }
}

EntropyPacked entropy_encode_packed(const std::uint8_t* packed, std::size_t n, int bits) {
    check_bits(bits);
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

void entropy_decode_packed(const std::uint8_t* data, std::size_t size, std::size_t n, int bits,
                           int mode, std::uint8_t* packed) {
    check_bits(bits);
    const std::size_t nbytes = packed_size(n, bits);
    if (mode == kEntropyBytes) {
        entropy_decode(data, size, nbytes, 8, packed);
        check_padding(packed, n, bits);
        return;
    }
    LAQ_CHECK(mode == kEntropyCodes, "corrupt entropy-coded stream: unknown symbol mode " << mode);
    std::vector<std::uint8_t> symbols(n);
    entropy_decode(data, size, n, bits, symbols.data());
    pack_bits(symbols.data(), n, bits, packed);
}

}  // namespace laqcore
