// cpp/tests/check.hpp: the few checks the C++ unit tests need (no external framework).
//
// Each test is a function registered with LAQ_TEST(name); main() runs them all and returns
// non-zero if any check failed, so ctest reports the executable as failed. A failing check
// prints the file, line and the expression (with the values for the comparisons).
#pragma once

#include <cmath>
#include <cstdio>
#include <exception>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

namespace laqcore_test {

struct Registry {
    std::vector<std::pair<std::string, std::function<void()>>> tests;
    int failures = 0;
    static Registry& get() {
        static Registry r;
        return r;
    }
};

struct Register {
    Register(const char* name, std::function<void()> fn) {
        Registry::get().tests.emplace_back(name, std::move(fn));
    }
};

inline void fail(const char* file, int line, const std::string& what) {
    std::fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what.c_str());
    ++Registry::get().failures;
}

// a == b (tol < 0), or |a - b| <= tol; on failure prints both values.
template <class A, class B>
void check_pair(const char* file, int line, const char* expr, const A& a, const B& b, double tol) {
    bool ok = false;
    if constexpr (std::is_arithmetic_v<A> && std::is_arithmetic_v<B>) {
        ok = tol < 0 ? a == b : std::fabs(static_cast<double>(a) - static_cast<double>(b)) <= tol;
        if (!ok)
            fail(file, line,
                 std::string(expr) + " (" + std::to_string(a) + " vs " + std::to_string(b) + ")");
    } else {
        ok = a == b;
        if (!ok) fail(file, line, expr);
    }
}

inline int run_all() {
    auto& r = Registry::get();
    for (auto& [name, fn] : r.tests) {
        const int before = r.failures;
        try {
            fn();
        } catch (const std::exception& e) {
            fail(name.c_str(), 0, std::string("unexpected exception: ") + e.what());
        }
        std::printf("%s %s\n", r.failures == before ? "ok  " : "FAIL", name.c_str());
    }
    std::printf("%zu tests, %d failed checks\n", r.tests.size(), r.failures);
    return r.failures == 0 ? 0 : 1;
}

}  // namespace laqcore_test

#define LAQ_TEST(name)                                                   \
    static void name();                                                  \
    static const laqcore_test::Register name##_registered(#name, &name); \
    static void name()

#define CHECK(cond)                                                 \
    do {                                                            \
        if (!(cond)) laqcore_test::fail(__FILE__, __LINE__, #cond); \
    } while (0)

#define CHECK_EQ(a, b) laqcore_test::check_pair(__FILE__, __LINE__, #a " == " #b, (a), (b), -1.0)
#define CHECK_NEAR(a, b, tol) \
    laqcore_test::check_pair(__FILE__, __LINE__, #a " ~ " #b, double(a), double(b), (tol))

// The statement throws an exception of type `type` whose message contains `text`.
#define CHECK_THROWS(stmt, type, text)                                                       \
    do {                                                                                     \
        bool thrown_ = false;                                                                \
        try {                                                                                \
            stmt;                                                                            \
        } catch (const type& e_) {                                                           \
            thrown_ = true;                                                                  \
            if (std::string(e_.what()).find(text) == std::string::npos)                      \
                laqcore_test::fail(__FILE__, __LINE__,                                       \
                                   std::string("message of " #stmt ": ") + e_.what());       \
        }                                                                                    \
        if (!thrown_) laqcore_test::fail(__FILE__, __LINE__, #stmt " did not throw " #type); \
    } while (0)

#define LAQ_TEST_MAIN()                 \
    int main() {                        \
        return laqcore_test::run_all(); \
    }
