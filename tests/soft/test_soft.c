/*
 * test_soft.c -- SofT-GRPO soft tokens (losses/soft.h) and D3S down-sampling
 * (losses/d3s.h) against the worked examples of specs/pg_losses.md: EX-S
 * (section 4.8) and EX-D (section 5.7), float64 to 1e-6, gradients included;
 * a torch 1.13 float64 autograd transcription of the reference function
 * logprobs_from_logits_topk_gumbel on random inputs; central finite
 * differences; the float32 path; the edge cases of sections 4.7 and 5.6; and
 * Gumbel draws reproducible from a seed. Few Test()s: each pays libtorch's
 * start-up.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d3s.h"
#include "soft.h"
#include "tensor.h"

static void near(double got, double want, double tol, const char *what)
{
    cr_assert(fabs(got - want) <= tol, "%s: got %.9f, want %.9f (tol %g)", what, got, want, tol);
}

static rt_tensor *tensor_of(rt_scope *S, const double *v, const int64_t *shape, int ndim, rt_dtype dt)
{
    rt_tensor *x = rt_from_data(S, v, shape, ndim, RT_OPTS(RT_F64));
    cr_assert(x != NULL, "%s", rt_last_error());
    return dt == RT_F64 ? x : rt_to_dtype(S, x, dt);
}

static rt_tensor *ids_of(rt_scope *S, const int64_t *v, const int64_t *shape, int ndim)
{
    rt_tensor *x = rt_from_data(S, v, shape, ndim, RT_OPTS(RT_I64));
    cr_assert(x != NULL, "%s", rt_last_error());
    return x;
}

static void to_host(const rt_tensor *t, double *out, int64_t n)
{
    cr_assert(t != NULL, "%s", rt_last_error());
    cr_assert_eq(rt_numel(t), n, "numel %lld, expected %lld", (long long)rt_numel(t), (long long)n);
    cr_assert_eq(rt_to_data(t, RT_F64, out, (size_t)n * sizeof *out), RT_OK, "%s", rt_last_error());
}

static void to_host_i64(const rt_tensor *t, int64_t *out, int64_t n)
{
    cr_assert(t != NULL, "%s", rt_last_error());
    cr_assert_eq(rt_numel(t), n);
    cr_assert_eq(rt_to_data(t, RT_I64, out, (size_t)n * sizeof *out), RT_OK, "%s", rt_last_error());
}

static void near_vec(const double *got, const double *want, int64_t n, double tol, const char *what)
{
    for (int64_t i = 0; i < n; i++) {
        char buf[96];
        snprintf(buf, sizeof buf, "%s[%lld]", what, (long long)i);
        near(got[i], want[i], tol, buf);
    }
}

/* ---- EX-S (section 4.8) ---------------------------------------------- */

/* actor/rollout logits of ids 10..17 (ids 0..9 get -1e4: probability 0) */
static const double EXS_Z[8] = {2.0, 1.5, 0.3, 0.1, -0.5, -1.0, -2.0, -3.0};
static const double EXS_EPS[5] = {0.3, -0.5, 1.2, 2.0, -1.0}; /* candidate order 10..14 */
/* stored order ids [10,13,12,11,14]: logits and g' as the spec prints them */
static const int64_t EXS_IDS[5] = {10, 13, 12, 11, 14};
static const double EXS_L_OLD[5] = {2.0, 0.1, 0.3, 1.5, -0.5};
static const double EXS_L_NEW[5] = {2.0, 0.1, 0.3, 1.9, -0.5};
static const double EXS_G[5] = {-0.362058, -0.562047, -1.16205, -1.662057, -14.815511};

static void exs_vocab(double *v18, int raise_11)
{
    for (int i = 0; i < 10; i++) v18[i] = -1e4;
    for (int i = 0; i < 8; i++) v18[10 + i] = EXS_Z[i];
    if (raise_11) v18[11] = 1.9;
}

Test(soft, ex_s_rollout_and_inputs)
{
    rt_scope *S = rt_scope_new();
    soft_config c = soft_config_default();
    double v18[18];
    exs_vocab(v18, 0);
    int64_t s_1v[2] = {1, 18}, s_1k[2] = {1, 5};
    rt_tensor *logits = tensor_of(S, v18, s_1v, 2, RT_F64);
    rt_tensor *eps = tensor_of(S, EXS_EPS, s_1k, 2, RT_F64);

    soft_token tok;
    cr_assert_eq(soft_rollout(S, &c, logits, eps, NULL, &tok), RT_OK, "%s", rt_last_error());
    int64_t ids[5], em;
    double h[5];
    to_host_i64(tok.ids, ids, 5);
    for (int j = 0; j < 5; j++) cr_assert_eq(ids[j], EXS_IDS[j], "stored id %d: %lld", j, (long long)ids[j]);
    to_host_i64(tok.emitted, &em, 1);
    cr_assert_eq(em, 10);
    /* l_roll = log(p~ + 1e-6), p~ after top-k 5 and top-p 0.95 (id 14 dropped), stored order */
    static const double ell[5] = {-0.662058416, -2.562047393, -2.362049742, -1.162057159, -13.815510558};
    to_host(tok.cand_logp, h, 5);
    near_vec(h, ell, 5, 1e-8, "l_roll");
    static const double gp[5] = {-0.362058416, -0.562047393, -1.162049742, -1.662057159, -14.815510558};
    to_host(tok.gumbels, h, 5);
    near_vec(h, gp, 5, 1e-8, "g'");
    static const double y[5] = {0.8805235589499495, 0.1191790423822225, 0.0002954083695015578,
                                1.990298326184534e-06, 1.4934678716759815e-63};
    to_host(tok.weights, h, 5);
    near_vec(h, y, 5, 1e-9, "y'");
    cr_assert(fabs(h[4] / y[4] - 1) < 1e-6, "y'[4] = %g", h[4]);
    static const double eps_sorted[5] = {0.3, 2.0, 1.2, -0.5, -1.0};
    to_host(tok.noise, h, 5);
    near_vec(h, eps_sorted, 5, 0, "eps (stored order)");
    to_host(tok.rollout_logp, h, 1);
    near(h[0], -1.456517, 1e-6, "rollout-reported logp");

    /* mixed embedding (weighted_forward): table E[v,d] = sin(v + 0.1 d);
     * reference from the torch transcription (tools: /usr/bin/python3) */
    double tab[18 * 3];
    for (int v = 0; v < 18; v++)
        for (int d = 0; d < 3; d++) tab[v * 3 + d] = sin(v + 0.1 * d);
    int64_t s_vd[2] = {18, 3};
    rt_tensor *table = tensor_of(S, tab, s_vd, 2, RT_F64);
    static const double emb[3] = {-0.429108798, -0.489902455, -0.545801169};
    to_host(soft_mix_embedding(S, table, tok.ids, tok.weights), h, 3);
    near_vec(h, emb, 3, 1e-9, "soft embedding");

    /* training input (4.2): row 0 the stored soft token, row 1 a discrete
     * position [10,0,0,0,0] whose unused g' is NaN */
    int64_t ids2[10] = {10, 13, 12, 11, 14, 10, 0, 0, 0, 0}, s_2k[2] = {2, 5};
    double g2[10];
    cr_assert_eq(rt_to_data(tok.gumbels, RT_F64, g2, sizeof(double) * 5), RT_OK);
    for (int j = 5; j < 10; j++) g2[j] = NAN;
    rt_tensor *I2 = ids_of(S, ids2, s_2k, 2), *G2 = tensor_of(S, g2, s_2k, 2, RT_F64);
    rt_tensor *disc = soft_is_discrete(S, I2);
    uint8_t db[2];
    cr_assert_eq(rt_to_data(disc, RT_U8, db, 2), RT_OK);
    cr_assert(db[0] == 0 && db[1] == 1, "is_discrete = [%d, %d]", db[0], db[1]);
    double w2[10];
    to_host(soft_input_weights(S, &c, I2, G2), w2, 10);
    near_vec(w2, y, 5, 1e-9, "training weights (soft row)");
    static const double onehot[5] = {1, 0, 0, 0, 0};
    near_vec(w2 + 5, onehot, 5, 0, "training weights (discrete row)");
    rt_tensor *e2 = soft_input_embeds(S, &c, table, I2, G2);
    cr_assert_eq(rt_requires_grad(e2), 0, "input embeddings must be detached");
    double he[6];
    to_host(e2, he, 6);
    near_vec(he, emb, 3, 1e-9, "input embeds (soft row)");
    near_vec(he + 3, tab + 30, 3, 0, "input embeds (discrete row) = E[10]");

    /* reproducible Gumbel draws: same seed, same soft tokens; other seed differs */
    double ga[5], gb[5], gc[5], na[5];
    for (int run = 0; run < 3; run++) {
        rt_gen *gen = rt_gen_new(run == 2 ? 7 : 1234);
        soft_token t2;
        cr_assert_eq(soft_rollout(S, &c, logits, NULL, gen, &t2), RT_OK, "%s", rt_last_error());
        to_host(t2.gumbels, run == 0 ? ga : run == 1 ? gb : gc, 5);
        if (run == 0) {
            double lr[5];
            to_host(t2.noise, na, 5);
            to_host(t2.cand_logp, lr, 5);
            for (int j = 0; j < 5; j++) {
                cr_assert(na[j] >= -1.5 && na[j] <= 3.0, "noise %g outside the clamp", na[j]);
                near(ga[j], lr[j] + na[j], 1e-12, "g' = l_roll + eps");
            }
        }
        rt_gen_free(gen);
    }
    near_vec(gb, ga, 5, 0, "same seed, same g'");
    int differ = 0;
    for (int j = 0; j < 5; j++) differ |= ga[j] != gc[j];
    cr_assert(differ, "seeds 1234 and 7 gave the same draws");
    rt_gen *gen = rt_gen_new(99);
    int64_t s_n[1] = {2000};
    double *nz = malloc(2000 * sizeof *nz);
    to_host(soft_gumbel_noise(S, &c, s_n, 1, gen, RT_F64), nz, 2000);
    int lo_hits = 0;
    for (int i = 0; i < 2000; i++) {
        cr_assert(nz[i] >= -1.5 && nz[i] <= 3.0, "noise %g outside [-1.5, 3]", nz[i]);
        lo_hits += nz[i] == -1.5;
    }
    cr_assert(lo_hits > 0, "no draw reached the lower clamp in 2000 (P(G < -1.5) = 1.1%%)");
    free(nz);
    rt_gen_free(gen);
    /* rows are independent: row 1 mirrors the vocabulary (id v -> 27 - v) */
    double v2[36], e2x[10];
    memcpy(v2, v18, sizeof v18);
    for (int v = 0; v < 18; v++) v2[18 + v] = v < 10 ? -1e4 : v18[27 - v];
    memcpy(e2x, EXS_EPS, sizeof EXS_EPS);
    memcpy(e2x + 5, EXS_EPS, sizeof EXS_EPS);
    int64_t s_2v[2] = {2, 18}, i2r[10];
    soft_token t2r;
    cr_assert_eq(soft_rollout(S, &c, tensor_of(S, v2, s_2v, 2, RT_F64), tensor_of(S, e2x, s_2k, 2, RT_F64), NULL,
                              &t2r), RT_OK, "%s", rt_last_error());
    to_host_i64(t2r.ids, i2r, 10);
    for (int j = 0; j < 5; j++) cr_assert(i2r[j] == EXS_IDS[j] && i2r[5 + j] == 27 - EXS_IDS[j], "row-wise ids");
    double g2r[10];
    to_host(t2r.gumbels, g2r, 10);
    near_vec(g2r + 5, g2r, 5, 1e-12, "row-wise g' (softmax sums in another order)");
    near_vec(g2r, gp, 5, 1e-8, "row 0 g'");
    cr_assert_eq(soft_rollout(S, &c, logits, NULL, NULL, &tok), RT_EINVAL, "no noise and no generator");
    cr_assert(strstr(rt_last_error(), "generator") != NULL, "%s", rt_last_error());

    /* K = 1: the single candidate is the argmax; every position reads as discrete */
    soft_config c1 = soft_config_default();
    cr_assert_eq(soft_config_set(&c1, "top_k", "1"), RT_OK, "%s", rt_last_error());
    rt_gen *g1 = rt_gen_new(5);
    cr_assert_eq(soft_rollout(S, &c1, logits, NULL, g1, &tok), RT_OK, "%s", rt_last_error());
    rt_gen_free(g1);
    to_host_i64(tok.ids, ids, 1);
    cr_assert_eq(ids[0], 10);
    to_host(tok.weights, h, 1);
    near(h[0], 1.0, 0, "K=1 weight");
    cr_assert_eq(rt_to_data(soft_is_discrete(S, tok.ids), RT_U8, db, 1), RT_OK);
    cr_assert_eq(db[0], 1, "K = 1 is discrete by the sentinel rule");
    rt_scope_free(S);
}

/* logp (and the gradient of sum(logp) into grad) of soft_logp on [R,K] */
static double soft_eval(const soft_config *c, const double *L, const double *G, int64_t R, int64_t K, rt_dtype dt,
                        double *logp, double *grad, soft_metrics *m)
{
    rt_scope *S = rt_scope_new();
    int64_t shape[2] = {R, K};
    rt_tensor *x = tensor_of(S, L, shape, 2, dt), *g = tensor_of(S, G, shape, 2, dt);
    if (grad) cr_assert_eq(rt_set_requires_grad(x, 1), RT_OK);
    size_t before = rt_scope_count(S);
    rt_tensor *lp = soft_logp(S, c, x, g, m);
    cr_assert(lp != NULL, "%s", rt_last_error());
    cr_assert_eq(rt_scope_count(S), before + 1, "soft_logp left extra handles in the caller's scope");
    cr_assert_eq(rt_dtype_of(lp), dt);
    if (logp) to_host(lp, logp, R);
    double total = rt_item(rt_sum(S, lp, RT_DIM_ALL, 0));
    if (grad) {
        cr_assert_eq(rt_backward(rt_sum(S, lp, RT_DIM_ALL, 0)), RT_OK, "%s", rt_last_error());
        to_host(rt_grad(S, x), grad, R * K);
    }
    rt_scope_free(S);
    return total;
}

Test(soft, ex_s_logp_gradients_edges)
{
    soft_config c = soft_config_default();
    soft_metrics m;
    double lp[3], gr[32];

    /* old policy: -1.469286 and the autograd gradient (spec, stored order) */
    soft_eval(&c, EXS_L_OLD, EXS_G, 1, 5, RT_F64, lp, gr, &m);
    near(lp[0], -1.469286, 1e-6, "logp_old");
    static const double g_old[5] = {-0.087106, 0.193693, 0.148634, -0.242133, -0.013086};
    near_vec(gr, g_old, 5, 1e-6, "d logp_old / d logits (ids 10,13,12,11,14)");
    near(m.count, 1, 0, "count");
    near(m.kept_mean, 4, 0, "M (id 14 has l < -3)");
    near(m.clamp_frac, 0, 0, "no kept component clamped");
    near(m.empty_rows, 0, 0, "empty rows");
    double old = lp[0];
    /* new policy: logit of id 11 raised to 1.9 */
    soft_eval(&c, EXS_L_NEW, EXS_G, 1, 5, RT_F64, lp, NULL, NULL);
    near(lp[0], -1.589254, 1e-6, "logp_new");
    double ratio = exp(lp[0] - old);
    near(ratio, 0.886949, 1e-6, "ratio");
    double clipped = fmin(fmax(ratio, 0.8), 1.2);
    near(-fmin(ratio * 1.0, clipped * 1.0), -0.886949, 1e-6, "PPO-clip token loss, A = +1");
    near(-fmin(ratio * -1.0, clipped * -1.0), 0.886949, 1e-6, "PPO-clip token loss, A = -1");

    /* float32 path */
    soft_eval(&c, EXS_L_OLD, EXS_G, 1, 5, RT_F32, lp, gr, NULL);
    near(lp[0], -1.469286, 1e-5, "logp_old float32");
    near_vec(gr, g_old, 5, 1e-5, "gradient float32");

    /* torch 1.13 float64 autograd transcription of logprobs_from_logits_topk_gumbel
     * (torch.manual_seed(0); A = randn(3,6); G = randn(3,6) - 1; T = 0.7):
     * values and d sum(logp) / d A hard-coded from that run */
    static const double RA[18] = {-2.310411800234176, -0.3732508612577643, -1.2609246557194385, -0.726951062065411,
                                  -0.019964750907762653, 0.2102998901016947, 0.17718935139366584, -0.830510051008449,
                                  0.23871805816817063, 0.7335283685272841, -0.7730112772958181, -1.5951814880783068,
                                  -0.6870036940435463, 1.4880743158106724, -0.4484158047114511, -0.8910030351707375,
                                  0.6748575435940039, 1.0468653769814655};
    static const double RG[18] = {-1.009446277892508, -2.2176877791068703, -1.5872225983598791, 1.832104167511146,
                                  -0.09600263103988782, -0.05216346756767898, -2.04188285970033, -0.026386978952088858,
                                  -1.0744194473309334, -0.1346102921351222, -1.2750349191921615, -0.11341036990875397,
                                  0.48574162993321846, -1.007855617400548, -1.7636636594872876, 0.3249432931154599,
                                  -0.9416252294684875, -2.001669002834238};
    static const double R_LP[3] = {-1.7370415179001415, -1.3077920467818744, -1.2223074245167584};
    static const double R_GR[18] = {-0.002755207372395676, -0.24223437546392268, -0.012338939322493631,
                                    -0.026458553238104983, 0.17423013132284373, 0.10955694407407326,
                                    -0.28422401589978674, -0.01835274424278753, 0.03858615408500804,
                                    0.0003355647150695431, 0.2698108205314478, -0.006155779188951106,
                                    0.008224048563625044, 0.0032962197857355144, 0.01156406512347749,
                                    0.006144976898565592, 0.3413709825919096, -0.3706002929633132};
    soft_config c7 = soft_config_default();
    cr_assert_eq(soft_config_set(&c7, "temperature", "0.7"), RT_OK, "%s", rt_last_error());
    soft_eval(&c7, RA, RG, 3, 6, RT_F64, lp, gr, NULL);
    near_vec(lp, R_LP, 3, 1e-9, "random logp vs torch");
    near_vec(gr, R_GR, 18, 1e-9, "random gradient vs torch");
    /* central finite differences of sum(logp), h = 1e-6 */
    double x[18];
    memcpy(x, RA, sizeof x);
    for (int i = 0; i < 18; i++) {
        x[i] = RA[i] + 1e-6;
        double fp = soft_eval(&c7, x, RG, 3, 6, RT_F64, NULL, NULL, NULL);
        x[i] = RA[i] - 1e-6;
        double fm = soft_eval(&c7, x, RG, 3, 6, RT_F64, NULL, NULL, NULL);
        x[i] = RA[i];
        char what[48];
        snprintf(what, sizeof what, "finite difference [%d]", i);
        near(gr[i], (fp - fm) / 2e-6, 1e-6, what);
    }

    /* M = 0 (K = 30 equal logits: q = 1/30, log q = -3.40 < -3): 0, zero gradient */
    double L30[30] = {0}, G30[30];
    for (int j = 0; j < 30; j++) G30[j] = -3.0 + 0.1 * j;
    soft_eval(&c, L30, G30, 1, 30, RT_F64, lp, gr, &m);
    near(lp[0], 0, 0, "M = 0 -> logp 0");
    for (int j = 0; j < 30; j++) near(gr[j], 0, 0, "M = 0 -> zero gradient");
    near(m.empty_rows, 1, 0, "empty row counted");
    /* K = 1: q = 1, logp = d(clamp(g' - log(1 + 1e-6))), no gradient */
    double l1 = 0.7, g1 = 0.5;
    soft_eval(&c, &l1, &g1, 1, 1, RT_F64, lp, gr, NULL);
    double z1 = g1 - log1p(1e-6);
    near(lp[0], -z1 - exp(-z1), 1e-12, "K = 1 logp");
    near(gr[0], 0, 1e-12, "K = 1 gradient");
    /* a clamped component: z = 5 -> 3, gets no gradient and is counted */
    double lc[2] = {0.0, 0.0}, gc[2] = {5.0 + log(0.5 + 1e-6), 0.0};
    soft_eval(&c, lc, gc, 1, 2, RT_F64, lp, gr, &m);
    near(m.clamp_frac, 0.5, 0, "clamp_frac");
    cr_assert(isfinite(lp[0]) && isfinite(gr[0]) && isfinite(gr[1]));

    /* assembly (4.4): B = 1, T = 3 positions under the NEW logits:
     * t0 soft (EX-S stored ids and g'), t1 discrete [10,0,0,0,0], t2 padding
     * (soft by the sentinel rule; the mask drops it later) */
    rt_scope *S = rt_scope_new();
    double v18[18], logits[3 * 18];
    exs_vocab(v18, 1);
    for (int t = 0; t < 3; t++) memcpy(logits + 18 * t, v18, sizeof v18);
    int64_t ids[15] = {10, 13, 12, 11, 14, 10, 0, 0, 0, 0, 17, 17, 17, 17, 17};
    double g[15] = {0};
    memcpy(g, EXS_G, sizeof EXS_G);
    for (int j = 10; j < 15; j++) g[j] = 17.0; /* the reference pads g' with pad_token_id */
    int64_t s_btv[3] = {1, 3, 18}, s_btk[3] = {1, 3, 5};
    rt_tensor *X = tensor_of(S, logits, s_btv, 3, RT_F64);
    cr_assert_eq(rt_set_requires_grad(X, 1), RT_OK);
    rt_tensor *lps = soft_logps_from_logits(S, &c, X, ids_of(S, ids, s_btk, 3), tensor_of(S, g, s_btk, 3, RT_F64), &m);
    double h3[3];
    to_host(lps, h3, 3);
    near(h3[0], -1.589254, 1e-6, "assembled soft position");
    near(h3[1], -0.872972, 1e-6, "assembled discrete position (log-softmax of id 10)");
    cr_assert(isfinite(h3[2]), "padding position is finite");
    near(m.count, 2, 0, "soft positions (t0 and the padding)");
    near(m.soft_frac, 2.0 / 3.0, 1e-12, "soft_frac");
    /* the gradient of the soft position touches only its 5 stored ids */
    cr_assert_eq(rt_backward(rt_select(S, rt_select(S, lps, 0, 0), 0, 0)), RT_OK, "%s", rt_last_error());
    double gx[54];
    to_host(rt_grad(S, X), gx, 54);
    for (int v = 0; v < 18; v++)
        if (v < 10 || v > 14) near(gx[v], 0, 0, "no gradient outside the stored ids");
    for (int j = 18; j < 54; j++) near(gx[j], 0, 0, "no gradient into other positions");

    /* soft_mixed_logps: NaN stored in a discrete row's topk logits/g' and in
     * the discrete log-prob of the soft row leak into neither value nor gradient */
    double tk[10], gg[10], dl[2] = {NAN, -0.5};
    memcpy(tk, EXS_L_OLD, sizeof EXS_L_OLD);
    memcpy(gg, EXS_G, sizeof EXS_G);
    for (int j = 5; j < 10; j++) tk[j] = gg[j] = NAN;
    int64_t s_2k[2] = {2, 5}, s_2[1] = {2};
    rt_tensor *TK = tensor_of(S, tk, s_2k, 2, RT_F64), *DL = tensor_of(S, dl, s_2, 1, RT_F64);
    cr_assert_eq(rt_set_requires_grad(TK, 1), RT_OK);
    cr_assert_eq(rt_set_requires_grad(DL, 1), RT_OK);
    uint8_t smask[2] = {1, 0};
    rt_tensor *SM = rt_compare_scalar(S, rt_from_data(S, smask, s_2, 1, RT_OPTS(RT_U8)), RT_NE, 0.0);
    rt_tensor *mx = soft_mixed_logps(S, &c, SM, TK, tensor_of(S, gg, s_2k, 2, RT_F64), DL, NULL);
    double hm[2];
    to_host(mx, hm, 2);
    near(hm[0], -1.469286, 1e-6, "mixed: soft row");
    near(hm[1], -0.5, 0, "mixed: discrete row");
    cr_assert_eq(rt_backward(rt_sum(S, mx, RT_DIM_ALL, 0)), RT_OK, "%s", rt_last_error());
    double gtk[10], gdl[2];
    to_host(rt_grad(S, TK), gtk, 10);
    to_host(rt_grad(S, DL), gdl, 2);
    near_vec(gtk, g_old, 5, 1e-6, "mixed: soft-row gradient");
    for (int j = 5; j < 10; j++) near(gtk[j], 0, 0, "mixed: discrete row's topk gets exactly 0");
    near(gdl[0], 0, 0, "mixed: soft row's discrete logp gets exactly 0");
    near(gdl[1], 1, 0, "mixed: discrete row's gradient");

    /* errors name the argument and the shapes */
    int64_t s_14[2] = {1, 4};
    cr_assert_null(soft_logp(S, &c, TK, tensor_of(S, gg, s_14, 2, RT_F64), NULL));
    cr_assert(strstr(rt_last_error(), "gumbels") && strstr(rt_last_error(), "[1, 4]"), "%s", rt_last_error());
    cr_assert_eq(soft_config_set(&c, "tau_g", "0"), RT_EINVAL);
    cr_assert(strstr(rt_last_error(), "tau_g"), "%s", rt_last_error());
    cr_assert_eq(soft_config_set(&c, "tau", "1"), RT_ENOTFOUND);
    cr_assert(strstr(rt_last_error(), "tau_g"), "unknown setting lists the valid ones: %s", rt_last_error());
    rt_scope_free(S);
}

/* ---- EX-D (section 5.7) ---------------------------------------------- */

/* verl GRPO advantages, groups of G, std with ddof 1, + 1e-6 */
static void exd_advantages(double *A)
{
    static const double R[12] = {1, 0, 0, 0, 1, 1, 0, 1, 1, 1, 1, 1};
    for (int g = 0; g < 12; g += 4) {
        double m = 0, v = 0;
        for (int i = 0; i < 4; i++) m += R[g + i] / 4;
        for (int i = 0; i < 4; i++) v += (R[g + i] - m) * (R[g + i] - m) / 3;
        for (int i = 0; i < 4; i++) A[g + i] = (R[g + i] - m) / (sqrt(v) + 1e-6);
    }
}

static void expect_set(const uint8_t *keep, int64_t n, const int *want, int nwant, const char *what)
{
    uint8_t w[64] = {0};
    for (int i = 0; i < nwant; i++) w[want[i]] = 1;
    for (int64_t i = 0; i < n; i++)
        cr_assert_eq(keep[i], w[i], "%s: element %lld is %s", what, (long long)i, keep[i] ? "kept" : "dropped");
}

Test(d3s, ex_d_and_edges)
{
    double A[12];
    exd_advantages(A);
    near(A[0], 1.499997, 1e-6, "A[0]");
    near(A[1], -0.499999, 1e-6, "A[1]");
    near(A[6], -1.499997, 1e-6, "A[6]");
    near(A[8], 0, 0, "A[8]");
    uint8_t keep[64];
    int64_t idx[12];
    double var;

    /* intra-group, N_s = 2: {0,1}, {4,6}, group 2 skipped (all zero) */
    cr_assert_eq(d3s_select_intra(A, 12, 4, 2, keep), 4);
    expect_set(keep, 12, (const int[]){0, 1, 4, 6}, 4, "intra N=2");
    cr_assert_eq(d3s_maxvar_subset(A, 4, 2, idx, &var), 2);
    near(var, 1.0, 1e-5, "Var group 0");
    cr_assert_eq(d3s_maxvar_subset(A + 4, 4, 2, idx, &var), 2);
    near(var, 1.0, 1e-5, "Var group 1");
    cr_assert_eq(d3s_maxvar_subset(A + 8, 4, 2, idx, &var), 0, "all-zero group selects nothing");
    near(var, 0, 0, "Var group 2");

    /* cross-group over all 12 */
    cr_assert_eq(d3s_maxvar_subset(A, 12, 12, idx, &var), 12);
    near(var, 0.5, 1e-5, "Var of all 12");
    cr_assert_eq(d3s_select_cross(A, NULL, 12, 4, keep), 4);
    expect_set(keep, 12, (const int[]){0, 1, 6, 7}, 4, "cross N=4 (tie rule: the spec's {0,1,6,7})");
    cr_assert_eq(d3s_maxvar_subset(A, 12, 4, idx, &var), 4);
    near(var, 1.25, 1e-5, "Var N=4");
    cr_assert_eq(d3s_select_cross(A, NULL, 12, 6, keep), 6);
    expect_set(keep, 12, (const int[]){0, 1, 2, 5, 6, 7}, 6, "cross N=6");
    cr_assert_eq(d3s_maxvar_subset(A, 12, 6, idx, &var), 6);
    near(var, 0.916667, 1e-5, "Var N=6");

    /* the extremes rule against brute force on random sets (n <= 9) */
    unsigned seed = 12345;
    for (int trial = 0; trial < 200; trial++) {
        double v[9];
        int n = 2 + trial % 8, s = 1 + trial % n;
        for (int i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            v[i] = (double)((seed >> 16) % 7) - 3.0; /* small integers: many ties */
        }
        double best = 0;
        for (unsigned mask = 0; mask < (1u << n); mask++) {
            int bits = 0;
            for (int i = 0; i < n; i++) bits += (int)(mask >> i & 1);
            if (bits != s) continue;
            double m = 0, q = 0;
            for (int i = 0; i < n; i++)
                if (mask >> i & 1) m += v[i] / s;
            for (int i = 0; i < n; i++)
                if (mask >> i & 1) q += (v[i] - m) * (v[i] - m) / s;
            if (q > best) best = q;
        }
        int all0 = 1;
        for (int i = 0; i < n; i++) all0 &= v[i] == 0;
        int64_t got = d3s_maxvar_subset(v, n, s, idx, &var);
        cr_assert_eq(got, all0 ? 0 : s);
        if (!all0) near(var, best, 1e-12, "brute-force max variance");
    }

    /* token level on the N = 4 selection {0,1,4,6}; other samples carry large
     * entropies the sample mask must exclude, padding carries NaN */
    double H[12 * 4], Bv[12 * 4];
    uint8_t M[12 * 4], samp[12] = {0};
    for (int i = 0; i < 48; i++) H[i] = 9.9, M[i] = 1;
    static const double h0[4] = {0.1, 2.0, 0.5, 1.0}, h1[3] = {1.5, 0.3, 0.0}, h4[2] = {0.7, 0.9},
                        h6[4] = {2.5, 0.05, 0.4, 0.6};
    memcpy(H + 0, h0, sizeof h0);
    memcpy(H + 4, h1, sizeof h1);
    H[7] = NAN, M[7] = 0;
    memcpy(H + 16, h4, sizeof h4);
    H[18] = H[19] = NAN, M[18] = M[19] = 0;
    memcpy(H + 24, h6, sizeof h6);
    samp[0] = samp[1] = samp[4] = samp[6] = 1;
    uint8_t tk[48];
    cr_assert_eq(d3s_select_tokens(A, 0, H, M, samp, 12, 4, 0.2, tk), 3);
    expect_set(tk, 48, (const int[]){24, 1, 3}, 3, "tokens K=20%: (6,0) (0,1) (0,3)");
    cr_assert_eq(d3s_select_tokens(A, 0, H, M, samp, 12, 4, 0.5, tk), 7);
    expect_set(tk, 48, (const int[]){24, 1, 3, 27, 4, 2, 26}, 7,
               "tokens K=50%: (6,0) (0,1) (0,3) (6,3) (1,0) (0,2) (6,2)");
    cr_assert_eq(d3s_select_tokens(A, 0, H, M, samp, 12, 4, 1.0, tk), 13, "K=100%: every candidate token");
    cr_assert_eq(d3s_select_tokens(A, 0, H, M, samp, 12, 4, 0.0, tk), 0, "K=0: nothing");
    for (int i = 0; i < 48; i++) Bv[i] = A[i / 4]; /* per-token advantages: same answer */
    cr_assert_eq(d3s_select_tokens(Bv, 1, H, M, samp, 12, 4, 0.5, tk), 7);
    expect_set(tk, 48, (const int[]){24, 1, 3, 27, 4, 2, 26}, 7, "per-token advantages");

    /* schedule: N 4 -> 12, K 0.2 -> 1.0 over 100 steps */
    d3s_config cfg = d3s_config_default();
    cfg.group_size = 4, cfg.n_init = 4, cfg.n_final = 12, cfg.k_init = 0.2, cfg.k_final = 1.0, cfg.total_steps = 100;
    cr_assert_eq(d3s_config_check(&cfg), RT_OK);
    static const int64_t steps[6] = {0, 25, 50, 100, 250, -3}, ns[6] = {4, 6, 8, 12, 12, 4};
    static const double ks[6] = {0.2, 0.4, 0.6, 1.0, 1.0, 0.2};
    for (int i = 0; i < 6; i++) {
        d3s_plan p = d3s_schedule(&cfg, steps[i]);
        cr_assert_eq(p.n_samples, ns[i], "N at step %lld: %lld", (long long)steps[i], (long long)p.n_samples);
        near(p.token_frac, ks[i], 1e-12, "K(p)");
    }

    /* tensor front ends */
    rt_scope *S = rt_scope_new();
    int64_t s12[1] = {12}, s124[2] = {12, 4};
    rt_tensor *At = tensor_of(S, A, s12, 1, RT_F32);
    d3s_stats st;
    rt_tensor *sm = d3s_sample_mask(S, &cfg, 0, At, &st);
    cr_assert(sm != NULL, "%s", rt_last_error());
    cr_assert_eq(rt_dtype_of(sm), RT_BOOL);
    cr_assert_eq(rt_to_data(sm, RT_U8, keep, 12), RT_OK);
    expect_set(keep, 12, (const int[]){0, 1, 6, 7}, 4, "sample mask step 0");
    near(st.samples_kept, 4, 0, "samples kept");
    near(st.adv_var, 1.25, 1e-5, "Var of the selection");
    cr_assert_eq(rt_to_data(d3s_sample_mask(S, &cfg, 25, At, NULL), RT_U8, keep, 12), RT_OK);
    expect_set(keep, 12, (const int[]){0, 1, 2, 5, 6, 7}, 6, "sample mask step 25");
    d3s_config ci = cfg;
    ci.n_intra = 2; /* intra first, then cross among the survivors */
    cr_assert_eq(rt_to_data(d3s_sample_mask(S, &ci, 0, At, NULL), RT_U8, keep, 12), RT_OK);
    expect_set(keep, 12, (const int[]){0, 1, 4, 6}, 4, "intra then cross");
    rt_tensor *Ht = tensor_of(S, H, s124, 2, RT_F64);
    rt_tensor *Mt = rt_compare_scalar(S, rt_from_data(S, M, s124, 2, RT_OPTS(RT_U8)), RT_NE, 0.0);
    rt_tensor *St = rt_compare_scalar(S, rt_from_data(S, samp, s12, 1, RT_OPTS(RT_U8)), RT_NE, 0.0);
    rt_tensor *tm = d3s_token_mask(S, tensor_of(S, A, s12, 1, RT_F64), Ht, Mt, St, 0.5, &st);
    cr_assert(tm != NULL, "%s", rt_last_error());
    cr_assert_eq(rt_to_data(tm, RT_U8, tk, 48), RT_OK);
    expect_set(tk, 48, (const int[]){24, 1, 3, 27, 4, 2, 26}, 7, "token mask tensor");
    near(st.tokens_kept, 7, 0, "tokens kept");
    near(st.tokens_total, 13, 0, "candidate tokens");

    /* edge cases (5.6) */
    double Z[6] = {0};
    cr_assert_eq(d3s_select_cross(Z, NULL, 6, 3, keep), 0, "all advantages 0: skip");
    rt_tensor *zm = d3s_sample_mask(S, &cfg, 0, tensor_of(S, Z, (const int64_t[]){6}, 1, RT_F64), &st);
    cr_assert(zm != NULL, "%s", rt_last_error());
    near(st.samples_kept, 0, 0, "nothing kept");
    cr_assert(isnan(st.adv_var), "empty selection has no variance");
    cr_assert_eq(d3s_select_cross(A, NULL, 12, 40, keep), 12, "N above the rollouts: all");
    cr_assert_eq(d3s_select_cross(A, NULL, 12, 0, keep), 0, "N = 0: none");
    uint8_t none[12] = {0};
    cr_assert_eq(d3s_select_tokens(A, 0, H, M, none, 12, 4, 0.5, tk), 0, "no selected sample: no token");
    cr_assert_eq(d3s_select_intra(A, 12, 5, 2, keep), RT_EINVAL);
    cr_assert(strstr(rt_last_error(), "G = 5"), "%s", rt_last_error());
    double withnan[3] = {1, NAN, 0};
    cr_assert_eq(d3s_maxvar_subset(withnan, 3, 2, idx, NULL), RT_ERR);
    cr_assert(strstr(rt_last_error(), "values[1]"), "%s", rt_last_error());
    cr_assert_null(d3s_token_mask(S, At, tensor_of(S, H, (const int64_t[]){48}, 1, RT_F64), NULL, NULL, 0.5, NULL));
    cr_assert(strstr(rt_last_error(), "entropy must be [B,T]"), "%s", rt_last_error());
    cfg.k_final = 1.5;
    cr_assert_eq(d3s_config_check(&cfg), RT_EINVAL);
    rt_scope_free(S);
}
