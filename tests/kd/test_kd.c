/*
 * test_kd.c -- the knowledge-distillation losses (losses/kd.h) against the
 * worked numbers of specs/pref_kd_losses.md section 5 (float64, 1e-6), the
 * gradients of the reference formulas (torch 1.13 autograd, float64, from a
 * line-by-line transcription of each reference function), central finite
 * differences on random inputs, the float32 path, edge cases and the
 * config/settings helpers. Few Test()s on purpose: each one pays libtorch's
 * start-up.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kd.h"
#include "tensor.h"

#define MAXN 64

/* The shared classification example of section 5 (B = 2, C = 5). */
static const double S5[10] = {2.0, 1.0, 0.1, -1.0, 0.5, 0.3, 2.5, -0.5, 1.0, 0.0};
static const double T5[10] = {3.0, 0.5, 0.2, -2.0, 1.0, -0.5, 4.0, 0.0, 1.5, -1.0};
static const int64_t Y5[2] = {0, 3};

/* The token-level example of 5.8 (3 positions, V = 5, position 0 masked). */
static const double S8[15] = {1.0, 0.5, 0.0, -0.5, -1.0, 0.2, 1.5, -0.3, 0.0, 0.4,
                              2.0, -1.0, 0.5, 0.3, 0.0};
static const double T8[15] = {0.8, 0.9, -0.2, -0.4, -1.2, 0.0, 2.5, -1.0, 0.5, 0.1,
                              1.0, 0.0, 1.5, -0.5, 0.2};
static const int64_t Y8[3] = {-100, 1, 2};

/* A config of kind with "name=value" settings applied (NULL-terminated). */
static kd_config cfg_of(kd_kind kind, ...)
{
    kd_config c = kd_config_default(kind);
    va_list ap;
    va_start(ap, kind);
    for (const char *kv; (kv = va_arg(ap, const char *)) != NULL;) {
        char name[64];
        const char *eq = strchr(kv, '=');
        cr_assert(eq != NULL && (size_t)(eq - kv) < sizeof name, "bad setting literal %s", kv);
        memcpy(name, kv, (size_t)(eq - kv));
        name[eq - kv] = '\0';
        cr_assert_eq(kd_config_set(&c, name, eq + 1), RT_OK, "%s: %s", kv, rt_last_error());
    }
    va_end(ap);
    return c;
}

static rt_tensor *mat(rt_scope *S, const double *v, int64_t r, int64_t c, rt_dtype dt)
{
    int64_t shape[2] = {r, c};
    rt_tensor *x = rt_from_data(S, v, shape, 2, RT_OPTS(RT_F64));
    return dt == RT_F64 ? x : rt_to_dtype(S, x, dt);
}

/* One evaluation. aux may be NULL. With gs (and gaux) the student (and aux)
 * require grad and their gradients are copied out as float64. Also checks
 * that the teacher never receives a gradient and that the call leaves only
 * the loss in the caller's scope. */
static double eval_kd(const kd_config *cfg, const double *s, const double *t, const double *aux,
                      const int64_t *y, int64_t B, int64_t C, rt_dtype dt, kd_metrics *m, double *gs,
                      double *gaux)
{
    rt_scope *S = rt_scope_new();
    int64_t lb[1] = {B};
    kd_inputs in = {.student_logits = mat(S, s, B, C, dt),
                    .teacher_logits = mat(S, t, B, C, dt),
                    .labels = rt_from_data(S, y, lb, 1, RT_OPTS(RT_I64)),
                    .student_aux_logits = aux ? mat(S, aux, B, C, dt) : NULL};
    cr_assert(in.student_logits && in.teacher_logits && in.labels, "%s", rt_last_error());
    if (gs) {
        cr_assert_eq(rt_set_requires_grad((rt_tensor *)in.student_logits, 1), RT_OK);
        cr_assert_eq(rt_set_requires_grad((rt_tensor *)in.teacher_logits, 1), RT_OK);
        if (aux) cr_assert_eq(rt_set_requires_grad((rt_tensor *)in.student_aux_logits, 1), RT_OK);
    }
    size_t before = rt_scope_count(S);
    rt_tensor *loss = kd_loss(S, cfg, &in, m);
    cr_assert(loss != NULL, "kd_loss(%s): %s", kd_kind_name(cfg->kind), rt_last_error());
    cr_assert_eq(rt_scope_count(S), before + 1, "kd_loss left %zu handles in the caller's scope",
                 rt_scope_count(S) - before);
    cr_assert_eq(rt_ndim(loss), 0);
    cr_assert_eq(rt_dtype_of(loss), dt);
    double v = rt_item(loss);
    if (gs) {
        cr_assert_eq(rt_backward(loss), RT_OK, "%s", rt_last_error());
        rt_tensor *g = rt_grad(S, in.student_logits);
        cr_assert(g != NULL, "no student gradient (%s)", kd_kind_name(cfg->kind));
        cr_assert_eq(rt_to_data(g, RT_F64, gs, (size_t)(B * C) * sizeof(double)), RT_OK);
        cr_assert_eq(rt_has_grad(in.teacher_logits), 0, "teacher got a gradient (%s)",
                     kd_kind_name(cfg->kind));
        if (aux) {
            rt_tensor *ga = rt_grad(S, in.student_aux_logits);
            cr_assert(ga != NULL);
            cr_assert_eq(rt_to_data(ga, RT_F64, gaux, (size_t)(B * C) * sizeof(double)), RT_OK);
        }
    }
    rt_scope_free(S);
    return v;
}

static double loss5(const kd_config *c, kd_metrics *m)
{
    return eval_kd(c, S5, T5, NULL, Y5, 2, 5, RT_F64, m, NULL, NULL);
}

static double loss8(const kd_config *c, kd_metrics *m)
{
    return eval_kd(c, S8, T8, NULL, Y8, 3, 5, RT_F64, m, NULL, NULL);
}

static void near(double got, double want, double tol, const char *what)
{
    cr_assert(fabs(got - want) <= tol, "%s: got %.9f, want %.9f (tol %g)", what, got, want, tol);
}

/* ------------------------------------------------------------------------ */

Test(kd, worked_values)
{
    kd_metrics m;
    kd_config c;

    /* 5.1 Hinton KD: KL form at T = 1, 2, 4; mdistiller total; cls_KD form */
    c = cfg_of(KD_HINTON, "temperature=1", NULL);
    loss5(&c, &m);
    near(m.kd, 0.136535, 1e-6, "hinton KD T=1");
    near(m.ce, 1.232412, 1e-6, "CE(S, y)");
    near(m.student_acc, 0.5, 0, "student acc");
    near(m.teacher_acc, 0.5, 0, "teacher acc");
    near(m.count, 2, 0, "count");
    c = cfg_of(KD_HINTON, "temperature=2", NULL);
    loss5(&c, &m);
    near(m.kd, 0.291517, 1e-6, "hinton KD T=2");
    c = kd_config_default(KD_HINTON);
    near(loss5(&c, &m), 0.432696, 1e-6, "mdistiller total T=4");
    near(m.kd, 0.343839, 1e-6, "hinton KD T=4");
    near(m.loss_ce, 0.1 * 1.2324122568, 1e-9, "loss_ce");
    near(m.loss_kd, 0.9 * 0.3438388440, 1e-9, "loss_kd");
    c = cfg_of(KD_HINTON, "form=ce", "ce_weight=0.5", "kd_weight=0.5", NULL);
    near(loss5(&c, &m), 12.874797, 1e-6, "cls_KD total T=4");
    near(m.loss_kd, 12.258590, 1e-6, "cls_KD kd term T=4");
    c = cfg_of(KD_HINTON, "form=ce", "ce_weight=0.5", "kd_weight=0.5", "temperature=1", NULL);
    near(loss5(&c, &m), 0.988331, 1e-6, "cls_KD total T=1");
    near(m.loss_kd, 0.372125, 1e-6, "cls_KD kd term T=1");

    /* 5.2 LSKD (and DKD + LS) */
    c = kd_config_default(KD_LSKD);
    near(loss5(&c, &m), 0.434606, 1e-6, "LSKD total");
    near(m.kd, 0.034596, 1e-6, "LSKD KD T=2");
    c = cfg_of(KD_DKD, "standardize=1", "alpha=9", "beta=72", "temperature=2", NULL);
    loss5(&c, &m);
    near(m.loss_kd, 3.453875, 1e-6, "DKD + LS");

    /* 5.3 DKD */
    c = kd_config_default(KD_DKD);
    near(loss5(&c, &m), 4.171678, 1e-6, "DKD + CE");
    near(m.tckd, 0.071076, 1e-6, "TCKD");
    near(m.nckd, 0.358524, 1e-6, "NCKD");
    near(m.loss_kd, 2.939266, 1e-6, "DKD");
    near(m.warmup, 1.0, 0, "warmup factor");
    c = cfg_of(KD_DKD, "beta=0.5", "temperature=1", NULL);
    loss5(&c, &m);
    near(m.tckd, 0.067144, 1e-6, "TCKD T=1");
    near(m.nckd, 0.117197, 1e-6, "NCKD T=1");
    near(m.kd, 0.125743, 1e-6, "DKD ImageNet");

    /* 5.4 NKD */
    c = kd_config_default(KD_NKD);
    near(loss5(&c, &m), 2.691888, 1e-6, "CE + NKD");
    near(m.nkd_target, 0.295717, 1e-6, "NKD L_t");
    near(m.nkd_nontarget, 1.163759, 1e-6, "NKD L_non");
    near(m.kd, 1.459476, 1e-6, "NKD");
    c = cfg_of(KD_NKD, "temperature=3", "gamma=3.5", NULL);
    loss5(&c, &m);
    near(m.nkd_nontarget, 39.709614, 1e-6, "NKD L_non T=3");
    near(m.kd, 40.005331, 1e-6, "NKD T=3");

    /* 5.6 PLD: batch means and each sample alone */
    c = kd_config_default(KD_PLD);
    near(loss5(&c, &m), 0.495821, 1e-6, "PLD tau=1");
    cr_assert(isnan(m.loss_ce), "PLD has no CE term");
    near(eval_kd(&c, S5, T5, NULL, Y5, 1, 5, RT_F64, NULL, NULL, NULL), 0.627720, 1e-6, "PLD sample 1");
    near(eval_kd(&c, S5 + 5, T5 + 5, NULL, Y5 + 1, 1, 5, RT_F64, NULL, NULL, NULL), 0.363921, 1e-6,
         "PLD sample 2");
    c = cfg_of(KD_PLD, "temperature=4", NULL);
    near(loss5(&c, &m), 0.689956, 1e-6, "PLD tau=4");
    near(eval_kd(&c, S5, T5, NULL, Y5, 1, 5, RT_F64, NULL, NULL, NULL), 0.589421, 1e-6, "PLD s1 tau=4");
    near(eval_kd(&c, S5 + 5, T5 + 5, NULL, Y5 + 1, 1, 5, RT_F64, NULL, NULL, NULL), 0.790490, 1e-6,
         "PLD s2 tau=4");

    /* 5.7 DHKD (aux logits = S) */
    c = cfg_of(KD_DHKD, "norm=0", NULL);
    loss5(&c, &m);
    near(m.kd, 0.325885, 1e-6, "BinaryKL");
    c = kd_config_default(KD_DHKD);
    near(loss5(&c, &m), 1.658138, 1e-6, "CE + BinaryKLNorm");
    near(m.kd, 0.425725, 1e-6, "BinaryKLNorm");
    near(eval_kd(&c, S5, T5, S5, Y5, 2, 5, RT_F64, NULL, NULL, NULL), 1.658138, 1e-6, "explicit aux");

    /* 5.8 GKD generalized JSD */
    c = kd_config_default(KD_FKL);
    near(loss8(&c, &m), 0.279244, 1e-6, "forward KL");
    near(m.count, 2, 0, "kept positions");
    c = kd_config_default(KD_RKL);
    near(loss8(&c, &m), 0.276118, 1e-6, "reverse KL");
    static const struct { const char *beta; double want; } jsd[] = {
        {"beta=0", 0.279244}, {"beta=1", 0.276118}, {"beta=0.5", 0.066780},
        {"beta=0.1", 0.024719}, {"beta=0.9", 0.024529}};
    for (size_t i = 0; i < sizeof jsd / sizeof jsd[0]; i++) {
        c = cfg_of(KD_JSD, jsd[i].beta, NULL);
        near(loss8(&c, NULL), jsd[i].want, 1e-6, jsd[i].beta);
    }
    c = cfg_of(KD_JSD, "temperature=0.9", NULL);
    near(loss8(&c, NULL), 0.078991, 1e-6, "JSD T=0.9");
    c = cfg_of(KD_JSD, "reduction=mean", NULL);
    near(loss8(&c, NULL), 0.013356, 1e-6, "JSD mean");
    c = cfg_of(KD_JSD, "reduction=sum", NULL);
    near(loss8(&c, NULL), 0.133560, 1e-6, "JSD sum");
    /* per-position KLs: keep one position at a time, reduction=sum */
    static const double fkl_pos[3] = {0.038052, 0.147993, 0.410495};
    static const double rkl_pos[3] = {0.036218, 0.179323, 0.372914};
    for (int p = 0; p < 3; p++) {
        int64_t y[3] = {-100, -100, -100};
        y[p] = 1;
        c = cfg_of(KD_FKL, "reduction=sum", NULL);
        near(eval_kd(&c, S8, T8, NULL, y, 3, 5, RT_F64, NULL, NULL, NULL), fkl_pos[p], 1e-6, "fkl position");
        c = cfg_of(KD_RKL, "reduction=sum", NULL);
        near(eval_kd(&c, S8, T8, NULL, y, 3, 5, RT_F64, NULL, NULL, NULL), rkl_pos[p], 1e-6, "rkl position");
    }

    /* 5.9 sparse top-k */
    static const struct { const char *beta, *tail; const char *k; double want; } topk[] = {
        {"beta=0", "add_tail=1", "k=2", 0.245862}, {"beta=0", "add_tail=0", "k=2", 0.243569},
        {"beta=1", "add_tail=1", "k=2", 0.232023}, {"beta=1", "add_tail=0", "k=2", 0.265988},
        {"beta=0.5", "add_tail=1", "k=2", 0.059347}, {"beta=0.5", "add_tail=0", "k=2", 0.064501},
        {"beta=0", "add_tail=1", "k=1", 0.200102}, {"beta=0", "add_tail=0", "k=1", 0.0},
        /* torch transcription: defaults (k=1, tail, beta=1); k >= C is the full JSD */
        {"beta=1", "add_tail=1", "k=1", 0.208348204388}, {"beta=0.5", "add_tail=1", "k=5", 0.066780}};
    for (size_t i = 0; i < sizeof topk / sizeof topk[0]; i++) {
        c = cfg_of(KD_TOPK, topk[i].beta, topk[i].tail, topk[i].k, NULL);
        char what[96];
        snprintf(what, sizeof what, "topk %s %s %s", topk[i].k, topk[i].beta, topk[i].tail);
        near(loss8(&c, NULL), topk[i].want, 1e-6, what);
    }
    c = cfg_of(KD_TOPK, "k=2", "beta=0.5", "reduction=mean", NULL);
    near(loss8(&c, NULL), 0.011869498121, 1e-9, "topk mean over 2k+1 support width (torch)");

    /* float32 path: same configurations, float32 vs float64 to ~1e-5 */
    const kd_config f32cfg[] = {
        kd_config_default(KD_HINTON), cfg_of(KD_HINTON, "form=ce", NULL), kd_config_default(KD_LSKD),
        kd_config_default(KD_DKD), cfg_of(KD_DKD, "standardize=1", NULL), kd_config_default(KD_NKD),
        kd_config_default(KD_PLD), kd_config_default(KD_DHKD), cfg_of(KD_DHKD, "norm=0", NULL)};
    for (size_t i = 0; i < sizeof f32cfg / sizeof f32cfg[0]; i++) {
        double g64[MAXN], g32[MAXN];
        double a = eval_kd(&f32cfg[i], S5, T5, NULL, Y5, 2, 5, RT_F64, NULL, g64, NULL);
        double b = eval_kd(&f32cfg[i], S5, T5, NULL, Y5, 2, 5, RT_F32, NULL, g32, NULL);
        near(b, a, 1e-5 * fmax(1.0, fabs(a)), kd_kind_name(f32cfg[i].kind));
        for (int j = 0; j < 10; j++) near(g32[j], g64[j], 1e-5, "float32 gradient");
    }
    const kd_config f32tok[] = {kd_config_default(KD_FKL), kd_config_default(KD_RKL),
                                kd_config_default(KD_JSD),
                                kd_config_default(KD_TOPK), cfg_of(KD_TOPK, "k=2", "beta=0.5", NULL)};
    for (size_t i = 0; i < sizeof f32tok / sizeof f32tok[0]; i++) {
        double a = eval_kd(&f32tok[i], S8, T8, NULL, Y8, 3, 5, RT_F64, NULL, NULL, NULL);
        double b = eval_kd(&f32tok[i], S8, T8, NULL, Y8, 3, 5, RT_F32, NULL, NULL, NULL);
        near(b, a, 1e-5 * fmax(1.0, fabs(a)), kd_kind_name(f32tok[i].kind));
    }
}

/* ------------------------------------------------------------------------ */

/* Central differences of the loss with respect to x (the student or the aux
 * logits), compared with autograd. */
static void fd_check(const kd_config *cfg, const double *s, const double *t, const double *aux,
                     const int64_t *y, int64_t B, int64_t C, const char *what)
{
    double gs[MAXN], ga[MAXN];
    eval_kd(cfg, s, t, aux, y, B, C, RT_F64, NULL, gs, aux ? ga : NULL);
    const double h = 1e-5;
    for (int which = 0; which < (aux ? 2 : 1); which++) {
        double x[MAXN];
        const double *g = which ? ga : gs;
        memcpy(x, which ? aux : s, (size_t)(B * C) * sizeof(double));
        for (int64_t i = 0; i < B * C; i++) {
            double x0 = x[i];
            x[i] = x0 + h;
            double up = which ? eval_kd(cfg, s, t, x, y, B, C, RT_F64, NULL, NULL, NULL)
                              : eval_kd(cfg, x, t, aux, y, B, C, RT_F64, NULL, NULL, NULL);
            x[i] = x0 - h;
            double down = which ? eval_kd(cfg, s, t, x, y, B, C, RT_F64, NULL, NULL, NULL)
                                : eval_kd(cfg, x, t, aux, y, B, C, RT_F64, NULL, NULL, NULL);
            x[i] = x0;
            double fd = (up - down) / (2 * h);
            cr_assert(fabs(fd - g[i]) <= 1e-6 + 1e-5 * fabs(g[i]),
                      "%s: d loss / d %s[%lld] autograd %.10f, finite difference %.10f", what,
                      which ? "aux" : "student", (long long)i, g[i], fd);
        }
    }
}

static void grads_near(const double *got, const double *want, int n, const char *what)
{
    for (int i = 0; i < n; i++)
        cr_assert(fabs(got[i] - want[i]) <= 1e-6, "%s grad[%d]: got %.10f, want %.10f", what, i, got[i],
                  want[i]);
}

Test(kd, gradients)
{
    /* (a) gradients of the reference formulas, torch autograd, float64 */
    static const double g_hinton[10] = {-0.131912685206, 0.0746068374064, 0.0129798662934, 0.0638867715243,
                                        -0.0195607900184, 0.0887649177476, -0.131650014522, -0.00179874353516,
                                        -0.047476965056, 0.0921608053654};
    static const double g_lskd[10] = {-0.11478836661, 0.370656320805, -0.105742631846, 0.0581141785602,
                                      -0.208239500909, 0.197513959856, -0.0204427715361, -0.260198138158,
                                      -0.0950730467089, 0.178199996547};
    static const double g_dkd[10] = {-0.342771768262, 0.557518812845, -0.170038006641, 0.606833227588,
                                     -0.65154226553, 0.985972784105, -1.55087837774, -0.0319776311504,
                                     -0.429541698306, 1.02642492309};
    static const double g_nkd[10] = {-0.392503903851, 0.315746914744, 0.0561629957815, 0.0542357399992,
                                     -0.0336417466736, 0.0994032135861, 0.245860533092, 0.0350204710338,
                                     -0.455003731153, 0.0747195134412};
    static const double g_pld[10] = {-0.171776521063, 0.0932399987741, 0.044985216102, 0.0228507021266,
                                     0.0107006040604, 0.0442680204105, -0.062278061193, 0.0126512597692,
                                     -0.0311155268782, 0.0364743078915};
    static const double g_dhkd[10] = {-0.34318671399, 0.16491515524, 0.0292730232589, 0.136363496088,
                                      0.000137642917847, 0.136483659315, 0.16193070385, -0.0451936637165,
                                      -0.486064705161, 0.15045929608};
    static const double g_fkl[15] = {0, 0, 0, 0, 0, 0.037676901516, -0.122824971267, 0.0301708702148,
                                     0.00539406703143, 0.0495831325049, 0.178744503594, -0.0342137673262,
                                     -0.153335467081, 0.0271717050903, -0.0183669742776};
    static const double g_rkl[15] = {0, 0, 0, 0, 0, 0.0425129183812, -0.144935563701, 0.0465116700886,
                                     -0.00436194169746, 0.0602729169286, 0.147125781519, -0.0239692373219,
                                     -0.10742266893, 0.0153946863592, -0.0311285616271};
    static const double g_jsd[15] = {0, 0, 0, 0, 0, 0.00978639372147, -0.0319901734341, 0.008629357797,
                                     0.000372583888238, 0.0132018380274, 0.0371846101649, -0.00654595756996,
                                     -0.0293369464962, 0.0049391005717, -0.00624080667042};
    static const double g_top0[15] = {0, 0, 0, 0, 0, 0.0415253426737, -0.122824971267, 0.0251863934867,
                                      0.00539406703143, 0.0507191680753, 0.178744503594, -0.00343942694171,
                                      -0.153335467081, -0.0126202778157, -0.00934933175597};
    static const double g_top1[15] = {0, 0, 0, 0, 0, 0.0300234546574, -0.136046541456, 0.0182101457602,
                                      0.0245811256416, 0.0632318153964, 0.163702037979, -0.0081187674473,
                                      -0.103724006171, -0.0297901663395, -0.0220690980215};
    static const double g_top5[15] = {0, 0, 0, 0, 0, 0.011410722501, -0.0319361400768, 0.00692095304631,
                                      0.000384640359908, 0.0132198241696, 0.0395988929862, -0.00146200081776,
                                      -0.0287982471836, -0.00536451472868, -0.00397413025612};
    double g[MAXN];
    kd_config c;
    c = kd_config_default(KD_HINTON);
    eval_kd(&c, S5, T5, NULL, Y5, 2, 5, RT_F64, NULL, g, NULL);
    grads_near(g, g_hinton, 10, "hinton");
    c = kd_config_default(KD_LSKD);
    eval_kd(&c, S5, T5, NULL, Y5, 2, 5, RT_F64, NULL, g, NULL);
    grads_near(g, g_lskd, 10, "lskd");
    c = kd_config_default(KD_DKD);
    eval_kd(&c, S5, T5, NULL, Y5, 2, 5, RT_F64, NULL, g, NULL);
    grads_near(g, g_dkd, 10, "dkd");
    c = kd_config_default(KD_NKD);
    eval_kd(&c, S5, T5, NULL, Y5, 2, 5, RT_F64, NULL, g, NULL);
    grads_near(g, g_nkd, 10, "nkd");
    c = kd_config_default(KD_PLD);
    eval_kd(&c, S5, T5, NULL, Y5, 2, 5, RT_F64, NULL, g, NULL);
    grads_near(g, g_pld, 10, "pld");
    c = kd_config_default(KD_DHKD);
    eval_kd(&c, S5, T5, NULL, Y5, 2, 5, RT_F64, NULL, g, NULL);
    grads_near(g, g_dhkd, 10, "dhkd");
    c = kd_config_default(KD_FKL);
    eval_kd(&c, S8, T8, NULL, Y8, 3, 5, RT_F64, NULL, g, NULL);
    grads_near(g, g_fkl, 15, "fkl");
    c = kd_config_default(KD_RKL);
    eval_kd(&c, S8, T8, NULL, Y8, 3, 5, RT_F64, NULL, g, NULL);
    grads_near(g, g_rkl, 15, "rkl");
    c = kd_config_default(KD_JSD);
    eval_kd(&c, S8, T8, NULL, Y8, 3, 5, RT_F64, NULL, g, NULL);
    grads_near(g, g_jsd, 15, "jsd");
    c = cfg_of(KD_TOPK, "k=2", "beta=0", NULL);
    eval_kd(&c, S8, T8, NULL, Y8, 3, 5, RT_F64, NULL, g, NULL);
    grads_near(g, g_top0, 15, "topk beta=0");
    c = cfg_of(KD_TOPK, "k=2", "beta=1", NULL);
    eval_kd(&c, S8, T8, NULL, Y8, 3, 5, RT_F64, NULL, g, NULL);
    grads_near(g, g_top1, 15, "topk beta=1");
    c = cfg_of(KD_TOPK, "k=2", "beta=0.5", NULL);
    eval_kd(&c, S8, T8, NULL, Y8, 3, 5, RT_F64, NULL, g, NULL);
    grads_near(g, g_top5, 15, "topk beta=0.5");

    /* (b) central finite differences on random inputs (B = 4, C = 6) */
    enum { B = 4, C = 6 };
    double s[B * C], t[B * C], aux[B * C];
    int64_t y[B], ytok[B];
    rt_gen *gen = rt_gen_new(1234);
    rt_scope *S = rt_scope_new();
    int64_t shape[2] = {B, C}, yshape[1] = {B};
    cr_assert_eq(rt_to_data(rt_mul_scalar(S, rt_randn(S, shape, 2, gen, RT_OPTS(RT_F64)), 2.0), RT_F64, s,
                            sizeof s), RT_OK, "%s", rt_last_error());
    cr_assert_eq(rt_to_data(rt_mul_scalar(S, rt_randn(S, shape, 2, gen, RT_OPTS(RT_F64)), 2.0), RT_F64, t,
                            sizeof t), RT_OK);
    cr_assert_eq(rt_to_data(rt_randn(S, shape, 2, gen, RT_OPTS(RT_F64)), RT_F64, aux, sizeof aux), RT_OK);
    cr_assert_eq(rt_to_data(rt_randint(S, 0, C, yshape, 1, gen, RT_OPTS(RT_I64)), RT_I64, y, sizeof y),
                 RT_OK);
    rt_scope_free(S);
    rt_gen_free(gen);
    memcpy(ytok, y, sizeof y);
    ytok[1] = -100;

    const kd_config cls[] = {
        kd_config_default(KD_HINTON), cfg_of(KD_HINTON, "form=ce", "temperature=2", NULL),
        kd_config_default(KD_LSKD), kd_config_default(KD_DKD),
        cfg_of(KD_DKD, "standardize=1", "epoch=5", NULL), kd_config_default(KD_NKD),
        cfg_of(KD_NKD, "temperature=3", "gamma=3.5", NULL), kd_config_default(KD_PLD),
        cfg_of(KD_PLD, "temperature=4", NULL), kd_config_default(KD_DHKD), cfg_of(KD_DHKD, "norm=0", NULL)};
    for (size_t i = 0; i < sizeof cls / sizeof cls[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "%s #%zu", kd_kind_name(cls[i].kind), i);
        fd_check(&cls[i], s, t, NULL, y, B, C, what);
    }
    const kd_config dh = kd_config_default(KD_DHKD);
    fd_check(&dh, s, t, aux, y, B, C, "dhkd with aux head");
    const kd_config tok[] = {
        kd_config_default(KD_FKL), kd_config_default(KD_RKL), kd_config_default(KD_JSD),
        cfg_of(KD_JSD, "beta=0.2", "temperature=2", "reduction=mean", "ce_weight=0.3", NULL),
        kd_config_default(KD_TOPK), cfg_of(KD_TOPK, "k=2", "beta=0", NULL),
        cfg_of(KD_TOPK, "k=2", "beta=0.5", NULL), cfg_of(KD_TOPK, "k=3", "beta=0.5", "add_tail=0", NULL),
        cfg_of(KD_TOPK, "k=2", "beta=1", "add_tail=0", "reduction=sum", NULL)};
    for (size_t i = 0; i < sizeof tok / sizeof tok[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "%s #%zu", kd_kind_name(tok[i].kind), i);
        fd_check(&tok[i], s, t, NULL, ytok, B, C, what);
    }
}

/* ------------------------------------------------------------------------ */

static int all_finite(const double *v, int n)
{
    for (int i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

/* kd_loss on the given tensors must fail with a message containing `needle`. */
static void expect_error(const kd_config *c, const rt_tensor *s, const rt_tensor *t, const rt_tensor *y,
                         const char *needle)
{
    rt_clear_error();
    kd_inputs in = {.student_logits = s, .teacher_logits = t, .labels = y};
    rt_tensor *loss = kd_loss(NULL, c, &in, NULL);
    cr_assert(loss == NULL, "expected an error mentioning '%s'", needle);
    cr_assert(strstr(rt_last_error(), needle) != NULL, "error '%s' does not mention '%s'", rt_last_error(),
              needle);
}

Test(kd, edge_cases_and_config)
{
    kd_config c;
    kd_metrics m;
    double g[MAXN];

    /* LSKD, constant logits (std 0): KD term 0, loss = 0.1 log C, finite
     * gradient equal to the CE part 0.1 (softmax - onehot) / B */
    static const double cs[10] = {0.7, 0.7, 0.7, 0.7, 0.7, -3, -3, -3, -3, -3};
    static const double ct[10] = {-2, -2, -2, -2, -2, 5, 5, 5, 5, 5};
    c = kd_config_default(KD_LSKD);
    near(eval_kd(&c, cs, ct, NULL, Y5, 2, 5, RT_F64, &m, g, NULL), 0.1 * log(5.0), 1e-12, "LSKD const");
    near(m.kd, 0.0, 1e-12, "LSKD const kd");
    for (int i = 0; i < 10; i++) {
        int row = i / 5, col = i % 5;
        near(g[i], 0.1 * (0.2 - (col == Y5[row])) / 2, 1e-12, "LSKD const gradient");
    }
    /* constant student only: finite loss and gradient */
    double v = eval_kd(&c, cs, T5, NULL, Y5, 2, 5, RT_F64, &m, g, NULL);
    cr_assert(isfinite(v) && all_finite(g, 10), "LSKD constant student: loss %g", v);
    c = cfg_of(KD_DKD, "standardize=1", NULL);
    v = eval_kd(&c, cs, ct, NULL, Y5, 2, 5, RT_F64, &m, g, NULL);
    cr_assert(isfinite(v) && all_finite(g, 10), "DKD+LS constant logits: loss %g", v);

    /* DKD warmup: epoch 5 of 20 scales the KD term by 0.25 */
    c = cfg_of(KD_DKD, "epoch=5", NULL);
    near(loss5(&c, &m), 1.232412257 + 0.25 * 2.939265955, 1e-8, "DKD warmup");
    near(m.warmup, 0.25, 0, "warmup factor");
    c = cfg_of(KD_DKD, "epoch=40", NULL);
    near(loss5(&c, &m), 4.171678, 1e-6, "DKD after warmup");

    /* extreme confidence: no log(0) anywhere (mdistiller's log(1 - p_y) would be -inf) */
    static const double big_s[10] = {900, 0, 0, 0, 0, 0, 0, 0, 900, 0};
    static const double big_t[10] = {-800, 0, 0, 0, 800, 0, 0, 0, 0, 0};
    const kd_kind cls_kinds[] = {KD_HINTON, KD_LSKD, KD_DKD, KD_NKD, KD_PLD, KD_DHKD};
    for (size_t i = 0; i < sizeof cls_kinds / sizeof cls_kinds[0]; i++) {
        for (int dt = 0; dt < 2; dt++) {
            c = kd_config_default(cls_kinds[i]);
            v = eval_kd(&c, big_s, big_t, NULL, Y5, 2, 5, dt ? RT_F32 : RT_F64, NULL, g, NULL);
            cr_assert(isfinite(v) && all_finite(g, 10), "%s (%s) with logits of 900: loss %g",
                      kd_kind_name(c.kind), dt ? "f32" : "f64", v);
        }
    }

    /* token kinds: a NaN in a dropped row reaches neither loss nor gradient */
    double s_nan[15], t_nan[15];
    memcpy(s_nan, S8, sizeof s_nan);
    memcpy(t_nan, T8, sizeof t_nan);
    s_nan[2] = NAN;
    t_nan[3] = INFINITY;
    const kd_kind tok_kinds[] = {KD_FKL, KD_RKL, KD_JSD, KD_TOPK};
    for (size_t i = 0; i < sizeof tok_kinds / sizeof tok_kinds[0]; i++) {
        c = kd_config_default(tok_kinds[i]);
        c.ce_weight = 0.5;
        double clean = eval_kd(&c, S8, T8, NULL, Y8, 3, 5, RT_F64, NULL, NULL, NULL);
        v = eval_kd(&c, s_nan, t_nan, NULL, Y8, 3, 5, RT_F64, &m, g, NULL);
        near(v, clean, 1e-12, "NaN in a dropped row");
        cr_assert(all_finite(g, 15), "%s: NaN leaked into the gradient", kd_kind_name(c.kind));
        for (int j = 0; j < 5; j++) near(g[j], 0.0, 0, "dropped row gradient");
        /* every row dropped: loss 0, zero gradient, count 0 */
        static const int64_t none[3] = {-100, -100, -100};
        v = eval_kd(&c, S8, T8, NULL, none, 3, 5, RT_F64, &m, g, NULL);
        near(v, 0.0, 0, "all rows dropped");
        near(m.count, 0, 0, "count");
        for (int j = 0; j < 15; j++) near(g[j], 0.0, 0, "all dropped gradient");
    }
    c = cfg_of(KD_FKL, "ignore_index=-1", NULL);
    static const int64_t y_m1[3] = {-1, 1, 2};
    near(eval_kd(&c, S8, T8, NULL, y_m1, 3, 5, RT_F64, NULL, NULL, NULL), 0.279244, 1e-6, "ignore_index=-1");

    /* errors: shapes, dtypes, labels, classes */
    rt_scope *S = rt_scope_new();
    int64_t l2[1] = {2}, l3[1] = {3};
    rt_tensor *s5 = mat(S, S5, 2, 5, RT_F64), *t5 = mat(S, T5, 2, 5, RT_F64);
    rt_tensor *y5 = rt_from_data(S, Y5, l2, 1, RT_OPTS(RT_I64));
    c = kd_config_default(KD_HINTON);
    expect_error(&c, s5, mat(S, T8, 3, 5, RT_F64), y5, "teacher_logits has shape [3, 5]");
    expect_error(&c, s5, mat(S, T5, 2, 5, RT_F32), y5, "float32");
    expect_error(&c, s5, t5, rt_from_data(S, Y8, l3, 1, RT_OPTS(RT_I64)), "labels must be [2]");
    static const int32_t y32[2] = {0, 1};
    expect_error(&c, s5, t5, rt_from_data(S, y32, l2, 1, RT_OPTS(RT_I32)), "int64");
    static const int64_t ybad[2] = {0, 5};
    expect_error(&c, s5, t5, rt_from_data(S, ybad, l2, 1, RT_OPTS(RT_I64)), "labels[1] = 5");
    expect_error(&c, NULL, t5, y5, "student_logits is NULL");
    expect_error(&c, rt_reshape(S, s5, (int64_t[]){10}, 1), t5, y5, "must be [B,C]");
    c = kd_config_default(KD_FKL);
    expect_error(&c, s5, t5, rt_from_data(S, ybad, l2, 1, RT_OPTS(RT_I64)), "not ignore_index");
    c = kd_config_default(KD_DKD);
    expect_error(&c, rt_narrow(S, s5, 1, 0, 1), rt_narrow(S, t5, 1, 0, 1),
                 rt_zeros(S, l2, 1, RT_OPTS(RT_I64)), "at least 2 classes");
    c = kd_config_default(KD_HINTON);
    c.temperature = 0;
    expect_error(&c, s5, t5, y5, "temperature");
    c = kd_config_default(KD_HINTON);
    c.form = 7;
    expect_error(&c, s5, t5, y5, "form");
    rt_scope_free(S);

    /* kinds, defaults and settings */
    for (int k = 0; k < KD_KIND_COUNT; k++) {
        const char *name = kd_kind_name((kd_kind)k);
        cr_assert(name && kd_kind_from_name(name) == (kd_kind)k, "kind %d name round trip", k);
        cr_assert(kd_kind_help((kd_kind)k) != NULL);
        kd_config d = kd_config_default((kd_kind)k);
        cr_assert_eq(d.kind, (kd_kind)k);
        cr_assert_eq(kd_config_check(&d), RT_OK, "%s defaults: %s", name, rt_last_error());
        size_t n;
        const kd_setting *st = kd_settings((kd_kind)k, &n);
        cr_assert(st && n > 0);
        for (size_t i = 0; i < n; i++) {
            char buf[64], buf2[64];
            cr_assert(st[i].help && st[i].help[0], "%s.%s has no help", name, st[i].name);
            cr_assert_eq(kd_setting_find((kd_kind)k, st[i].name), &st[i]);
            /* formatting the default and setting it back is the identity */
            kd_setting_format(&d, &st[i], buf, sizeof buf);
            kd_config e = d;
            cr_assert_eq(kd_config_set(&e, st[i].name, buf), RT_OK, "%s.%s=%s: %s", name, st[i].name, buf,
                         rt_last_error());
            cr_assert_str_eq(kd_setting_format(&e, &st[i], buf2, sizeof buf2), buf);
        }
    }
    cr_assert_eq(kd_kind_from_name("hintn"), KD_KIND_INVALID);
    cr_assert_eq(kd_kind_from_name(NULL), KD_KIND_INVALID);
    cr_assert_null(kd_kind_name((kd_kind)KD_KIND_COUNT));

    c = kd_config_default(KD_HINTON);
    cr_assert(c.temperature == 4.0 && c.ce_weight == 0.1 && c.kd_weight == 0.9 && c.form == KD_FORM_KL);
    c = kd_config_default(KD_LSKD);
    cr_assert(c.temperature == 2.0 && c.ce_weight == 0.1 && c.kd_weight == 9.0);
    c = kd_config_default(KD_DKD);
    cr_assert(c.temperature == 4.0 && c.ce_weight == 1.0 && c.alpha == 1.0 && c.beta == 8.0 &&
              c.warmup == 20.0 && c.epoch < 0 && c.standardize == 0);
    c = kd_config_default(KD_NKD);
    cr_assert(c.temperature == 1.0 && c.gamma == 1.5 && c.ce_weight == 1.0);
    c = kd_config_default(KD_PLD);
    cr_assert(c.temperature == 1.0);
    c = kd_config_default(KD_DHKD);
    cr_assert(c.temperature == 2.0 && c.ce_weight == 1.0 && c.kd_weight == 1.0 && c.norm == 1);
    c = kd_config_default(KD_TOPK);
    cr_assert(c.k == 1 && c.add_tail == 1 && c.beta == 1.0 && c.temperature == 1.0 &&
              c.reduction == KD_RED_BATCHMEAN && c.ignore_index == -100 && c.ce_weight == 0.0);
    c = kd_config_default(KD_JSD);
    cr_assert(c.beta == 0.5 && c.temperature == 1.0);

    c = kd_config_default(KD_HINTON);
    cr_assert_eq(kd_config_set(&c, "temprature", "2"), RT_ENOTFOUND);
    cr_assert(strstr(rt_last_error(), "did you mean 'temperature'"), "%s", rt_last_error());
    cr_assert_eq(kd_config_set(&c, "gamma", "2"), RT_ENOTFOUND); /* nkd's, not hinton's */
    cr_assert_eq(kd_config_set(&c, "temperature", "abc"), RT_EINVAL);
    cr_assert(strstr(rt_last_error(), "not a number"), "%s", rt_last_error());
    cr_assert_eq(kd_config_set(&c, "temperature", "-1"), RT_EINVAL);
    cr_assert(strstr(rt_last_error(), "out of range"), "%s", rt_last_error());
    cr_assert_eq(kd_config_set(&c, "form", "kld"), RT_EINVAL);
    cr_assert(strstr(rt_last_error(), "kl, ce"), "%s", rt_last_error());
    cr_assert_eq(kd_config_set(&c, "form", "ce"), RT_OK);
    cr_assert_eq(c.form, KD_FORM_CE);
    c = kd_config_default(KD_TOPK);
    cr_assert_eq(kd_config_set(&c, "add_tail", "false"), RT_OK);
    cr_assert_eq(c.add_tail, 0);
    cr_assert_eq(kd_config_set(&c, "add_tail", "maybe"), RT_EINVAL);
    cr_assert_eq(kd_config_set(&c, "k", "2.5"), RT_EINVAL);
    cr_assert_eq(kd_config_set(&c, "reduction", "sum"), RT_OK);
    cr_assert_eq(c.reduction, KD_RED_SUM);
    cr_assert_eq(kd_config_set(&c, "beta", "1.5"), RT_EINVAL);

    /* metric table: each kind's metrics are the finite ones */
    size_t nm;
    const kd_metric_desc *md = kd_metric_table(&nm);
    cr_assert(nm >= 10);
    for (int k = 0; k < KD_KIND_COUNT; k++) {
        c = kd_config_default((kd_kind)k);
        if (k == KD_TOPK || k == KD_FKL || k == KD_RKL || k == KD_JSD)
            loss8(&c, &m);
        else
            loss5(&c, &m);
        for (size_t i = 0; i < nm; i++) {
            int applies = kd_metric_applies(&md[i], (kd_kind)k);
            double mv = kd_metric_value(&m, &md[i]);
            cr_assert(applies ? isfinite(mv) : isnan(mv), "%s: metric %s = %g (applies %d)",
                      kd_kind_name((kd_kind)k), md[i].name, mv, applies);
        }
    }
}
