/*
 * logreg.h -- binary logistic regression in float64, without libtorch: the
 * prompt classifier of BCO's underlying distribution matching (the bco loop
 * in pref_algos.c, TRL's BCOTrainer with an embedding_func) and anything else
 * that wants P(y = 1 | x) from a few thousand rows of a few hundred features.
 *
 * The model is scikit-learn's LogisticRegression at its defaults (penalty
 * "l2", C = 1, fit_intercept), optionally with class_weight="balanced" as
 * TRL's BCO fits it. It minimises
 *
 *     f(w, b) = 0.5 |w|^2 + C sum_i s_i [softplus(z_i) - y_i z_i],   z_i = w.x_i + b,
 *
 * where the intercept b is not penalised and s_i = 1, or n / (2 n_{y_i})
 * when balanced (each class then weighs n/2 in total). f is strictly convex
 * in (w, b) whenever both classes are present, so it has exactly one
 * minimiser; sklearn reaches it with L-BFGS, this module with Newton's method
 * and a backtracking (Armijo) line search:
 *
 *     g = [w; 0] + C X~^T (s * (p - y)),   H = I~ + C X~^T diag(s p (1 - p)) X~,
 *
 * with X~ = [X, 1] and I~ the identity without the intercept's entry, the
 * Newton step solved by a Cholesky factorisation of H. It stops when
 * max |g| <= tol * max(1, C sum_i s_i) -- the gradient of the data term is a
 * sum over rows, so the tolerance scales with it. Every loop runs in a fixed
 * order in double precision: the same inputs give the same bits, so a
 * checkpointed classifier is reproducible.
 *
 * Arrays are plain row-major doubles the caller owns: X [n, d], y [n] with
 * 0 / nonzero labels, coef [d]. Functions return LOGREG_OK (0) or a negative
 * logreg_status with a message in err (errlen bytes) naming the argument, the
 * row or column and the reason.
 */
#ifndef RLT_LOGREG_H
#define RLT_LOGREG_H

#include <stddef.h>
#include <stdint.h>

typedef enum logreg_status {
    LOGREG_OK = 0,
    LOGREG_EINVAL = -1, /* bad arguments: sizes, a non-finite feature, one class only */
    LOGREG_ENOMEM = -2,
    LOGREG_ENUMERIC = -3, /* the Hessian lost positive definiteness (should not happen) */
} logreg_status;

typedef struct logreg_options {
    double C;      /* inverse L2 strength, > 0                       1.0 (sklearn) */
    int balanced;  /* 1: class_weight="balanced" (TRL BCO)            0 (sklearn)   */
    int max_iter;  /* Newton iterations, >= 1                         100           */
    double tol;    /* gradient tolerance, relative (see above), > 0   1e-10         */
} logreg_options;

/* What a fit did. */
typedef struct logreg_report {
    int iterations;   /* Newton steps taken                                   */
    int converged;    /* 1: the gradient met the tolerance                    */
    double objective; /* f at the returned (w, b)                             */
    double grad_max;  /* max |g| there                                        */
} logreg_report;

/* sklearn's defaults: C 1, not balanced, 100 iterations, tol 1e-10. */
logreg_options logreg_options_default(void);

/* Fits (coef [d], *intercept) on X [n, d] and labels y [n]. Needs n >= 2, d >= 1,
 * finite features and both labels present. Starts from zero. A fit that
 * stops at max_iter (or where no step lowers f any more) before the gradient
 * meets the tolerance still returns LOGREG_OK with report->converged = 0:
 * the caller decides whether to warn. report may be NULL. */
int logreg_fit(const double *X, const uint8_t *y, int64_t n, int64_t d, const logreg_options *o, double *coef,
               double *intercept, logreg_report *report, char *err, size_t errlen);

/* P(y = 1 | x) for one row x [d]: the logistic of w.x + b, evaluated without
 * overflow (z = +-1000 gives 1 and 0). */
double logreg_prob(const double *coef, double intercept, const double *x, int64_t d);

/* P(y = 1 | x) of every row of X [n, d] into p [n]. */
void logreg_predict(const double *coef, double intercept, const double *X, int64_t n, int64_t d, double *p);

/* sklearn's score: the fraction of the n rows whose predicted class
 * (w.x + b > 0) equals their label. NaN when n == 0. */
double logreg_score(const double *coef, double intercept, const double *X, const uint8_t *y, int64_t n, int64_t d);

#endif /* RLT_LOGREG_H */
