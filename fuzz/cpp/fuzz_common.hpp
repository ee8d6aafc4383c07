// Helpers shared by the libFuzzer harnesses (fuzz/cpp/fuzz_*.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace laqcore_fuzz {

// A failed property: abort, so libFuzzer saves the input and reports the stack.
inline void require(bool ok) {
    if (!ok) std::abort();
}

// Stream bit j is bit (j % 8) of byte (j / 8); code i is stream bits [i*bits, (i+1)*bits)
// (the layout documented in cpp/include/laqcore/pack.hpp), read one bit at a time.
inline unsigned reference_code(const std::uint8_t* buf, std::size_t i, int bits) {
    unsigned code = 0;
    for (int k = 0; k < bits; ++k) {
        const std::size_t j = i * static_cast<std::size_t>(bits) + static_cast<std::size_t>(k);
        code |= static_cast<unsigned>((buf[j / 8] >> (j % 8)) & 1u) << k;
    }
    return code;
}

inline bool reference_padding_is_zero(const std::uint8_t* buf, std::size_t size, std::size_t n,
                                      int bits) {
    for (std::size_t j = n * static_cast<std::size_t>(bits); j < 8 * size; ++j) {
        if ((buf[j / 8] >> (j % 8)) & 1u) return false;
    }
    return true;
}

// Largest n whose packed size is exactly `nbytes`, or SIZE_MAX if no n has that size
// (the bindings only pass correctly sized buffers to the kernels).
inline std::size_t codes_for_exact_size(std::size_t nbytes, int bits) {
    const auto b = static_cast<std::size_t>(bits);
    const std::size_t n = nbytes * 8 / b;
    return (n * b + 7) / 8 == nbytes ? n : SIZE_MAX;
}

inline float load_float(const std::uint8_t* p) {
    float f;
    std::memcpy(&f, p, sizeof f);
    return f;
}

}  // namespace laqcore_fuzz
