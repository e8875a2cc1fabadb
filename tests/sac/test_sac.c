/*
 * test_sac.c -- the SAC losses and the squashed-Gaussian head (losses/sac.h)
 * against the worked example of specs/sac_envs.md section 1.2 and against
 * closed forms written out here in double precision (values and gradients
 * to 1e-9 in float64), central finite differences, the stable tanh
 * correction at |u| up to 50, samples inside the Box bounds, the discrete
 * variant (with a forbidden action), and the settings helpers. Few Test()s
 * on purpose: each one pays libtorch's start-up.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sac.h"
#include "tensor.h"

#define TOL 1e-9
#define MAXN 64
#define HALF_LOG_2PI 0.91893853320467274178 /* log(2 pi) / 2 */

/* ---- helpers ------------------------------------------------------------ */

static sac_config cfg_of(sac_part part, sac_reference ref, ...)
{
    sac_config c = sac_config_reference(part, ref);
    va_list ap;
    va_start(ap, ref);
    for (const char *kv; (kv = va_arg(ap, const char *)) != NULL;) {
        char name[64];
        const char *eq = strchr(kv, '=');
        cr_assert(eq != NULL && (size_t)(eq - kv) < sizeof name, "bad setting literal %s", kv);
        memcpy(name, kv, (size_t)(eq - kv));
        name[eq - kv] = '\0';
        cr_assert_eq(sac_config_set(&c, part, name, eq + 1), RT_OK, "%s: %s", kv, rt_last_error());
    }
    va_end(ap);
    return c;
}

/* A float tensor of shape [r] (c == 0) or [r,c] from doubles, as dtype dt. */
static rt_tensor *tens(rt_scope *S, const double *v, int64_t r, int64_t c, rt_dtype dt, int grad)
{
    int64_t shape[2] = {r, c};
    rt_tensor *x = rt_from_data(S, v, shape, c ? 2 : 1, RT_OPTS(RT_F64));
    if (dt != RT_F64) x = rt_to_dtype(S, x, dt);
    cr_assert(x != NULL, "%s", rt_last_error());
    if (grad) cr_assert_eq(rt_set_requires_grad(x, 1), RT_OK);
    return x;
}

static rt_tensor *boolvec(rt_scope *S, const double *v, int64_t n)
{
    return rt_compare_scalar(S, tens(S, v, n, 0, RT_F64, 0), RT_NE, 0.0);
}

static void host(const rt_tensor *t, double *out, int64_t n)
{
    cr_assert(t != NULL, "%s", rt_last_error());
    cr_assert_eq(rt_numel(t), n);
    cr_assert_eq(rt_to_data(t, RT_F64, out, (size_t)n * sizeof *out), RT_OK, "%s", rt_last_error());
}

/* The gradient of leaf t (zeros when none was produced). */
static void grad_of(rt_scope *S, const rt_tensor *t, double *out, int64_t n)
{
    if (!rt_has_grad(t)) {
        for (int64_t i = 0; i < n; i++) out[i] = 0.0;
        return;
    }
    host(rt_grad(S, t), out, n);
}

static void expect_close(const char *what, const double *got, const double *want, int64_t n, double tol)
{
    for (int64_t i = 0; i < n; i++)
        cr_expect(got[i] == want[i] || fabs(got[i] - want[i]) <= tol * fmax(1.0, fabs(want[i])), "%s[%lld]: got %.15g, want %.15g",
                  what, (long long)i, got[i], want[i]);
}

static void expect_near(const char *what, double got, double want, double tol)
{
    expect_close(what, &got, &want, 1, tol);
}

/* ---- squashed Gaussian: closed form ------------------------------------- */

typedef struct sq_case {
    int tanh_mode;     /* 1 = CleanRL tanh rescale [-5,2], 0 = clamp [-20,2] */
    int stable;        /* correction                                        */
    int env;           /* action_units = env                                */
    double eps_corr;   /* epsilon of the epsilon form                       */
} sq_case;

/* logp of one row and d logp / d mean_j, d logp / d raw_j. */
static double sq_ref(const sq_case *k, const double *mu, const double *raw, const double *eps, const double *lo,
                     const double *hi, int A, double *act, double *gmu, double *graw)
{
    double lp = 0;
    for (int j = 0; j < A; j++) {
        double s = lo ? (hi[j] - lo[j]) / 2 : 1, b = lo ? (hi[j] + lo[j]) / 2 : 0;
        double ls, dls;
        if (k->tanh_mode) {
            ls = -5 + 0.5 * 7 * (tanh(raw[j]) + 1);
            dls = 0.5 * 7 * (1 - tanh(raw[j]) * tanh(raw[j]));
        } else {
            ls = fmin(fmax(raw[j], -20), 2);
            dls = raw[j] > -20 && raw[j] < 2 ? 1 : 0;
        }
        double u = mu[j] + exp(ls) * eps[j], y = tanh(u);
        double corr, dcorr; /* corr and d corr / du */
        double se = k->env ? s : 1;
        if (k->stable) {
            corr = 2 * (log(2.0) - u - log1p(exp(-2 * u))) + log(se);
            dcorr = -2 * y;
        } else {
            corr = log(se * (1 - y * y) + k->eps_corr);
            dcorr = se * (-2 * y) * (1 - y * y) / (se * (1 - y * y) + k->eps_corr);
        }
        lp += -eps[j] * eps[j] / 2 - ls - HALF_LOG_2PI - corr;
        if (act) act[j] = y * s + b;
        if (gmu) gmu[j] = -dcorr;
        if (graw) graw[j] = (-1 - dcorr * exp(ls) * eps[j]) * dls;
    }
    return lp;
}

static sac_config sq_cfg(const sq_case *k)
{
    char eps[64];
    snprintf(eps, sizeof eps, "epsilon=%.17g", k->eps_corr);
    return cfg_of(SAC_PART_SQUASH, SAC_REF_RECOMMENDED, k->tanh_mode ? "log_std_mode=tanh" : "log_std_mode=clamp",
                  k->stable ? "correction=stable" : "correction=epsilon", k->env ? "action_units=env" : "action_units=normalized",
                  eps, NULL);
}

/* logp [B] from the library (float64), optionally with gradients. */
static void sq_eval(const sac_config *cfg, const double *mu, const double *raw, const double *eps, const double *lo,
                    const double *hi, int B, int A, double *logp, double *act, double *gmu, double *graw)
{
    rt_scope *S = rt_scope_new();
    sac_squash_inputs in = {tens(S, mu, B, A, RT_F64, gmu != NULL), tens(S, raw, B, A, RT_F64, gmu != NULL),
                            tens(S, eps, B, A, RT_F64, 0), lo ? tens(S, lo, A, 0, RT_F64, 0) : NULL,
                            hi ? tens(S, hi, A, 0, RT_F64, 0) : NULL};
    sac_squash_out out;
    sac_metrics m;
    cr_assert_eq(sac_squashed_gaussian(S, cfg, &in, NULL, &out, &m), RT_OK, "%s", rt_last_error());
    host(out.logp, logp, B);
    if (act) host(out.action, act, (int64_t)B * A);
    if (gmu) {
        cr_assert_eq(rt_backward(rt_sum(S, out.logp, RT_DIM_ALL, 0)), RT_OK, "%s", rt_last_error());
        grad_of(S, in.mean, gmu, (int64_t)B * A);
        grad_of(S, in.log_std, graw, (int64_t)B * A);
    }
    double mean = 0;
    for (int b = 0; b < B; b++) mean += logp[b] / B;
    expect_near("metric entropy", m.entropy, -mean, TOL);
    cr_expect(isnan(m.loss) && m.count == B);
    rt_scope_free(S);
}

Test(sac, squashed_gaussian)
{
    /* Spec 1.2 worked example: mu = (0.3, -1.2), raw log-std (0, 0.5),
     * eps = (0.7, -0.4), bounds [-2, 2] (scale 2). */
    const double mu[2] = {0.3, -1.2}, raw[2] = {0.0, 0.5}, eps[2] = {0.7, -0.4};
    const double lo[2] = {-2, -2}, hi[2] = {2, 2};
    struct {
        sq_case k;
        double spec_logp; /* the spec's printed value (8 decimals) */
        double spec_a0, spec_a1;
    } ex[] = {
        {{1, 0, 1, 1e-6}, 0.02051557, 0.85394957, -1.85766918}, /* CleanRL          */
        {{1, 1, 1, 1e-6}, 0.02051982, 0.85394957, -1.85766918}, /* CleanRL, stable  */
        {{0, 0, 0, 1e-6}, 0.58529246, 1.52318831, -1.90526311}, /* SB3              */
        {{0, 1, 0, 1e-6}, 0.58530565, 1.52318831, -1.90526311}, /* recommended      */
    };
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
        sac_config c = sq_cfg(&ex[i].k);
        double lp, act[2], gmu[2], graw[2], wact[2], wgmu[2], wgraw[2];
        double want = sq_ref(&ex[i].k, mu, raw, eps, lo, hi, 2, wact, wgmu, wgraw);
        sq_eval(&c, mu, raw, eps, lo, hi, 1, 2, &lp, act, gmu, graw);
        expect_near("logp vs closed form", lp, want, TOL);
        expect_near("logp vs spec", lp, ex[i].spec_logp, 1e-8);
        expect_close("action", act, wact, 2, TOL);
        expect_near("spec action 0", act[0], ex[i].spec_a0, 1e-8);
        expect_near("spec action 1", act[1], ex[i].spec_a1, 1e-8);
        expect_close("dlogp/dmean", gmu, wgmu, 2, TOL);
        expect_close("dlogp/draw", graw, wgraw, 2, TOL);
    }
    /* The presets reproduce the same numbers. */
    {
        sac_config cl = sac_config_reference(SAC_PART_SQUASH, SAC_REF_CLEANRL);
        sac_config sb = sac_config_reference(SAC_PART_SQUASH, SAC_REF_SB3);
        double lp;
        sq_eval(&cl, mu, raw, eps, lo, hi, 1, 2, &lp, NULL, NULL, NULL);
        expect_near("cleanrl preset", lp, 0.02051557, 1e-8);
        sq_eval(&sb, mu, raw, eps, lo, hi, 1, 2, &lp, NULL, NULL, NULL);
        expect_near("sb3 preset", lp, 0.58529246, 1e-8);
    }

    /* Central finite differences on asymmetric bounds, B = 3, A = 2, with a
     * raw log-std outside the clamp range (zero gradient there). */
    {
        const double m3[6] = {0.1, -0.7, 1.4, 0.2, -2.0, 0.9}, r3[6] = {-0.3, 0.4, 1.1, 2.5, 0.0, 0.6};
        const double e3[6] = {0.5, -1.3, 0.2, 0.8, -0.1, 1.7}, l3[2] = {-1, 0}, h3[2] = {3, 1};
        sq_case ks[3] = {{1, 0, 1, 1e-6}, {0, 1, 0, 1e-6}, {1, 1, 1, 1e-6}};
        for (int k = 0; k < 3; k++) {
            sac_config c = sq_cfg(&ks[k]);
            double lp[3], gm[6], gr[6];
            sq_eval(&c, m3, r3, e3, l3, h3, 3, 2, lp, NULL, gm, gr);
            for (int i = 0; i < 6; i++) {
                const double h = 1e-5; /* the epsilon form rounds 1 - y^2: keep h large enough */
                double xp[6], xm[6], lpp[3], lpm[3];
                for (int which = 0; which < 2; which++) {
                    const double *base = which ? r3 : m3;
                    memcpy(xp, base, sizeof xp);
                    memcpy(xm, base, sizeof xm);
                    xp[i] += h;
                    xm[i] -= h;
                    sq_eval(&c, which ? m3 : xp, which ? xp : r3, e3, l3, h3, 3, 2, lpp, NULL, NULL, NULL);
                    sq_eval(&c, which ? m3 : xm, which ? xm : r3, e3, l3, h3, 3, 2, lpm, NULL, NULL, NULL);
                    double fd = (lpp[i / 2] - lpm[i / 2]) / (2 * h);
                    double an = which ? gr[i] : gm[i];
                    cr_expect(fabs(fd - an) <= 1e-6 * fmax(1, fabs(an)), "case %d d logp/d %s[%d]: fd %.12g autograd %.12g",
                              k, which ? "raw" : "mean", i, fd, an);
                }
                /* and the closed form, per row */
                double wgm[2], wgr[2];
                sq_ref(&ks[k], m3 + (i / 2) * 2, r3 + (i / 2) * 2, e3 + (i / 2) * 2, l3, h3, 2, NULL, wgm, wgr);
                expect_near("closed-form dmean", gm[i], wgm[i % 2], TOL);
                expect_near("closed-form draw", gr[i], wgr[i % 2], TOL);
            }
        }
    }

    /* The stable correction: equal to the naive log(1 - tanh^2) where that is
     * accurate, to its exact closed form everywhere, finite (value and
     * gradient -2 tanh u) up to |u| = 50, where the naive form is -inf. */
    {
        rt_scope *S = rt_scope_new();
        double uv[201], got[201], g[201];
        for (int i = 0; i < 201; i++) uv[i] = -50.0 + 0.5 * i;
        for (int dt = 0; dt < 2; dt++) {
            rt_tensor *u = tens(S, uv, 201, 0, dt ? RT_F32 : RT_F64, 1);
            rt_tensor *c = sac_log1m_tanh_sq(S, u);
            cr_assert(c != NULL, "%s", rt_last_error());
            host(c, got, 201);
            cr_assert_eq(rt_backward(rt_sum(S, c, RT_DIM_ALL, 0)), RT_OK);
            grad_of(S, u, g, 201);
            for (int i = 0; i < 201; i++) {
                double a = fabs(uv[i]), exact = 2 * (log(2.0) - a - log1p(exp(-2 * a)));
                double tol = dt ? 1e-5 : 1e-12;
                cr_expect(isfinite(got[i]) && isfinite(g[i]), "u = %g not finite", uv[i]);
                expect_near(dt ? "stable f32 vs exact" : "stable vs exact", got[i], exact, tol);
                expect_near("stable gradient", g[i], -2 * tanh(uv[i]), dt ? 1e-6 : 1e-12);
                if (!dt && a <= 8) {
                    double naive = log(1 - tanh(uv[i]) * tanh(uv[i]));
                    expect_near("stable vs naive", got[i], naive, 1e-8);
                }
                if (!dt && a <= 2) { /* the epsilon form agrees to within its epsilon's effect */
                    double t = tanh(uv[i]), naive_eps = log(1 - t * t + 1e-6);
                    cr_expect(fabs(naive_eps - got[i]) <= 1e-6 / (1 - t * t) + 1e-12, "u = %g: eps form %.12g vs %.12g",
                              uv[i], naive_eps, got[i]);
                }
            }
        }
        /* the naive form without epsilon breaks at u = 50: logp = +inf */
        const double m50[2] = {50, -50}, r0[2] = {0, 0}, e0[2] = {0, 0};
        double lp_naive, lp_stable;
        sq_case naive = {0, 0, 0, 0.0}, stable = {0, 1, 0, 0.0};
        sac_config cn = sq_cfg(&naive), cs = sq_cfg(&stable);
        sq_eval(&cn, m50, r0, e0, NULL, NULL, 1, 2, &lp_naive, NULL, NULL, NULL);
        sq_eval(&cs, m50, r0, e0, NULL, NULL, 1, 2, &lp_stable, NULL, NULL, NULL);
        cr_expect(isinf(lp_naive), "naive logp at u = 50: %g", lp_naive);
        expect_near("stable logp at u = +-50", lp_stable, sq_ref(&stable, m50, r0, e0, NULL, NULL, 2, NULL, NULL, NULL),
                    1e-12);
        cr_expect(isfinite(lp_stable));
        rt_scope_free(S);
    }

    /* Samples drawn from a generator stay inside the bounds, even with
     * saturated means, in float32 and float64; the same noise given back
     * reproduces them; the deterministic action is tanh(mean) rescaled. */
    {
        enum { B = 64, A = 3 };
        double mv[B * A], rv[B * A];
        for (int i = 0; i < B * A; i++) {
            mv[i] = (i % 5 == 0) ? 30.0 * ((i % 2) ? 1 : -1) : 0.37 * (i % 11) - 2.0;
            rv[i] = 0.25 * (i % 9) - 1.0;
        }
        const double lo3[A] = {-2, -1, 0}, hi3[A] = {2, 3, 0.5};
        for (int dt = 0; dt < 2; dt++) {
            rt_scope *S = rt_scope_new();
            rt_gen *g = rt_gen_new(7);
            rt_dtype d = dt ? RT_F32 : RT_F64;
            sac_config c = sac_config_default(SAC_PART_SQUASH);
            sac_squash_inputs in = {tens(S, mv, B, A, d, 0), tens(S, rv, B, A, d, 0), NULL, tens(S, lo3, A, 0, d, 0),
                                    tens(S, hi3, A, 0, d, 0)};
            sac_squash_out o1, o2;
            cr_assert_eq(sac_squashed_gaussian(S, &c, &in, g, &o1, NULL), RT_OK, "%s", rt_last_error());
            cr_assert_eq(rt_dtype_of(o1.action), d);
            double a[B * A], y[B * A], ma[B * A], lp1[B], lp2[B];
            host(o1.action, a, B * A);
            host(o1.squashed, y, B * A);
            host(o1.mean_action, ma, B * A);
            host(o1.logp, lp1, B);
            for (int i = 0; i < B * A; i++) {
                int j = i % A;
                cr_expect(a[i] >= lo3[j] && a[i] <= hi3[j], "action[%d] = %.9g outside [%g, %g]", i, a[i], lo3[j], hi3[j]);
                cr_expect(y[i] >= -1 && y[i] <= 1);
                double want = tanh(mv[i]) * (hi3[j] - lo3[j]) / 2 + (hi3[j] + lo3[j]) / 2;
                cr_expect(fabs(ma[i] - want) <= (dt ? 1e-6 : 1e-12), "mean_action[%d]", i);
            }
            for (int b = 0; b < B; b++) cr_expect(isfinite(lp1[b]), "logp[%d] = %g", b, lp1[b]);
            in.noise = o1.noise;
            cr_assert_eq(sac_squashed_gaussian(S, &c, &in, NULL, &o2, NULL), RT_OK, "%s", rt_last_error());
            host(o2.logp, lp2, B);
            for (int b = 0; b < B; b++) cr_expect(lp1[b] == lp2[b]);
            rt_gen_free(g);
            rt_scope_free(S);
        }
    }
}

/* ---- continuous losses --------------------------------------------------- */

Test(sac, continuous_losses)
{
    enum { B = 4 };
    const double q1[B] = {1.0, -0.5, 2.0, 0.3}, q2[B] = {0.8, -0.2, 2.4, 0.1};
    const double q1n[B] = {1.2, 0.4, 1.9, -0.6}, q2n[B] = {1.5, 0.1, 2.2, -0.9};
    const double nlp[B] = {-1.1, 0.3, -0.4, 2.0}, r[B] = {0.5, -1.0, 0.0, 1.5}, term[B] = {0, 1, 0, 0};
    const double alpha = 0.2, gamma = 0.97;

    /* critic: y = r + gamma (1 - d)(min(q1n, q2n) - alpha nlp) */
    double y[B];
    for (int b = 0; b < B; b++) y[b] = r[b] + gamma * (1 - term[b]) * (fmin(q1n[b], q2n[b]) - alpha * nlp[b]);
    for (int red = 0; red < 2; red++) {
        rt_scope *S = rt_scope_new();
        sac_config c = cfg_of(SAC_PART_CRITIC, SAC_REF_RECOMMENDED, "alpha=0.2", "gamma=0.97",
                              red ? "critic_reduction=sum" : "critic_reduction=half_sum", NULL);
        double k = red ? 1.0 : 0.5, mse1 = 0, mse2 = 0;
        for (int b = 0; b < B; b++) mse1 += (q1[b] - y[b]) * (q1[b] - y[b]) / B, mse2 += (q2[b] - y[b]) * (q2[b] - y[b]) / B;
        /* a NaN in the terminal row's next-state values must not leak */
        double q1n_nan[B];
        memcpy(q1n_nan, q1n, sizeof q1n_nan);
        q1n_nan[1] = NAN;
        sac_critic_inputs in = {tens(S, q1, B, 0, RT_F64, 1), tens(S, q2, B, 0, RT_F64, 1),
                                tens(S, q1n_nan, B, 0, RT_F64, 1), tens(S, q2n, B, 0, RT_F64, 1),
                                tens(S, nlp, B, 0, RT_F64, 1), tens(S, r, B, 0, RT_F64, 0), boolvec(S, term, B)};
        sac_metrics m;
        rt_tensor *target = NULL;
        size_t before = rt_scope_count(S);
        rt_tensor *loss = sac_critic_loss(S, &c, &in, &m, &target);
        cr_assert(loss != NULL, "%s", rt_last_error());
        cr_expect_eq(rt_scope_count(S), before + 2, "only the loss and the target stay in the caller's scope");
        expect_near("critic loss", rt_item(loss), k * (mse1 + mse2), TOL);
        double yt[B], g1[B], g2[B], gz[B];
        host(target, yt, B);
        expect_close("target", yt, y, B, TOL);
        cr_assert_eq(rt_backward(loss), RT_OK, "%s", rt_last_error());
        grad_of(S, in.q1, g1, B);
        grad_of(S, in.q2, g2, B);
        for (int b = 0; b < B; b++) {
            expect_near("dq1", g1[b], k * 2 * (q1[b] - y[b]) / B, TOL);
            expect_near("dq2", g2[b], k * 2 * (q2[b] - y[b]) / B, TOL);
        }
        const rt_tensor *detached[3] = {in.q1_next, in.q2_next, in.next_logp};
        for (int i = 0; i < 3; i++) {
            grad_of(S, detached[i], gz, B);
            for (int b = 0; b < B; b++) cr_expect(gz[b] == 0.0, "target input %d received a gradient", i);
        }
        expect_near("qf1_loss", m.qf1_loss, mse1, TOL);
        expect_near("qf2_loss", m.qf2_loss, mse2, TOL);
        expect_near("qf1_values", m.qf1_values, (q1[0] + q1[1] + q1[2] + q1[3]) / B, TOL);
        expect_near("target_q", m.target_q, (y[0] + y[1] + y[2] + y[3]) / B, TOL);
        cr_expect(m.alpha == 0.2 && m.count == B && isnan(m.min_q));
        rt_scope_free(S);
    }
    /* no terminated mask = nothing terminal; float32 runs and agrees */
    {
        rt_scope *S = rt_scope_new();
        sac_config c = cfg_of(SAC_PART_CRITIC, SAC_REF_RECOMMENDED, "alpha=0.2", "gamma=0.97", NULL);
        double want = 0;
        for (int b = 0; b < B; b++) {
            double yb = r[b] + gamma * (fmin(q1n[b], q2n[b]) - alpha * nlp[b]);
            want += 0.5 * ((q1[b] - yb) * (q1[b] - yb) + (q2[b] - yb) * (q2[b] - yb)) / B;
        }
        sac_critic_inputs in = {tens(S, q1, B, 0, RT_F32, 0), tens(S, q2, B, 0, RT_F32, 0), tens(S, q1n, B, 0, RT_F32, 0),
                                tens(S, q2n, B, 0, RT_F32, 0), tens(S, nlp, B, 0, RT_F32, 0), tens(S, r, B, 0, RT_F32, 0),
                                NULL};
        rt_tensor *loss = sac_critic_loss(S, &c, &in, NULL, NULL);
        cr_assert(loss != NULL, "%s", rt_last_error());
        cr_expect_eq(rt_dtype_of(loss), RT_F32);
        expect_near("critic loss f32", rt_item(loss), want, 1e-6);
        /* a float64 input among float32 ones is refused, naming it */
        in.rewards = tens(S, r, B, 0, RT_F64, 0);
        cr_expect(sac_critic_loss(S, &c, &in, NULL, NULL) == NULL);
        cr_expect(strstr(rt_last_error(), "rewards") != NULL, "%s", rt_last_error());
        /* a [B,1] q is refused (it would broadcast against y [B]) */
        in.rewards = tens(S, r, B, 0, RT_F32, 0);
        in.q1 = tens(S, q1, B, 1, RT_F32, 0);
        cr_expect(sac_critic_loss(S, &c, &in, NULL, NULL) == NULL);
        cr_expect(strstr(rt_last_error(), "q1 must be [B]") != NULL, "%s", rt_last_error());
        rt_scope_free(S);
    }

    /* actor: mean(alpha logp - min(q1, q2)), and softlearning's mean of Qs */
    const double lp[B] = {-0.9, 1.3, 0.2, -2.4};
    for (int qr = 0; qr < 2; qr++) {
        rt_scope *S = rt_scope_new();
        sac_config c = cfg_of(SAC_PART_ACTOR, SAC_REF_RECOMMENDED, "alpha=0.2", qr ? "q_reduce=mean" : "q_reduce=min", NULL);
        sac_actor_inputs in = {tens(S, lp, B, 0, RT_F64, 1), tens(S, q1, B, 0, RT_F64, 1), tens(S, q2, B, 0, RT_F64, 1)};
        sac_metrics m;
        rt_tensor *loss = sac_actor_loss(S, &c, &in, &m);
        cr_assert(loss != NULL, "%s", rt_last_error());
        double want = 0, wq = 0, gl[B], g1[B], g2[B];
        for (int b = 0; b < B; b++) {
            double q = qr ? (q1[b] + q2[b]) / 2 : fmin(q1[b], q2[b]);
            want += (alpha * lp[b] - q) / B;
            wq += q / B;
        }
        expect_near("actor loss", rt_item(loss), want, TOL);
        expect_near("actor min_q", m.min_q, wq, TOL);
        expect_near("actor entropy", m.entropy, -(lp[0] + lp[1] + lp[2] + lp[3]) / B, TOL);
        cr_assert_eq(rt_backward(loss), RT_OK);
        grad_of(S, in.logp, gl, B);
        grad_of(S, in.q1, g1, B);
        grad_of(S, in.q2, g2, B);
        for (int b = 0; b < B; b++) {
            expect_near("dlogp", gl[b], alpha / B, TOL);
            expect_near("dq1", g1[b], qr ? -0.5 / B : (q1[b] < q2[b] ? -1.0 / B : 0.0), TOL);
            expect_near("dq2", g2[b], qr ? -0.5 / B : (q2[b] < q1[b] ? -1.0 / B : 0.0), TOL);
        }
        rt_scope_free(S);
    }

    /* alpha: SB3 -mean(log_alpha (logp + H)) and CleanRL -mean(alpha (logp + H)),
     * H = -action_dim; log_alpha as [1] and as a 0-dim tensor */
    for (int form = 0; form < 4; form++) {
        rt_scope *S = rt_scope_new();
        int cleanrl = form & 1, zero_dim = form >> 1;
        sac_config c = cfg_of(SAC_PART_ALPHA, SAC_REF_RECOMMENDED, cleanrl ? "alpha_loss=alpha" : "alpha_loss=log_alpha",
                              "action_dim=2", NULL);
        const double la = log(0.3);
        rt_tensor *log_alpha = zero_dim ? rt_scalar(S, la, RT_OPTS(RT_F64)) : tens(S, &la, 1, 0, RT_F64, 0);
        cr_assert_eq(rt_set_requires_grad(log_alpha, 1), RT_OK);
        sac_alpha_inputs in = {log_alpha, tens(S, lp, B, 0, RT_F64, 1)};
        sac_metrics m;
        rt_tensor *loss = sac_alpha_loss(S, &c, &in, &m);
        cr_assert(loss != NULL, "%s", rt_last_error());
        cr_expect_eq(rt_ndim(loss), 0);
        double d = 0;
        for (int b = 0; b < B; b++) d += (lp[b] - 2.0) / B;
        double coef = cleanrl ? 0.3 : la, dcoef = cleanrl ? 0.3 : 1.0;
        expect_near("alpha loss", rt_item(loss), -coef * d, TOL);
        cr_assert_eq(rt_backward(loss), RT_OK);
        double ga, gl[B];
        grad_of(S, log_alpha, &ga, 1);
        grad_of(S, in.logp, gl, B);
        expect_near("dlog_alpha", ga, -dcoef * d, TOL);
        for (int b = 0; b < B; b++) cr_expect(gl[b] == 0.0, "logp is detached in the alpha loss");
        expect_near("alpha metric", m.alpha, 0.3, TOL);
        cr_expect(m.target_entropy == -2.0);
        rt_scope_free(S);
    }
    /* an explicit target entropy overrides -action_dim */
    {
        sac_config c = cfg_of(SAC_PART_ALPHA, SAC_REF_RECOMMENDED, "target_entropy=-0.5", NULL);
        cr_expect(sac_target_entropy(&c, 7, 0) == -0.5);
        c = cfg_of(SAC_PART_ALPHA, SAC_REF_RECOMMENDED, "target_entropy=auto", NULL);
        cr_expect(sac_target_entropy(&c, 7, 0) == -7.0);
        expect_near("discrete auto H", sac_target_entropy(&c, 6, 1), 0.89 * log(6.0), 1e-15);
    }
}

/* ---- discrete (CleanRL sac_atari) --------------------------------------- */

static void softmax_row(const double *z, int A, double *p, double *lp)
{
    double mx = -INFINITY, s = 0;
    for (int a = 0; a < A; a++) mx = fmax(mx, z[a]);
    for (int a = 0; a < A; a++) s += exp(z[a] - mx);
    for (int a = 0; a < A; a++) {
        lp[a] = z[a] - mx - log(s);
        p[a] = exp(lp[a]);
    }
}

/* The discrete actor loss in double (R = mean over B*A or expectation). */
static double dactor_ref(const double *z, const double *q1, const double *q2, int B, int A, double alpha, int expect)
{
    double s = 0, p[8], lp[8];
    for (int b = 0; b < B; b++) {
        softmax_row(z + b * A, A, p, lp);
        for (int a = 0; a < A; a++)
            if (p[a] > 0) s += p[a] * (alpha * lp[a] - fmin(q1[b * A + a], q2[b * A + a]));
    }
    return expect ? s / B : s / (B * A);
}

static double dactor_eval(const sac_config *c, const double *z, const double *q1, const double *q2, int B, int A,
                          double *gz)
{
    rt_scope *S = rt_scope_new();
    sac_discrete_actor_inputs in = {tens(S, z, B, A, RT_F64, gz != NULL), tens(S, q1, B, A, RT_F64, 1),
                                    tens(S, q2, B, A, RT_F64, 1)};
    rt_tensor *loss = sac_discrete_actor_loss(S, c, &in, NULL);
    cr_assert(loss != NULL, "%s", rt_last_error());
    double v = rt_item(loss);
    if (gz) {
        double gq[MAXN];
        cr_assert_eq(rt_backward(loss), RT_OK);
        grad_of(S, in.logits, gz, (int64_t)B * A);
        grad_of(S, in.q1, gq, (int64_t)B * A);
        for (int i = 0; i < B * A; i++) cr_expect(gq[i] == 0.0, "q1 is detached in the discrete actor loss");
    }
    rt_scope_free(S);
    return v;
}

Test(sac, discrete)
{
    enum { B = 2, A = 3 };
    const double q1[B * A] = {1.0, 0.5, -0.2, 0.3, 1.1, 0.9}, q2[B * A] = {0.7, 0.9, 0.1, 0.6, 0.8, 1.2};
    const double q1n[B * A] = {0.4, 1.3, -0.5, 2.0, 0.2, 0.0}, q2n[B * A] = {0.6, 1.0, -0.1, 1.7, 0.5, 0.3};
    const double zn[B * A] = {0.2, -1.0, 0.7, 1.5, 0.0, -0.5}, r[B] = {1.0, -0.5}, term[B] = {0, 1};
    const int64_t actions[B] = {2, 0};
    const double alpha = 0.3, gamma = 0.99;

    /* critic: y = r + gamma (1-d) sum_a pi'(min Q' - alpha log pi') */
    {
        double y[B], p[A], lp[A], ent = 0;
        for (int b = 0; b < B; b++) {
            softmax_row(zn + b * A, A, p, lp);
            double v = 0;
            for (int a = 0; a < A; a++) v += p[a] * (fmin(q1n[b * A + a], q2n[b * A + a]) - alpha * lp[a]), ent -= p[a] * lp[a] / B;
            y[b] = r[b] + gamma * (1 - term[b]) * v;
        }
        for (int red = 0; red < 2; red++) {
            rt_scope *S = rt_scope_new();
            sac_config c = cfg_of(SAC_PART_DISCRETE_CRITIC, SAC_REF_RECOMMENDED, "alpha=0.3", "gamma=0.99",
                                  red ? "critic_reduction=half_sum" : "critic_reduction=sum", NULL);
            int64_t lb[1] = {B};
            sac_discrete_critic_inputs in = {tens(S, q1, B, A, RT_F64, 1), tens(S, q2, B, A, RT_F64, 1),
                                             rt_from_data(S, actions, lb, 1, RT_OPTS(RT_I64)),
                                             tens(S, q1n, B, A, RT_F64, 0), tens(S, q2n, B, A, RT_F64, 0),
                                             tens(S, zn, B, A, RT_F64, 1), tens(S, r, B, 0, RT_F64, 0),
                                             boolvec(S, term, B)};
            sac_metrics m;
            rt_tensor *target;
            rt_tensor *loss = sac_discrete_critic_loss(S, &c, &in, &m, &target);
            cr_assert(loss != NULL, "%s", rt_last_error());
            double k = red ? 0.5 : 1.0, mse1 = 0, mse2 = 0, yt[B], g1[B * A], gzn[B * A];
            for (int b = 0; b < B; b++) {
                double a1 = q1[b * A + actions[b]] - y[b], a2 = q2[b * A + actions[b]] - y[b];
                mse1 += a1 * a1 / B, mse2 += a2 * a2 / B;
            }
            expect_near("discrete critic loss", rt_item(loss), k * (mse1 + mse2), TOL);
            host(target, yt, B);
            expect_close("discrete target", yt, y, B, TOL);
            expect_near("next-policy entropy", m.entropy, ent, TOL);
            cr_assert_eq(rt_backward(loss), RT_OK);
            grad_of(S, in.q1, g1, B * A);
            grad_of(S, in.next_logits, gzn, B * A);
            for (int b = 0; b < B; b++)
                for (int a = 0; a < A; a++) {
                    double want = a == actions[b] ? k * 2 * (q1[b * A + a] - y[b]) / B : 0.0;
                    expect_near("discrete dq1", g1[b * A + a], want, TOL);
                    cr_expect(gzn[b * A + a] == 0.0, "next_logits is detached");
                }
            rt_scope_free(S);
        }
        /* an action outside [0, A) is refused, naming its row */
        rt_scope *S = rt_scope_new();
        sac_config c = sac_config_default(SAC_PART_DISCRETE_CRITIC);
        const int64_t bad[B] = {1, 3};
        int64_t lb[1] = {B};
        sac_discrete_critic_inputs in = {tens(S, q1, B, A, RT_F64, 0), tens(S, q2, B, A, RT_F64, 0),
                                         rt_from_data(S, bad, lb, 1, RT_OPTS(RT_I64)), tens(S, q1n, B, A, RT_F64, 0),
                                         tens(S, q2n, B, A, RT_F64, 0), tens(S, zn, B, A, RT_F64, 0),
                                         tens(S, r, B, 0, RT_F64, 0), NULL};
        cr_expect(sac_discrete_critic_loss(S, &c, &in, NULL, NULL) == NULL);
        cr_expect(strstr(rt_last_error(), "actions[1] = 3") != NULL, "%s", rt_last_error());
        rt_scope_free(S);
    }

    /* actor: value for both reductions, gradient by central differences */
    for (int red = 0; red < 2; red++) {
        sac_config c = cfg_of(SAC_PART_DISCRETE_ACTOR, SAC_REF_RECOMMENDED, "alpha=0.3",
                              red ? "discrete_reduction=expectation" : "discrete_reduction=mean", NULL);
        double gz[B * A];
        double v = dactor_eval(&c, zn, q1, q2, B, A, gz);
        expect_near("discrete actor loss", v, dactor_ref(zn, q1, q2, B, A, alpha, red), TOL);
        for (int i = 0; i < B * A; i++) {
            double zp[B * A], zm[B * A];
            const double h = 1e-6;
            memcpy(zp, zn, sizeof zp);
            memcpy(zm, zn, sizeof zm);
            zp[i] += h;
            zm[i] -= h;
            double fd = (dactor_ref(zp, q1, q2, B, A, alpha, red) - dactor_ref(zm, q1, q2, B, A, alpha, red)) / (2 * h);
            double fd_lib = (dactor_eval(&c, zp, q1, q2, B, A, NULL) - dactor_eval(&c, zm, q1, q2, B, A, NULL)) / (2 * h);
            cr_expect(fabs(fd - gz[i]) <= 1e-7 && fabs(fd_lib - gz[i]) <= 1e-7, "d/dlogits[%d]: fd %.12g lib-fd %.12g autograd %.12g",
                      i, fd, fd_lib, gz[i]);
        }
    }
    /* a forbidden action (logit -inf) contributes 0, not NaN, to value and gradient */
    {
        const double zinf[B * A] = {0.2, -INFINITY, 0.7, 1.5, 0.0, -0.5};
        sac_config c = sac_config_default(SAC_PART_DISCRETE_ACTOR);
        c.alpha = alpha;
        double gz[B * A];
        double v = dactor_eval(&c, zinf, q1, q2, B, A, gz);
        expect_near("actor loss with -inf logit", v, dactor_ref(zinf, q1, q2, B, A, alpha, 0), TOL);
        for (int i = 0; i < B * A; i++) cr_expect(isfinite(gz[i]), "gradient[%d] = %g", i, gz[i]);
        cr_expect(gz[1] == 0.0);
    }

    /* alpha: -R(pi (coef) (log pi + H)), H = 0.89 log A, both forms */
    for (int form = 0; form < 2; form++) {
        rt_scope *S = rt_scope_new();
        sac_config c = cfg_of(SAC_PART_DISCRETE_ALPHA, SAC_REF_RECOMMENDED, form ? "alpha_loss=log_alpha" : "alpha_loss=alpha",
                              NULL);
        const double la = log(0.3), H = 0.89 * log((double)A);
        sac_discrete_alpha_inputs in = {tens(S, &la, 1, 0, RT_F64, 1), tens(S, zn, B, A, RT_F64, 1)};
        sac_metrics m;
        rt_tensor *loss = sac_discrete_alpha_loss(S, &c, &in, &m);
        cr_assert(loss != NULL, "%s", rt_last_error());
        double s = 0, p[A], lp[A], ent = 0;
        for (int b = 0; b < B; b++) {
            softmax_row(zn + b * A, A, p, lp);
            for (int a = 0; a < A; a++) s += p[a] * (lp[a] + H) / (B * A), ent -= p[a] * lp[a] / B;
        }
        double coef = form ? la : 0.3, dcoef = form ? 1.0 : 0.3;
        expect_near("discrete alpha loss", rt_item(loss), -coef * s, TOL);
        expect_near("discrete alpha entropy", m.entropy, ent, TOL);
        expect_near("discrete target entropy", m.target_entropy, H, 1e-15);
        cr_assert_eq(rt_backward(loss), RT_OK);
        double ga, gz[B * A];
        grad_of(S, in.log_alpha, &ga, 1);
        grad_of(S, in.logits, gz, B * A);
        expect_near("discrete dlog_alpha", ga, -dcoef * s, TOL);
        for (int i = 0; i < B * A; i++) cr_expect(gz[i] == 0.0, "logits are detached in the alpha loss");
        rt_scope_free(S);
    }
}

/* ---- settings ------------------------------------------------------------ */

Test(sac, settings)
{
    sac_config c = sac_config_default(SAC_PART_CRITIC);
    cr_expect(c.gamma == 0.99 && c.alpha == 1.0 && c.critic_reduction == SAC_CRITIC_HALF_SUM);
    c = sac_config_default(SAC_PART_SQUASH);
    cr_expect(c.log_std_mode == SAC_LOG_STD_CLAMP && c.correction == SAC_CORR_STABLE &&
              c.action_units == SAC_UNITS_NORMALIZED && sac_log_std_min(&c) == -20.0 && c.log_std_max == 2.0);
    c = sac_config_default(SAC_PART_DISCRETE_CRITIC);
    cr_expect(c.critic_reduction == SAC_CRITIC_SUM);
    c = sac_config_default(SAC_PART_DISCRETE_ALPHA);
    cr_expect(c.alpha_loss == SAC_ALPHA_LOSS_ALPHA && c.discrete_reduction == SAC_DISCRETE_MEAN);
    c = sac_config_reference(SAC_PART_SQUASH, SAC_REF_CLEANRL);
    cr_expect(c.log_std_mode == SAC_LOG_STD_TANH && sac_log_std_min(&c) == -5.0 && c.correction == SAC_CORR_EPSILON &&
              c.action_units == SAC_UNITS_ENV);
    c = sac_config_reference(SAC_PART_ALPHA, SAC_REF_CLEANRL);
    cr_expect(c.alpha_loss == SAC_ALPHA_LOSS_ALPHA && c.critic_reduction == SAC_CRITIC_SUM);
    cr_expect_eq(sac_reference_from_name("cleanrl"), SAC_REF_CLEANRL);
    cr_expect_eq(sac_reference_from_name("spinup"), -1);
    cr_expect_str_eq(sac_part_name(SAC_PART_DISCRETE_ALPHA), "discrete_alpha");

    c = sac_config_default(SAC_PART_CRITIC);
    cr_expect_eq(sac_config_set(&c, SAC_PART_CRITIC, "gama", "0.9"), RT_ENOTFOUND);
    cr_expect(strstr(rt_last_error(), "did you mean 'gamma'") != NULL, "%s", rt_last_error());
    cr_expect_eq(sac_config_set(&c, SAC_PART_CRITIC, "log_std_mode", "tanh"), RT_ENOTFOUND);
    cr_expect(strstr(rt_last_error(), "does not apply to critic") != NULL, "%s", rt_last_error());
    cr_expect_eq(sac_config_set(&c, SAC_PART_CRITIC, "gamma", "1.5"), RT_EINVAL);
    cr_expect(strstr(rt_last_error(), "out of range") != NULL, "%s", rt_last_error());
    cr_expect_eq(sac_config_set(&c, SAC_PART_CRITIC, "critic_reduction", "mean"), RT_EINVAL);
    cr_expect(strstr(rt_last_error(), "half_sum, sum") != NULL, "%s", rt_last_error());
    cr_expect_eq(sac_config_set(&c, SAC_PART_COUNT, "log_std_mode", "tanh"), RT_OK, "any part: %s", rt_last_error());

    char buf[64];
    c = sac_config_default(SAC_PART_SQUASH);
    cr_expect_str_eq(sac_setting_format(&c, sac_setting_find(SAC_PART_SQUASH, "log_std_min"), buf, sizeof buf), "auto");
    cr_expect_eq(sac_config_set(&c, SAC_PART_SQUASH, "log_std_min", "-7.5"), RT_OK);
    cr_expect_str_eq(sac_setting_format(&c, sac_setting_find(SAC_PART_SQUASH, "log_std_min"), buf, sizeof buf), "-7.5");
    cr_expect_str_eq(sac_setting_format(&c, sac_setting_find(SAC_PART_SQUASH, "correction"), buf, sizeof buf), "stable");
    cr_expect_eq(sac_config_set(&c, SAC_PART_SQUASH, "log_std_max", "-8"), RT_OK);
    cr_expect_eq(sac_config_check(&c), RT_EINVAL);
    cr_expect(strstr(rt_last_error(), "log_std_min") != NULL, "%s", rt_last_error());

    /* each part's table holds its defaults; the union table knows every name */
    size_t n, nall;
    const sac_setting *all = sac_settings(SAC_PART_COUNT, &nall);
    cr_expect(nall == 15);
    for (int p = 0; p < SAC_PART_COUNT; p++) {
        const sac_setting *s = sac_settings((sac_part)p, &n);
        sac_config def = sac_config_default((sac_part)p);
        cr_assert(s != NULL && n >= 2);
        for (size_t i = 0; i < n; i++) {
            char a[64], b[64];
            sac_config probe = def;
            cr_expect(sac_setting_find((sac_part)p, s[i].name) == &s[i]);
            cr_expect(lset_find(all, nall, s[i].name) != NULL, "%s missing from the union table", s[i].name);
            /* the formatted default parses back to itself */
            sac_setting_format(&def, &s[i], a, sizeof a);
            cr_expect_eq(sac_config_set(&probe, (sac_part)p, s[i].name, a), RT_OK, "%s=%s: %s", s[i].name, a,
                         rt_last_error());
            cr_expect_str_eq(sac_setting_format(&probe, &s[i], b, sizeof b), a);
        }
    }
    cr_expect(sac_settings((sac_part)42, &n) == NULL && n == 0);
    const sac_metric_desc *d = sac_metric_table(&n);
    sac_metrics m = {.loss = 1.5};
    cr_expect(strcmp(d[0].name, "loss") == 0 && sac_metric_value(&m, &d[0]) == 1.5);
    cr_expect(!sac_metric_applies(&d[0], SAC_PART_SQUASH) && sac_metric_applies(&d[0], SAC_PART_ALPHA));
}
