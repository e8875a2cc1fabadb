/*
 * test_prefx.c -- SimPO, ORPO, KTO and BCO (losses/prefx.h) against the
 * worked numbers of specs/pref_kd_losses.md section 4 in
 * float64 to 1e-6. The gradients are those of torch 1.13 autograd (float64)
 * on a line-by-line transcription of each reference function (TRL's
 * cpo_loss/simpo_loss, odds_ratio_loss, KTO _compute_loss, bco_loss +
 * RunningMoments), run with /usr/bin/python3 and hard-coded below. Then
 * central finite differences on random inputs, log-ratios of +-1e4, one-sided
 * KTO/BCO batches, BCO's running mean over several steps, float32, errors and
 * the settings tables. Few Test()s: each pays libtorch's start-up.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "prefx.h"
#include "tensor.h"

#define MAXB 16
#define MAXIN 6

/* ------------------------------------------------------------------------ */
/* One evaluator for every loss: inputs are double arrays (NULL = absent),   */
/* adapters map them onto each loss's inputs struct.                          */
/* ------------------------------------------------------------------------ */

typedef rt_tensor *(*adapter)(rt_scope *S, const void *cfg, rt_tensor *const *x, void *m, rt_tensor **per,
                              void *state);

static rt_tensor *run_simpo(rt_scope *S, const void *cfg, rt_tensor *const *x, void *m, rt_tensor **per, void *st)
{
    (void)st;
    simpo_inputs in = {x[0], x[1], x[2], x[3]};
    return simpo_loss(S, cfg, &in, m, per);
}

static rt_tensor *run_orpo(rt_scope *S, const void *cfg, rt_tensor *const *x, void *m, rt_tensor **per, void *st)
{
    (void)st;
    orpo_inputs in = {x[0], x[1], x[2], x[3], x[4], x[5]};
    return orpo_loss(S, cfg, &in, m, per);
}

static rt_tensor *run_kto(rt_scope *S, const void *cfg, rt_tensor *const *x, void *m, rt_tensor **per, void *st)
{
    (void)st;
    kto_inputs in = {x[0], x[1], x[2], x[3], x[4]};
    return kto_loss(S, cfg, &in, m, per);
}

static rt_tensor *run_bco(rt_scope *S, const void *cfg, rt_tensor *const *x, void *m, rt_tensor **per, void *st)
{
    bco_inputs in = {x[0], x[1], x[2], x[3]};
    return bco_loss(S, cfg, &in, st, m, per);
}


typedef struct spec {
    adapter run;
    const char *name;
    int nin;
    int diff[MAXIN]; /* 1: differentiated, -1: float constant (must get no gradient), 0: aux */
} spec;

static const spec SIMPO = {run_simpo, "simpo", 4, {1, 1, 0, 0}};
static const spec ORPO = {run_orpo, "orpo", 6, {1, 1, 0, 0, 1, 0}};
static const spec KTO = {run_kto, "kto", 5, {1, -1, 0, -1, -1}};
static const spec BCO = {run_bco, "bco", 4, {1, -1, 0, -1}};

typedef struct result {
    double loss;
    double grad[MAXIN][MAXB];
    double per[MAXB];
} result;

/* Evaluate; NULL loss returns NAN (the message stays in rt_last_error()). */
static double eval(const spec *sp, const void *cfg, void *state, const double *const *vals, int B, rt_dtype dt,
                   void *m, result *res)
{
    rt_scope *S = rt_scope_new();
    rt_tensor *x[MAXIN] = {0};
    int64_t shape[1] = {B};
    for (int i = 0; i < sp->nin; i++) {
        if (!vals[i]) continue;
        x[i] = rt_from_data(S, vals[i], shape, 1, RT_OPTS(RT_F64));
        if (dt != RT_F64 && sp->diff[i] != 0) x[i] = rt_to_dtype(S, x[i], dt);
        cr_assert(x[i] != NULL, "%s", rt_last_error());
        if (res && sp->diff[i] != 0) cr_assert_eq(rt_set_requires_grad(x[i], 1), RT_OK);
    }
    size_t before = rt_scope_count(S);
    rt_tensor *per = NULL;
    rt_clear_error();
    rt_tensor *loss = sp->run(S, cfg, x, m, res ? &per : NULL, state);
    if (!loss) {
        rt_scope_free(S);
        return NAN;
    }
    cr_assert_eq(rt_scope_count(S), before + (res ? 2 : 1), "%s left %zu handles in the caller's scope",
                 sp->name, rt_scope_count(S) - before);
    cr_assert_eq(rt_ndim(loss), 0);
    cr_assert_eq(rt_dtype_of(loss), dt);
    double v = rt_item(loss);
    if (res) {
        res->loss = v;
        cr_assert_eq(rt_numel(per), B);
        cr_assert_eq(rt_to_data(per, RT_F64, res->per, (size_t)B * sizeof(double)), RT_OK);
        cr_assert_eq(rt_backward(loss), RT_OK, "%s", rt_last_error());
        for (int i = 0; i < sp->nin; i++) {
            memset(res->grad[i], 0, sizeof res->grad[i]);
            if (!x[i] || sp->diff[i] == 0) continue;
            if (sp->diff[i] < 0) {
                cr_assert_eq(rt_has_grad(x[i]), 0, "%s: constant input %d got a gradient", sp->name, i);
                continue;
            }
            rt_tensor *g = rt_grad(S, x[i]);
            if (g) cr_assert_eq(rt_to_data(g, RT_F64, res->grad[i], (size_t)B * sizeof(double)), RT_OK);
        }
    }
    rt_scope_free(S);
    return v;
}

static void near(double got, double want, double tol, const char *what)
{
    cr_assert(fabs(got - want) <= tol, "%s: got %.10f, want %.10f (tol %g)", what, got, want, tol);
}

static void near_vec(const double *got, const double *want, int n, double tol, const char *what)
{
    for (int i = 0; i < n; i++) {
        cr_assert(fabs(got[i] - want[i]) <= tol, "%s[%d]: got %.10f, want %.10f (tol %g)", what, i, got[i],
                  want[i], tol);
    }
}

/* ------------------------------------------------------------------------ */
/* Worked examples                                                            */
/* ------------------------------------------------------------------------ */

/* 4.1/4.2: average log-probs; 4.3/4.4: the four unpaired examples. */
static const double AW[3] = {-1.2, -0.8, -2.0}, AL[3] = {-1.5, -0.7, -2.6};
static const double KP[4] = {-10, -12, -15, -9}, KR[4] = {-11, -12.5, -14, -9.5};
static const double KLAB[4] = {1, 1, 0, 0};
static const double KPKL[4] = {-20, -18, -25, -16}, KRKL[4] = {-21, -18.2, -24, -17};

Test(prefx, worked_values)
{
    result r;

    /* ---- 4.1 SimPO, official defaults: 0.644397, 1.103186, 0.403186 -> 0.716923 */
    simpo_config sc = simpo_config_default();
    simpo_metrics sm;
    const double *sv[4] = {AW, AL, NULL, NULL};
    eval(&SIMPO, &sc, NULL, sv, 3, RT_F64, &sm, &r);
    near(r.loss, 0.716923, 1e-6, "simpo official");
    near_vec(r.per, (double[]){0.644397, 1.103186, 0.403186}, 3, 1e-6, "simpo official per-pair");
    /* torch autograd of the official simpo_loss */
    near_vec(r.grad[0], (double[]){-0.316680541681, -0.445458514779, -0.221208151888}, 3, 1e-9, "simpo d/avg_w");
    near_vec(r.grad[1], (double[]){0.316680541681, 0.445458514779, 0.221208151888}, 3, 1e-9, "simpo d/avg_l");
    near(sm.rewards_chosen, 2.0 * (-4.0 / 3), 1e-12, "simpo rewards/chosen");
    near(sm.rewards_rejected, 2.0 * (-4.8 / 3), 1e-12, "simpo rewards/rejected");
    near(sm.rewards_accuracies, 2.0 / 3, 1e-12, "simpo rewards/accuracies");
    near(sm.rewards_margins, 2.0 * 0.8 / 3, 1e-12, "simpo rewards/margins");
    near(sm.logps_chosen, -4.0 / 3, 1e-12, "simpo logps/chosen");
    near(sm.nll_loss, 4.0 / 3, 1e-12, "simpo nll (no lengths: -mean avg_w)");
    near(sm.preference_loss, sm.loss, 0, "simpo preference_loss without sft");

    /* TRL CPOTrainer(loss_type=simpo), beta 0.1, gamma 0.5: 0.955509, 0.980313, 0.937154 -> 0.957659
     * (cpo_alpha 0 for the pure SimPO value; the preset's cpo_alpha 1 adds the NLL) */
    sc = simpo_config_preset(SIMPO_PRESET_TRL);
    cr_assert_eq(simpo_config_set(&sc, "sft_weight", "0"), RT_OK);
    eval(&SIMPO, &sc, NULL, sv, 3, RT_F64, &sm, &r);
    near(r.loss, 0.957659, 1e-6, "simpo trl");
    near_vec(r.per, (double[]){0.955509, 0.980313, 0.937154}, 3, 1e-6, "simpo trl per-pair");
    near_vec(r.grad[0], (double[]){-0.020512791880, -0.020826882482, -0.020275301025}, 3, 1e-9, "simpo trl d/w");
    sc = simpo_config_preset(SIMPO_PRESET_TRL);
    eval(&SIMPO, &sc, NULL, sv, 3, RT_F64, &sm, &r);
    near(r.loss, 0.957659 + 4.0 / 3, 1e-6, "simpo trl + cpo_alpha*NLL");

    /* Summed log-probs + lengths, label smoothing 0.1, sft_weight 1 (torch transcription):
     * the NLL is the batch token mean -sum(logp_w)/sum(|y_w|) = 16.4/11 */
    static const double LW[3] = {4, 2, 5}, LL[3] = {3, 7, 2};
    double sw[3], sl[3];
    for (int i = 0; i < 3; i++) sw[i] = AW[i] * LW[i], sl[i] = AL[i] * LL[i];
    sc = simpo_config_default();
    cr_assert_eq(simpo_config_set(&sc, "label_smoothing", "0.1"), RT_OK);
    cr_assert_eq(simpo_config_set(&sc, "sft_weight", "1"), RT_OK);
    const double *sv2[4] = {sw, sl, LW, LL};
    eval(&SIMPO, &sc, NULL, sv2, 3, RT_F64, &sm, &r);
    near(r.loss, 2.211165343524, 1e-9, "simpo smoothed + sft");
    near(sm.nll_loss, 16.4 / 11, 1e-12, "simpo token-mean nll");
    near_vec(r.per, (double[]){0.654396660074, 1.033186048885, 0.473186048885}, 3, 1e-9, "simpo smoothed per-pair");
    near_vec(r.grad[0], (double[]){-0.153412559663, -0.280305014965, -0.121817387953}, 3, 1e-9, "simpo sft d/w");
    near_vec(r.grad[1], (double[]){0.083337958338, 0.054113121159, 0.077270742611}, 3, 1e-9, "simpo sft d/l");
    /* hinge (official): relu(1 - x), x = 2(avg_w - avg_l) - 0.5 = 0.1, -0.7, 0.7 */
    sc = simpo_config_default();
    cr_assert_eq(simpo_config_set(&sc, "loss_type", "hinge"), RT_OK);
    eval(&SIMPO, &sc, NULL, sv, 3, RT_F64, &sm, &r);
    near(r.loss, 0.966666666667, 1e-9, "simpo hinge");
    near_vec(r.grad[0], (double[]){-2.0 / 3, -2.0 / 3, -2.0 / 3}, 3, 1e-12, "simpo hinge d/w");

    /* ---- 4.2 ORPO: NLL 1.1, log_odds [0.405900, -0.189723, 0.668237], loss 1.157233.
     * The NLL input: prompt+chosen summed log-probs -2.2, -3.3, -5.5 over 2, 3, 5 tokens. */
    orpo_config oc = orpo_config_default();
    orpo_metrics om;
    static const double FULL[3] = {-2.2, -3.3, -5.5}, FULLN[3] = {2, 3, 5};
    const double *ov[6] = {AW, AL, NULL, NULL, FULL, FULLN};
    eval(&ORPO, &oc, NULL, ov, 3, RT_F64, &om, &r);
    near(r.loss, 1.157233, 1e-6, "orpo");
    near(om.nll_loss, 1.1, 1e-12, "orpo nll");
    near(om.log_odds_chosen, (0.405900 - 0.189723 + 0.668237) / 3, 1e-6, "orpo log_odds_chosen");
    near(om.log_odds_ratio, (-0.510652 - 0.792501 - 0.413838) / 3, 1e-6, "orpo log_odds_ratio");
    near_vec(r.per, (double[]){0.0510652, 0.0792501, 0.0413838}, 3, 1e-7, "orpo per-pair -beta*ratio");
    near_vec(r.grad[0], (double[]){-0.019075192142, -0.033128615392, -0.013064475654}, 3, 1e-9, "orpo d/w");
    near_vec(r.grad[1], (double[]){0.017158414440, 0.036238451306, 0.012202731687}, 3, 1e-9, "orpo d/l");
    near_vec(r.grad[4], (double[]){-0.1, -0.1, -0.1}, 3, 1e-12, "orpo d/full");
    near(om.rewards_chosen, 0.1 * (-4.0 / 3), 1e-12, "orpo rewards/chosen");
    near(om.rewards_accuracies, 2.0 / 3, 1e-12, "orpo accuracies");
    /* both log1mexp branches (averages above -ln 2); NLL from the completions */
    static const double HW[3] = {-0.3, -0.05, -2.0}, HL[3] = {-0.6, -0.9, -0.01};
    const double *ov2[6] = {HW, HL, NULL, NULL, NULL, NULL};
    eval(&ORPO, &oc, NULL, ov2, 3, RT_F64, &om, &r);
    near(r.loss, 1.011513705970, 1e-9, "orpo both branches");
    near_vec(r.grad[0], (double[]){-0.371725955581, -0.356526773068, -0.371823375493}, 3, 1e-9, "orpo hi d/w");
    near_vec(r.grad[1], (double[]){0.022054354551, 0.001906133419, 3.344766365043}, 3, 1e-8, "orpo hi d/l");

    /* ---- 4.3 KTO: z 0.3; losses [0.482507, 0.495], [0.467546, 0.505] -> 0.487513 */
    kto_config kc = kto_config_default();
    kto_metrics km;
    const double *kv[5] = {KP, KR, KLAB, KPKL, KRKL};
    eval(&KTO, &kc, NULL, kv, 4, RT_F64, &km, &r);
    near(r.loss, 0.487513, 1e-6, "kto");
    near(km.kl, 0.3, 1e-12, "kto kl");
    near_vec(r.per, (double[]){0.482507, 0.495000, 0.467546, 0.505000}, 4, 1e-6, "kto per-example");
    near_vec(r.grad[0], (double[]){-0.006242349998, -0.006249375042, 0.006223667950, 0.006249375042}, 4, 1e-11,
             "kto d/policy");
    near(km.rewards_chosen, 0.075, 1e-12, "kto rewards/chosen");
    near(km.rewards_rejected, -0.025, 1e-12, "kto rewards/rejected");
    near(km.rewards_margins, 0.1, 1e-12, "kto rewards/margins");
    near(km.logps_chosen, -11, 1e-12, "kto logps/chosen");
    near(km.logps_rejected, -12, 1e-12, "kto logps/rejected");
    near(km.count_chosen, 2, 0, "kto count/chosen");
    cr_assert_eq(kto_config_set(&kc, "undesirable_weight", "1.33"), RT_OK);
    eval(&KTO, &kc, NULL, kv, 4, RT_F64, &km, &r);
    near(r.loss, 0.567748, 1e-6, "kto lambda_U 1.33");
    near_vec(r.grad[0], (double[]){-0.006242349998, -0.006249375042, 0.008277478373, 0.008311668805}, 4, 1e-11,
             "kto lambda_U d/policy");
    kc = kto_config_default();
    cr_assert_eq(kto_config_set(&kc, "loss_type", "apo_zero_unpaired"), RT_OK);
    const double *kv_nokl[5] = {KP, KR, KLAB, NULL, NULL};
    eval(&KTO, &kc, NULL, kv_nokl, 4, RT_F64, &km, &r);
    near(r.loss, 0.487510, 1e-6, "kto apo_zero_unpaired");
    near_vec(r.grad[0], (double[]){-0.006234401005, -0.006246095377, 0.006234401005, 0.006246095377}, 4, 1e-11,
             "apo_zero_unpaired d/policy");
    near(km.kl, 0, 0, "apo_zero_unpaired has z = 0");
    /* a negative KL estimate is clamped to 0: then kto equals apo_zero_unpaired */
    kc = kto_config_default();
    static const double NPKL[4] = {-22, -18, -25, -16}, NRKL[4] = {-21, -17.2, -24, -17};
    const double *kv_neg[5] = {KP, KR, KLAB, NPKL, NRKL};
    cr_assert(kto_kl_estimate(NULL, NULL) != kto_kl_estimate(NULL, NULL)); /* NaN on NULL */
    eval(&KTO, &kc, NULL, kv_neg, 4, RT_F64, &km, &r);
    near(km.kl, 0, 0, "kto clamped z");
    near(r.loss, 0.487510406261, 1e-11, "kto clamped z loss");

    /* ---- 4.4 BCO: first step delta 0.025; [0.656350, 0.680725], [0.632599, 0.705725] -> 0.668850 */
    bco_config bc = bco_config_default();
    bco_metrics bm;
    bco_running st = bco_running_init();
    const double *bv[4] = {KP, KR, KLAB, NULL};
    eval(&BCO, &bc, &st, bv, 4, RT_F64, &bm, &r);
    near(r.loss, 0.668850, 1e-6, "bco");
    near(bm.delta, 0.025, 1e-12, "bco delta");
    near_vec(r.per, (double[]){0.656350, 0.680725, 0.632599, 0.705725}, 4, 1e-6, "bco per-example");
    near_vec(r.grad[0], (double[]){-0.012031469603, -0.012343758138, 0.011719765666, 0.012656241862}, 4, 1e-11,
             "bco d/policy");
    near(st.mean, 0.025, 1e-12, "bco state mean");
    near(st.count, 4 + 1e-24, 1e-12, "bco state count");
    near(st.var, 0.005625, 1e-12, "bco state var");
    near(bm.rewards_chosen, 0.075, 1e-12, "bco rewards/chosen");
    near(bm.rewards_rejected, -0.025, 1e-12, "bco rewards/rejected");
    near(bm.running_count, st.count, 0, "bco running/count metric");
    /* the 2nd batch of rewards [0.3, -0.2] -> delta 0.033333, the mean of all 6 */
    cr_assert_eq(bco_running_update(&st, 0.05, 0.0625, 2), RT_OK);
    near(st.mean, 0.033333333333, 1e-11, "bco delta after batch 2");
    /* UDM: undesirable losses weighted by clamp(p/(1-p+1e-8), 0.5, 10) (torch transcription) */
    st = bco_running_init();
    static const double UDM[4] = {0.5, 0.5, 0.2, 0.97};
    const double *bv_udm[4] = {KP, KR, KLAB, UDM};
    eval(&BCO, &bc, &st, bv_udm, 4, RT_F64, &bm, &r);
    near(r.loss, 2.177656999317, 1e-9, "bco udm");
    near_vec(r.grad[0], (double[]){-0.012031469603, -0.012343758138, 0.005859882833, 0.126562418625}, 4, 1e-9,
             "bco udm d/policy");
}

/* ------------------------------------------------------------------------ */
/* Finite differences on random inputs                                        */
/* ------------------------------------------------------------------------ */

/* xorshift64*: the test's own generator, no global state */
static double uniform(uint64_t *s, double lo, double hi)
{
    *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
    return lo + (hi - lo) * (double)((*s * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static void fd_check(const spec *sp, const void *cfg, const void *state0, size_t state_size, double *const *vals,
                     int B, const char *what)
{
    result r;
    unsigned char st[64];
    if (state0) memcpy(st, state0, state_size);
    eval(sp, cfg, state0 ? st : NULL, (const double *const *)vals, B, RT_F64, NULL, &r);
    cr_assert(isfinite(r.loss), "%s: %s", what, rt_last_error());
    const double h = 1e-6;
    for (int i = 0; i < sp->nin; i++) {
        if (!vals[i] || sp->diff[i] != 1) continue;
        for (int j = 0; j < B; j++) {
            double keep = vals[i][j];
            vals[i][j] = keep + h;
            if (state0) memcpy(st, state0, state_size);
            double up = eval(sp, cfg, state0 ? st : NULL, (const double *const *)vals, B, RT_F64, NULL, NULL);
            vals[i][j] = keep - h;
            if (state0) memcpy(st, state0, state_size);
            double down = eval(sp, cfg, state0 ? st : NULL, (const double *const *)vals, B, RT_F64, NULL, NULL);
            vals[i][j] = keep;
            double fd = (up - down) / (2 * h);
            cr_assert(fabs(fd - r.grad[i][j]) <= 1e-6 + 1e-5 * fabs(r.grad[i][j]),
                      "%s: d loss / d input%d[%d]: autograd %.10f, finite difference %.10f", what, i, j,
                      r.grad[i][j], fd);
        }
    }
}

Test(prefx, gradients)
{
    enum { B = 6 };
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    double pw[B], pl[B], lw[B], ll[B], full[B], fulln[B], ref1[B], lab[B], kl1[B], kl2[B], udm[B];
    for (int i = 0; i < B; i++) {
        lw[i] = (double)(1 + (int)uniform(&seed, 0, 9));
        ll[i] = (double)(1 + (int)uniform(&seed, 0, 9));
        pw[i] = uniform(&seed, -3.0, -0.05) * lw[i]; /* summed; average in (-3, -0.05) */
        pl[i] = uniform(&seed, -3.0, -0.05) * ll[i];
        fulln[i] = lw[i] + 4;
        full[i] = pw[i] + uniform(&seed, -8, -1);
        ref1[i] = pw[i] + uniform(&seed, -2, 2);
        (void)uniform(&seed, -2, 2); /* keeps the stream the inputs below were drawn from */
        lab[i] = i % 3 == 0 ? 0 : 1;
        kl1[i] = uniform(&seed, -30, -5);
        kl2[i] = kl1[i] + uniform(&seed, -3, 1);
        udm[i] = uniform(&seed, 0.01, 0.99);
    }
    simpo_config sc = simpo_config_default();
    cr_assert_eq(simpo_config_set(&sc, "label_smoothing", "0.2"), RT_OK);
    cr_assert_eq(simpo_config_set(&sc, "sft_weight", "0.7"), RT_OK);
    double *sv[4] = {pw, pl, lw, ll};
    fd_check(&SIMPO, &sc, NULL, 0, sv, B, "simpo sigmoid");
    cr_assert_eq(simpo_config_set(&sc, "loss_type", "hinge"), RT_OK);
    cr_assert_eq(simpo_config_set(&sc, "beta", "0.9"), RT_OK); /* keeps 1 - x away from the kink */
    fd_check(&SIMPO, &sc, NULL, 0, sv, B, "simpo hinge");

    orpo_config oc = orpo_config_default();
    cr_assert_eq(orpo_config_set(&oc, "lambda", "0.5"), RT_OK);
    double *ov[6] = {pw, pl, lw, ll, full, fulln};
    fd_check(&ORPO, &oc, NULL, 0, ov, B, "orpo");
    double *ov2[6] = {pw, pl, lw, ll, NULL, NULL};
    fd_check(&ORPO, &oc, NULL, 0, ov2, B, "orpo (completion NLL)");

    kto_config kc = kto_config_default();
    cr_assert_eq(kto_config_set(&kc, "beta", "0.7"), RT_OK);
    cr_assert_eq(kto_config_set(&kc, "desirable_weight", "1.3"), RT_OK);
    double *kv[5] = {pw, ref1, lab, kl1, kl2};
    fd_check(&KTO, &kc, NULL, 0, kv, B, "kto");
    cr_assert_eq(kto_config_set(&kc, "loss_type", "apo_zero_unpaired"), RT_OK);
    fd_check(&KTO, &kc, NULL, 0, kv, B, "kto apo_zero_unpaired");

    /* BCO: delta is detached (TRL), so the finite difference sees a fixed
     * running mean: evaluation mode with a mid-training state */
    bco_config bc = bco_config_default();
    cr_assert_eq(bco_config_set(&bc, "update_running", "false"), RT_OK);
    cr_assert_eq(bco_config_set(&bc, "beta", "0.5"), RT_OK);
    bco_running st = {.mean = 0.3, .var = 0.2, .std = 0.45, .count = 40};
    double *bv[4] = {pw, ref1, lab, udm};
    fd_check(&BCO, &bc, &st, sizeof st, bv, B, "bco udm");
    double *bv2[4] = {pw, ref1, lab, NULL};
    fd_check(&BCO, &bc, &st, sizeof st, bv2, B, "bco");
}

/* ------------------------------------------------------------------------ */
/* Extremes, one-sided batches, float32, errors                              */
/* ------------------------------------------------------------------------ */

static void all_finite(const result *r, int nin, int B, const char *what)
{
    cr_assert(isfinite(r->loss), "%s: loss %g", what, r->loss);
    for (int i = 0; i < nin; i++)
        for (int j = 0; j < B; j++)
            cr_assert(isfinite(r->grad[i][j]), "%s: grad input%d[%d] = %g", what, i, j, r->grad[i][j]);
    for (int j = 0; j < B; j++) cr_assert(isfinite(r->per[j]), "%s: per[%d] = %g", what, j, r->per[j]);
}

Test(prefx, extremes_and_edges)
{
    result r;
    enum { B = 4 };
    /* log-ratios / log-prob gaps of +-1e4 */
    static const double BIGW[B] = {-1e4, -1e-3, -5e3, -2.0}, BIGL[B] = {-1e-3, -1e4, -2.0, -5e3};
    static const double ZERO[B] = {0, 0, 0, 0}, ONE[B] = {1, 1, 1, 1};
    static const double XP[B] = {1e4, -1e4, 1e4, -1e4}, XR[B] = {-1e4, 1e4, 1e4, -1e4};
    static const double LAB[B] = {1, 0, 0, 1};
    for (int dt = 0; dt < 2; dt++) {
        rt_dtype t = dt ? RT_F32 : RT_F64;
        simpo_config sc = simpo_config_default();
        sc.label_smoothing = 0.1;
        sc.sft_weight = 1.0;
        const double *sv[4] = {BIGW, BIGL, ONE, ONE};
        eval(&SIMPO, &sc, NULL, sv, B, t, NULL, &r);
        all_finite(&r, 4, B, "simpo +-1e4");
        orpo_config oc = orpo_config_default();
        /* averages of -1e4 and exactly 0 (probability 1): clamped, finite */
        static const double OW[B] = {-1e4, 0.0, -1e-13, -0.69314718}, OL[B] = {0.0, -1e4, -0.7, -1e-30};
        const double *ov[6] = {OW, OL, NULL, NULL, NULL, NULL};
        eval(&ORPO, &oc, NULL, ov, B, t, NULL, &r);
        all_finite(&r, 6, B, "orpo extremes");
        kto_config kc = kto_config_default();
        const double *kv[5] = {XP, XR, LAB, XP, XR};
        eval(&KTO, &kc, NULL, kv, B, t, NULL, &r);
        all_finite(&r, 5, B, "kto +-1e4");
        bco_config bc = bco_config_default();
        bco_running st = bco_running_init();
        const double *bv[4] = {XP, XR, LAB, ZERO};
        eval(&BCO, &bc, &st, bv, B, t, NULL, &r);
        all_finite(&r, 4, B, "bco +-1e4");
        cr_assert(isfinite(st.mean) && isfinite(st.var), "bco state after +-1e4");
    }

    /* all-desirable / all-undesirable KTO and BCO batches: mean over what is there */
    static const double ALL1[B] = {1, 1, 1, 1}, ALL0[B] = {0, 0, 0, 0};
    static const double P[B] = {-10, -12, -15, -9}, R[B] = {-11, -12.5, -14, -9.5};
    static const double PK[B] = {-20, -18, -25, -16}, RK[B] = {-21, -18.2, -24, -17};
    kto_config kc = kto_config_default();
    kto_metrics km;
    const double *kd[5] = {P, R, ALL1, PK, RK};
    eval(&KTO, &kc, NULL, kd, B, RT_F64, &km, &r);
    double want = 0;
    for (int i = 0; i < B; i++) want += 1.0 / (1.0 + exp(0.1 * ((P[i] - R[i]) - 0.3))) / B;
    near(r.loss, want, 1e-12, "kto all desirable");
    cr_assert(isnan(km.rewards_rejected) && isnan(km.rewards_margins), "kto: no undesirable -> NaN metrics");
    near(km.count_rejected, 0, 0, "kto count/rejected");
    const double *ku[5] = {P, R, ALL0, PK, RK};
    eval(&KTO, &kc, NULL, ku, B, RT_F64, &km, &r);
    want = 0;
    for (int i = 0; i < B; i++) want += 1.0 / (1.0 + exp(-0.1 * ((P[i] - R[i]) - 0.3))) / B;
    near(r.loss, want, 1e-12, "kto all undesirable");
    cr_assert(isnan(km.rewards_chosen) && isnan(km.logps_chosen), "kto: no desirable -> NaN metrics");
    bco_config bc = bco_config_default();
    bco_metrics bm;
    bco_running st = bco_running_init();
    const double *bd[4] = {P, R, ALL1, NULL};
    eval(&BCO, &bc, &st, bd, B, RT_F64, &bm, &r);
    /* rewards 0.1, 0.05, -0.1, 0.05, delta 0.025: all desirable */
    want = (log1p(exp(-0.075)) + log1p(exp(-0.025)) + log1p(exp(0.125)) + log1p(exp(-0.025))) / B;
    near(r.loss, want, 1e-12, "bco all desirable");
    cr_assert(isnan(bm.rewards_rejected));
    st = bco_running_init();
    const double *bu[4] = {P, R, ALL0, NULL};
    eval(&BCO, &bc, &st, bu, B, RT_F64, &bm, &r);
    want = (log1p(exp(0.075)) + log1p(exp(0.025)) + log1p(exp(-0.125)) + log1p(exp(0.025))) / B;
    near(r.loss, want, 1e-12, "bco all undesirable");

    /* float32 agrees with float64 to ~1e-6 relative */
    static const double AW[3] = {-1.2, -0.8, -2.0}, AL[3] = {-1.5, -0.7, -2.6};
    simpo_config sc = simpo_config_default();
    const double *sv[4] = {AW, AL, NULL, NULL};
    near(eval(&SIMPO, &sc, NULL, sv, 3, RT_F32, NULL, NULL), 0.716922919281, 1e-6, "simpo float32");
    const double *kv[5] = {P, R, (double[]){1, 1, 0, 0}, PK, RK};
    near(eval(&KTO, &kc, NULL, kv, B, RT_F32, NULL, NULL), 0.487513208987, 1e-6, "kto float32");

    /* errors name the input and the reason */
    const double *bad[5] = {P, R, (double[]){1, 1, 0, 0}, NULL, NULL};
    cr_assert(isnan(eval(&KTO, &kc, NULL, bad, B, RT_F64, NULL, NULL)));
    cr_assert(strstr(rt_last_error(), "policy_kl_logps") != NULL, "%s", rt_last_error());
    rt_scope *S = rt_scope_new();
    int64_t s3[1] = {3}, s4[1] = {4};
    kto_inputs kin = {rt_from_data(S, P, s4, 1, RT_OPTS(RT_F64)), rt_from_data(S, R, s3, 1, RT_OPTS(RT_F64)),
                      rt_from_data(S, ALL1, s4, 1, RT_OPTS(RT_F64)), NULL, NULL};
    cr_assert_null(kto_loss(S, &kc, &kin, NULL, NULL));
    cr_assert(strstr(rt_last_error(), "ref_logps has shape [3], expected [4]") != NULL, "%s", rt_last_error());
    kin.ref_logps = rt_from_data(S, R, s4, 1, RT_OPTS(RT_F32));
    cr_assert_null(kto_loss(S, &kc, &kin, NULL, NULL));
    cr_assert(strstr(rt_last_error(), "ref_logps is float32") != NULL, "%s", rt_last_error());
    /* bool labels work like 1/0 */
    kin.ref_logps = rt_from_data(S, R, s4, 1, RT_OPTS(RT_F64));
    kin.labels = rt_compare_scalar(S, rt_from_data(S, (double[]){1, 1, 0, 0}, s4, 1, RT_OPTS(RT_F64)), RT_NE, 0);
    kin.policy_kl_logps = rt_from_data(S, PK, s4, 1, RT_OPTS(RT_F64));
    kin.ref_kl_logps = rt_from_data(S, RK, s4, 1, RT_OPTS(RT_F64));
    rt_tensor *l = kto_loss(S, &kc, &kin, NULL, NULL);
    cr_assert(l != NULL, "%s", rt_last_error());
    near(rt_item(l), 0.487513208987, 1e-11, "kto bool labels");
    /* a failing BCO call leaves the state alone */
    bco_running before = {.mean = 0.5, .var = 2, .std = 1.5, .count = 7};
    st = before;
    bco_inputs bin = {kin.policy_logps, rt_from_data(S, R, s3, 1, RT_OPTS(RT_F64)), kin.labels, NULL};
    cr_assert_null(bco_loss(S, &bc, &bin, &st, NULL, NULL));
    cr_assert(memcmp(&st, &before, sizeof st) == 0, "bco state changed by a failing call");
    cr_assert_null(bco_loss(S, &bc, &bin, NULL, NULL, NULL));
    cr_assert(strstr(rt_last_error(), "running state is NULL") != NULL, "%s", rt_last_error());
    rt_scope_free(S);
}

/* ------------------------------------------------------------------------ */
/* BCO running mean: TRL's RunningMoments over several steps                  */
/* ------------------------------------------------------------------------ */

Test(prefx, bco_running_mean)
{
    static const double P[4] = {-10, -12, -15, -9}, R[4] = {-11, -12.5, -14, -9.5}, L[4] = {1, 1, 0, 0};
    bco_running st = bco_running_init();
    near(st.mean, 0, 0, "init mean");
    near(st.var, 1, 0, "init var");
    near(st.count, 1e-24, 0, "init count");
    bco_config bc = bco_config_default();
    bco_metrics m;
    const double *v[4] = {P, R, L, NULL};
    /* step 1 through the loss; steps 2-3 with TRL's update on batches
     * [0.3, -0.2] and [1.0, 0.5, -0.25] (torch transcription of RunningMoments) */
    eval(&BCO, &bc, &st, v, 4, RT_F64, &m, NULL);
    near(m.delta, 0.025, 1e-12, "step 1 delta");
    near(st.std, 0.086602540378, 1e-11, "step 1 std");
    cr_assert_eq(bco_running_update(&st, 0.05, 0.0625, 2), RT_OK);
    near(st.mean, 0.033333333333, 1e-11, "step 2 mean");
    near(st.var, 0.024722222222, 1e-11, "step 2 var");
    near(st.std, 0.172240142437, 1e-11, "step 2 std");
    near(st.count, 6, 1e-12, "step 2 count");
    double b3[3] = {1.0, 0.5, -0.25}, mu = (b3[0] + b3[1] + b3[2]) / 3, var = 0;
    for (int i = 0; i < 3; i++) var += (b3[i] - mu) * (b3[i] - mu) / 3;
    cr_assert_eq(bco_running_update(&st, mu, var, 3), RT_OK);
    near(st.mean, 0.161111111111, 1e-11, "step 3 mean");
    near(st.var, 0.137098765432, 1e-11, "step 3 var");
    near(st.std, 0.392729055598, 1e-11, "step 3 std");
    near(st.count, 9, 1e-12, "step 3 count");

    /* the loss uses the updated mean: the same batch again, delta now the mean of 13 rewards */
    bco_running saved = st; /* what a checkpoint holds */
    double l1 = eval(&BCO, &bc, &st, v, 4, RT_F64, &m, NULL);
    near(m.delta, (0.161111111111 * 9 + 0.1) / 13, 1e-11, "step 4 delta");
    /* resume from the saved state: bit-identical loss and state */
    bco_running resumed = saved, after = st;
    double l2 = eval(&BCO, &bc, &resumed, v, 4, RT_F64, NULL, NULL);
    cr_assert(l1 == l2 && memcmp(&resumed, &after, sizeof after) == 0, "resume from saved state differs");
    /* evaluation mode reads delta without touching the state */
    bc.update_running = 0;
    bco_running frozen = st;
    eval(&BCO, &bc, &st, v, 4, RT_F64, &m, NULL);
    near(m.delta, frozen.mean, 0, "eval delta");
    cr_assert(memcmp(&st, &frozen, sizeof st) == 0, "eval mode changed the state");
    cr_assert_eq(bco_running_update(&st, NAN, 0, 2), RT_EINVAL);
    cr_assert_eq(bco_running_update(&st, 0, 0, 0), RT_EINVAL);
    cr_assert(memcmp(&st, &frozen, sizeof st) == 0);
}

/* ------------------------------------------------------------------------ */
/* Settings and metric tables                                                 */
/* ------------------------------------------------------------------------ */

Test(prefx, settings)
{
    char buf[64];
    /* defaults = the references' */
    simpo_config s = simpo_config_default();
    cr_assert(s.beta == 2.0 && s.gamma == 0.5 && s.sft_weight == 0 && s.label_smoothing == 0 &&
              s.loss_type == SIMPO_SIGMOID && s.preset == SIMPO_PRESET_OFFICIAL);
    simpo_config t = simpo_config_preset(SIMPO_PRESET_TRL);
    cr_assert(t.beta == 0.1 && t.gamma == 0.5 && t.sft_weight == 1.0 && t.preset == SIMPO_PRESET_TRL);
    cr_assert_eq(simpo_config_set(&s, "beta", "3"), RT_OK);
    cr_assert_eq(simpo_config_set(&s, "preset", "trl"), RT_OK);
    cr_assert(s.beta == 0.1 && s.sft_weight == 1.0, "preset resets the other fields");
    orpo_config o = orpo_config_default();
    cr_assert(o.beta == 0.1);
    kto_config k = kto_config_default();
    cr_assert(k.beta == 0.1 && k.desirable_weight == 1 && k.undesirable_weight == 1 && k.loss_type == KTO_KTO);
    bco_config b = bco_config_default();
    cr_assert(b.beta == 0.1 && b.update_running == 1 && b.min_density_ratio == 0.5 && b.max_density_ratio == 10);

    /* every table default formats to what the default config holds */
    size_t n;
    const prefx_setting *tab = kto_settings(&n);
    cr_assert_eq(n, 4);
    cr_assert_str_eq(prefx_setting_format(&k, &tab[3], buf, sizeof buf), "kto");
    cr_assert_str_eq(prefx_setting_format(&k, &tab[0], buf, sizeof buf), "0.1");
    tab = simpo_settings(&n);
    cr_assert_str_eq(prefx_setting_format(&s, &tab[0], buf, sizeof buf), "trl");

    /* errors: unknown key with a suggestion, bad value, out of range, bad choice */
    cr_assert_eq(kto_config_set(&k, "desirable_weigth", "1"), RT_ENOTFOUND);
    cr_assert(strstr(rt_last_error(), "did you mean 'desirable_weight'") != NULL, "%s", rt_last_error());
    cr_assert_eq(simpo_config_set(&s, "gama", "1"), RT_ENOTFOUND);
    cr_assert(strstr(rt_last_error(), "did you mean 'gamma'") != NULL, "%s", rt_last_error());
    cr_assert_eq(orpo_config_set(&o, "beta", "abc"), RT_EINVAL);
    cr_assert(strstr(rt_last_error(), "not a number") != NULL, "%s", rt_last_error());
    cr_assert_eq(orpo_config_set(&o, "beta", "0"), RT_EINVAL);
    cr_assert(strstr(rt_last_error(), "out of range") != NULL, "%s", rt_last_error());
    cr_assert_eq(kto_config_set(&k, "loss_type", "sigmoid"), RT_EINVAL);
    cr_assert(strstr(rt_last_error(), "kto, apo_zero_unpaired") != NULL, "%s", rt_last_error());
    cr_assert_eq(bco_config_set(&b, "update_running", "maybe"), RT_EINVAL);
    cr_assert_eq(orpo_config_set(&o, "lambda", "0.25"), RT_OK);
    cr_assert(o.beta == 0.25, "lambda is ORPO's beta");
    b.min_density_ratio = 20;
    cr_assert_eq(bco_config_check(&b), RT_EINVAL);
    cr_assert(strstr(rt_last_error(), "min_density_ratio") != NULL, "%s", rt_last_error());

    /* metric tables carry TRL's names */
    const prefx_metric *mt = kto_metric_table(&n);
    int found = 0;
    for (size_t j = 0; j < n; j++) found += strcmp(mt[j].name, "kl") == 0 || strcmp(mt[j].name, "rewards/margins") == 0;
    cr_assert_eq(found, 2);
    mt = bco_metric_table(&n);
    cr_assert_str_eq(mt[1].name, "delta");
    bco_metrics bm = {.delta = 0.25};
    near(prefx_metric_value(&bm, &mt[1]), 0.25, 0, "metric value through the table");
    mt = orpo_metric_table(&n);
    cr_assert_str_eq(mt[n - 1].name, "log_odds_chosen");
    mt = simpo_metric_table(&n);
    cr_assert_str_eq(mt[3].name, "rewards/accuracies");
}
