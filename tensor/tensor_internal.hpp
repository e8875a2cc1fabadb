// tensor_internal.hpp -- what the two shim translation units share: the handle
// structs behind tensor.h's opaque types, the error channel, and the guard
// that turns every C++ exception into a status + thread-local message.
// Never included from C.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstddef>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "tensor.h"

struct rt_tensor {
    at::Tensor t;
    rt_scope *owner; // NULL: caller-owned
    size_t slot;     // index in owner->items
};

struct rt_scope {
    std::vector<rt_tensor *> items; // holes (NULL) where handles were kept/freed
    size_t live = 0;
};

namespace rt {

// Set the thread-local message to "<where>: <what>".
void fail(const char *where, const char *what);
// True when the thread has a message that has not been cleared.
bool has_error();

// Wrap a tensor in a new handle owned by S (or the caller when S is NULL).
rt_tensor *wrap(rt_scope *S, at::Tensor t);

// Input check for NULL propagation: a NULL input keeps the earlier message, or
// says which input was NULL when there is none.
inline bool alive(const char *where, const void *p, const char *what = "input") {
    if (p) return true;
    if (!has_error()) {
        std::string m = std::string(what) + " is NULL";
        fail(where, m.c_str());
    }
    return false;
}

// Run f(), catching everything. On an exception, record it and return fallback.
template <class R, class F> inline R guard(const char *where, R fallback, F &&f) {
    try {
        return f();
    } catch (const c10::Error &e) {
        fail(where, e.what_without_backtrace());
    } catch (const std::bad_alloc &) {
        fail(where, "out of memory");
    } catch (const std::exception &e) {
        fail(where, e.what());
    } catch (...) {
        fail(where, "unknown C++ exception");
    }
    return fallback;
}

// A tensor-producing op: f() returns an at::Tensor that is wrapped into S.
template <class F> inline rt_tensor *op(rt_scope *S, const char *where, F &&f) {
    return guard<rt_tensor *>(where, nullptr, [&]() { return wrap(S, f()); });
}

// A status-returning call: f() returns void.
template <class F> inline int call(const char *where, F &&f) {
    return guard<int>(where, RT_ERR, [&]() {
        f();
        return RT_OK;
    });
}

// Row-major C[M,N] = alpha op(A) op(B) + beta C (op = transpose when ta /
// tb; A [M,K] or [K,M] with row stride lda, B [K,N] or [N,K] with ldb) on raw
// pointers, straight through the process's BLAS (sgemm_/dgemm_, the ones
// libtorch calls): for the small products of decoding and of the SAC
// networks, the dispatcher and the views of an addmm cost more than the
// arithmetic. Falls back to at::addmm_ when those symbols are missing.
// Defined in tensor_fused.cpp.
void gemm_rm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
             const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
void gemm_rm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double *A, int64_t lda,
             const double *B, int64_t ldb, double beta, double *C, int64_t ldc);

} // namespace rt
