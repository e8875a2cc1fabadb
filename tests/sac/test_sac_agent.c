/*
 * test_sac_agent.c -- the trainer's SAC agent (trainer/sac_agent.h), whose
 * update is built from the fast paths (stacked twin critics through rt_mlp,
 * the fused squashed Gaussian, fused Adam, rt_lerp_many_), against a
 * reference update composed here the plain way: one set of separate leaf
 * parameters per network, rt_linear + rt_relu, sac_squashed_gaussian,
 * the losses of losses/sac.h, libtorch's Adam, rt_lerp_. Both start from the
 * agent's initial values and draw the same noise (the generator state is
 * copied), so one update must give the same losses and the same gradients
 * (float32, to rounding), for the recommended and the CleanRL conventions.
 * Also: state_dict names and shapes, the stacked storage behind the
 * per-critic views, every parameter moving, the Polyak step, determinism,
 * policy_frequency 2, the Discrete variant, and the input errors.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn.h"
#include "replay.h"
#include "sac.h"
#include "sac_agent.h"
#include "tensor.h"

enum { OBS = 3, ACT = 2, HID = 16, BATCH = 32, ROWS = 200 };

/* ---- helpers ------------------------------------------------------------ */

static sac_agent_config small_config(sac_reference ref, int64_t policy_frequency)
{
    sac_agent_config c = sac_agent_config_default();
    c.obs_dim = OBS;
    c.act_dim = ACT;
    c.act_low[0] = -1.0f, c.act_high[0] = 1.0f;
    c.act_low[1] = -2.0f, c.act_high[1] = 2.0f;
    c.hidden = HID;
    c.policy_lr = c.q_lr = c.alpha_lr = 1e-3;
    c.policy_frequency = policy_frequency;
    c.reference = ref;
    c.seed = 5;
    return c;
}

/* A replay buffer of ROWS random transitions (a few terminal). */
static rb *random_buffer(int64_t obs_dim, int64_t act_dim, int discrete_n, uint64_t seed)
{
    rb *b = rb_new(ROWS, obs_dim, act_dim);
    cr_assert(b != NULL, "%s", rt_last_error());
    rt_gen *g = rt_gen_new(seed);
    rt_scope *S = rt_scope_new();
    float obs[ROWS * 8], next[ROWS * 8], act[ROWS * 2], rew[ROWS];
    uint8_t term[ROWS], trunc[ROWS];
    int64_t so[2] = {ROWS, obs_dim}, sa[2] = {ROWS, act_dim}, sr[1] = {ROWS};
    cr_assert_eq(rt_to_data(rt_randn(S, so, 2, g, RT_OPTS(RT_F32)), RT_F32, obs, sizeof obs), RT_OK);
    cr_assert_eq(rt_to_data(rt_randn(S, so, 2, g, RT_OPTS(RT_F32)), RT_F32, next, sizeof next), RT_OK);
    rt_tensor *a = discrete_n ? rt_randint(S, 0, discrete_n, sa, 2, g, RT_OPTS(RT_F32))
                              : rt_add_scalar(S, rt_mul_scalar(S, rt_rand(S, sa, 2, g, RT_OPTS(RT_F32)), 2.0), -1.0);
    cr_assert_eq(rt_to_data(a, RT_F32, act, sizeof act), RT_OK, "%s", rt_last_error());
    cr_assert_eq(rt_to_data(rt_mul_scalar(S, rt_rand(S, sr, 1, g, RT_OPTS(RT_F32)), -10.0), RT_F32, rew, sizeof rew), RT_OK);
    for (int i = 0; i < ROWS; i++) {
        term[i] = i % 17 == 3;
        trunc[i] = 0;
    }
    cr_assert_eq(rb_add(b, ROWS, obs, next, act, rew, term, trunc), RT_OK, "%s", rt_last_error());
    rt_scope_free(S);
    rt_gen_free(g);
    return b;
}

/* |a - b| <= tol (1 + max |b|), a and b read as float64. */
static void expect_close(const rt_tensor *a, const rt_tensor *b, double tol, const char *what)
{
    cr_assert(a != NULL && b != NULL, "%s: missing (%s)", what, rt_last_error());
    cr_assert_eq(rt_numel(a), rt_numel(b), "%s: %lld vs %lld elements", what, (long long)rt_numel(a),
                 (long long)rt_numel(b));
    rt_scope *S = rt_scope_new();
    rt_tensor *bf = rt_reshape(S, rt_to_dtype(S, b, RT_F64), (int64_t[]){-1}, 1);
    rt_tensor *af = rt_reshape(S, rt_to_dtype(S, a, RT_F64), (int64_t[]){-1}, 1);
    double scale = rt_item(rt_max(S, rt_abs(S, bf), RT_DIM_ALL, 0, NULL));
    double d = rt_max_abs_diff(af, bf);
    cr_expect(d <= tol * (1.0 + scale), "%s: max difference %.3g (scale %.3g, tol %.3g)", what, d, scale, tol);
    rt_scope_free(S);
}

static void expect_near(double got, double want, double tol, const char *what)
{
    cr_expect(fabs(got - want) <= tol * (1.0 + fabs(want)), "%s: %.9g, want %.9g", what, got, want);
}

/* ---- the reference: separate leaves, plain ops, libtorch Adam ----------- */

typedef struct ref_net {
    nn_params *P; /* caller-owned leaves under the agent's names */
} ref_net;

typedef struct ref_agent {
    ref_net net[SAC_NET_COUNT];
    nn_params *qboth; /* q1.* q2.* aliases for one critic optimizer */
    rt_tensor *log_alpha;
    rt_optim *opt_actor, *opt_q, *opt_alpha;
    rt_gen *gen;
} ref_agent;

/* Leaves holding copies of the agent's current values, same names. */
static void ref_init(ref_agent *R, const sac_agent *A)
{
    memset(R, 0, sizeof *R);
    for (int k = 0; k < SAC_NET_COUNT; k++) {
        R->net[k].P = nn_params_new();
        const nn_params *src = A->P[k];
        for (size_t i = 0; i < nn_params_count(src); i++) {
            rt_tensor *t = rt_detach(NULL, rt_clone(NULL, nn_params_tensor(src, i)));
            cr_assert(t != NULL, "%s", rt_last_error());
            cr_assert_eq(rt_set_requires_grad(t, k < SAC_NET_Q1_TARGET), RT_OK);
            cr_assert_eq(nn_params_add(R->net[k].P, nn_params_name(src, i), t), RT_OK, "%s", rt_last_error());
        }
    }
    R->qboth = nn_params_new();
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < nn_params_count(R->net[SAC_NET_Q1 + k].P); i++) {
            char name[NN_NAME_MAX];
            snprintf(name, sizeof name, "q%d.%s", k + 1, nn_params_name(R->net[SAC_NET_Q1 + k].P, i));
            cr_assert_eq(nn_params_add(R->qboth, name, rt_alias(NULL, nn_params_tensor(R->net[SAC_NET_Q1 + k].P, i))),
                         RT_OK);
        }
    R->log_alpha = rt_detach(NULL, rt_clone(NULL, A->log_alpha));
    cr_assert_eq(rt_set_requires_grad(R->log_alpha, 1), RT_OK);
    rt_optim_opts o = rt_optim_defaults(RT_ADAM);
    o.lr = 1e-3;
    const nn_params *pa = R->net[SAC_NET_ACTOR].P;
    const char *la[1] = {"log_alpha"};
    R->opt_actor = rt_optim_new(RT_ADAM, nn_params_tensors(pa), nn_params_names(pa), nn_params_count(pa), &o);
    R->opt_q = rt_optim_new(RT_ADAM, nn_params_tensors(R->qboth), nn_params_names(R->qboth), nn_params_count(R->qboth), &o);
    R->opt_alpha = rt_optim_new(RT_ADAM, &R->log_alpha, la, 1, &o);
    cr_assert(R->opt_actor && R->opt_q && R->opt_alpha, "%s", rt_last_error());
    R->gen = rt_gen_new(0);
}

static void ref_free(ref_agent *R)
{
    rt_optim_free(R->opt_actor);
    rt_optim_free(R->opt_q);
    rt_optim_free(R->opt_alpha);
    for (int k = 0; k < SAC_NET_COUNT; k++) nn_params_free(R->net[k].P);
    nn_params_free(R->qboth);
    rt_free(R->log_alpha);
    rt_gen_free(R->gen);
}

static rt_tensor *P_(const ref_agent *R, int net, const char *name) { return nn_params_get(R->net[net].P, name); }

/* actor: body.0, body.2 with ReLU, then the mean and log_std heads */
static void ref_actor(rt_scope *S, const ref_agent *R, const rt_tensor *obs, rt_tensor **mean, rt_tensor **log_std)
{
    const int a = SAC_NET_ACTOR;
    rt_tensor *h = rt_relu(S, rt_linear(S, obs, P_(R, a, "body.0.weight"), P_(R, a, "body.0.bias")));
    h = rt_relu(S, rt_linear(S, h, P_(R, a, "body.2.weight"), P_(R, a, "body.2.bias")));
    *mean = rt_linear(S, h, P_(R, a, "mean.weight"), P_(R, a, "mean.bias"));
    *log_std = rt_linear(S, h, P_(R, a, "log_std.weight"), P_(R, a, "log_std.bias"));
}

static rt_tensor *ref_q(rt_scope *S, const ref_agent *R, int net, const rt_tensor *x)
{
    rt_tensor *h = rt_relu(S, rt_linear(S, x, P_(R, net, "net.0.weight"), P_(R, net, "net.0.bias")));
    h = rt_relu(S, rt_linear(S, h, P_(R, net, "net.2.weight"), P_(R, net, "net.2.bias")));
    return rt_squeeze(S, rt_linear(S, h, P_(R, net, "net.4.weight"), P_(R, net, "net.4.bias")), 1);
}

static rt_tensor *cat2(rt_scope *S, const rt_tensor *a, const rt_tensor *b)
{
    rt_tensor *p[2] = {(rt_tensor *)a, (rt_tensor *)b};
    return rt_cat(S, p, 2, 1);
}

static void ref_sample(rt_scope *S, ref_agent *R, const sac_agent *A, const rt_tensor *obs, rt_tensor **y, rt_tensor **logp)
{
    rt_tensor *mean, *log_std;
    ref_actor(S, R, obs, &mean, &log_std);
    sac_squash_inputs in = {mean, log_std, NULL, NULL, NULL};
    sac_squash_out out;
    cr_assert_eq(sac_squashed_gaussian(S, &A->squash_cfg, &in, R->gen, &out, NULL), RT_OK, "%s", rt_last_error());
    *y = out.squashed;
    *logp = out.logp;
}

/* What one reference update reports. */
typedef struct ref_result {
    sac_metrics critic, actor, alpha;
    rt_tensor *qgrad[2][6]; /* per critic: net.{0,2,4}.{weight,bias} gradients after the critic backward */
    rt_tensor *agrad[8];    /* actor gradients in P order after the actor backward */
    rt_tensor *lagrad;      /* log alpha's */
} ref_result;

/* One update of the continuous trainer order (policy_frequency 1, autotune),
 * with the batch b. Gradients are copied into S. */
static void ref_update(rt_scope *S, ref_agent *R, const sac_agent *A, const sac_batch *b, ref_result *out)
{
    double alpha = exp(rt_item(R->log_alpha));
    int g = rt_no_grad_begin();
    rt_tensor *an, *lpn;
    ref_sample(S, R, A, b->next_observations, &an, &lpn);
    rt_tensor *xn = cat2(S, b->next_observations, an);
    rt_tensor *q1n = ref_q(S, R, SAC_NET_Q1_TARGET, xn), *q2n = ref_q(S, R, SAC_NET_Q2_TARGET, xn);
    rt_grad_mode_restore(g);
    sac_config cc = A->critic_cfg;
    cc.alpha = alpha;
    sac_critic_inputs ci = {ref_q(S, R, SAC_NET_Q1, b->obs_act), ref_q(S, R, SAC_NET_Q2, b->obs_act), q1n, q2n, lpn,
                            b->rewards, b->dones};
    rt_tensor *qloss = sac_critic_loss(S, &cc, &ci, &out->critic, NULL);
    cr_assert(qloss != NULL, "%s", rt_last_error());
    cr_assert_eq(rt_optim_zero_grad(R->opt_q), RT_OK);
    cr_assert_eq(rt_backward(qloss), RT_OK, "%s", rt_last_error());
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 6; i++)
            out->qgrad[k][i] = rt_clone(S, rt_grad(S, nn_params_tensor(R->net[SAC_NET_Q1 + k].P, (size_t)i)));
    cr_assert_eq(rt_optim_step(R->opt_q), RT_OK);

    rt_tensor *a_pi, *logp_pi;
    ref_sample(S, R, A, b->observations, &a_pi, &logp_pi);
    rt_tensor *x = cat2(S, b->observations, a_pi);
    sac_config ac = A->actor_cfg;
    ac.alpha = alpha;
    sac_actor_inputs ai = {logp_pi, ref_q(S, R, SAC_NET_Q1, x), ref_q(S, R, SAC_NET_Q2, x)};
    rt_tensor *aloss = sac_actor_loss(S, &ac, &ai, &out->actor);
    cr_assert_eq(rt_optim_zero_grad(R->opt_actor), RT_OK);
    cr_assert_eq(rt_backward(aloss), RT_OK, "%s", rt_last_error());
    for (size_t i = 0; i < nn_params_count(R->net[SAC_NET_ACTOR].P); i++)
        out->agrad[i] = rt_clone(S, rt_grad(S, nn_params_tensor(R->net[SAC_NET_ACTOR].P, i)));
    cr_assert_eq(rt_optim_step(R->opt_actor), RT_OK);

    sac_alpha_inputs li = {R->log_alpha, rt_detach(S, logp_pi)};
    rt_tensor *lloss = sac_alpha_loss(S, &A->alpha_cfg, &li, &out->alpha);
    cr_assert_eq(rt_optim_zero_grad(R->opt_alpha), RT_OK);
    cr_assert_eq(rt_backward(lloss), RT_OK, "%s", rt_last_error());
    out->lagrad = rt_clone(S, rt_grad(S, R->log_alpha));
    cr_assert_eq(rt_optim_step(R->opt_alpha), RT_OK);
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < 6; i++)
            cr_assert_eq(rt_lerp_(nn_params_tensor(R->net[SAC_NET_Q1_TARGET + k].P, i),
                                  nn_params_tensor(R->net[SAC_NET_Q1 + k].P, i), A->cfg.tau),
                         RT_OK);
}

/* The agent's gradient of parameter i of network net (the matching part of
 * the stacked leaf's gradient), owned by S. */
static rt_tensor *agent_grad(rt_scope *S, const sac_agent *A, int net, int i)
{
    int l = i / 2, is_bias = i % 2;
    if (net == SAC_NET_ACTOR) {
        if (l < 2) return rt_grad(S, is_bias ? A->actor_b[l] : A->actor_w[l]);
        int head = (i - 4) / 2; /* mean, log_std */
        is_bias = (i - 4) % 2;
        return rt_narrow(S, rt_grad(S, is_bias ? A->actor_b[2] : A->actor_w[2]), 0, head * ACT, ACT);
    }
    return rt_select(S, rt_grad(S, is_bias ? A->q_b[l] : A->q_w[l]), 0, net - SAC_NET_Q1);
}

/* ---- tests ---------------------------------------------------------------- */

static void against_reference(sac_reference ref, const char *name)
{
    sac_agent_config c = small_config(ref, 1);
    sac_agent A;
    cr_assert_eq(sac_agent_init(&A, &c), RT_OK, "%s: %s", name, rt_last_error());
    ref_agent R;
    ref_init(&R, &A);
    rb *buf = random_buffer(OBS, ACT, 0, 9);
    rt_scope *S = rt_scope_new();
    char what[160];
    for (int u = 0; u < 3; u++) {
        cr_assert_eq(sac_agent_sample(&A, buf, BATCH), RT_OK, "%s", rt_last_error());
        /* the same noise: the reference's generator continues from here */
        uint8_t state[8192];
        size_t n = 0;
        cr_assert_eq(rt_gen_get_state(A.gen, state, sizeof state, &n), RT_OK);
        cr_assert_eq(rt_gen_set_state(R.gen, state, n), RT_OK);
        ref_result rr;
        memset(&rr, 0, sizeof rr);
        ref_update(S, &R, &A, &A.batch, &rr);
        cr_assert_eq(sac_agent_update(&A, &A.batch, 1), 0, "%s: update %d: %s", name, u, rt_last_error());
        cr_expect_eq(A.updates, u + 1);

        snprintf(what, sizeof what, "%s, update %d: critic loss", name, u);
        expect_near(A.last_critic.loss, rr.critic.loss, 1e-5, what);
        snprintf(what, sizeof what, "%s, update %d: qf1_values", name, u);
        expect_near(A.last_critic.qf1_values, rr.critic.qf1_values, 1e-5, what);
        snprintf(what, sizeof what, "%s, update %d: target_q", name, u);
        expect_near(A.last_critic.target_q, rr.critic.target_q, 1e-5, what);
        snprintf(what, sizeof what, "%s, update %d: actor loss", name, u);
        expect_near(A.last_actor.loss, rr.actor.loss, 1e-5, what);
        snprintf(what, sizeof what, "%s, update %d: entropy", name, u);
        expect_near(A.last_actor.entropy, rr.actor.entropy, 1e-5, what);
        snprintf(what, sizeof what, "%s, update %d: alpha loss", name, u);
        expect_near(A.last_alpha.loss, rr.alpha.loss, 1e-5, what);
        /* gradients (the agent keeps them until its next step) */
        for (int k = 0; k < 2; k++)
            for (int i = 0; i < 6; i++) {
                snprintf(what, sizeof what, "%s, update %d: q%d %s gradient", name, u, k + 1,
                         nn_params_name(A.P[SAC_NET_Q1 + k], (size_t)i));
                expect_close(agent_grad(S, &A, SAC_NET_Q1 + k, i), rr.qgrad[k][i], 2e-4, what);
            }
        for (int i = 0; i < 8; i++) {
            snprintf(what, sizeof what, "%s, update %d: actor %s gradient", name, u,
                     nn_params_name(A.P[SAC_NET_ACTOR], (size_t)i));
            expect_close(agent_grad(S, &A, SAC_NET_ACTOR, i), rr.agrad[i], 2e-4, what);
        }
        snprintf(what, sizeof what, "%s, update %d: log alpha gradient", name, u);
        expect_close(rt_grad(S, A.log_alpha), rr.lagrad, 2e-4, what);
        /* parameters after the steps: Adam moves every element by about lr, so
         * the two sides agree to a fraction of it */
        for (int k = 0; k < SAC_NET_COUNT; k++)
            for (size_t i = 0; i < nn_params_count(A.P[k]); i++) {
                snprintf(what, sizeof what, "%s, update %d: %s.%s", name, u, sac_net_role[k], nn_params_name(A.P[k], i));
                expect_close(nn_params_tensor(A.P[k], i), nn_params_tensor(R.net[k].P, i), 1e-4, what);
            }
        snprintf(what, sizeof what, "%s, update %d: log alpha", name, u);
        expect_close(A.log_alpha, R.log_alpha, 1e-5, what);
        rt_scope_reset(S);
    }
    rt_scope_free(S);
    rb_free(buf);
    ref_free(&R);
    sac_agent_free(&A);
}

Test(sac_agent, update_matches_the_composed_reference)
{
    against_reference(SAC_REF_RECOMMENDED, "recommended");
    against_reference(SAC_REF_CLEANRL, "cleanrl");
}

Test(sac_agent, storage_steps_determinism_discrete_errors)
{
    sac_agent_config c = small_config(SAC_REF_RECOMMENDED, 1);
    sac_agent A, B2;
    cr_assert_eq(sac_agent_init(&A, &c), RT_OK, "%s", rt_last_error());
    cr_assert_eq(sac_agent_init(&B2, &c), RT_OK, "%s", rt_last_error());
    rt_scope *S = rt_scope_new();

    /* names and shapes as the checkpoints have always had them */
    struct { int net; const char *name; int64_t r, c; } shapes[] = {
        {SAC_NET_ACTOR, "body.0.weight", HID, OBS},   {SAC_NET_ACTOR, "body.2.bias", HID, 0},
        {SAC_NET_ACTOR, "mean.weight", ACT, HID},     {SAC_NET_ACTOR, "log_std.bias", ACT, 0},
        {SAC_NET_Q1, "net.0.weight", HID, OBS + ACT}, {SAC_NET_Q2, "net.4.weight", 1, HID},
        {SAC_NET_Q1_TARGET, "net.2.bias", HID, 0},    {SAC_NET_Q2_TARGET, "net.4.bias", 1, 0},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        rt_tensor *t = nn_params_get(A.P[shapes[i].net], shapes[i].name);
        cr_assert(t != NULL, "%s has no %s", sac_net_role[shapes[i].net], shapes[i].name);
        cr_expect_eq(rt_ndim(t), shapes[i].c ? 2 : 1, "%s.%s", sac_net_role[shapes[i].net], shapes[i].name);
        cr_expect_eq(rt_size(t, 0), shapes[i].r, "%s.%s", sac_net_role[shapes[i].net], shapes[i].name);
        if (shapes[i].c) cr_expect_eq(rt_size(t, 1), shapes[i].c, "%s.%s", sac_net_role[shapes[i].net], shapes[i].name);
    }
    cr_expect_eq(nn_params_count(A.P[SAC_NET_ACTOR]), 8);
    for (int k = SAC_NET_Q1; k < SAC_NET_COUNT; k++) cr_expect_eq(nn_params_count(A.P[k]), 6);
    cr_expect_eq(rt_optim_param_count(A.opt_q), 12);
    cr_expect_str_eq(rt_optim_param_name(A.opt_q, 6), "q2.net.0.weight");
    /* the targets start equal to the critics, the two critics differ */
    for (size_t i = 0; i < 6; i++) {
        cr_expect(rt_equal(nn_params_tensor(A.P[SAC_NET_Q1], i), nn_params_tensor(A.P[SAC_NET_Q1_TARGET], i)));
        cr_expect(!rt_equal(nn_params_tensor(A.P[SAC_NET_Q1], i), nn_params_tensor(A.P[SAC_NET_Q2], i)));
    }
    /* a write through a per-critic name (what a checkpoint load does) lands
     * in the stacked storage the forward reads */
    rt_tensor *w = nn_params_get(A.P[SAC_NET_Q2], "net.2.weight");
    rt_tensor *saved = rt_clone(S, w);
    cr_assert_eq(rt_fill_(w, 0.25), RT_OK);
    double v = rt_item(rt_select(S, rt_select(S, rt_select(S, A.q_w[1], 0, 1), 0, 3), 0, 5));
    cr_expect_eq(v, 0.25, "q2.net.2.weight is not member 1 of the stacked layer (read %g)", v);
    cr_assert_eq(rt_copy_(w, saved), RT_OK, "%s", rt_last_error());

    /* every trainable parameter moves; the targets move by tau */
    rb *buf = random_buffer(OBS, ACT, 0, 3);
    rt_tensor *before[SAC_NET_COUNT][8];
    for (int k = 0; k < SAC_NET_COUNT; k++)
        for (size_t i = 0; i < nn_params_count(A.P[k]); i++) before[k][i] = rt_clone(S, nn_params_tensor(A.P[k], i));
    rt_tensor *la0 = rt_clone(S, A.log_alpha);
    cr_assert_eq(sac_agent_sample(&A, buf, BATCH), RT_OK, "%s", rt_last_error());
    cr_assert_eq(sac_agent_update(&A, &A.batch, 0), 0, "%s", rt_last_error());
    for (int k = SAC_NET_ACTOR; k <= SAC_NET_Q2; k++)
        for (size_t i = 0; i < nn_params_count(A.P[k]); i++) {
            double moved = rt_max_abs_diff(nn_params_tensor(A.P[k], i), before[k][i]);
            cr_expect(moved > 5e-4, "%s.%s did not take a step (moved %g)", sac_net_role[k], nn_params_name(A.P[k], i),
                      moved);
        }
    cr_expect(rt_max_abs_diff(A.log_alpha, la0) > 5e-4, "log alpha did not take a step");
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < 6; i++) {
            rt_tensor *t0 = before[SAC_NET_Q1_TARGET + k][i];
            rt_tensor *want = rt_add(S, t0, rt_mul_scalar(S, rt_sub(S, nn_params_tensor(A.P[SAC_NET_Q1 + k], i), t0), c.tau));
            expect_close(nn_params_tensor(A.P[SAC_NET_Q1_TARGET + k], i), want, 1e-6, "Polyak step");
        }

    /* determinism: a second agent with the same seed and batches ends equal */
    for (int u = 0; u < 2; u++) {
        cr_assert_eq(sac_agent_sample(&A, buf, BATCH), RT_OK);
        cr_assert_eq(sac_agent_update(&A, &A.batch, 0), 0, "%s", rt_last_error());
    }
    for (int u = 0; u < 3; u++) {
        cr_assert_eq(sac_agent_sample(&B2, buf, BATCH), RT_OK);
        cr_assert_eq(sac_agent_update(&B2, &B2.batch, 0), 0, "%s", rt_last_error());
    }
    for (int k = 0; k < SAC_NET_COUNT; k++)
        for (size_t i = 0; i < nn_params_count(A.P[k]); i++)
            cr_expect(rt_equal(nn_params_tensor(A.P[k], i), nn_params_tensor(B2.P[k], i)), "%s.%s differs between runs",
                      sac_net_role[k], nn_params_name(A.P[k], i));

    /* the policy: actions in [-1, 1], deterministic = tanh(mean) */
    int64_t so[2] = {4, OBS};
    rt_tensor *obs = rt_randn(S, so, 2, B2.gen, RT_OPTS(RT_F32));
    rt_tensor *y = sac_agent_policy(&A, S, obs, 0), *yd = sac_agent_policy(&A, S, obs, 1);
    cr_assert(y && yd, "%s", rt_last_error());
    cr_expect_eq(rt_size(y, 0), 4);
    cr_expect_eq(rt_size(y, 1), ACT);
    cr_expect(rt_item(rt_max(S, rt_abs(S, y), RT_DIM_ALL, 0, NULL)) <= 1.0);
    cr_expect(!rt_requires_grad(y));
    cr_expect(rt_equal(yd, sac_agent_policy(&A, S, obs, 1)), "the deterministic policy is not deterministic");
    rb_free(buf);
    sac_agent_free(&B2);

    /* policy_frequency 2: the actor steps twice on every second update */
    sac_agent_free(&A);
    c = small_config(SAC_REF_CLEANRL, 2);
    cr_assert_eq(sac_agent_init(&A, &c), RT_OK, "%s", rt_last_error());
    buf = random_buffer(OBS, ACT, 0, 4);
    rt_tensor *w0 = rt_clone(S, A.actor_w[0]);
    cr_assert_eq(sac_agent_sample(&A, buf, BATCH), RT_OK);
    cr_assert_eq(sac_agent_update(&A, &A.batch, 1), 0, "%s", rt_last_error());
    cr_expect(rt_equal(w0, A.actor_w[0]), "the actor stepped on update 1 of policy_frequency 2");
    cr_expect(isnan(A.last_actor.loss), "actor metrics on an update without an actor step");
    cr_assert_eq(sac_agent_sample(&A, buf, BATCH), RT_OK);
    cr_assert_eq(sac_agent_update(&A, &A.batch, 1), 0, "%s", rt_last_error());
    cr_expect(!rt_equal(w0, A.actor_w[0]) && isfinite(A.last_actor.loss), "no actor step on update 2");
    rt_optim_state st;
    cr_assert_eq(rt_optim_state_get(A.opt_actor, "body.0.weight", S, &st), RT_OK);
    cr_expect_eq(st.step, 2, "policy_frequency 2 makes two actor steps (Adam step %lld)", (long long)st.step);
    rb_free(buf);
    sac_agent_free(&A);

    /* Discrete (CartPole shapes): Q(s, .) per critic, logits head */
    sac_agent_config d = sac_agent_config_default();
    d.obs_dim = 4;
    d.act_dim = 1;
    d.n_actions = 3;
    d.hidden = HID;
    d.seed = 1;
    cr_assert_eq(sac_agent_init(&A, &d), RT_OK, "%s", rt_last_error());
    cr_assert_not_null(nn_params_get(A.P[SAC_NET_ACTOR], "logits.weight"));
    cr_expect_eq(rt_size(nn_params_get(A.P[SAC_NET_Q1], "net.4.weight"), 0), 3);
    cr_expect_eq(rt_size(nn_params_get(A.P[SAC_NET_Q1], "net.0.weight"), 1), 4);
    buf = random_buffer(4, 1, 3, 6);
    rt_tensor *l0 = rt_clone(S, A.actor_w[2]), *q0 = rt_clone(S, A.q_w[0]);
    for (int u = 0; u < 2; u++) {
        cr_assert_eq(sac_agent_sample(&A, buf, BATCH), RT_OK, "%s", rt_last_error());
        cr_assert_eq(sac_agent_update(&A, &A.batch, 1), 0, "%s", rt_last_error());
    }
    cr_expect(isfinite(A.last_critic.loss) && isfinite(A.last_actor.loss) && isfinite(A.last_alpha.loss),
              "discrete losses %g %g %g", A.last_critic.loss, A.last_actor.loss, A.last_alpha.loss);
    cr_expect(!rt_equal(l0, A.actor_w[2]) && !rt_equal(q0, A.q_w[0]), "the discrete update did not step");
    int64_t s4[2] = {5, 4};
    rt_tensor *ad = sac_agent_policy(&A, S, rt_randn(S, s4, 2, A.gen, RT_OPTS(RT_F32)), 0);
    cr_assert(ad != NULL && rt_dtype_of(ad) == RT_I64 && rt_ndim(ad) == 1 && rt_size(ad, 0) == 5, "%s", rt_last_error());
    cr_expect(rt_item(rt_max(S, ad, RT_DIM_ALL, 0, NULL)) < 3 && rt_item(rt_min(S, ad, RT_DIM_ALL, 0, NULL)) >= 0);

    /* errors */
    rt_clear_error();
    cr_expect_eq(sac_agent_sample(&A, buf, 0), RT_EINVAL);
    cr_expect(strstr(rt_last_error(), "batch_size") != NULL, "%s", rt_last_error());
    rb *wrong = rb_new(10, 3, 1);
    rt_clear_error();
    cr_expect_eq(sac_agent_sample(&A, wrong, 4), RT_EINVAL);
    cr_expect(strstr(rt_last_error(), "empty") != NULL, "%s", rt_last_error());
    float z[3] = {0}, r0 = 0;
    uint8_t f0 = 0;
    cr_assert_eq(rb_add(wrong, 1, z, z, z, &r0, &f0, &f0), RT_OK);
    rt_clear_error();
    cr_expect_eq(sac_agent_sample(&A, wrong, 4), RT_EINVAL);
    cr_expect(strstr(rt_last_error(), "obs 3 / act 1, the agent's 4 / 1") != NULL, "%s", rt_last_error());
    rb_free(wrong);
    rb_free(buf);
    sac_agent_free(&A);
    sac_agent_free(&A); /* idempotent */
    sac_agent_config bad = small_config(SAC_REF_RECOMMENDED, 1);
    bad.act_low[1] = 3.0f;
    rt_clear_error();
    cr_expect_eq(sac_agent_init(&A, &bad), RT_EINVAL);
    cr_expect(strstr(rt_last_error(), "dimension 1 are [3, 2]") != NULL, "%s", rt_last_error());
    bad = small_config(SAC_REF_RECOMMENDED, 0);
    cr_expect_eq(sac_agent_init(&A, &bad), RT_EINVAL);
    rt_scope_free(S);
}
