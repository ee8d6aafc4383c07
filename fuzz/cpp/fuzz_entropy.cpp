// libFuzzer harness: the rANS entropy coder (laqcore/entropy.hpp).
//
// Input: byte 0 selects the alphabet (bits = 1 + byte0 % 8) and the mode (bit 7); bytes 1-2
// are a symbol count (little-endian, 0..65535); the rest is the payload.
//   * mode 0 (decode): the payload is a coded stream. entropy_decode either throws
//     std::invalid_argument or yields count symbols inside the alphabet, and those symbols
//     encode and decode back to themselves.
//   * mode 1 (round trip): the payload, reduced modulo the alphabet and repeated cyclically
//     up to max(count, payload length) symbols, is a symbol sequence: encode then decode
//     gives it back exactly, on every histogram the fuzzer can build (one symbol, all equal,
//     rare symbols, ...) and for streams long enough for the 8-lane bulk loops.
// ASan/UBSan check that no stream makes the decoder read outside its buffer.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "fuzz_common.hpp"
#include "laqcore/entropy.hpp"

using laqcore_fuzz::require;

namespace {

void round_trip(const std::vector<std::uint8_t>& symbols, int bits) {
    const std::vector<std::uint8_t> stream =
        laqcore::entropy_encode(symbols.data(), symbols.size(), bits);
    // Exactly sized copy: ASan flags any read past the end.
    const std::vector<std::uint8_t> exact(stream.begin(), stream.end());
    std::vector<std::uint8_t> back(symbols.size());
    laqcore::entropy_decode(exact.data(), exact.size(), back.size(), bits, back.data());
    require(back == symbols);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 3) return 0;
    const int bits = 1 + data[0] % 8;
    const bool encode_mode = (data[0] & 0x80) != 0;
    const std::size_t count = std::size_t{data[1]} | std::size_t{data[2]} << 8;
    const std::vector<std::uint8_t> payload(data + 3, data + size);
    const unsigned mask = (1u << bits) - 1;
    if (encode_mode) {
        std::vector<std::uint8_t> symbols(payload.empty() ? 0 : std::max(count, payload.size()));
        for (std::size_t i = 0; i < symbols.size(); ++i) {
            symbols[i] = static_cast<std::uint8_t>(payload[i % payload.size()] & mask);
        }
        round_trip(symbols, bits);
        return 0;
    }
    std::vector<std::uint8_t> out(count);
    try {
        laqcore::entropy_decode(payload.data(), payload.size(), count, bits, out.data());
    } catch (const std::invalid_argument&) {
        return 0;
    }
    for (std::uint8_t s : out) require(s <= mask);
    round_trip(out, bits);
    return 0;
}
