/*
 * tcheck.c -- the assertion helpers declared in tcheck.h. Criterion's asserts
 * work from any function called by a test, so a failure here fails the test
 * that called the helper, with the helper's message.
 */
#include "tcheck.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

rt_tensor *tc_f64(rt_scope *S, const double *v, const int64_t *shape, int ndim)
{
    rt_tensor *t = rt_from_data(S, v, shape, ndim, RT_OPTS(RT_F64));
    cr_assert(t != NULL, "rt_from_data(f64) failed: %s", rt_last_error());
    return t;
}

rt_tensor *tc_i64(rt_scope *S, const int64_t *v, const int64_t *shape, int ndim)
{
    rt_tensor *t = rt_from_data(S, v, shape, ndim, RT_OPTS(RT_I64));
    cr_assert(t != NULL, "rt_from_data(i64) failed: %s", rt_last_error());
    return t;
}

rt_tensor *tc_bool(rt_scope *S, const uint8_t *v, const int64_t *shape, int ndim)
{
    rt_tensor *t = rt_from_data(S, v, shape, ndim, RT_OPTS(RT_BOOL));
    cr_assert(t != NULL, "rt_from_data(bool) failed: %s", rt_last_error());
    return t;
}

void tc_expect_shape(const rt_tensor *t, const int64_t *shape, int ndim, const char *what)
{
    int64_t got[RT_MAX_DIMS];
    cr_assert(t != NULL, "%s: tensor is NULL: %s", what, rt_last_error());
    int nd = rt_shape(t, got, RT_MAX_DIMS);
    cr_assert_eq(nd, ndim, "%s: ndim %d, expected %d", what, nd, ndim);
    for (int i = 0; i < ndim; i++)
        cr_assert_eq(got[i], shape[i], "%s: size[%d] = %lld, expected %lld", what, i,
                     (long long)got[i], (long long)shape[i]);
}

void tc_read_f64(const rt_tensor *t, double *out, int64_t n, const char *what)
{
    cr_assert(t != NULL, "%s: tensor is NULL: %s", what, rt_last_error());
    cr_assert_eq(rt_numel(t), n, "%s: numel %lld, expected %lld", what, (long long)rt_numel(t),
                 (long long)n);
    int rc = rt_to_data(t, RT_F64, out, (size_t)n * sizeof(double));
    cr_assert_eq(rc, RT_OK, "%s: rt_to_data failed: %s", what, rt_last_error());
}

void tc_expect_f64(const rt_tensor *t, const double *want, int64_t n, double tol, const char *what)
{
    double got[TC_MAX_NUMEL];
    cr_assert(n <= TC_MAX_NUMEL, "%s: too many elements for tc_expect_f64", what);
    tc_read_f64(t, got, n, what);
    for (int64_t i = 0; i < n; i++) {
        if (isnan(want[i])) {
            cr_expect(isnan(got[i]), "%s[%lld] = %.17g, expected NaN", what, (long long)i, got[i]);
            continue;
        }
        if (tol == 0.0 || isinf(want[i]))
            cr_expect(got[i] == want[i], "%s[%lld] = %.17g, expected exactly %.17g", what,
                      (long long)i, got[i], want[i]);
        else
            cr_expect(fabs(got[i] - want[i]) <= tol * (1.0 + fabs(want[i])),
                      "%s[%lld] = %.17g, expected %.17g (tol %g)", what, (long long)i, got[i],
                      want[i], tol);
    }
}

void tc_expect_i64(const rt_tensor *t, const int64_t *want, int64_t n, const char *what)
{
    int64_t got[TC_MAX_NUMEL];
    cr_assert(n <= TC_MAX_NUMEL, "%s: too many elements for tc_expect_i64", what);
    cr_assert(t != NULL, "%s: tensor is NULL: %s", what, rt_last_error());
    cr_assert_eq(rt_numel(t), n, "%s: numel %lld, expected %lld", what, (long long)rt_numel(t),
                 (long long)n);
    int rc = rt_to_data(t, RT_I64, got, (size_t)n * sizeof(int64_t));
    cr_assert_eq(rc, RT_OK, "%s: rt_to_data failed: %s", what, rt_last_error());
    for (int64_t i = 0; i < n; i++)
        cr_expect_eq(got[i], want[i], "%s[%lld] = %lld, expected %lld", what, (long long)i,
                     (long long)got[i], (long long)want[i]);
}

double tc_item(const rt_tensor *t, const char *what)
{
    cr_assert(t != NULL, "%s: tensor is NULL: %s", what, rt_last_error());
    cr_assert_eq(rt_numel(t), 1, "%s: not a one-element tensor", what);
    return rt_item(t);
}

void tc_expect_clean_error(const char *what)
{
    const char *msg = rt_last_error();
    cr_assert(msg != NULL, "%s: rt_last_error() returned NULL", what);
    cr_expect(msg[0] != '\0', "%s: expected an error message, got none", what);
    cr_expect(strstr(msg, "Exception raised from") == NULL,
              "%s: message carries a C++ backtrace: %s", what, msg);
    cr_expect(strchr(msg, '\n') == NULL, "%s: message is not one line: %s", what, msg);
}
