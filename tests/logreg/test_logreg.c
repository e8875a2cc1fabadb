/*
 * test_logreg.c -- trainer/logreg.h, the float64 logistic regression that BCO's
 * UDM fits on prompt embeddings. The optimum is checked by its own
 * optimality condition (the gradient of f, recomputed here in long double,
 * vanishes), which holds for the unique minimiser whatever the algorithm; by
 * the intercept's exact identities (unweighted: mean p equals the positive
 * fraction; balanced: the class-weighted mean p is 1/2); by a separable
 * two-point problem whose answer solves w = 2 (1 - sigmoid(w)) (bisection
 * here); by held-out accuracy on two Gaussian clouds; by bit-identical refits;
 * and by its refusals.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "logreg.h"

/* splitmix64 and Box-Muller: the test's own deterministic draws. */
static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double uniform(uint64_t *s) { return ((double)(mix(s) >> 11) + 0.5) / 9007199254740992.0; }

static double normal(uint64_t *s) {
    double u = uniform(s), v = uniform(s);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* n rows in d dims: label 1 around +mu, label 0 around -mu (unit variance),
 * n1 of them positive, interleaved. */
static void clouds(uint64_t seed, int64_t n, int64_t n1, int64_t d, double mu, double *X, uint8_t *y) {
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++) {
        y[i] = (uint8_t)(i * n1 / n != (i + 1) * n1 / n); /* n1 ones spread over n */
        for (int64_t j = 0; j < d; j++) X[i * d + j] = (y[i] ? mu : -mu) + normal(&s);
    }
}

/* max |grad f| at (w, b), in long double, with the module's weights. */
static double grad_max(const double *X, const uint8_t *y, int64_t n, int64_t d, double C, int balanced, const double *w,
                       double b) {
    int64_t n1 = 0;
    for (int64_t i = 0; i < n; i++) n1 += y[i] != 0;
    long double g[16] = {0};
    cr_assert(d + 1 <= 16);
    for (int64_t i = 0; i < n; i++) {
        long double z = b;
        for (int64_t j = 0; j < d; j++) z += (long double)w[j] * X[i * d + j];
        long double p = 1.0L / (1.0L + expl(-z));
        long double s = !balanced ? 1.0L : (long double)n / (2.0L * (long double)(y[i] ? n1 : n - n1));
        long double r = C * s * (p - (y[i] ? 1.0L : 0.0L));
        for (int64_t j = 0; j < d; j++) g[j] += r * X[i * d + j];
        g[d] += r;
    }
    double m = 0;
    for (int64_t j = 0; j <= d; j++) {
        long double v = g[j] + (j < d ? w[j] : 0.0L);
        m = fabsl(v) > m ? (double)fabsl(v) : m;
    }
    return m;
}

Test(logreg, separates_two_gaussian_clouds) {
    enum { N = 400, D = 4, NT = 4000 };
    static double X[N * D], Xt[NT * D];
    static uint8_t y[N], yt[NT];
    clouds(1, N, N / 2, D, 1.0, X, y);  /* means +-(1,1,1,1): Bayes accuracy Phi(2) = 0.977 */
    clouds(2, NT, NT / 2, D, 1.0, Xt, yt);
    double w[D], b, w2[D], b2;
    logreg_report rep;
    char err[256] = "";
    logreg_options o = logreg_options_default();
    cr_assert_eq(o.C, 1.0);
    cr_assert_eq(o.balanced, 0);
    cr_assert_eq(logreg_fit(X, y, N, D, &o, w, &b, &rep, err, sizeof err), LOGREG_OK, "%s", err);
    cr_assert(rep.converged && rep.iterations >= 2 && rep.iterations < 20, "converged %d after %d iterations",
              rep.converged, rep.iterations);
    double g = grad_max(X, y, N, D, 1.0, 0, w, b);
    cr_assert(g < 1e-9 * N, "gradient at the fit: %g", g);
    cr_assert(rep.grad_max < 1e-10 * N, "reported gradient %g", rep.grad_max);
    for (int j = 0; j < D; j++) cr_assert(w[j] > 0.5, "w[%d] = %g should point from -mu to +mu", j, w[j]);
    double acc = logreg_score(w, b, Xt, yt, NT, D);
    cr_assert(acc > 0.96 && acc < 0.99, "held-out accuracy %.4f (Bayes 0.977)", acc);
    /* per class, as TRL's log shows them */
    int64_t right1 = 0;
    for (int64_t i = 0; i < NT; i++)
        if (yt[i]) right1 += logreg_prob(w, b, Xt + i * D, D) > 0.5;
    cr_assert(right1 > 0.95 * NT / 2, "positives recognised: %lld of %d", (long long)right1, NT / 2);
    /* the same inputs give the same bits */
    cr_assert_eq(logreg_fit(X, y, N, D, &o, w2, &b2, NULL, err, sizeof err), LOGREG_OK, "%s", err);
    cr_assert(memcmp(w, w2, sizeof w) == 0 && memcmp(&b, &b2, sizeof b) == 0, "refit differs");
    double p[N];
    logreg_predict(w, b, X, N, D, p);
    for (int64_t i = 0; i < N; i++) cr_assert_eq(p[i], logreg_prob(w, b, X + i * D, D));
}

Test(logreg, intercept_identities_and_balanced_weights) {
    enum { N = 330, N1 = 30, D = 2 };
    static double X[N * D];
    static uint8_t y[N];
    clouds(7, N, N1, D, 0.5, X, y); /* overlapping, 1 positive in 11 */
    double w[D], b, wb[D], bb;
    char err[256] = "";
    logreg_options o = logreg_options_default();
    cr_assert_eq(logreg_fit(X, y, N, D, &o, w, &b, NULL, err, sizeof err), LOGREG_OK, "%s", err);
    o.balanced = 1;
    logreg_report rep;
    cr_assert_eq(logreg_fit(X, y, N, D, &o, wb, &bb, &rep, err, sizeof err), LOGREG_OK, "%s", err);
    cr_assert(rep.converged);
    cr_assert(grad_max(X, y, N, D, 1.0, 1, wb, bb) < 1e-9 * N);
    /* d f / d b = 0: sum_i s_i (p_i - y_i) = 0 */
    double mean_p = 0, wsum_p = 0, wsum = 0;
    for (int64_t i = 0; i < N; i++) {
        mean_p += logreg_prob(w, b, X + i * D, D) / N;
        double s = (double)N / (2.0 * (y[i] ? N1 : N - N1));
        wsum_p += s * logreg_prob(wb, bb, X + i * D, D);
        wsum += s;
    }
    cr_assert(fabs(mean_p - (double)N1 / N) < 1e-10, "unweighted: mean p %.12f, positive fraction %.12f", mean_p,
              (double)N1 / N);
    cr_assert(fabs(wsum_p / wsum - 0.5) < 1e-10, "balanced: weighted mean p %.12f", wsum_p / wsum);
    cr_assert(fabs(wsum - N) < 1e-9, "balanced weights sum to n: %g", wsum);
    /* balancing moves the boundary toward the majority: more positives found */
    int64_t found = 0, found_b = 0;
    for (int64_t i = 0; i < N; i++)
        if (y[i]) {
            found += logreg_prob(w, b, X + i * D, D) > 0.5;
            found_b += logreg_prob(wb, bb, X + i * D, D) > 0.5;
        }
    cr_assert(found_b > found && bb > b, "positives found %lld -> %lld, intercept %g -> %g", (long long)found,
              (long long)found_b, b, bb);
}

Test(logreg, separable_points_have_a_finite_optimum) {
    /* x = +1 (label 1) and x = -1 (label 0): b = 0 by symmetry and
     * w + 2C (sigmoid(w) - 1) = 0. */
    double X[2] = {1.0, -1.0};
    uint8_t y[2] = {1, 0};
    for (double C = 1.0; C <= 100.0; C *= 10.0) {
        double lo = 0, hi = 100;
        for (int k = 0; k < 200; k++) {
            double mid = 0.5 * (lo + hi);
            if (mid + 2 * C * (1.0 / (1.0 + exp(-mid)) - 1.0) < 0)
                lo = mid;
            else
                hi = mid;
        }
        double w, b;
        char err[256] = "";
        logreg_options o = logreg_options_default();
        o.C = C;
        logreg_report rep;
        cr_assert_eq(logreg_fit(X, y, 2, 1, &o, &w, &b, &rep, err, sizeof err), LOGREG_OK, "%s", err);
        cr_assert(rep.converged, "C %g: %d iterations, gradient %g, w %.15f (want %.15f)", C, rep.iterations, rep.grad_max,
                  w, lo);
        cr_assert(fabs(w - lo) < 1e-12 && fabs(b) < 1e-12, "C %g: w %.15f (want %.15f), b %g", C, w, lo, b);
        cr_assert_eq(logreg_score(&w, b, X, y, 2, 1), 1.0);
    }
}

Test(logreg, probabilities_at_the_extremes) {
    double w = 1.0;
    cr_assert_eq(logreg_prob(&w, 0.0, &(double){1000.0}, 1), 1.0);
    cr_assert_eq(logreg_prob(&w, 0.0, &(double){-1000.0}, 1), 0.0);
    cr_assert_eq(logreg_prob(&w, 0.0, &(double){0.0}, 1), 0.5);
    cr_assert(fabs(logreg_prob(&w, 0.5, &(double){-0.5}, 1) - 0.5) < 1e-15);
    cr_assert(isnan(logreg_score(&w, 0.0, NULL, NULL, 0, 1)));
}

Test(logreg, refusals_name_the_reason) {
    double X[8] = {0, 1, 2, 3, 4, 5, 6, 7}, w[2], b;
    uint8_t same[4] = {1, 1, 1, 1}, y[4] = {0, 1, 0, 1};
    char err[256];
    cr_assert_eq(logreg_fit(X, same, 4, 2, NULL, w, &b, NULL, err, sizeof err), LOGREG_EINVAL);
    cr_assert(strstr(err, "all 4 rows have label 1") && strstr(err, "both classes"), "%s", err);
    X[3] = NAN;
    cr_assert_eq(logreg_fit(X, y, 4, 2, NULL, w, &b, NULL, err, sizeof err), LOGREG_EINVAL);
    cr_assert(strstr(err, "X[1, 1]") && strstr(err, "finite"), "%s", err);
    X[3] = 3;
    cr_assert_eq(logreg_fit(X, y, 1, 2, NULL, w, &b, NULL, err, sizeof err), LOGREG_EINVAL);
    cr_assert(strstr(err, "n >= 2"), "%s", err);
    logreg_options o = logreg_options_default();
    o.C = 0;
    cr_assert_eq(logreg_fit(X, y, 4, 2, &o, w, &b, NULL, err, sizeof err), LOGREG_EINVAL);
    cr_assert(strstr(err, "C > 0"), "%s", err);
    cr_assert_eq(logreg_fit(NULL, y, 4, 2, NULL, w, &b, NULL, err, sizeof err), LOGREG_EINVAL);
    cr_assert(strstr(err, "NULL"), "%s", err);
    /* max_iter 1: one step, not converged, still a usable answer */
    o = logreg_options_default();
    o.max_iter = 1;
    logreg_report rep;
    cr_assert_eq(logreg_fit(X, y, 4, 2, &o, w, &b, &rep, err, sizeof err), LOGREG_OK, "%s", err);
    cr_assert(rep.iterations == 1 && !rep.converged && isfinite(w[0]) && isfinite(b), "%d %d", rep.iterations,
              rep.converged);
}
