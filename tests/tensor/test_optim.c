/*
 * test_optim.c -- SGD (momentum, dampening, nesterov, weight decay), Adam
 * (L2, amsgrad) and AdamW steps of the tensor binding against the update
 * rules written out here in C with torch's semantics, in float64; learning
 * rate changes; and the per-parameter state export/import that resume relies
 * on, which must continue training bit-exactly.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tcheck.h"
#include "tensor.h"

#define NP 3
/* loss(p) = sum(0.5 * CV * p^2 + DV * p)  ->  grad = CV * p + DV */
static const double CV[NP] = {1.0, 2.0, 0.5};
static const double DV[NP] = {0.3, -0.2, 0.1};
static const double P0[NP] = {0.5, -1.0, 2.0};

struct ref_state {
    double m[NP], v[NP], vmax[NP], buf[NP];
};

/* One optimizer step on p, written from torch's update rules:
 *  SGD:   g += wd p; buf = t==1 ? g : mom buf + (1-damp) g;
 *         g = nesterov ? g + mom buf : buf (when mom != 0); p -= lr g
 *  Adam:  g += wd p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *         (amsgrad: vmax = max(vmax, v), used for v)
 *         p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *  AdamW: p *= 1 - lr wd first, then Adam without the L2 term. */
static void ref_step(rt_optim_kind kind, const rt_optim_opts *o, double lr, int t, double *p,
                     struct ref_state *s)
{
    for (int i = 0; i < NP; i++) {
        double g = CV[i] * p[i] + DV[i];
        if (kind == RT_SGD) {
            if (o->weight_decay != 0)
                g += o->weight_decay * p[i];
            if (o->momentum != 0) {
                s->buf[i] = t == 1 ? g : o->momentum * s->buf[i] + (1 - o->dampening) * g;
                g = o->nesterov ? g + o->momentum * s->buf[i] : s->buf[i];
            }
            p[i] -= lr * g;
            continue;
        }
        if (kind == RT_ADAMW)
            p[i] *= 1 - lr * o->weight_decay;
        else if (o->weight_decay != 0)
            g += o->weight_decay * p[i];
        s->m[i] = o->beta1 * s->m[i] + (1 - o->beta1) * g;
        s->v[i] = o->beta2 * s->v[i] + (1 - o->beta2) * g * g;
        double v = s->v[i];
        if (o->amsgrad) {
            s->vmax[i] = fmax(s->vmax[i], s->v[i]);
            v = s->vmax[i];
        }
        double bc1 = 1 - pow(o->beta1, t), bc2 = 1 - pow(o->beta2, t);
        double denom = sqrt(v) / sqrt(bc2) + o->eps;
        p[i] -= lr / bc1 * s->m[i] / denom;
    }
}

struct opt_case {
    const char *name;
    rt_optim_kind kind;
    double lr, momentum, dampening, weight_decay, eps;
    int nesterov, amsgrad;
    double lr_at_step3; /* 0: unchanged */
};

static void run_case(const struct opt_case *c)
{
    rt_scope *S = rt_scope_new();
    const int64_t s3[1] = {NP};
    rt_tensor *p = tc_f64(S, P0, s3, 1);
    rt_keep(p); /* the optimizer's parameter must outlive the scope resets */
    rt_set_requires_grad(p, 1);
    rt_tensor *cv = rt_keep(tc_f64(S, CV, s3, 1)), *dv = rt_keep(tc_f64(S, DV, s3, 1));
    rt_optim_opts o = rt_optim_defaults(c->kind);
    o.lr = c->lr;
    o.momentum = c->momentum;
    o.dampening = c->dampening;
    o.weight_decay = c->weight_decay;
    o.nesterov = c->nesterov;
    o.amsgrad = c->amsgrad;
    if (c->eps > 0)
        o.eps = c->eps;
    const char *names[1] = {"p"};
    rt_optim *opt = rt_optim_new(c->kind, &p, names, 1, &o);
    cr_assert(opt != NULL, "%s: rt_optim_new: %s", c->name, rt_last_error());
    cr_expect_eq(rt_optim_kind_of(opt), c->kind);
    rt_optim_opts got = rt_optim_get_opts(opt);
    cr_expect(got.lr == o.lr && got.weight_decay == o.weight_decay && got.momentum == o.momentum &&
                  got.nesterov == o.nesterov && got.amsgrad == o.amsgrad && got.eps == o.eps,
              "%s: rt_optim_get_opts does not return the options given", c->name);

    double ref[NP];
    memcpy(ref, P0, sizeof ref);
    struct ref_state st;
    memset(&st, 0, sizeof st);
    double lr = c->lr;
    for (int t = 1; t <= 3; t++) {
        if (t == 3 && c->lr_at_step3 > 0) {
            cr_assert_eq(rt_optim_set_lr(opt, c->lr_at_step3), RT_OK);
            cr_expect_eq(rt_optim_get_lr(opt), c->lr_at_step3);
            lr = c->lr_at_step3;
        }
        cr_assert_eq(rt_optim_zero_grad(opt), RT_OK);
        rt_tensor *pp = rt_mul(S, p, p);
        rt_tensor *loss = rt_sum(S, rt_add(S, rt_mul(S, rt_mul_scalar(S, pp, 0.5), cv),
                                           rt_mul(S, dv, p)),
                                 RT_DIM_ALL, 0);
        cr_assert_eq(rt_backward(loss), RT_OK, "%s: %s", c->name, rt_last_error());
        cr_assert_eq(rt_optim_step(opt), RT_OK, "%s: step %d: %s", c->name, t, rt_last_error());
        ref_step(c->kind, &o, lr, t, ref, &st);
        char what[96];
        snprintf(what, sizeof what, "%s after step %d", c->name, t);
        tc_expect_f64(p, ref, NP, 1e-13, what);
        rt_scope_reset(S);
    }
    /* The exported state matches the reference's. */
    rt_optim_state os;
    cr_assert_eq(rt_optim_state_get(opt, "p", S, &os), RT_OK, "%s", rt_last_error());
    if (!(c->kind == RT_SGD && c->momentum == 0)) /* plain SGD keeps no state */
        cr_expect_eq(os.has_state, 1, "%s: no state after 3 steps", c->name);
    if (c->kind == RT_SGD) {
        if (c->momentum != 0)
            tc_expect_f64(os.momentum_buffer, st.buf, NP, 1e-13, "momentum_buffer");
        else
            cr_expect(os.momentum_buffer == NULL, "SGD without momentum exported a buffer");
        cr_expect(os.exp_avg == NULL && os.exp_avg_sq == NULL);
    } else {
        cr_expect_eq(os.step, 3);
        tc_expect_f64(os.exp_avg, st.m, NP, 1e-13, "exp_avg");
        tc_expect_f64(os.exp_avg_sq, st.v, NP, 1e-13, "exp_avg_sq");
        if (c->amsgrad)
            tc_expect_f64(os.max_exp_avg_sq, st.vmax, NP, 1e-13, "max_exp_avg_sq");
        else
            cr_expect(os.max_exp_avg_sq == NULL, "max_exp_avg_sq without amsgrad");
        cr_expect(os.momentum_buffer == NULL);
    }
    rt_optim_free(opt);
    rt_free(p);
    rt_free(cv);
    rt_free(dv);
    rt_scope_free(S);
}

static void check_updates_against_hand_formulas(void)
{
    /* Defaults are torch's. */
    rt_optim_opts d = rt_optim_defaults(RT_ADAM);
    cr_expect(d.lr == 1e-3 && d.beta1 == 0.9 && d.beta2 == 0.999 && d.eps == 1e-8 &&
              d.weight_decay == 0 && d.amsgrad == 0);
    d = rt_optim_defaults(RT_ADAMW);
    cr_expect(d.lr == 1e-3 && d.beta1 == 0.9 && d.beta2 == 0.999 && d.eps == 1e-8 &&
              d.weight_decay == 1e-2 && d.amsgrad == 0);
    d = rt_optim_defaults(RT_SGD);
    cr_expect(d.momentum == 0 && d.dampening == 0 && d.nesterov == 0 && d.weight_decay == 0);
    cr_expect_str_eq(rt_optim_kind_name(RT_SGD), "sgd");
    cr_expect_str_eq(rt_optim_kind_name(RT_ADAM), "adam");
    cr_expect_str_eq(rt_optim_kind_name(RT_ADAMW), "adamw");

    static const struct opt_case cases[] = {
        /* name                 kind      lr    mom  damp  wd    eps   nest ams lr3 */
        {"sgd", RT_SGD, 0.1, 0, 0, 0, 0, 0, 0, 0},
        {"sgd momentum", RT_SGD, 0.1, 0.9, 0, 0, 0, 0, 0, 0},
        {"sgd nesterov wd", RT_SGD, 0.05, 0.9, 0, 0.01, 0, 1, 0, 0},
        {"sgd dampening", RT_SGD, 0.1, 0.5, 0.1, 0, 0, 0, 0, 0},
        {"sgd set_lr", RT_SGD, 0.1, 0.9, 0, 0, 0, 0, 0, 0.02},
        {"adam", RT_ADAM, 0.1, 0, 0, 0, 0, 0, 0, 0},
        {"adam large eps", RT_ADAM, 0.1, 0, 0, 0, 0.05, 0, 0, 0},
        {"adam L2", RT_ADAM, 0.1, 0, 0, 0.05, 0, 0, 0, 0},
        {"adam amsgrad", RT_ADAM, 0.1, 0, 0, 0, 0.01, 0, 1, 0},
        {"adam set_lr", RT_ADAM, 0.1, 0, 0, 0, 0, 0, 0, 0.03},
        {"adamw", RT_ADAMW, 0.1, 0, 0, 0.1, 0, 0, 0, 0},
        {"adamw large eps", RT_ADAMW, 0.05, 0, 0, 0.2, 0.05, 0, 0, 0},
        {"adamw default wd", RT_ADAMW, 0.01, 0, 0, 1e-2, 0, 0, 0, 0},
        {"adamw set_lr", RT_ADAMW, 0.1, 0, 0, 0.1, 0, 0, 0, 0.01},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i]);
}

/* A tiny regression model: loss = mse(tanh(x w^T + b), y). */
struct model {
    rt_tensor *w, *b; /* [3, 2], [3], caller-owned */
};

static void train_steps(rt_optim *opt, const struct model *m, const rt_tensor *x,
                        const rt_tensor *y, int steps)
{
    rt_scope *S = rt_scope_new();
    for (int i = 0; i < steps; i++) {
        cr_assert_eq(rt_optim_zero_grad(opt), RT_OK);
        rt_tensor *loss = rt_mse(S, rt_tanh(S, rt_linear(S, x, m->w, m->b)), y, RT_MEAN);
        cr_assert_eq(rt_backward(loss), RT_OK, "%s", rt_last_error());
        cr_assert_eq(rt_optim_step(opt), RT_OK, "%s", rt_last_error());
        rt_scope_reset(S);
    }
    rt_scope_free(S);
}

static struct model model_new(rt_gen *g)
{
    const int64_t sw[2] = {3, 2}, sb[1] = {3};
    struct model m;
    m.w = g ? rt_randn(NULL, sw, 2, g, RT_OPTS(RT_F64)) : rt_zeros(NULL, sw, 2, RT_OPTS(RT_F64));
    m.b = g ? rt_randn(NULL, sb, 1, g, RT_OPTS(RT_F64)) : rt_zeros(NULL, sb, 1, RT_OPTS(RT_F64));
    cr_assert(m.w && m.b, "%s", rt_last_error());
    rt_set_requires_grad(m.w, 1);
    rt_set_requires_grad(m.b, 1);
    return m;
}

static void model_free(struct model *m)
{
    rt_free(m->w);
    rt_free(m->b);
}

static int model_equal(const struct model *a, const struct model *b)
{
    return rt_equal(a->w, b->w) == 1 && rt_equal(a->b, b->b) == 1;
}

static void check_state_export_import_bit_exact(void)
{
    static const char *const names[2] = {"layer.weight", "layer.bias"};
    const rt_optim_kind kinds[3] = {RT_ADAM, RT_ADAMW, RT_SGD};
    rt_gen *g = rt_gen_new(5);
    const int64_t sx[2] = {4, 2}, sy[2] = {4, 3};
    rt_tensor *x = rt_randn(NULL, sx, 2, g, RT_OPTS(RT_F64));
    rt_tensor *y = rt_randn(NULL, sy, 2, g, RT_OPTS(RT_F64));

    for (int k = 0; k < 3; k++) {
        rt_optim_opts o = rt_optim_defaults(kinds[k]);
        o.lr = 0.05;
        if (kinds[k] == RT_SGD) {
            o.momentum = 0.9;
            o.weight_decay = 0.01;
        }
        if (kinds[k] == RT_ADAM)
            o.amsgrad = 1;
        const char *kn = rt_optim_kind_name(kinds[k]);
        rt_scope *S = rt_scope_new();

        struct model a = model_new(g);
        rt_tensor *pa[2] = {a.w, a.b};
        rt_optim *A = rt_optim_new(kinds[k], pa, names, 2, &o);
        cr_assert(A != NULL, "%s: %s", kn, rt_last_error());
        cr_expect_eq(rt_optim_param_count(A), 2);
        cr_expect_str_eq(rt_optim_param_name(A, 1), "layer.bias");
        /* a borrowed handle on the same tensor */
        cr_expect(rt_optim_param(A, 0) != NULL &&
                  rt_data_ptr(rt_optim_param(A, 0)) == rt_data_ptr(a.w));

        /* No state before the first step. */
        rt_optim_state st0;
        cr_assert_eq(rt_optim_state_get(A, "layer.weight", S, &st0), RT_OK, "%s", rt_last_error());
        cr_expect_eq(st0.has_state, 0, "%s: state before the first step", kn);

        train_steps(A, &a, x, y, 3);

        /* Export: every parameter's state and value. */
        rt_optim_state st[2];
        rt_tensor *saved[2];
        int prev = rt_no_grad_begin();
        for (int i = 0; i < 2; i++) {
            cr_assert_eq(rt_optim_state_get(A, names[i], S, &st[i]), RT_OK, "%s", rt_last_error());
            cr_expect_eq(st[i].has_state, 1);
            saved[i] = rt_clone(S, pa[i]);
        }
        rt_grad_mode_restore(prev);
        if (kinds[k] != RT_SGD)
            cr_expect_eq(st[0].step, 3, "%s: exported step %lld", kn, (long long)st[0].step);

        /* B: a fresh optimizer on fresh parameters; restore values in place
         * under no-grad, then import the state by name. */
        struct model b = model_new(NULL);
        rt_tensor *pb[2] = {b.w, b.b};
        rt_optim *B = rt_optim_new(kinds[k], pb, names, 2, &o);
        cr_assert(B != NULL);
        prev = rt_no_grad_begin();
        for (int i = 0; i < 2; i++)
            cr_assert_eq(rt_copy_(pb[i], saved[i]), RT_OK, "%s", rt_last_error());
        rt_grad_mode_restore(prev);
        for (int i = 0; i < 2; i++)
            cr_assert_eq(rt_optim_state_set(B, names[i], &st[i]), RT_OK, "%s: import %s: %s", kn,
                         names[i], rt_last_error());
        /* Read back: B now holds exactly A's state. */
        rt_optim_state back;
        cr_assert_eq(rt_optim_state_get(B, "layer.weight", S, &back), RT_OK);
        cr_expect_eq(back.has_state, 1);
        cr_expect_eq(back.step, st[0].step);
        if (kinds[k] == RT_SGD) {
            cr_expect(rt_equal(back.momentum_buffer, st[0].momentum_buffer) == 1);
        } else {
            cr_expect(rt_equal(back.exp_avg, st[0].exp_avg) == 1);
            cr_expect(rt_equal(back.exp_avg_sq, st[0].exp_avg_sq) == 1);
        }
        if (kinds[k] == RT_ADAM)
            cr_expect(rt_equal(back.max_exp_avg_sq, st[0].max_exp_avg_sq) == 1);

        /* Negative control: C restores the parameters but not the state. */
        struct model c = model_new(NULL);
        rt_tensor *pc[2] = {c.w, c.b};
        rt_optim *C = rt_optim_new(kinds[k], pc, names, 2, &o);
        cr_assert(C != NULL);
        prev = rt_no_grad_begin();
        for (int i = 0; i < 2; i++)
            cr_assert_eq(rt_copy_(pc[i], saved[i]), RT_OK);
        rt_grad_mode_restore(prev);

        cr_expect(model_equal(&a, &b) && model_equal(&a, &c), "%s: restored params differ", kn);
        train_steps(A, &a, x, y, 2);
        train_steps(B, &b, x, y, 2);
        train_steps(C, &c, x, y, 2);
        cr_expect(model_equal(&a, &b), "%s: resumed training is not bit-exact (max diff %g)", kn,
                  rt_max_abs_diff(a.w, b.w));
        cr_expect(!model_equal(&a, &c), "%s: training without the state import matched", kn);

        /* Unknown names; wrong shapes; clearing. */
        rt_optim_state tmp;
        rt_clear_error();
        cr_expect_eq(rt_optim_state_get(A, "no.such.param", S, &tmp), RT_ENOTFOUND);
        tc_expect_clean_error("state_get unknown name");
        rt_clear_error();
        cr_expect_eq(rt_optim_state_set(A, "no.such.param", &st[0]), RT_ENOTFOUND);
        tc_expect_clean_error("state_set unknown name");
        rt_clear_error();
        rt_optim_state wrong = st[1]; /* bias-shaped [3] state for the [3, 2] weight */
        cr_expect(rt_optim_state_set(B, "layer.weight", &wrong) < 0, "%s: wrong shape accepted",
                  kn);
        tc_expect_clean_error("state_set wrong shape");
        rt_clear_error();
        rt_optim_state none;
        memset(&none, 0, sizeof none);
        cr_expect_eq(rt_optim_state_set(B, "layer.bias", &none), RT_OK, "%s", rt_last_error());
        cr_assert_eq(rt_optim_state_get(B, "layer.bias", S, &tmp), RT_OK);
        cr_expect_eq(tmp.has_state, 0, "%s: has_state = 0 did not clear the state", kn);

        rt_optim_free(A);
        rt_optim_free(B);
        rt_optim_free(C);
        model_free(&a);
        model_free(&b);
        model_free(&c);
        rt_scope_free(S);
    }
    rt_optim_free(NULL);
    rt_free(x);
    rt_free(y);
    rt_gen_free(g);
}

/* One test process for the whole file: libtorch costs ~0.6 s per process. */
Test(optim, updates_and_state_round_trip)
{
    check_updates_against_hand_formulas();
    check_state_export_import_bit_exact();
}
