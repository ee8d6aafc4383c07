// Helpers shared by the register_*.cpp binding units (the only files that include pybind11).
//
// Conventions:
//  * The public Python layer (python/laqcore/) converts and validates user input and raises
//    clear ValueError/TypeError messages. The bindings re-check shapes anyway, because
//    _core is importable directly and must never crash on bad arguments.
//  * Arrays are taken as carray<T> with .noconvert() in the py::arg list: a wrong dtype is
//    a TypeError instead of a silent copy (important for outputs written in place).
//  * Each heavy call releases the GIL after all Python objects have been read; this is safe
//    because the kernels touch only raw buffers whose owners are kept alive by the caller.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "laqcore/common.hpp"
#include "laqcore/pack.hpp"
#include "laqcore/qsgd.hpp"

namespace py = pybind11;

namespace laqcore::bind {

template <class T>
using carray = py::array_t<T, py::array::c_style>;

// Throws ValueError unless `a` is a 1-D C-contiguous array whose data is aligned for T (numpy
// allows unaligned views, e.g. np.frombuffer at an odd offset; kernels dereference T*).
template <class T>
std::size_t vector_length(const carray<T>& a, const char* name) {
    LAQ_CHECK(a.ndim() == 1, name << " must be a 1-D array, got " << a.ndim() << " dimensions");
    LAQ_CHECK(reinterpret_cast<std::uintptr_t>(a.data()) % alignof(T) == 0,
              name << " must be aligned to its dtype (copy the unaligned view first)");
    return static_cast<std::size_t>(a.shape(0));
}

// Same, for arrays written in place: also requires them to be writeable.
template <class T>
std::size_t writable_vector_length(carray<T>& a, const char* name) {
    const std::size_t n = vector_length(a, name);
    LAQ_CHECK(a.writeable(), name << " must be a writeable array");
    return n;
}

template <class T>
carray<T> new_vector(std::size_t n) {
    return carray<T>(static_cast<py::ssize_t>(n));
}

// A new float32 vector of n values written by fill(its data) with the GIL released: how every
// binding that returns a fresh vector runs its kernel (raw buffers only, whose owners the
// caller keeps alive; read the inputs' data pointers before calling).
template <class Fill>
carray<float> fill_new_vector(std::size_t n, Fill&& fill) {
    auto out = new_vector<float>(n);
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        fill(dst);
    }
    return out;
}

// QSGD codes of `count` coordinates (QSGD itself and the rotation quantizer): allocates the
// float32 scales of qsgd_num_buckets(count, bucket_size) buckets and the packed codes, and
// fills both with quantize(scales data, packed data), the GIL released.
template <class Quantize>
std::pair<carray<float>, carray<std::uint8_t>> new_qsgd_codes(std::size_t count, int levels,
                                                              std::size_t bucket_size,
                                                              Quantize&& quantize) {
    auto scales = new_vector<float>(qsgd_num_buckets(count, bucket_size));
    auto packed = new_vector<std::uint8_t>(packed_size(count, qsgd_code_bits(levels)));
    float* sc = scales.mutable_data();
    std::uint8_t* pk = packed.mutable_data();
    {
        py::gil_scoped_release release;
        quantize(sc, pk);
    }
    return std::make_pair(std::move(scales), std::move(packed));
}

// The packed-code decoders' shared shape (sign, TernGrad, QSGD): checks that `packed` holds
// exactly the packed_size(n, bits) bytes of n codes, then fills a new float32 vector of n
// values with decode(packed data, output data), the GIL released (raw buffers only).
template <class Decode>
carray<float> decode_packed(const carray<std::uint8_t>& packed, std::size_t n, int bits,
                            Decode&& decode) {
    const std::size_t expected = packed_size(n, bits);
    LAQ_CHECK(vector_length(packed, "packed") == expected,
              "packed has " << packed.shape(0) << " bytes, expected " << expected);
    const std::uint8_t* pk = packed.data();
    return fill_new_vector(n, [&](float* dst) { decode(pk, dst); });
}

// QSGD's norm argument ("l2" or "max"), shared by the QSGD and rotation bindings.
inline QsgdNorm parse_qsgd_norm(const std::string& norm) {
    if (norm == "l2") return QsgdNorm::kL2;
    if (norm == "max") return QsgdNorm::kMax;
    LAQ_CHECK(false, "norm must be 'l2' or 'max', got '" << norm << "'");
    return QsgdNorm::kL2;  // unreachable
}

}  // namespace laqcore::bind
