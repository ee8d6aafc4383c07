#include "laqcore/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <thread>

#include "laqcore/common.hpp"

#ifdef LAQCORE_HAVE_OPENMP
#include <omp.h>
#endif

namespace laqcore {
namespace {

// The process-wide thread count (0: not chosen yet). OpenMP's own setting
// (omp_set_num_threads) is per calling thread: a thread Python starts later would see the
// default again. Every parallel region passes num_threads(get_num_threads()) instead.
std::atomic<int> g_num_threads{0};

// OMP_NUM_THREADS when set; else the cores OpenMP may use (the affinity mask) shared by the
// ranks of this node when LOCAL_WORLD_SIZE is set (torchrun and laqcore launch set it):
// N ranks of M threads on fewer than N*M cores only slow every rank down.
int default_num_threads() {
#ifdef LAQCORE_HAVE_OPENMP
    int n = omp_get_max_threads();
    const char* omp = std::getenv("OMP_NUM_THREADS");
    const char* local = std::getenv("LOCAL_WORLD_SIZE");
    if ((omp == nullptr || *omp == '\0') && local != nullptr) {
        const long ranks = std::strtol(local, nullptr, 10);
        if (ranks >= 1) n = static_cast<int>(std::max(1L, omp_get_num_procs() / ranks));
    }
    return std::clamp(n, 1, max_num_threads());
#else
    return 1;
#endif
}

}  // namespace

int max_num_threads() {
    const unsigned hw = std::thread::hardware_concurrency();
    return std::max(kMaxThreadsFloor, static_cast<int>(kMaxThreadsPerCore * (hw == 0 ? 1 : hw)));
}

int get_num_threads() {
    int n = g_num_threads.load(std::memory_order_relaxed);
    if (n == 0) {
        int expected = 0;
        const int fresh = default_num_threads();
        n = g_num_threads.compare_exchange_strong(expected, fresh) ? fresh : expected;
    }
    return n;
}

void set_num_threads(int n) {
    const int limit = max_num_threads();
    LAQ_CHECK(n >= 1 && n <= limit, "number of threads must be in [1, "
                                        << limit << "] (" << kMaxThreadsPerCore
                                        << " per core, at least " << kMaxThreadsFloor << "), got "
                                        << n);
    g_num_threads.store(n, std::memory_order_relaxed);
}

bool have_openmp() {
#ifdef LAQCORE_HAVE_OPENMP
    return true;
#else
    return false;
#endif
}

int openmp_version() {
#ifdef LAQCORE_HAVE_OPENMP
    return _OPENMP;
#else
    return 0;
#endif
}

}  // namespace laqcore
