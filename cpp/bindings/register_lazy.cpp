#include <pybind11/stl.h>

#include <cmath>
#include <utility>

#include "binding_utils.hpp"
#include "laqcore/lazy_rule.hpp"

namespace laqcore::bind {
namespace {

template <class T>
void register_squared_distance(py::module_& m, const char* name, const char* doc) {
    m.def(
        name,
        [](const carray<T>& a, const carray<T>& b) {
            const std::size_t n = vector_length(a, "a");
            const std::size_t nb = vector_length(b, "b");
            LAQ_CHECK(n == nb, "a has length " << n << " but b has length " << nb);
            const T* pa = a.data();
            const T* pb = b.data();
            // Safe: raw buffers of arrays the caller keeps alive.
            py::gil_scoped_release release;
            return squared_distance(pa, pb, n, "a", "b");
        },
        py::arg("a").noconvert(), py::arg("b").noconvert(), doc);
}

template <class T>
void register_advance_iterate(py::module_& m, const char* name, const char* doc) {
    m.def(
        name,
        [](carray<T>& stored, const carray<T>& theta_new) {
            const std::size_t n = writable_vector_length(stored, "theta_old");
            const std::size_t nn = vector_length(theta_new, "theta_new");
            LAQ_CHECK(n == nn, "theta_old has length " << n << " but theta_new has length " << nn);
            LAQ_CHECK(static_cast<const void*>(stored.data()) !=
                          static_cast<const void*>(theta_new.data()),
                      "theta_old and theta_new must be different arrays");
            T* ps = stored.mutable_data();
            const T* pn = theta_new.data();
            py::gil_scoped_release release;  // raw buffers of arrays the caller keeps alive
            return advance_iterate(ps, pn, n);
        },
        py::arg("theta_old").noconvert(), py::arg("theta_new").noconvert(), doc);
}

}  // namespace

void register_lazy(py::module_ m) {
    m.doc() = "Right-hand side of the LAQ/LAG upload rule (see cpp/include/laqcore/lazy_rule.hpp).";

    register_squared_distance<float>(m, "squared_distance",
                                     "||a - b||^2 of float32 vectors, in double.");
    register_squared_distance<double>(m, "squared_distance_f64", "||a - b||^2 of float64 vectors.");

    register_advance_iterate<float>(
        m, "advance_iterate",
        "||theta_new - theta_old||^2 of float32 vectors, and theta_old[:] = theta_new.");
    register_advance_iterate<double>(m, "advance_iterate_f64",
                                     "advance_iterate for float64 vectors.");

    m.def(
        "segment_squares",
        [](const carray<float>& a, const carray<float>& b, const carray<std::int64_t>& offsets) {
            const std::size_t n = vector_length(a, "a");
            const std::size_t nb = vector_length(b, "b");
            LAQ_CHECK(n == nb, "a has length " << n << " but b has length " << nb);
            const std::size_t count = vector_length(offsets, "offsets");
            LAQ_CHECK(count >= 1, "offsets must hold at least one value (0)");
            const std::int64_t* po = offsets.data();
            LAQ_CHECK(po[0] == 0, "offsets must start at 0, got " << po[0]);
            for (std::size_t j = 1; j < count; ++j) {
                LAQ_CHECK(po[j] >= po[j - 1], "offsets must be nondecreasing, but offsets["
                                                  << j << "] = " << po[j] << " < offsets[" << j - 1
                                                  << "] = " << po[j - 1]);
            }
            LAQ_CHECK(static_cast<std::uint64_t>(po[count - 1]) == n,
                      "offsets must end at the vectors' length " << n << ", got " << po[count - 1]);
            const std::size_t segments = count - 1;
            auto dist = new_vector<double>(segments);
            auto norm = new_vector<double>(segments);
            const float* pa = a.data();
            const float* pb = b.data();
            double* pd = dist.mutable_data();
            double* pn = norm.mutable_data();
            {
                py::gil_scoped_release release;  // raw buffers of arrays kept alive here
                segment_squares(pa, pb, po, segments, pd, pn);
            }
            return py::make_tuple(dist, norm);
        },
        py::arg("a").noconvert(), py::arg("b").noconvert(), py::arg("offsets").noconvert(),
        "Per segment [offsets[j], offsets[j+1]) of float32 vectors a, b: (||a_j - b_j||^2, "
        "||a_j||^2) as two float64 arrays, each squared_distance's order.");

    m.def(
        "add_scaled",
        [](carray<float>& inout, const carray<float>& x, double weight) {
            const std::size_t n = writable_vector_length(inout, "inout");
            const std::size_t nx = vector_length(x, "x");
            LAQ_CHECK(n == nx, "inout has length " << n << " but x has length " << nx);
            const auto w = static_cast<float>(weight);  // a finite double may not fit
            LAQ_CHECK(std::isfinite(w), "weight must be finite in float32, got " << weight);
            float* pi = inout.mutable_data();
            const float* px = x.data();
            py::gil_scoped_release release;  // raw buffers of arrays the caller keeps alive
            add_scaled(pi, px, w, n);
        },
        py::arg("inout").noconvert(), py::arg("x").noconvert(), py::arg("weight"),
        "inout += x * float32(weight) for float32 vectors, in place, the product rounded "
        "before the sum (numpy's result bit for bit, without its temporary).");

    m.def(
        "add_scaled_difference",
        [](carray<float>& out, const carray<float>& x, const carray<float>& a,
           const carray<float>& b, double weight) {
            const std::size_t n = writable_vector_length(out, "out");
            const std::pair<const carray<float>*, const char*> inputs[] = {
                {&x, "x"}, {&a, "a"}, {&b, "b"}};
            const float* po = out.data();
            for (const auto& [array, name] : inputs) {
                const std::size_t k = vector_length(*array, name);
                LAQ_CHECK(k == n, "out has length " << n << " but " << name << " has length " << k);
                // Element i is read before it is written, so out may be an input itself; a
                // shifted overlap would read what an earlier element already overwrote.
                const float* pi = array->data();
                LAQ_CHECK(pi == po || pi + n <= po || po + n <= pi,
                          "out must be " << name << " itself or not overlap it");
            }
            const auto w = static_cast<float>(weight);  // a finite double may not fit
            LAQ_CHECK(std::isfinite(w), "weight must be finite in float32, got " << weight);
            float* pout = out.mutable_data();
            const float* px = x.data();
            const float* pa = a.data();
            const float* pb = b.data();
            py::gil_scoped_release release;  // raw buffers of arrays the caller keeps alive
            add_scaled_difference(pout, px, pa, pb, w, n);
        },
        py::arg("out").noconvert(), py::arg("x").noconvert(), py::arg("a").noconvert(),
        py::arg("b").noconvert(), py::arg("weight"),
        "out = x + (a - b) * float32(weight) for float32 vectors, each operation rounded in "
        "that order (numpy's result bit for bit, without the difference's temporary); out may "
        "be one of the inputs.");

    py::class_<IterateHistory>(m, "IterateHistory")
        .def(py::init<std::size_t, std::vector<double>, double, std::size_t>(), py::arg("depth"),
             py::arg("weights"), py::arg("ck"), py::arg("num_terms"))
        .def("push", &IterateHistory::push, py::arg("diff_sq"))
        .def("weighted_sum", &IterateHistory::weighted_sum)
        .def("rhs", &IterateHistory::rhs, py::arg("alpha"), py::arg("num_workers"))
        .def("weight", &IterateHistory::weight, py::arg("d"))
        .def("recent", &IterateHistory::recent)
        .def("clear", &IterateHistory::clear)
        .def("restore", &IterateHistory::restore, py::arg("recent"), py::arg("count"))
        .def_property_readonly("depth", &IterateHistory::depth)
        .def_property_readonly("num_terms", &IterateHistory::num_terms)
        .def_property_readonly("size", &IterateHistory::size)
        .def_property_readonly("count", &IterateHistory::count)
        .def_property_readonly("explicit_weights", &IterateHistory::explicit_weights)
        .def_property_readonly("ck", &IterateHistory::ck)
        .def_property_readonly("weights", &IterateHistory::weights);
}

}  // namespace laqcore::bind
