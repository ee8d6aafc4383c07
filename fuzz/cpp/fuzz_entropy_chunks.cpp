// libFuzzer harness: corrupt multi-chunk rANS streams (laqcore/entropy.hpp).
//
// fuzz_entropy.cpp decodes at most 65535 symbols, so its streams are one chunk: the chunk
// directory, the parallel decode and the bulk loops that run up to 4 chunks at once never see
// a corrupt stream there. This harness builds a valid stream of 1 to 5 whole chunks plus a
// tail and lets the fuzzer edit it:
//   byte 0        bits = 1 + byte0 % 8; byte0 / 8 % 5 = extra chunks
//   bytes 1-2     tail symbols (little-endian) after the whole chunks
//   bytes 3-4     seed of the symbols (skewed: the count of trailing zeros of an LCG word)
//   byte 5        bit 0: truncate the stream at the first edit's position instead of editing
//   then 4 bytes per edit: a 24-bit position and the new byte; positions with top bits 10 are
//                 among the first 1024 bytes, 11 the last 64, others anywhere (modulo the size).
// Oracle: without edits, the decode gives the symbols back; with them, entropy_decode throws
// std::invalid_argument or yields symbols inside the alphabet that re-encode and decode to
// themselves. ASan/UBSan check that no edit makes the decoder read outside the stream.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "fuzz_common.hpp"
#include "laqcore/entropy.hpp"

using laqcore_fuzz::require;

namespace {

void decode_exact(const std::vector<std::uint8_t>& stream, std::vector<std::uint8_t>& out,
                  int bits) {
    // Exactly sized copy: ASan flags any read past the end.
    const std::vector<std::uint8_t> exact(stream.begin(), stream.end());
    laqcore::entropy_decode(exact.data(), exact.size(), out.size(), bits, out.data());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 6) return 0;
    const int bits = 1 + data[0] % 8;
    const std::size_t chunks = 1 + data[0] / 8 % 5;
    const std::size_t count =
        chunks * laqcore::kEntropyChunk + (std::size_t{data[1]} | std::size_t{data[2]} << 8);
    const unsigned mask = (1u << bits) - 1;
    std::uint32_t state = 1u + (std::uint32_t{data[3]} | std::uint32_t{data[4]} << 8);
    std::vector<std::uint8_t> symbols(count);
    for (auto& s : symbols) {
        state = state * 1664525u + 1013904223u;
        int zeros = 0;
        while (zeros < 31 && ((state >> zeros) & 1u) == 0) ++zeros;
        s = static_cast<std::uint8_t>(static_cast<unsigned>(zeros) & mask);
    }
    std::vector<std::uint8_t> stream = laqcore::entropy_encode(symbols.data(), count, bits);
    const bool truncate = (data[5] & 1) != 0;
    bool edited = false;
    for (std::size_t at = 6; at + 4 <= size; at += 4) {
        const std::size_t raw = std::size_t{data[at]} | std::size_t{data[at + 1]} << 8 |
                                std::size_t{data[at + 2]} << 16;
        std::size_t pos = raw % stream.size();  // anywhere, or (top bits 10 / 11) within
        if (raw >> 22 == 2) pos = (raw & 1023) % stream.size();  // the header, table, directory
        if (raw >> 22 == 3) pos = stream.size() - 1 - (raw & 63) % stream.size();  // last words
        if (truncate) {
            stream.resize(pos);
            edited = true;
            break;
        }
        edited = edited || stream[pos] != data[at + 3];
        stream[pos] = data[at + 3];
    }
    std::vector<std::uint8_t> out(count);
    try {
        decode_exact(stream, out, bits);
    } catch (const std::invalid_argument&) {
        require(edited);
        return 0;
    }
    if (!edited) {
        require(out == symbols);
        return 0;
    }
    for (std::uint8_t s : out) require(s <= mask);
    const std::vector<std::uint8_t> again = laqcore::entropy_encode(out.data(), count, bits);
    std::vector<std::uint8_t> back(count);
    decode_exact(again, back, bits);
    require(back == out);
    return 0;
}
