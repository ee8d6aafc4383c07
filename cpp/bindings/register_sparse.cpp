#include <utility>

#include "binding_utils.hpp"
#include "laqcore/sparse.hpp"

namespace laqcore::bind {

namespace {

// The top-k and rand-k bindings: checks k against x, allocates the (indices, values) outputs
// and runs select(x, n, k, indices, values) with the GIL released (safe: it touches only raw
// buffers owned by live numpy arrays).
template <class Select>
std::pair<carray<std::uint32_t>, carray<float>> select_k(const carray<float>& x, std::size_t k,
                                                         Select&& select) {
    const std::size_t n = vector_length(x, "x");
    LAQ_CHECK(k >= 1 && k <= n, "k must be in [1, n] = [1, " << n << "], got " << k);
    auto idx = new_vector<std::uint32_t>(k);
    auto values = new_vector<float>(k);
    const float* in = x.data();
    std::uint32_t* ip = idx.mutable_data();
    float* vp = values.mutable_data();
    {
        py::gil_scoped_release release;
        select(in, n, k, ip, vp);
    }
    return std::make_pair(std::move(idx), std::move(values));
}

}  // namespace

void register_sparse(py::module_ m) {
    m.doc() = "top-k / rand-k selection and scatter (rules: cpp/include/laqcore/sparse.hpp).";

    m.def(
        "topk",
        [](const carray<float>& x, std::size_t k) {
            return select_k(x, k,
                            [](const float* in, std::size_t n, std::size_t kk, std::uint32_t* ip,
                               float* vp) { topk_select(in, n, kk, ip, vp, "x"); });
        },
        py::arg("x").noconvert(), py::arg("k"),
        "Returns (sorted uint32 indices of the k largest |x|, their values).");

    m.def(
        "randk",
        [](const carray<float>& x, std::size_t k, std::uint64_t key) {
            return select_k(x, k,
                            [key](const float* in, std::size_t n, std::size_t kk, std::uint32_t* ip,
                                  float* vp) { randk_select(in, n, kk, key, ip, vp, "x"); });
        },
        py::arg("x").noconvert(), py::arg("k"), py::arg("key"),
        "Returns (sorted uint32 indices of k random coordinates, their values).");

    m.def(
        "check_indices",
        [](const carray<std::uint32_t>& idx, std::size_t n) {
            check_sparse_indices(idx.data(), vector_length(idx, "indices"), n);
        },
        py::arg("indices").noconvert(), py::arg("n"));

    m.def(
        "scatter",
        [](const carray<std::uint32_t>& idx, const carray<float>& values, std::size_t n) {
            const std::size_t k = vector_length(idx, "indices");
            LAQ_CHECK(vector_length(values, "values") == k,
                      "values has " << values.shape(0) << " entries but indices has " << k);
            const std::uint32_t* ip = idx.data();
            const float* vp = values.data();
            return fill_new_vector(n, [&](float* dst) { sparse_scatter(ip, vp, k, n, dst); });
        },
        py::arg("indices").noconvert(), py::arg("values").noconvert(), py::arg("n"));

    m.def(
        "dense_copy",
        [](const carray<float>& x) {
            const std::size_t n = vector_length(x, "x");
            const float* in = x.data();
            return fill_new_vector(n, [&](float* dst) { dense_copy(in, n, dst, "x"); });
        },
        py::arg("x").noconvert(), "Copy of x; ValueError if it holds NaN or Inf.");
}

}  // namespace laqcore::bind
