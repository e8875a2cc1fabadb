/*
 * sac_agent.c -- the SAC agent (sac_agent.h): networks, optimizers and one
 * gradient update.
 *
 * Layout: configuration; networks (stacked storage, per-network names,
 * initialisation in the order torch.nn would draw it); checkpoint
 * registration; forward passes and the policy; the replay sample; the update
 * (continuous, then discrete). Intermediates of an update live in A->S,
 * reset at its end; blocks of ops are checked once at their end (an op given
 * NULL returns NULL and keeps the first message).
 */
#include "sac_agent.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const sac_net_role[SAC_NET_COUNT] = {"actor", "q1", "q2", "q1_target", "q2_target"};

sac_agent_config sac_agent_config_default(void) {
    sac_agent_config c;
    memset(&c, 0, sizeof c);
    c.hidden = 256;
    c.gamma = 0.99;
    c.tau = 0.005;
    c.policy_lr = c.q_lr = c.alpha_lr = 3e-4;
    c.policy_frequency = 1;
    c.target_network_frequency = 1;
    c.autotune = 1;
    c.alpha = 1.0;
    c.reference = SAC_REF_RECOMMENDED;
    return c;
}

/* ------------------------------------------------------------------------ */
/* Networks                                                                  */
/* ------------------------------------------------------------------------ */

/* torch.nn.Linear's initialisation of one layer into w [out,in] and b [out]
 * (whole tensors or views): weight then bias, both U(-1/sqrt(in), 1/sqrt(in)). */
static int linear_init_(rt_tensor *w, rt_tensor *b, int64_t in, rt_gen *g) {
    double k = 1.0 / sqrt((double)in);
    return (!w || !b || rt_uniform_(w, -k, k, g) < 0 || rt_uniform_(b, -k, k, g) < 0) ? RT_ERR : RT_OK;
}

/* Registers a new handle on t (an alias, or a view made by the caller) under
 * "prefix.{index}.leaf" or "prefix.leaf" (index < 0) in P, which owns it. */
static int name_param(nn_params *P, const char *prefix, int index, const char *leaf, rt_tensor *t) {
    char name[NN_NAME_MAX];
    if (index >= 0) snprintf(name, sizeof name, "%s.%d.%s", prefix, index, leaf);
    else snprintf(name, sizeof name, "%s.%s", prefix, leaf);
    return t ? nn_params_add(P, name, t) : RT_ERR;
}

/* The actor: body.0 [h,obs], body.2 [h,h] (ReLU after both), then the heads,
 * stored as one [2A,h] layer whose rows [0,A) are "mean" and [A,2A)
 * "log_std" (Discrete: one [n,h] "logits" head). Drawn in torch's order:
 * body.0, body.2, mean, log_std, each weight then bias. */
static int build_actor(sac_agent *A) {
    const sac_agent_config *c = &A->cfg;
    int64_t h = c->hidden, ad = c->act_dim, head = A->discrete ? c->n_actions : 2 * ad;
    int64_t in[3] = {c->obs_dim, h, h}, out[3] = {h, h, head};
    nn_params *P = A->P[SAC_NET_ACTOR] = nn_params_new();
    if (!P) return RT_ERR;
    for (int l = 0; l < 3; l++) {
        int64_t sw[2] = {out[l], in[l]}, sb[1] = {out[l]};
        A->actor_w[l] = rt_empty(NULL, sw, 2, RT_OPTS(RT_F32));
        A->actor_b[l] = rt_empty(NULL, sb, 1, RT_OPTS(RT_F32));
        if (!A->actor_w[l] || !A->actor_b[l] || rt_set_requires_grad(A->actor_w[l], 1) < 0 ||
            rt_set_requires_grad(A->actor_b[l], 1) < 0)
            return RT_ERR;
    }
    for (int l = 0; l < 2; l++)
        if (linear_init_(A->actor_w[l], A->actor_b[l], in[l], A->init_gen) < 0 ||
            name_param(P, "body", 2 * l, "weight", rt_alias(NULL, A->actor_w[l])) < 0 ||
            name_param(P, "body", 2 * l, "bias", rt_alias(NULL, A->actor_b[l])) < 0)
            return RT_ERR;
    if (A->discrete)
        return (linear_init_(A->actor_w[2], A->actor_b[2], h, A->init_gen) < 0 ||
                name_param(P, "logits", -1, "weight", rt_alias(NULL, A->actor_w[2])) < 0 ||
                name_param(P, "logits", -1, "bias", rt_alias(NULL, A->actor_b[2])) < 0)
                   ? RT_ERR : RT_OK;
    const char *heads[2] = {"mean", "log_std"};
    for (int k = 0; k < 2; k++) {
        rt_tensor *w = rt_narrow(NULL, A->actor_w[2], 0, k * ad, ad), *b = rt_narrow(NULL, A->actor_b[2], 0, k * ad, ad);
        if (linear_init_(w, b, h, A->init_gen) < 0 || name_param(P, heads[k], -1, "weight", w) < 0 ||
            name_param(P, heads[k], -1, "bias", b) < 0)
            return RT_ERR;
    }
    return RT_OK;
}

/* A twin critic, stacked: w[l] [2,out,in], b[l] [2,out] for the layers
 * in -> h -> h -> q_out (ReLU between). Member k is drawn entirely before
 * member k+1 (q1 then q2, as two nn.Sequential would be) and registered as
 * "net.{0,2,4}.{weight,bias}" views in P[net_first + k]. The online critics
 * (trainable) require grad; the targets do not. */
static int build_critics(sac_agent *A, int net_first, int trainable, rt_tensor **w, rt_tensor **b) {
    const sac_agent_config *c = &A->cfg;
    int64_t h = c->hidden;
    int64_t in[3] = {A->discrete ? c->obs_dim : c->obs_dim + c->act_dim, h, h};
    int64_t out[3] = {h, h, A->discrete ? c->n_actions : 1};
    for (int l = 0; l < 3; l++) {
        int64_t sw[3] = {2, out[l], in[l]}, sb[2] = {2, out[l]};
        w[l] = rt_empty(NULL, sw, 3, RT_OPTS(RT_F32));
        b[l] = rt_empty(NULL, sb, 2, RT_OPTS(RT_F32));
        if (!w[l] || !b[l] || rt_set_requires_grad(w[l], trainable) < 0 || rt_set_requires_grad(b[l], trainable) < 0)
            return RT_ERR;
    }
    for (int k = 0; k < 2; k++) {
        nn_params *P = A->P[net_first + k] = nn_params_new();
        if (!P) return RT_ERR;
        for (int l = 0; l < 3; l++) {
            rt_tensor *wk = rt_select(NULL, w[l], 0, k), *bk = rt_select(NULL, b[l], 0, k);
            if (linear_init_(wk, bk, in[l], A->init_gen) < 0 || name_param(P, "net", 2 * l, "weight", wk) < 0 ||
                name_param(P, "net", 2 * l, "bias", bk) < 0)
                return RT_ERR;
        }
    }
    return RT_OK;
}

static void batch_free(sac_batch *b) {
    rt_free(b->obs_act);
    rt_free(b->observations);
    rt_free(b->actions);
    rt_free(b->next_observations);
    rt_free(b->rewards);
    rt_free(b->dones);
    memset(b, 0, sizeof *b);
}

void sac_agent_free(sac_agent *A) {
    if (!A) return;
    rt_optim_free(A->opt_actor);
    rt_optim_free(A->opt_q);
    rt_optim_free(A->opt_alpha);
    for (int i = 0; i < SAC_NET_COUNT; i++) nn_params_free(A->P[i]);
    nn_params_free(A->q_named);
    for (int l = 0; l < 3; l++) {
        rt_free(A->actor_w[l]);
        rt_free(A->actor_b[l]);
        rt_free(A->q_w[l]);
        rt_free(A->q_b[l]);
        rt_free(A->qt_w[l]);
        rt_free(A->qt_b[l]);
        rt_free(A->q_w_cut[l]);
        rt_free(A->q_b_cut[l]);
    }
    rt_free(A->log_alpha);
    rt_gen_free(A->init_gen);
    rt_gen_free(A->gen);
    batch_free(&A->batch);
    rt_scope_free(A->S);
    memset(A, 0, sizeof *A);
}

/* Everything but the checks of sac_agent_init. The named views are made
 * with grad mode on, after their storage requires grad (torch forbids using
 * a view made under no-grad once its storage changed in place -- every
 * optimizer step and checkpoint load does that); parameters are drawn and
 * copied through them in place, under no-grad (rt_uniform_, rt_copy_). */
static int build(sac_agent *A) {
    const sac_agent_config *c = &A->cfg;
    if (build_actor(A) < 0 || build_critics(A, SAC_NET_Q1, 1, A->q_w, A->q_b) < 0 ||
        build_critics(A, SAC_NET_Q1_TARGET, 0, A->qt_w, A->qt_b) < 0)
        return RT_ERR;
    for (int l = 0; l < 3; l++) { /* the targets start as copies */
        if (rt_copy_(A->qt_w[l], A->q_w[l]) < 0 || rt_copy_(A->qt_b[l], A->q_b[l]) < 0) return RT_ERR;
        A->q_w_cut[l] = rt_detach(NULL, A->q_w[l]);
        A->q_b_cut[l] = rt_detach(NULL, A->q_b[l]);
        if (!A->q_w_cut[l] || !A->q_b_cut[l]) return RT_ERR;
    }
    /* one critic optimizer over both critics (CleanRL, SB3), names q1.* q2.* */
    A->q_named = nn_params_new();
    if (!A->q_named) return RT_ERR;
    const char *qn[2] = {"q1", "q2"};
    for (int k = 0; k < 2; k++) {
        const nn_params *src = A->P[SAC_NET_Q1 + k];
        for (size_t i = 0; i < nn_params_count(src); i++) {
            char name[NN_NAME_MAX];
            snprintf(name, sizeof name, "%s.%s", qn[k], nn_params_name(src, i));
            if (nn_params_add(A->q_named, name, rt_alias(NULL, nn_params_tensor(src, i))) < 0) return RT_ERR;
        }
    }
    int64_t one[1] = {1};
    float la32 = (float)log(c->alpha);
    A->log_alpha = rt_from_data(NULL, &la32, one, 1, RT_OPTS(RT_F32));
    if (!A->log_alpha || rt_set_requires_grad(A->log_alpha, 1) < 0) return RT_ERR;
    rt_optim_opts oa = rt_optim_defaults(RT_ADAM), oq = oa, ol = oa;
    oa.lr = c->policy_lr;
    oq.lr = c->q_lr;
    ol.lr = c->alpha_lr;
    const char *la_name[1] = {"log_alpha"};
    const nn_params *pa = A->P[SAC_NET_ACTOR];
    A->opt_actor = rt_optim_new_fused(RT_ADAM, nn_params_tensors(pa), nn_params_names(pa), nn_params_count(pa), &oa);
    A->opt_q = rt_optim_new_fused(RT_ADAM, nn_params_tensors(A->q_named), nn_params_names(A->q_named),
                                  nn_params_count(A->q_named), &oq);
    A->opt_alpha = rt_optim_new_fused(RT_ADAM, &A->log_alpha, la_name, 1, &ol);
    return (A->opt_actor && A->opt_q && A->opt_alpha) ? RT_OK : RT_ERR;
}

int sac_agent_init(sac_agent *A, const sac_agent_config *cfg) {
    if (!A || !cfg) return rt_set_error("sac_agent_init: NULL %s", A ? "config" : "agent"), RT_EINVAL;
    memset(A, 0, sizeof *A);
    A->cfg = *cfg;
    const sac_agent_config *c = &A->cfg;
    A->discrete = c->n_actions > 0;
    if (c->obs_dim < 1 || c->act_dim < 1 || c->act_dim > 64 || c->hidden < 1 || (A->discrete && c->n_actions < 2) ||
        (A->discrete && c->act_dim != 1) || c->policy_frequency < 1 || c->target_network_frequency < 1)
        return rt_set_error("sac_agent_init: obs_dim %lld, act_dim %lld (1..64; 1 when Discrete), n_actions %lld "
                            "(0, or >= 2), hidden %lld, policy_frequency %lld, target_network_frequency %lld: "
                            "out of range",
                            (long long)c->obs_dim, (long long)c->act_dim, (long long)c->n_actions,
                            (long long)c->hidden, (long long)c->policy_frequency,
                            (long long)c->target_network_frequency),
               RT_EINVAL;
    for (int64_t j = 0; j < c->act_dim && !A->discrete; j++)
        if (!isfinite(c->act_low[j]) || !isfinite(c->act_high[j]) || !(c->act_low[j] < c->act_high[j]))
            return rt_set_error("sac_agent_init: action bounds of dimension %lld are [%g, %g]; need finite low < high",
                                (long long)j, (double)c->act_low[j], (double)c->act_high[j]),
                   RT_EINVAL;
    sac_reference ref = c->reference;
    A->squash_cfg = sac_config_reference(SAC_PART_SQUASH, ref);
    A->critic_cfg = sac_config_reference(A->discrete ? SAC_PART_DISCRETE_CRITIC : SAC_PART_CRITIC, ref);
    A->actor_cfg = sac_config_reference(A->discrete ? SAC_PART_DISCRETE_ACTOR : SAC_PART_ACTOR, ref);
    A->alpha_cfg = sac_config_reference(A->discrete ? SAC_PART_DISCRETE_ALPHA : SAC_PART_ALPHA, ref);
    A->critic_cfg.gamma = c->gamma;
    A->target_entropy = A->discrete ? sac_target_entropy(&A->alpha_cfg, c->n_actions, 1)
                                    : sac_target_entropy(&A->alpha_cfg, c->act_dim, 0);
    A->alpha_cfg.target_entropy = A->target_entropy;
    A->last_alpha_value = c->alpha;
    sac_metrics *ms[3] = {&A->last_critic, &A->last_actor, &A->last_alpha};
    for (int k = 0; k < 3; k++) /* NaN: no metrics yet */
        for (double *f = (double *)ms[k]; f < (double *)(ms[k] + 1); f++) *f = NAN;
    A->init_gen = rt_gen_new(c->seed);
    A->gen = rt_gen_new(c->seed + 1);
    A->S = rt_scope_new();
    int g = rt_grad_enabled();
    rt_grad_mode_restore(1);
    int rc = (A->init_gen && A->gen && A->S) ? build(A) : RT_ERR;
    rt_grad_mode_restore(g);
    if (rc == RT_OK) return RT_OK;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", rt_last_error());
    sac_agent_free(A);
    return rt_set_error("sac_agent_init: %s", msg), RT_ERR;
}

int sac_agent_ck_add(sac_agent *A, ck_state *ck) {
    int rc;
    for (int i = 0; i < SAC_NET_COUNT; i++) {
        char group[64];
        snprintf(group, sizeof group, "model/%s", sac_net_role[i]);
        if ((rc = ck_add_tensors(ck, group, nn_params_names(A->P[i]), nn_params_tensors(A->P[i]),
                                 nn_params_count(A->P[i]))) < 0)
            return rc;
    }
    const char *la_name[1] = {"log_alpha"};
    if ((rc = ck_add_tensors(ck, "algo", la_name, &A->log_alpha, 1)) < 0 ||
        (rc = ck_add_optim(ck, "actor", A->opt_actor)) < 0 || (rc = ck_add_optim(ck, "critic", A->opt_q)) < 0 ||
        (rc = ck_add_optim(ck, "alpha", A->opt_alpha)) < 0 || (rc = ck_add_gen(ck, "torch_init", A->init_gen)) < 0 ||
        (rc = ck_add_gen(ck, "torch_sample", A->gen)) < 0 || (rc = ck_add_i64(ck, "algo/updates", &A->updates)) < 0)
        return rc;
    return CK_OK;
}

/* ------------------------------------------------------------------------ */
/* Forward passes and the policy                                             */
/* ------------------------------------------------------------------------ */

/* The actor at obs [B,obs]: the mean and raw log_std heads [B,A] (the two
 * halves of one [B,2A] output), or the logits [B,n] in *mean when Discrete. */
static void actor_forward(rt_scope *S, const sac_agent *A, const rt_tensor *obs, rt_tensor **mean, rt_tensor **log_std) {
    rt_tensor *out = rt_mlp(S, obs, A->actor_w, A->actor_b, 3, 0), *heads[2] = {NULL, NULL};
    if (!A->discrete) rt_chunk(S, out, 2, 1, heads);
    *mean = A->discrete ? out : heads[0];
    if (log_std) *log_std = heads[1];
}

/* Both critics of a stack (w, b) at x: Q(s,a) [B] each (continuous, x =
 * [s, a]) or Q(s,.) [B,n] each (Discrete, x = s), the two members of one
 * [2,B,out] output. */
static int twin_q(rt_scope *S, const sac_agent *A, rt_tensor *const *w, rt_tensor *const *b, const rt_tensor *x,
                  rt_tensor **q1, rt_tensor **q2) {
    rt_tensor *q = rt_mlp(S, x, w, b, 3, 0); /* [2,B,out] */
    if (!A->discrete) q = rt_squeeze(S, q, 2); /* [2,B] */
    rt_tensor *members[2];
    if (!q || rt_unbind(S, q, 0, 2, members) != RT_OK) return -1;
    *q1 = members[0];
    *q2 = members[1];
    return 0;
}

/* [s, a] [B, obs+act] for the critics. */
static rt_tensor *state_action(rt_scope *S, const rt_tensor *obs, const rt_tensor *act) {
    rt_tensor *pair[2] = {(rt_tensor *)obs, (rt_tensor *)act};
    return rt_cat(S, pair, 2, 1);
}

/* A policy sample at obs: y [B,A] normalized and log pi(y|s) [B] (noise from A->gen). */
static int policy_sample(rt_scope *S, sac_agent *A, const rt_tensor *obs, rt_tensor **y, rt_tensor **logp) {
    rt_tensor *mean, *log_std;
    actor_forward(S, A, obs, &mean, &log_std);
    return sac_squash_sample(S, &A->squash_cfg, mean, log_std, NULL, A->gen, y, logp) == RT_OK ? 0 : -1;
}

rt_tensor *sac_agent_policy(sac_agent *A, rt_scope *S, const rt_tensor *obs, int deterministic) {
    int g = rt_no_grad_begin();
    rt_tensor *mean, *log_std, *logp, *r = NULL;
    actor_forward(S, A, obs, &mean, &log_std);
    if (A->discrete)
        r = deterministic ? rt_argmax(S, mean, 1, 0)
                          : rt_squeeze(S, rt_multinomial(S, rt_softmax(S, mean, 1), 1, 1, A->gen), 1); /* [n] */
    else if (deterministic)
        r = rt_tanh(S, mean);
    else if (sac_squash_sample(S, &A->squash_cfg, mean, log_std, NULL, A->gen, &r, &logp) != RT_OK)
        r = NULL;
    rt_grad_mode_restore(g);
    return r;
}

/* ------------------------------------------------------------------------ */
/* The replay sample                                                         */
/* ------------------------------------------------------------------------ */

/* (Re)allocates A->batch for B rows. */
static int batch_alloc(sac_agent *A, int64_t B) {
    sac_batch *b = &A->batch;
    int64_t od = A->cfg.obs_dim, ad = A->cfg.act_dim;
    int64_t s_oa[2] = {B, od + ad}, s_o[2] = {B, od}, s_r[1] = {B};
    batch_free(b);
    b->obs_act = rt_empty(NULL, s_oa, 2, RT_OPTS(RT_F32));
    b->observations = rt_narrow(NULL, b->obs_act, 1, 0, od);
    b->actions = rt_narrow(NULL, b->obs_act, 1, od, ad);
    b->next_observations = rt_empty(NULL, s_o, 2, RT_OPTS(RT_F32));
    b->rewards = rt_empty(NULL, s_r, 1, RT_OPTS(RT_F32));
    b->dones = rt_empty(NULL, s_r, 1, RT_OPTS(RT_F32));
    if (!b->obs_act || !b->observations || !b->actions || !b->next_observations || !b->rewards || !b->dones) {
        batch_free(b);
        return RT_ERR;
    }
    b->size = B;
    return RT_OK;
}

int sac_agent_sample(sac_agent *A, const rb *buffer, int64_t batch_size) {
    if (!A || !buffer || batch_size < 1)
        return rt_set_error("sac_agent_sample: %s", !A ? "agent is NULL" : !buffer ? "no replay buffer"
                                                                                   : "batch_size must be positive"),
               RT_EINVAL;
    int64_t n = rb_size(buffer), od = A->cfg.obs_dim, ad = A->cfg.act_dim;
    if (n < 1) return rt_set_error("sac_agent_sample: the replay buffer is empty"), RT_EINVAL;
    if (buffer->obs_dim != od || buffer->act_dim != ad)
        return rt_set_error("sac_agent_sample: replay rows are obs %lld / act %lld, the agent's %lld / %lld",
                            (long long)buffer->obs_dim, (long long)buffer->act_dim, (long long)od, (long long)ad),
               RT_EINVAL;
    if (A->batch.size != batch_size && batch_alloc(A, batch_size) != RT_OK) return RT_ERR;
    int64_t shape[1] = {batch_size};
    rt_tensor *idx = rt_randint(NULL, 0, n, shape, 1, A->gen, RT_OPTS(RT_I64)); /* rb_sample's draw */
    const int64_t *ix = idx ? rt_data_ptr(idx) : NULL;
    const float *so = rt_data_ptr(buffer->observations), *sn = rt_data_ptr(buffer->next_observations);
    const float *sa = rt_data_ptr(buffer->actions), *sr = rt_data_ptr(buffer->rewards);
    const float *sd = rt_data_ptr(buffer->dones);
    float *oa = rt_data_ptr(A->batch.obs_act), *no = rt_data_ptr(A->batch.next_observations);
    float *r = rt_data_ptr(A->batch.rewards), *d = rt_data_ptr(A->batch.dones);
    int rc = RT_OK;
    if (!ix || !so || !sn || !sa || !sr || !sd || !oa || !no || !r || !d)
        rc = idx ? rt_set_error("sac_agent_sample: replay tensors are not contiguous CPU float32") : RT_ERR;
    for (int64_t i = 0; rc == RT_OK && i < batch_size; i++) { /* rows copied in place: no op per tensor */
        int64_t k = ix[i];
        memcpy(oa + i * (od + ad), so + k * od, (size_t)od * sizeof *oa);
        memcpy(oa + i * (od + ad) + od, sa + k * ad, (size_t)ad * sizeof *oa);
        memcpy(no + i * od, sn + k * od, (size_t)od * sizeof *no);
        r[i] = sr[k];
        d[i] = sd[k];
    }
    rt_free(idx);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The update                                                                */
/* ------------------------------------------------------------------------ */

/* The value of a one-element float32 CPU tensor, read in place (no op). */
static double value_of(const rt_tensor *t) {
    const float *p = t ? rt_data_ptr(t) : NULL;
    return p ? (double)*p : NAN;
}

/* One gradient step of o on loss: release the old gradients, backward, step. */
static int descend(rt_optim *o, const rt_tensor *loss) {
    return (!loss || rt_optim_zero_grad(o) < 0 || rt_backward(loss) < 0 || rt_optim_step(o) < 0) ? -1 : 0;
}

/* Polyak averaging of both target critics (all six stacked pairs in one
 * call) when the update count says so. */
static int update_targets(sac_agent *A) {
    if (A->updates % A->cfg.target_network_frequency != 0) return 0;
    rt_tensor *dst[6], *src[6];
    for (int l = 0; l < 3; l++) {
        dst[2 * l] = A->qt_w[l], dst[2 * l + 1] = A->qt_b[l];
        src[2 * l] = A->q_w[l], src[2 * l + 1] = A->q_b[l];
    }
    return rt_lerp_many_(dst, src, 6, A->cfg.tau) < 0 ? -1 : 0;
}

/* The temperature step (autotune); the new alpha goes to *alpha. */
static int alpha_step(sac_agent *A, const rt_tensor *loss, double *alpha) {
    if (descend(A->opt_alpha, loss) < 0) return -1;
    *alpha = exp(value_of(A->log_alpha));
    return 0;
}

static int update_continuous(sac_agent *A, rt_scope *S, const sac_batch *b, double alpha, int want) {
    const sac_agent_config *c = &A->cfg;
    /* 1. y = r + gamma (1 - terminated)(min Q'(s', a') - alpha log pi(a'|s')), a' ~ pi(s') */
    int g = rt_no_grad_begin();
    rt_tensor *a_next, *logp_next, *q1n = NULL, *q2n = NULL;
    int rc = policy_sample(S, A, b->next_observations, &a_next, &logp_next);
    if (rc == 0) rc = twin_q(S, A, A->qt_w, A->qt_b, state_action(S, b->next_observations, a_next), &q1n, &q2n);
    rt_grad_mode_restore(g);
    if (rc < 0) return -1;

    /* 2. the critics */
    rt_tensor *q1, *q2;
    if (twin_q(S, A, A->q_w, A->q_b, b->obs_act, &q1, &q2) < 0) return -1;
    sac_config cc = A->critic_cfg;
    cc.alpha = alpha;
    sac_critic_inputs ci = {q1, q2, q1n, q2n, logp_next, b->rewards, b->dones};
    rt_tensor *qloss = sac_critic_loss(S, &cc, &ci, want ? &A->last_critic : NULL, NULL);
    if (!qloss) return -1;
    if (!isfinite(value_of(qloss))) {
        A->last_critic.loss = value_of(qloss);
        return 1;
    }
    if (descend(A->opt_q, qloss) < 0) return -1;
    A->updates++;

    /* 3. actor and temperature, delayed and compensated (CleanRL's TD3-style);
     * the actor's gradient goes through the critics' detached weights */
    if (A->updates % c->policy_frequency == 0) {
        for (int64_t k = 0; k < c->policy_frequency; k++) {
            rt_tensor *a_pi, *logp_pi, *q1p, *q2p;
            if (policy_sample(S, A, b->observations, &a_pi, &logp_pi) < 0 ||
                twin_q(S, A, A->q_w_cut, A->q_b_cut, state_action(S, b->observations, a_pi), &q1p, &q2p) < 0)
                return -1;
            sac_config ac = A->actor_cfg;
            ac.alpha = alpha;
            sac_actor_inputs ai = {logp_pi, q1p, q2p};
            if (descend(A->opt_actor, sac_actor_loss(S, &ac, &ai, want ? &A->last_actor : NULL)) < 0) return -1;
            if (c->autotune) {
                sac_alpha_inputs li = {A->log_alpha, rt_detach(S, logp_pi)};
                if (alpha_step(A, sac_alpha_loss(S, &A->alpha_cfg, &li, want ? &A->last_alpha : NULL), &alpha) < 0)
                    return -1;
            }
        }
    }
    /* 4. the targets */
    if (update_targets(A) < 0) return -1;
    A->last_alpha_value = alpha;
    return 0;
}

/* The discrete update (CleanRL sac_atari): the critics against the policy's
 * expectation at s', the actor and the temperature from the full
 * distribution at s. Same steps and return convention. */
static int update_discrete(sac_agent *A, rt_scope *S, const sac_batch *b, double alpha, int want) {
    const sac_agent_config *c = &A->cfg;
    int g = rt_no_grad_begin();
    rt_tensor *next_logits, *q1n, *q2n;
    actor_forward(S, A, b->next_observations, &next_logits, NULL);
    int rc = twin_q(S, A, A->qt_w, A->qt_b, b->next_observations, &q1n, &q2n); /* [B,n] each */
    rt_grad_mode_restore(g);
    rt_tensor *q1, *q2;
    if (rc < 0 || twin_q(S, A, A->q_w, A->q_b, b->observations, &q1, &q2) < 0) return -1;
    rt_tensor *acts = rt_to_dtype(S, rt_squeeze(S, b->actions, 1), RT_I64); /* [B] */
    sac_config cc = A->critic_cfg;
    cc.alpha = alpha;
    sac_discrete_critic_inputs ci = {q1, q2, acts, q1n, q2n, next_logits, b->rewards, b->dones};
    rt_tensor *qloss = sac_discrete_critic_loss(S, &cc, &ci, want ? &A->last_critic : NULL, NULL);
    if (!qloss) return -1;
    if (!isfinite(value_of(qloss))) {
        A->last_critic.loss = value_of(qloss);
        return 1;
    }
    if (descend(A->opt_q, qloss) < 0) return -1;
    A->updates++;
    if (A->updates % c->policy_frequency == 0) {
        for (int64_t k = 0; k < c->policy_frequency; k++) {
            rt_tensor *logits, *q1p, *q2p;
            actor_forward(S, A, b->observations, &logits, NULL);
            int g2 = rt_no_grad_begin(); /* the actor loss reads the critics detached */
            rc = twin_q(S, A, A->q_w, A->q_b, b->observations, &q1p, &q2p);
            rt_grad_mode_restore(g2);
            if (rc < 0) return -1;
            sac_config ac = A->actor_cfg;
            ac.alpha = alpha;
            sac_discrete_actor_inputs ai = {logits, q1p, q2p};
            if (descend(A->opt_actor, sac_discrete_actor_loss(S, &ac, &ai, want ? &A->last_actor : NULL)) < 0)
                return -1;
            if (c->autotune) {
                sac_discrete_alpha_inputs li = {A->log_alpha, rt_detach(S, logits)};
                if (alpha_step(A, sac_discrete_alpha_loss(S, &A->alpha_cfg, &li, want ? &A->last_alpha : NULL),
                               &alpha) < 0)
                    return -1;
            }
        }
    }
    if (update_targets(A) < 0) return -1;
    A->last_alpha_value = alpha;
    return 0;
}

int sac_agent_update(sac_agent *A, const sac_batch *b, int want_metrics) {
    if (!A || !b || !b->obs_act)
        return rt_set_error("sac_agent_update: NULL %s", !A ? "agent" : "batch (sac_agent_sample fills one)"),
               RT_EINVAL;
    double alpha = A->cfg.autotune ? exp(value_of(A->log_alpha)) : A->cfg.alpha;
    int rc = A->discrete ? update_discrete(A, A->S, b, alpha, want_metrics)
                         : update_continuous(A, A->S, b, alpha, want_metrics);
    rt_scope_reset(A->S);
    return rc;
}
