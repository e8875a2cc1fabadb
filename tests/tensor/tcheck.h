/*
 * tcheck.h -- small assertion helpers shared by the tensor binding's tests:
 * build float64/int64 tensors from C arrays and compare a tensor's elements
 * and shape against expected values with Criterion asserts. A failing check
 * names the tensor (`what`), the element index, and both values.
 */
#ifndef RLT_TESTS_TENSOR_TCHECK_H
#define RLT_TESTS_TENSOR_TCHECK_H

#include <stdint.h>

#include "tensor.h"

/* Largest tensor the helpers read back into a stack buffer. */
#define TC_MAX_NUMEL 4096

/* New float64 / int64 / bool tensors in S from a C array. */
rt_tensor *tc_f64(rt_scope *S, const double *v, const int64_t *shape, int ndim);
rt_tensor *tc_i64(rt_scope *S, const int64_t *v, const int64_t *shape, int ndim);
rt_tensor *tc_bool(rt_scope *S, const uint8_t *v, const int64_t *shape, int ndim);

/* Assert t is non-NULL and has exactly this shape. */
void tc_expect_shape(const rt_tensor *t, const int64_t *shape, int ndim, const char *what);
/* Assert |t[i] - want[i]| <= tol * (1 + |want[i]|) for all n elements (t read as
 * float64). tol == 0 demands exact equality; NaN matches NaN. */
void tc_expect_f64(const rt_tensor *t, const double *want, int64_t n, double tol, const char *what);
/* Assert t (read as int64) equals want exactly. */
void tc_expect_i64(const rt_tensor *t, const int64_t *want, int64_t n, const char *what);
/* Read t as float64 into out (n elements); asserts success. */
void tc_read_f64(const rt_tensor *t, double *out, int64_t n, const char *what);
/* The scalar value of a one-element tensor; asserts t is non-NULL. */
double tc_item(const rt_tensor *t, const char *what);
/* Assert the last error is non-empty, one line, and free of C++ backtraces. */
void tc_expect_clean_error(const char *what);

#endif /* RLT_TESTS_TENSOR_TCHECK_H */
