// libFuzzer harness: laqcore::unpack_bits / pack_bits against a bit-by-bit reference.
//
// Input: byte 0 selects bits = 1 + byte0 % 8, the rest is a packed buffer. n is the largest
// code count whose packed size equals the buffer length (what the binding requires), so
// every buffer length is reachable. Checks:
//   * unpack either throws std::invalid_argument (only for non-zero padding bits, which the
//     reference predicts exactly) or returns the reference's codes;
//   * pack(unpack(buf)) == buf, byte for byte;
//   * nothing reads or writes outside the buffers (ASan) and no UB (UBSan).
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "fuzz_common.hpp"
#include "laqcore/pack.hpp"

using laqcore_fuzz::reference_code;
using laqcore_fuzz::reference_padding_is_zero;
using laqcore_fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const int bits = 1 + data[0] % 8;
    // Copy into an exactly sized heap buffer so ASan flags any read past its end.
    const std::vector<std::uint8_t> packed(data + 1, data + size);
    const std::size_t nbytes = packed.size();
    const std::size_t n = laqcore_fuzz::codes_for_exact_size(nbytes, bits);
    if (n == SIZE_MAX) return 0;

    std::vector<std::uint8_t> codes(n);
    const bool padding_ok = reference_padding_is_zero(packed.data(), nbytes, n, bits);
    try {
        laqcore::unpack_bits(packed.data(), n, bits, codes.data());
    } catch (const std::invalid_argument&) {
        require(!padding_ok);  // the only documented reason to refuse a correctly sized buffer
        return 0;
    }
    require(padding_ok);
    for (std::size_t i = 0; i < n; ++i) require(codes[i] == reference_code(packed.data(), i, bits));

    std::vector<std::uint8_t> again(nbytes);
    laqcore::pack_bits(codes.data(), n, bits, again.data());
    require(again == packed);
    return 0;
}
