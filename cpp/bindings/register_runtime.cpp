#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "binding_utils.hpp"
#include "laqcore/dispatch.hpp"
#include "laqcore/parallel.hpp"
#include "laqcore/rng.hpp"

namespace laqcore::bind {

void register_runtime(py::module_ m) {
    m.doc() = "Threading, build information and the counter-based RNG (for tests).";
    m.def("get_num_threads", &get_num_threads);
    m.def("set_num_threads", &set_num_threads, py::arg("n"));
    m.def("max_num_threads", &max_num_threads,
          "Largest accepted thread count: max(64, 4 * cores).");
    m.def("have_openmp", &have_openmp);
    m.def("openmp_version", &openmp_version);
    m.def("have_cuda", []() {
#ifdef LAQCORE_HAVE_CUDA
        return true;
#else
        return false;
#endif
    });
    m.def("compiler", []() {
#if defined(__clang__)
        return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
        return std::string("gcc ") + __VERSION__;
#else
        return std::string("unknown");
#endif
    });
    // SIMD dispatch. Resolving the active level here makes an invalid LAQCORE_SIMD fail
    // the import (an ImportError with the message, which laqcore/__init__.py passes on)
    // instead of the first kernel call.
    (void)kernels();
    m.def(
        "simd_level", []() { return std::string(simd_level_name(simd_level())); },
        "The SIMD path the kernels use now ('scalar', 'avx2' or 'avx512').");
    m.def(
        "simd_levels",
        []() {
            std::vector<std::string> names;
            for (SimdLevel level : available_simd_levels())
                names.emplace_back(simd_level_name(level));
            return names;
        },
        "SIMD paths usable on this machine, scalar (the reference) first.");
    m.def(
        "set_simd_level",
        [](const std::string& name) {
            const std::string old = simd_level_name(simd_level());
            set_simd_level(parse_simd_level(name, "level"));
            return old;
        },
        py::arg("level"),
        "Switch the SIMD path ('scalar', 'avx2', 'avx512' or 'auto'); returns the previous one.");
    m.def(
        "min_parallel_size", []() { return kMinParallel; },
        "Inputs shorter than this run on one thread.");
    m.def(
        "reduce_block_size", []() { return kReduceBlock; },
        "Fixed block length of the deterministic blocked sums.");

    // Exposed so tests can check the numpy re-implementation in tests/reference.py.
    m.def("make_key", &make_key, py::arg("seed"), py::arg("step"), py::arg("stream"));
    m.def(
        "uniform01",
        [](std::uint64_t key, std::size_t n) {
            auto out = new_vector<float>(n);
            float* dst = out.mutable_data();
            for (std::size_t i = 0; i < n; ++i) dst[i] = uniform01(key, i);
            return out;
        },
        py::arg("key"), py::arg("n"));
}

}  // namespace laqcore::bind
