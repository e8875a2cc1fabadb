/*
 * logreg.c -- L2-regularised binary logistic regression by Newton's method
 * (logreg.h states the objective, the step and the stopping rule).
 */
#include "logreg.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

logreg_options logreg_options_default(void) {
    return (logreg_options){.C = 1.0, .balanced = 0, .max_iter = 100, .tol = 1e-10};
}

static int lr_fail(char *err, size_t errlen, int status, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* log(1 + e^z) without overflow or cancellation. */
static double softplus(double z) { return (z > 0 ? z : 0.0) + log1p(exp(-fabs(z))); }

/* 1 / (1 + e^-z) without overflow. */
static double sigmoid(double z) {
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

static double dot(const double *a, const double *b, int64_t d) {
    double s = 0.0;
    for (int64_t j = 0; j < d; j++) s += a[j] * b[j];
    return s;
}

double logreg_prob(const double *coef, double intercept, const double *x, int64_t d) {
    return sigmoid(dot(coef, x, d) + intercept);
}

void logreg_predict(const double *coef, double intercept, const double *X, int64_t n, int64_t d, double *p) {
    for (int64_t i = 0; i < n; i++) p[i] = logreg_prob(coef, intercept, X + i * d, d);
}

double logreg_score(const double *coef, double intercept, const double *X, const uint8_t *y, int64_t n, int64_t d) {
    if (n <= 0) return NAN;
    int64_t right = 0;
    for (int64_t i = 0; i < n; i++) right += (dot(coef, X + i * d, d) + intercept > 0) == (y[i] != 0);
    return (double)right / (double)n;
}

/* f(theta) for theta = [w (d); b], with z [n] written on the way. */
static double objective(const double *X, const uint8_t *y, const double *s, int64_t n, int64_t d, double C,
                        const double *theta, double *z) {
    double data = 0.0;
    for (int64_t i = 0; i < n; i++) {
        z[i] = dot(theta, X + i * d, d) + theta[d];
        data += s[i] * (softplus(z[i]) - (y[i] ? z[i] : 0.0));
    }
    return 0.5 * dot(theta, theta, d) + C * data;
}

/* In-place Cholesky of the m x m matrix A (lower triangle used), then the
 * solve A x = b into x. -1 when A is not positive definite. */
static int cholesky_solve(double *A, int64_t m, const double *b, double *x) {
    for (int64_t j = 0; j < m; j++) {
        double diag = A[j * m + j];
        for (int64_t k = 0; k < j; k++) diag -= A[j * m + k] * A[j * m + k];
        if (!(diag > 0)) return -1;
        double ljj = sqrt(diag);
        A[j * m + j] = ljj;
        for (int64_t i = j + 1; i < m; i++) {
            double v = A[i * m + j];
            for (int64_t k = 0; k < j; k++) v -= A[i * m + k] * A[j * m + k];
            A[i * m + j] = v / ljj;
        }
    }
    for (int64_t i = 0; i < m; i++) { /* L u = b */
        double v = b[i];
        for (int64_t k = 0; k < i; k++) v -= A[i * m + k] * x[k];
        x[i] = v / A[i * m + i];
    }
    for (int64_t i = m - 1; i >= 0; i--) { /* L^T x = u */
        double v = x[i];
        for (int64_t k = i + 1; k < m; k++) v -= A[k * m + i] * x[k];
        x[i] = v / A[i * m + i];
    }
    return 0;
}

int logreg_fit(const double *X, const uint8_t *y, int64_t n, int64_t d, const logreg_options *o, double *coef,
               double *intercept, logreg_report *report, char *err, size_t errlen) {
    logreg_options opt = o ? *o : logreg_options_default();
    if (report) memset(report, 0, sizeof *report);
    if (!X || !y || !coef || !intercept)
        return lr_fail(err, errlen, LOGREG_EINVAL, "logreg_fit: X, y, coef and intercept must not be NULL");
    if (n < 2 || d < 1)
        return lr_fail(err, errlen, LOGREG_EINVAL, "logreg_fit: needs n >= 2 rows and d >= 1 features (got n %lld, d %lld)",
                       (long long)n, (long long)d);
    if (!(opt.C > 0) || !isfinite(opt.C) || opt.max_iter < 1 || !(opt.tol > 0))
        return lr_fail(err, errlen, LOGREG_EINVAL, "logreg_fit: options need C > 0 (got %g), max_iter >= 1 (got %d) and "
                       "tol > 0 (got %g)", opt.C, opt.max_iter, opt.tol);
    int64_t n1 = 0;
    for (int64_t i = 0; i < n; i++) {
        n1 += y[i] != 0;
        for (int64_t j = 0; j < d; j++)
            if (!isfinite(X[i * d + j]))
                return lr_fail(err, errlen, LOGREG_EINVAL, "logreg_fit: X[%lld, %lld] is %g: features must be finite",
                               (long long)i, (long long)j, X[i * d + j]);
    }
    if (n1 == 0 || n1 == n)
        return lr_fail(err, errlen, LOGREG_EINVAL, "logreg_fit: all %lld rows have label %d: a classifier needs rows of "
                       "both classes", (long long)n, n1 ? 1 : 0);

    int64_t m = d + 1;
    double *s = malloc((size_t)n * sizeof *s), *z = malloc((size_t)n * sizeof *z);
    double *theta = calloc((size_t)m, sizeof *theta), *trial = malloc((size_t)m * sizeof *trial);
    double *g = malloc((size_t)m * sizeof *g), *step = malloc((size_t)m * sizeof *step);
    double *H = malloc((size_t)(m * m) * sizeof *H), *xt = malloc((size_t)m * sizeof *xt);
    int rc = LOGREG_ENOMEM;
    if (!s || !z || !theta || !trial || !g || !step || !H || !xt) {
        lr_fail(err, errlen, rc, "logreg_fit: out of memory (n %lld, d %lld)", (long long)n, (long long)d);
        goto out;
    }
    double w1 = opt.balanced ? (double)n / (2.0 * (double)n1) : 1.0;
    double w0 = opt.balanced ? (double)n / (2.0 * (double)(n - n1)) : 1.0;
    double s_sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        s[i] = y[i] ? w1 : w0;
        s_sum += s[i];
    }
    double tol = opt.tol * (opt.C * s_sum > 1.0 ? opt.C * s_sum : 1.0);
    double f = objective(X, y, s, n, d, opt.C, theta, z);
    double gmax = INFINITY;
    int it = 0, converged = 0;
    for (;; it++) {
        /* gradient and Hessian at theta (z holds its logits) */
        memset(g, 0, (size_t)m * sizeof *g);
        memset(H, 0, (size_t)(m * m) * sizeof *H);
        for (int64_t i = 0; i < n; i++) {
            double p = sigmoid(z[i]);
            double r = opt.C * s[i] * (p - (y[i] ? 1.0 : 0.0));
            double c = opt.C * s[i] * p * (1.0 - p);
            memcpy(xt, X + i * d, (size_t)d * sizeof *xt);
            xt[d] = 1.0;
            for (int64_t a = 0; a < m; a++) {
                g[a] += r * xt[a];
                for (int64_t b = 0; b <= a; b++) H[a * m + b] += c * xt[a] * xt[b];
            }
        }
        gmax = 0.0;
        for (int64_t a = 0; a < m; a++) {
            if (a < d) {
                g[a] += theta[a];
                H[a * m + a] += 1.0;
            }
            gmax = fabs(g[a]) > gmax ? fabs(g[a]) : gmax;
        }
        if (gmax <= tol) {
            converged = 1;
            break;
        }
        if (it == opt.max_iter) break;
        if (cholesky_solve(H, m, g, step) < 0) {
            rc = lr_fail(err, errlen, LOGREG_ENUMERIC, "logreg_fit: the Hessian is not positive definite at iteration %d "
                         "(the features may be too large: scale them)", it);
            goto out;
        }
        /* backtracking: the largest t in 1, 1/2, ... with sufficient decrease,
         * up to f's rounding (close to the minimum the decrease a Newton
         * step promises is below it, and the step is still the right one) */
        double slope = dot(g, step, m), t = 1.0, f_trial = f, slack = 4.0 * DBL_EPSILON * fabs(f);
        int accepted = 0;
        for (int k = 0; k < 60; k++, t *= 0.5) {
            for (int64_t a = 0; a < m; a++) trial[a] = theta[a] - t * step[a];
            f_trial = objective(X, y, s, n, d, opt.C, trial, z);
            if (f_trial <= f - 1e-4 * t * slope + slack) {
                accepted = 1;
                break;
            }
        }
        if (!accepted) { /* no step lowers f: the minimum to double precision */
            objective(X, y, s, n, d, opt.C, theta, z);
            break;
        }
        memcpy(theta, trial, (size_t)m * sizeof *theta);
        f = f_trial;
    }
    memcpy(coef, theta, (size_t)d * sizeof *coef);
    *intercept = theta[d];
    if (report) {
        report->iterations = it;
        report->converged = converged;
        report->objective = f;
        report->grad_max = gmax;
    }
    rc = LOGREG_OK;
out:
    free(s);
    free(z);
    free(theta);
    free(trial);
    free(g);
    free(step);
    free(H);
    free(xt);
    return rc;
}
