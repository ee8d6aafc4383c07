#include "laqcore/parallel.hpp"

#include "laqcore/common.hpp"

namespace laqcore {

int get_num_threads() {
#ifdef LAQCORE_HAVE_OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void set_num_threads(int n) {
    LAQ_CHECK(n >= 1, "number of threads must be >= 1, got " << n);
#ifdef LAQCORE_HAVE_OPENMP
    omp_set_num_threads(n);
#endif
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
