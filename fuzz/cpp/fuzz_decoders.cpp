// libFuzzer harness: the receive-side kernels of QSGD, TernGrad, scaled sign and the sparse
// scatter, each against a straightforward reference of its documented format (headers in
// cpp/include/laqcore/). Byte 0 selects the decoder; the rest is its input:
//   0 QSGD:     levels = 1 + b1 % 127, bucket_size = 1 + b2 % 64, n = b3 | b4 << 8; then
//               num_buckets float32 scales and the packed codes (exactly sized).
//   1 TernGrad: scaler (raw float32 bits), then the packed 2-bit codes; n from the length.
//   2 sign:     scale (raw float32 bits), then the packed sign bits; n from the length.
//   3 sparse:   n = b1 | b2 << 8, k = b3; k uint32 indices, then k float32 values.
// Oracle: the decoder accepts exactly the inputs the reference accepts (or, where noted,
// may also refuse a non-canonical code) and then returns the reference's values bit for
// bit; refusals are std::invalid_argument; ASan/UBSan watch every access.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "fuzz_common.hpp"
#include "laqcore/pack.hpp"
#include "laqcore/qsgd.hpp"
#include "laqcore/sign.hpp"
#include "laqcore/sparse.hpp"
#include "laqcore/terngrad.hpp"

using laqcore_fuzz::reference_code;
using laqcore_fuzz::reference_padding_is_zero;
using laqcore_fuzz::require;

namespace {

bool same_float(float a, float b) {
    return std::memcmp(&a, &b, sizeof a) == 0;
}

// Calls `decode`; returns false if it refused the input with std::invalid_argument.
template <class F>
bool accepted(F&& decode) {
    try {
        decode();
        return true;
    } catch (const std::invalid_argument&) {
        return false;
    }
}

void fuzz_qsgd(const std::uint8_t* data, std::size_t size) {
    if (size < 4) return;
    const int levels = 1 + data[0] % 127;
    const std::size_t bucket = 1 + data[1] % 64;
    const std::size_t n = static_cast<std::size_t>(data[2]) | (std::size_t{data[3]} << 8);
    if (n == 0) return;
    const int bits = laqcore::qsgd_code_bits(levels);
    const std::size_t nb = laqcore::qsgd_num_buckets(n, bucket);
    const std::size_t nbytes = laqcore::packed_size(n, bits);
    if (size - 4 != 4 * nb + nbytes) return;  // the payload layer checks these sizes
    std::vector<float> scales(nb);
    std::memcpy(scales.data(), data + 4, 4 * nb);
    const std::vector<std::uint8_t> packed(data + 4 + 4 * nb, data + size);

    bool valid = reference_padding_is_zero(packed.data(), nbytes, n, bits);
    bool canonical = true;
    for (float s : scales) valid = valid && std::isfinite(s) && s >= 0.0f;
    std::vector<float> want(n);
    for (std::size_t i = 0; i < n && valid; ++i) {
        const unsigned code = reference_code(packed.data(), i, bits);
        const unsigned level = code >> 1;
        const bool neg = code & 1u;
        valid = level <= static_cast<unsigned>(levels);
        canonical = canonical && !(neg && level == 0);
        // level * (scale / levels) rounded can exceed the scale (to inf near FLT_MAX): the
        // decoder clamps to the scale (issue 14.11), so the reference does too.
        const float scale = scales[i / bucket];
        const float prod = static_cast<float>(level) * (scale / static_cast<float>(levels));
        const float mag = prod < scale ? prod : scale;
        want[i] = neg ? -mag : mag;
    }
    std::vector<float> out(n);
    const bool ok = accepted([&] {
        laqcore::qsgd_dequantize(packed.data(), scales.data(), n, levels, bucket, out.data());
    });
    require(ok == valid || (!ok && !canonical));
    if (!ok) return;
    for (std::size_t i = 0; i < n; ++i) require(same_float(out[i], want[i]));
}

void fuzz_terngrad(const std::uint8_t* data, std::size_t size) {
    if (size < 4) return;
    const float scaler = laqcore_fuzz::load_float(data);
    const std::vector<std::uint8_t> packed(data + 4, data + size);
    const std::size_t n = packed.size() * 4;  // 2-bit codes, no padding
    if (n == 0) return;
    bool valid = std::isfinite(scaler) && scaler >= 0.0f;
    for (std::size_t i = 0; i < n && valid; ++i) valid = reference_code(packed.data(), i, 2) != 3;
    std::vector<float> out(n);
    const bool ok =
        accepted([&] { laqcore::terngrad_dequantize(packed.data(), n, scaler, out.data()); });
    require(ok == valid);
    if (!ok) return;
    for (std::size_t i = 0; i < n; ++i) {
        require(out[i] == 0.0f || out[i] == scaler || out[i] == -scaler);
    }
}

void fuzz_sign(const std::uint8_t* data, std::size_t size) {
    if (size < 5) return;
    const float scale = laqcore_fuzz::load_float(data);
    const std::vector<std::uint8_t> packed(data + 4, data + size);
    // Any n whose packed size is the buffer length: use the smallest, so padding is exercised.
    const std::size_t n = 8 * packed.size() - 7 + (data[4] % 8);
    const bool valid = std::isfinite(scale) && scale >= 0.0f &&
                       reference_padding_is_zero(packed.data(), packed.size(), n, 1);
    std::vector<float> out(n);
    const bool ok =
        accepted([&] { laqcore::sign_decompress(packed.data(), n, scale, out.data()); });
    require(ok == valid);
    if (!ok) return;
    for (std::size_t i = 0; i < n; ++i) {
        const float want = reference_code(packed.data(), i, 1) ? -scale : scale;
        require(same_float(out[i], want));
    }
}

void fuzz_sparse(const std::uint8_t* data, std::size_t size) {
    if (size < 3) return;
    const std::size_t n = static_cast<std::size_t>(data[0]) | (std::size_t{data[1]} << 8);
    const std::size_t k = data[2];
    if (size - 3 != 8 * k) return;
    std::vector<std::uint32_t> idx(k);
    std::vector<float> values(k);
    if (k > 0) {  // memcpy into an empty vector's data() (nullptr) is UB even for 0 bytes
        std::memcpy(idx.data(), data + 3, 4 * k);
        std::memcpy(values.data(), data + 3 + 4 * k, 4 * k);
    }
    bool valid = true;
    for (std::size_t j = 0; j < k; ++j) {
        valid = valid && idx[j] < n && (j == 0 || idx[j - 1] < idx[j]);
    }
    std::vector<float> out(n);
    const bool ok =
        accepted([&] { laqcore::sparse_scatter(idx.data(), values.data(), k, n, out.data()); });
    require(ok == valid);
    if (!ok) return;
    std::vector<float> want(n, 0.0f);
    for (std::size_t j = 0; j < k; ++j) want[idx[j]] = values[j];
    for (std::size_t i = 0; i < n; ++i) require(same_float(out[i], want[i]));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    switch (data[0] % 4) {
        case 0:
            fuzz_qsgd(data + 1, size - 1);
            break;
        case 1:
            fuzz_terngrad(data + 1, size - 1);
            break;
        case 2:
            fuzz_sign(data + 1, size - 1);
            break;
        default:
            fuzz_sparse(data + 1, size - 1);
            break;
    }
    return 0;
}
