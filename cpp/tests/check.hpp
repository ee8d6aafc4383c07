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

#define CHECK_EQ(a, b)                                                                         \
    do {                                                                                       \
        const auto va_ = (a);                                                                  \
        const auto vb_ = (b);                                                                  \
        if (!(va_ == vb_))                                                                     \
            laqcore_test::fail(__FILE__, __LINE__,                                             \
                               std::string(#a " == " #b " (") + std::to_string(va_) + " vs " + \
                                   std::to_string(vb_) + ")");                                 \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                 \
    do {                                                                                      \
        const double va_ = static_cast<double>(a);                                            \
        const double vb_ = static_cast<double>(b);                                            \
        if (!(std::fabs(va_ - vb_) <= (tol)))                                                 \
            laqcore_test::fail(__FILE__, __LINE__,                                            \
                               std::string(#a " ~ " #b " (") + std::to_string(va_) + " vs " + \
                                   std::to_string(vb_) + ")");                                \
    } while (0)

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
