/*
 * test_gkd.c -- token-level distillation of sequence models (losses/gkd.h):
 * GKD's generalized JSD and its sparse top-k form, and AlignDistil, against
 * the worked numbers of specs/pref_kd_losses.md 5.8, 5.9 and 5.10 laid out
 * as [B=1,T=3,V=5] with position 0 masked (float64, 1e-6); a B=2 batch and
 * every AlignDistil metric against a line-by-line transcription of TRL's
 * generalized_jsd_loss and AlignDistil's off-policy trainer (torch 1.13,
 * float64); central finite differences; NaN in masked positions; the
 * float32 path; error paths and the settings helpers. Few Test()s on
 * purpose: each one pays libtorch's start-up.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gkd.h"
#include "kd.h"
#include "tensor.h"

#define B1 1
#define T3 3
#define V5 5
#define MAXEL 64

/* 5.8: student and teacher rows; 5.10: z_dpo = the 5.8 teacher, z_rev. */
static const double S8[15] = {1.0, 0.5, 0.0, -0.5, -1.0, 0.2, 1.5, -0.3, 0.0, 0.4, 2.0, -1.0, 0.5, 0.3, 0.0};
static const double T8[15] = {0.8, 0.9, -0.2, -0.4, -1.2, 0.0, 2.5, -1.0, 0.5, 0.1, 1.0, 0.0, 1.5, -0.5, 0.2};
static const double R10[15] = {0.9, 0.7, 0.0, -0.3, -1.0, 0.1, 1.5, -0.5, 0.4, 0.2, 1.4, 0.2, 0.6, 0.0, 0.1};
static const double M8[3] = {0, 1, 1};
static const double MALL[3] = {1, 1, 1};

/* A B=2 batch: sequence 0 is the example above, sequence 1 keeps its first two positions. */
static const double S2[30] = {1.0,  0.5, 0.0,  -0.5, -1.0, 0.2, 1.5, -0.3, 0.0, 0.4, 2.0,  -1.0, 0.5, 0.3,  0.0,
                              0.5,  -0.2, 1.1, 0.0,  -0.7, 1.3, 0.1, -0.4, 0.8, 0.2, -0.6, 0.9,  0.3, -1.1, 0.4};
static const double D2[30] = {0.8,  0.9, -0.2, -0.4, -1.2, 0.0, 2.5, -1.0, 0.5, 0.1, 1.0,  0.0, 1.5, -0.5, 0.2,
                              0.9,  -0.5, 1.4, 0.2,  -0.3, 1.0, 0.6, -0.8, 1.2, 0.0, -0.2, 1.1, 0.1, -0.9, 0.7};
static const double R2[30] = {0.9, 0.7,  0.0, -0.3, -1.0, 0.1, 1.5, -0.5, 0.4, 0.2, 1.4, 0.2, 0.6, 0.0,  0.1,
                              0.6, -0.1, 0.8, 0.1,  -0.5, 1.2, 0.3, -0.2, 0.7, 0.4, 0.0, 0.5, 0.6, -0.8, 0.3};
static const double M2[6] = {0, 1, 1, 1, 1, 0};

/* One evaluation of either loss: shapes, dtype, inputs as float64 host data. */
typedef struct evalc {
    int aligndistil; /* 0: gkd_loss (teacher = t); 1: gkd_aligndistil_loss (dpo = t, rev = r) */
    gkd_config g;
    gkd_aligndistil_config a;
    int64_t B, T, V;
    const double *t, *r, *mask;
    rt_dtype dt;
} evalc;

typedef struct evalr {
    double loss;
    gkd_metrics gm;
    gkd_aligndistil_metrics am;
    double grad[MAXEL];   /* d loss / d student, float64                 */
    double tok[MAXEL / 4]; /* aligndistil token losses [B,T]             */
    double w[MAXEL / 4];   /* aligndistil weights [B,T]                  */
} evalr;

static rt_tensor *cube(rt_scope *S, const double *v, const evalc *c)
{
    int64_t shape[3] = {c->B, c->T, c->V};
    rt_tensor *x = rt_from_data(S, v, shape, 3, RT_OPTS(RT_F64));
    return c->dt == RT_F64 ? x : rt_to_dtype(S, x, c->dt);
}

/* Evaluates c on student s; with r != NULL also backpropagates and copies
 * the gradient and per-token outputs out. Checks that only the results stay
 * in the caller's scope and that no constant input receives a gradient. */
static double eval(const evalc *c, const double *s, evalr *out)
{
    rt_scope *S = rt_scope_new();
    int64_t mshape[2] = {c->B, c->T};
    rt_tensor *st = cube(S, s, c), *tt = cube(S, c->t, c), *rr = c->aligndistil ? cube(S, c->r, c) : NULL;
    rt_tensor *mask = rt_compare_scalar(S, rt_from_data(S, c->mask, mshape, 2, RT_OPTS(RT_F64)), RT_NE, 0.0);
    cr_assert(st && tt && mask && (!c->aligndistil || rr), "%s", rt_last_error());
    if (out) {
        cr_assert_eq(rt_set_requires_grad(st, 1), RT_OK);
        cr_assert_eq(rt_set_requires_grad(tt, 1), RT_OK);
        if (rr) cr_assert_eq(rt_set_requires_grad(rr, 1), RT_OK);
    }
    size_t before = rt_scope_count(S);
    rt_tensor *loss, *tok = NULL, *w = NULL;
    if (c->aligndistil) {
        gkd_aligndistil_inputs in = {st, tt, rr, mask};
        loss = gkd_aligndistil_loss(S, &c->a, &in, out ? &out->am : NULL, out ? &tok : NULL, out ? &w : NULL);
    } else {
        gkd_inputs in = {st, tt, mask};
        loss = gkd_loss(S, &c->g, &in, out ? &out->gm : NULL);
    }
    cr_assert(loss != NULL, "%s", rt_last_error());
    size_t made = out && c->aligndistil ? 3 : 1;
    cr_assert_eq(rt_scope_count(S), before + made, "the loss left %zu handles in the caller's scope (want %zu)",
                 rt_scope_count(S) - before, made);
    cr_assert_eq(rt_ndim(loss), 0);
    cr_assert_eq(rt_dtype_of(loss), c->dt);
    double v = rt_item(loss);
    if (out) {
        size_t n = (size_t)(c->B * c->T * c->V), bt = (size_t)(c->B * c->T);
        cr_assert(n <= MAXEL);
        out->loss = v;
        cr_assert_eq(rt_backward(loss), RT_OK, "%s", rt_last_error());
        rt_tensor *g = rt_grad(S, st);
        cr_assert(g != NULL, "no student gradient");
        cr_assert_eq(rt_to_data(g, RT_F64, out->grad, n * sizeof(double)), RT_OK);
        cr_assert_eq(rt_has_grad(tt), 0, "teacher got a gradient");
        if (rr) cr_assert_eq(rt_has_grad(rr), 0, "rev model got a gradient");
        if (c->aligndistil) {
            cr_assert(tok && w, "token outputs missing");
            cr_assert_eq(rt_ndim(tok), 2);
            cr_assert_eq(rt_size(tok, 0), c->B);
            cr_assert_eq(rt_size(tok, 1), c->T);
            cr_assert_eq(rt_to_data(tok, RT_F64, out->tok, bt * sizeof(double)), RT_OK);
            cr_assert_eq(rt_to_data(w, RT_F64, out->w, bt * sizeof(double)), RT_OK);
            cr_assert_eq(rt_requires_grad(w), 0, "weights carry a gradient");
        }
    }
    rt_scope_free(S);
    return v;
}

static evalc gkd_case(const char *const *sets, const double *t, const double *mask, int64_t B)
{
    evalc c = {.aligndistil = 0, .g = gkd_config_default(), .B = B, .T = T3, .V = V5, .t = t, .mask = mask,
               .dt = RT_F64};
    for (int i = 0; sets && sets[i]; i++) {
        char name[64];
        const char *eq = strchr(sets[i], '=');
        cr_assert(eq && (size_t)(eq - sets[i]) < sizeof name);
        memcpy(name, sets[i], (size_t)(eq - sets[i]));
        name[eq - sets[i]] = '\0';
        cr_assert_eq(gkd_config_set(&c.g, name, eq + 1), RT_OK, "%s: %s", sets[i], rt_last_error());
    }
    return c;
}

static evalc ald_case(double beta, double beta2, const double *t, const double *r, const double *mask, int64_t B)
{
    evalc c = {.aligndistil = 1, .a = gkd_aligndistil_config_default(), .B = B, .T = T3, .V = V5, .t = t, .r = r,
               .mask = mask, .dt = RT_F64};
    c.a.beta = beta;
    c.a.beta2 = beta2;
    return c;
}

static void near(double got, double want, double tol, const char *what)
{
    cr_assert(fabs(got - want) <= tol, "%s: got %.9f, want %.9f (tol %g)", what, got, want, tol);
}

/* GKD loss of the 5.8 example under settings (NULL-terminated list). */
static double gkd8(const char *s1, const char *s2, const char *s3, const double *mask)
{
    const char *sets[4] = {s1, s2, s3, NULL};
    evalc c = gkd_case(sets, T8, mask, B1);
    return eval(&c, S8, NULL);
}

/* ------------------------------------------------------------------------ */

Test(gkd, worked_values)
{
    /* 5.8: per-position KLs (one kept position each), losses by beta */
    static const double only1[3] = {0, 1, 0}, only2[3] = {0, 0, 1}, only0[3] = {1, 0, 0};
    static const double fkl[3] = {0.038052, 0.147993, 0.410495}, rkl[3] = {0.036218, 0.179323, 0.372914};
    const double *only[3] = {only0, only1, only2};
    for (int p = 0; p < 3; p++) {
        char what[64];
        snprintf(what, sizeof what, "forward KL at position %d", p);
        near(gkd8("beta=0", NULL, NULL, only[p]), fkl[p], 1e-6, what);
        snprintf(what, sizeof what, "reverse KL at position %d", p);
        near(gkd8("beta=1", NULL, NULL, only[p]), rkl[p], 1e-6, what);
    }
    near(gkd8("beta=0", NULL, NULL, M8), 0.279244, 1e-6, "5.8 beta 0");
    near(gkd8("beta=1", NULL, NULL, M8), 0.276118, 1e-6, "5.8 beta 1");
    near(gkd8(NULL, NULL, NULL, M8), 0.066780, 1e-6, "5.8 beta 0.5 (default)");
    near(gkd8("beta=0.1", NULL, NULL, M8), 0.024719, 1e-6, "5.8 beta 0.1");
    near(gkd8("beta=0.9", NULL, NULL, M8), 0.024529, 1e-6, "5.8 beta 0.9");
    near(gkd8("temperature=0.9", NULL, NULL, M8), 0.078991, 1e-6, "5.8 beta 0.5 T 0.9");
    near(gkd8("reduction=mean", NULL, NULL, M8), 0.013356, 1e-6, "5.8 mean");
    near(gkd8("reduction=sum", NULL, NULL, M8), 0.133560, 1e-6, "5.8 sum");
    near(gkd8("num_items=4", NULL, NULL, M8), 0.133560 / 4, 1e-6, "5.8 num_items");
    /* the presets: DistillationTrainer is reverse KL; IW-OPD is top-1 with tail */
    near(gkd8("preset=distillation", NULL, NULL, M8), 0.276118, 1e-6, "distillation preset");

    /* 5.9: sparse top-k, k = 2, tail and renormalized */
    near(gkd8("top_k=2", "beta=0", NULL, M8), 0.245862, 1e-6, "top-2 beta 0 tail");
    near(gkd8("top_k=2", "beta=0", "add_tail=0", M8), 0.243569, 1e-6, "top-2 beta 0 renorm");
    near(gkd8("top_k=2", "beta=1", NULL, M8), 0.232023, 1e-6, "top-2 beta 1 tail");
    near(gkd8("top_k=2", "beta=1", "add_tail=0", M8), 0.265988, 1e-6, "top-2 beta 1 renorm");
    near(gkd8("top_k=2", "beta=0.5", NULL, M8), 0.059347, 1e-6, "top-2 beta 0.5 tail");
    near(gkd8("top_k=2", "beta=0.5", "add_tail=0", M8), 0.064501, 1e-6, "top-2 beta 0.5 renorm");
    near(gkd8("top_k=1", "beta=0", NULL, M8), 0.200102, 1e-6, "top-1 beta 0 tail");
    near(gkd8("top_k=1", "beta=0", "add_tail=0", M8), 0.0, 1e-12, "top-1 beta 0 renorm is 0");
    /* top_k >= V is the dense loss */
    near(gkd8("top_k=5", NULL, NULL, M8), 0.066780, 1e-6, "top_k = V");

    /* metrics; the teacher argmax is [1, 1, 2], the student's [0, 1, 0] */
    evalr r;
    evalc c = gkd_case(NULL, T8, M8, B1);
    eval(&c, S8, &r);
    near(r.gm.loss, 0.066780, 1e-6, "metrics.loss");
    near(r.gm.tokens, 2, 0, "metrics.tokens");
    near(r.gm.agreement, 0.5, 0, "metrics.agreement");

    /* B = 2 against TRL generalized_jsd_loss (labels -100 where mask 0) */
    static const struct { const char *beta; double want; } b2[] = {
        {"beta=0", 0.16032006600815757}, {"beta=0.5", 0.03857427740547403}, {"beta=1", 0.15912993501318623}};
    for (size_t i = 0; i < sizeof b2 / sizeof b2[0]; i++) {
        const char *sets[2] = {b2[i].beta, NULL};
        c = gkd_case(sets, D2, M2, 2);
        near(eval(&c, S2, &r), b2[i].want, 1e-9, b2[i].beta);
        near(r.gm.tokens, 4, 0, "B=2 tokens");
    }

    /* 5.10 AlignDistil, beta 0.1, beta2 10 */
    c = ald_case(0.1, 10, T8, R10, MALL, B1); /* every position, to see position 0's numbers too */
    eval(&c, S8, &r);
    static const double tvd[3] = {0.147785, 0.488021, 0.501346}, w[3] = {1.478854, 4.881207, 5.014462},
                        tok[3] = {0.008474, 0.053662, 0.099548};
    for (int p = 0; p < 3; p++) {
        near(r.w[p] - 1e-3, 10 * tvd[p], 1e-5, "beta2 * TVD");
        near(r.w[p], w[p], 1e-6, "w_t");
        near(r.tok[p], tok[p], 1e-6, "token loss");
    }
    c = ald_case(0.1, 10, T8, R10, M8, B1);
    near(eval(&c, S8, &r), 0.153211, 1e-6, "sequence loss, 2 tokens");
    near(r.tok[0], 0.0, 0, "masked token loss is 0");
    near(r.w[0], 0.0, 0, "masked weight is 0");
    near(r.tok[1], tok[1], 1e-6, "token loss 1");
    near(r.tok[2], tok[2], 1e-6, "token loss 2");
    c.a.length_norm = 1;
    near(eval(&c, S8, &r), 0.076605, 1e-6, "length-normalized loss");
    /* every metric against the reference trainer's arithmetic */
    near(r.am.loss, 0.07660532435149305, 1e-9, "rlhf_loss");
    near(r.am.mean_weight, 4.947834362170395, 1e-9, "mean_weight");
    near(r.am.expected_reward, -0.042982042644942334, 1e-9, "expected_reward");
    near(r.am.dpo_model_expected_reward, 0.029853261633417186, 1e-9, "dpo_model_expected_reward");
    near(r.am.seq_init_kl, 0.12241594874151863, 1e-9, "seq_init_kl");
    near(r.am.token_init_kl, 0.06120797437075932, 1e-9, "token_init_kl");
    near(r.am.seq_tea_kl, 0.5522363751909419, 1e-9, "seq_tea_kl");
    near(r.am.token_tea_kl, 0.27611818759547097, 1e-9, "token_tea_kl");
    near(r.am.tokens, 2, 0, "tokens");
    /* the other reward_boost_types, kd_temperature */
    static const struct { int form; double want, mean_w; } forms[] = {
        {GKD_THEOREM1, 0.6188374599098283, 0.01},
        {GKD_THEOREM1_CONTRAST, 2.7977439156475574, 0.01},
        {GKD_THEOREM1_ADAPTIVE, 0.060252511847454414, 4.947834362170395}};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        c.a.form = forms[i].form;
        near(eval(&c, S8, &r), forms[i].want, 1e-9, "theorem1 form");
        near(r.am.mean_weight, forms[i].mean_w, 1e-12, "theorem1 mean_weight");
    }
    c = ald_case(0.1, 10, T8, R10, M8, B1);
    c.a.kd_temperature = 0.7;
    near(eval(&c, S8, NULL), 0.240326336736352, 1e-9, "kd_temperature 0.7");
    /* B = 2 */
    c = ald_case(0.1, 10, D2, R2, M2, 2);
    near(eval(&c, S2, &r), 0.09920201261743196, 1e-9, "B=2 loss");
    near(r.am.mean_weight, 3.9286673047559124, 1e-9, "B=2 mean_weight");
    near(r.am.expected_reward, -0.024151666514840058, 1e-9, "B=2 expected_reward");
    near(r.am.dpo_model_expected_reward, 0.02065915031370752, 1e-9, "B=2 dpo expected reward");
    near(r.am.seq_init_kl, 0.0767432048779719, 1e-9, "B=2 seq_init_kl");
    near(r.am.token_init_kl, 0.03837160243898595, 1e-9, "B=2 token_init_kl");
    near(r.am.seq_tea_kl, 0.31825987002637246, 1e-9, "B=2 seq_tea_kl");
    near(r.am.token_tea_kl, 0.15912993501318623, 1e-9, "B=2 token_tea_kl");
    c.a.length_norm = 1;
    near(eval(&c, S2, NULL), 0.04960100630871598, 1e-9, "B=2 length-normalized loss");
}

/* Central differences of eval(c) at s against the autograd gradient. */
static void fd_check(const evalc *c, const double *s0, double tol, const char *what)
{
    evalr r;
    eval(c, s0, &r);
    size_t n = (size_t)(c->B * c->T * c->V);
    double s[MAXEL];
    memcpy(s, s0, n * sizeof *s);
    const double h = 1e-6;
    for (size_t i = 0; i < n; i++) {
        double keep = s[i];
        s[i] = keep + h;
        double up = eval(c, s, NULL);
        s[i] = keep - h;
        double dn = eval(c, s, NULL);
        s[i] = keep;
        double fd = (up - dn) / (2 * h);
        cr_assert(fabs(fd - r.grad[i]) <= tol * (1 + fabs(fd)), "%s: d/ds[%zu]: autograd %.10g, differences %.10g",
                  what, i, r.grad[i], fd);
        if (c->mask[i / (size_t)c->V] == 0) cr_assert_eq(r.grad[i], 0.0, "%s: masked row has gradient", what);
    }
}

Test(gkd, gradients)
{
    /* B = 2 with masked positions; logits well separated so no top-k tie
     * flips under a 1e-6 step */
    evalc c = gkd_case(NULL, D2, M2, 2);
    fd_check(&c, S2, 1e-7, "gkd jsd beta 0.5");
    const char *topk_union[] = {"top_k=2", "beta=0.5", NULL};
    c = gkd_case(topk_union, D2, M2, 2);
    fd_check(&c, S2, 1e-7, "gkd top-2 beta 0.5 tail");
    const char *topk_fwd[] = {"top_k=2", "beta=0", "add_tail=0", NULL};
    c = gkd_case(topk_fwd, D2, M2, 2);
    fd_check(&c, S2, 1e-7, "gkd top-2 beta 0 renorm");
    const char *topk_rev[] = {"top_k=2", "beta=1", "temperature=0.8", NULL};
    c = gkd_case(topk_rev, D2, M2, 2);
    fd_check(&c, S2, 1e-7, "gkd top-2 beta 1 T 0.8");
    c = ald_case(0.1, 10, D2, R2, M2, 2);
    c.a.length_norm = 1;
    fd_check(&c, S2, 1e-7, "aligndistil length_norm");
    c.a.form = GKD_THEOREM1_ADAPTIVE;
    c.a.length_norm = 0;
    c.a.kd_temperature = 1.3;
    fd_check(&c, S2, 1e-7, "aligndistil theorem1_adaptive");
}

Test(gkd, masked_nan_and_edges)
{
    /* NaN / inf in every masked row of the student and of both teachers */
    double s[30], t[30], rv[30];
    memcpy(s, S2, sizeof s);
    memcpy(t, D2, sizeof t);
    memcpy(rv, R2, sizeof rv);
    for (int p = 0; p < 6; p++) {
        if (M2[p] != 0) continue;
        for (int v = 0; v < 5; v++) {
            s[p * 5 + v] = v == 0 ? NAN : INFINITY;
            t[p * 5 + v] = NAN;
            rv[p * 5 + v] = -INFINITY;
        }
    }
    evalr clean, dirty;
    const char *topk[] = {"top_k=2", NULL};
    evalc cases[3] = {gkd_case(NULL, D2, M2, 2), gkd_case(topk, D2, M2, 2), ald_case(0.1, 10, D2, R2, M2, 2)};
    for (int k = 0; k < 3; k++) {
        evalc c = cases[k];
        eval(&c, S2, &clean);
        c.t = t;
        c.r = rv;
        eval(&c, s, &dirty);
        cr_assert(isfinite(dirty.loss), "case %d: NaN leaked into the loss", k);
        near(dirty.loss, clean.loss, 0, "loss unchanged by masked NaN");
        for (int i = 0; i < 30; i++) {
            cr_assert(isfinite(dirty.grad[i]), "case %d: NaN leaked into grad[%d]", k, i);
            near(dirty.grad[i], clean.grad[i], 0, "gradient unchanged by masked NaN");
        }
        if (c.aligndistil)
            for (int i = 0; i < 6; i++) cr_assert(isfinite(dirty.tok[i]) && isfinite(dirty.w[i]));
    }

    /* nothing kept: loss exactly 0, gradient exactly 0 */
    static const double none[6] = {0, 0, 0, 0, 0, 0};
    evalr r;
    evalc c = gkd_case(NULL, D2, none, 2);
    cr_assert_eq(eval(&c, S2, &r), 0.0);
    near(r.gm.tokens, 0, 0, "no tokens");
    cr_assert(isnan(r.gm.agreement));
    for (int i = 0; i < 30; i++) cr_assert_eq(r.grad[i], 0.0);
    c = ald_case(0.1, 10, D2, R2, none, 2);
    c.a.length_norm = 1;
    cr_assert_eq(eval(&c, S2, &r), 0.0);
    for (int i = 0; i < 30; i++) cr_assert_eq(r.grad[i], 0.0);

    /* float32 agrees with float64 to ~1e-6 relative */
    c = gkd_case(NULL, T8, M8, B1);
    c.dt = RT_F32;
    near(eval(&c, S8, NULL), 0.066780, 1e-6, "float32 jsd");
    const char *tk[] = {"top_k=2", NULL};
    c = gkd_case(tk, T8, M8, B1);
    c.dt = RT_F32;
    near(eval(&c, S8, NULL), 0.059347, 1e-6, "float32 top-k");
    c = ald_case(0.1, 10, T8, R10, M8, B1);
    c.dt = RT_F32;
    near(eval(&c, S8, NULL), 0.153211, 2e-6, "float32 aligndistil");

    /* an integer 0/1 mask works like a bool one */
    rt_scope *S = rt_scope_new();
    int64_t sh3[3] = {1, 3, 5}, sh2[2] = {1, 3};
    const int64_t mi[3] = {0, 1, 1};
    gkd_inputs in = {rt_from_data(S, S8, sh3, 3, RT_OPTS(RT_F64)), rt_from_data(S, T8, sh3, 3, RT_OPTS(RT_F64)),
                     rt_from_data(S, mi, sh2, 2, RT_OPTS(RT_I64))};
    gkd_config g = gkd_config_default();
    near(rt_item(gkd_loss(S, &g, &in, NULL)), 0.066780, 1e-6, "int64 mask");
    rt_scope_free(S);
}

/* The call fails, and the message contains every fragment given. */
static void fails_with(rt_tensor *got, const char *a, const char *b)
{
    cr_assert(got == NULL, "expected a failure mentioning '%s'", a);
    const char *msg = rt_last_error();
    cr_assert(strstr(msg, a) != NULL, "message '%s' lacks '%s'", msg, a);
    if (b) cr_assert(strstr(msg, b) != NULL, "message '%s' lacks '%s'", msg, b);
}

Test(gkd, errors_and_settings)
{
    rt_scope *S = rt_scope_new();
    int64_t sh3[3] = {1, 3, 5}, sh_bad[3] = {1, 3, 4}, sh2[2] = {1, 3}, sh2bad[2] = {1, 2}, sh_flat[2] = {3, 5};
    rt_tensor *s = rt_from_data(S, S8, sh3, 3, RT_OPTS(RT_F64));
    rt_tensor *t = rt_from_data(S, T8, sh3, 3, RT_OPTS(RT_F64));
    rt_tensor *r = rt_from_data(S, R10, sh3, 3, RT_OPTS(RT_F64));
    rt_tensor *t_bad = rt_from_data(S, T8, sh_bad, 3, RT_OPTS(RT_F64));
    rt_tensor *s_flat = rt_from_data(S, S8, sh_flat, 2, RT_OPTS(RT_F64));
    rt_tensor *t32 = rt_to_dtype(S, t, RT_F32);
    rt_tensor *mask = rt_compare_scalar(S, rt_from_data(S, M8, sh2, 2, RT_OPTS(RT_F64)), RT_NE, 0.0);
    rt_tensor *mask_bad = rt_from_data(S, M8, sh2bad, 2, RT_OPTS(RT_F64));
    const double half[3] = {0, 0.5, 1};
    rt_tensor *mask_half = rt_from_data(S, half, sh2, 2, RT_OPTS(RT_F64));
    cr_assert(s && t && r && t_bad && s_flat && t32 && mask && mask_bad && mask_half);
    gkd_config g = gkd_config_default();
    gkd_aligndistil_config a = gkd_aligndistil_config_default();

    gkd_inputs in = {s, t_bad, mask};
    fails_with(gkd_loss(S, &g, &in, NULL), "teacher_logits has shape [1, 3, 4]", "expected [1, 3, 5]");
    in = (gkd_inputs){s_flat, t, mask};
    fails_with(gkd_loss(S, &g, &in, NULL), "student_logits must be [B,T,V], got [3, 5]", NULL);
    int64_t sh_empty[3] = {0, 3, 5};
    rt_tensor *s_empty = rt_from_data(S, S8, sh_empty, 3, RT_OPTS(RT_F64));
    in = (gkd_inputs){s_empty, t, mask};
    fails_with(gkd_loss(S, &g, &in, NULL), "student_logits is empty ([0, 3, 5])", NULL);
    in = (gkd_inputs){s, t32, mask};
    fails_with(gkd_loss(S, &g, &in, NULL), "teacher_logits is float32 but student_logits is float64", NULL);
    in = (gkd_inputs){s, t, mask_bad};
    fails_with(gkd_loss(S, &g, &in, NULL), "mask must be [B,T] = [1, 3]", "got [1, 2]");
    in = (gkd_inputs){s, t, mask_half};
    fails_with(gkd_loss(S, &g, &in, NULL), "mask[0][1] = 0.5", NULL);
    in = (gkd_inputs){s, NULL, mask};
    rt_clear_error();
    fails_with(gkd_loss(S, &g, &in, NULL), "teacher_logits is NULL", NULL);
    fails_with(gkd_loss(S, &g, NULL, NULL), "inputs are NULL", NULL);
    in = (gkd_inputs){s, t, mask};
    gkd_config bad = g;
    bad.beta = 1.5;
    fails_with(gkd_loss(S, &bad, &in, NULL), "gkd: setting beta = 1.5 is out of range [0, 1]", NULL);
    bad = g;
    bad.beta = -0.1;
    fails_with(gkd_loss(S, &bad, &in, NULL), "beta = -0.1 is out of range", NULL);
    bad = g;
    bad.temperature = 0;
    fails_with(gkd_loss(S, &bad, &in, NULL), "temperature = 0 is out of range", NULL);

    gkd_aligndistil_inputs ai = {s, t, t_bad, mask};
    fails_with(gkd_aligndistil_loss(S, &a, &ai, NULL, NULL, NULL), "rev_logits has shape [1, 3, 4]", NULL);
    ai = (gkd_aligndistil_inputs){s, t, r, mask_bad};
    fails_with(gkd_aligndistil_loss(S, &a, &ai, NULL, NULL, NULL), "gkd_aligndistil_loss: mask must be", NULL);
    ai = (gkd_aligndistil_inputs){s, t, r, mask};
    gkd_aligndistil_config abad = a;
    abad.form = GKD_THEOREM1;
    abad.beta2 = 0;
    fails_with(gkd_aligndistil_loss(S, &abad, &ai, NULL, NULL, NULL), "form theorem1", "beta2 must be > 0");
    abad = a;
    abad.beta = -1;
    fails_with(gkd_aligndistil_loss(S, &abad, &ai, NULL, NULL, NULL), "aligndistil: setting beta = -1", NULL);
    rt_scope_free(S);

    /* settings: parse, range, choices, nearest name, presets, formatting */
    gkd_config c = gkd_config_default();
    near(c.beta, 0.5, 0, "default beta");
    near(c.temperature, 1.0, 0, "default temperature");
    cr_assert_eq(c.reduction, KD_RED_BATCHMEAN);
    cr_assert_eq(c.top_k, 0);
    cr_assert(isnan(c.num_items));
    cr_assert_eq(gkd_config_set(&c, "beta", "1.5"), RT_EINVAL);
    cr_assert(strstr(rt_last_error(), "gkd: beta = 1.5 is out of range [0, 1]"), "%s", rt_last_error());
    cr_assert_eq(gkd_config_set(&c, "temp", "2"), RT_ENOTFOUND);
    cr_assert(strstr(rt_last_error(), "did you mean 'temperature'"), "%s", rt_last_error());
    cr_assert_eq(gkd_config_set(&c, "reduction", "batchmaen"), RT_EINVAL);
    cr_assert(strstr(rt_last_error(), "did you mean 'batchmean'"), "%s", rt_last_error());
    cr_assert_eq(gkd_config_set(&c, "preset", "iw_opd"), RT_OK);
    near(c.beta, 1.0, 0, "iw_opd beta");
    cr_assert_eq(c.top_k, 1);
    cr_assert_eq(c.add_tail, 1);
    cr_assert_eq(gkd_config_set(&c, "num_items", "none"), RT_OK);
    size_t n;
    const gkd_setting *tab = gkd_settings(&n);
    char buf[64];
    cr_assert_eq(n, 7);
    cr_assert_str_eq(gkd_setting_format(&c, &tab[0], buf, sizeof buf), "iw_opd");
    cr_assert_str_eq(gkd_setting_format(&c, &tab[6], buf, sizeof buf), "none");
    const gkd_metric *mt = gkd_metric_table(&n);
    cr_assert_eq(n, 3);
    gkd_metrics gm = {.loss = 1, .tokens = 2, .agreement = 0.25};
    near(gkd_metric_value(&gm, &mt[2]), 0.25, 0, "metric value");

    gkd_aligndistil_config ad = gkd_aligndistil_config_default();
    near(ad.beta, 1.0, 0, "aligndistil default beta");
    near(ad.beta2, 1.0, 0, "aligndistil default beta2");
    near(ad.kd_temperature, 1.0, 0, "aligndistil default T");
    cr_assert_eq(ad.length_norm, 0);
    cr_assert_eq(ad.form, GKD_ALIGNDISTIL);
    cr_assert_eq(gkd_aligndistil_config_set(&ad, "form", "theorem1_contrast"), RT_OK);
    cr_assert_eq(ad.form, GKD_THEOREM1_CONTRAST);
    cr_assert_eq(gkd_aligndistil_config_set(&ad, "length_norm", "true"), RT_OK);
    cr_assert_eq(ad.length_norm, 1);
    cr_assert_eq(gkd_aligndistil_config_set(&ad, "beta3", "1"), RT_ENOTFOUND);
    cr_assert(strstr(rt_last_error(), "did you mean 'beta"), "%s", rt_last_error());
    const gkd_metric *am = gkd_aligndistil_metric_table(&n);
    cr_assert_eq(n, 9);
    cr_assert_str_eq(am[1].name, "mean_weight");
}
