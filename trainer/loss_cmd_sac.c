/*
 * loss_cmd_sac.c -- the `rlt loss` entries of the SAC family (losses/sac.h):
 * sac_critic, sac_actor, sac_alpha, squashed_gaussian_logp and the discrete
 * variants sac_discrete_critic, sac_discrete_actor, sac_discrete_alpha, on
 * stored network outputs. Inputs are named as in specs/sac_envs.md 1.1/1.6.
 * Every entry takes --set reference=recommended|sb3|cleanrl (applied first)
 * and then its own settings.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <string.h>

#include "loss_registry.h"
#include "sac.h"

#define NIN(t) ((int)(sizeof(t) / sizeof((t)[0])))

/* reference=NAME first, then every other "name=value" for part. */
static int config_from_sets(sac_part part, const char *const *sets, int nsets, sac_config *cfg, char *err,
                            size_t errlen)
{
    sac_reference ref = SAC_REF_RECOMMENDED;
    for (int i = 0; i < nsets; i++) {
        if (strncmp(sets[i], "reference=", 10) != 0) continue;
        int r = sac_reference_from_name(sets[i] + 10);
        if (r < 0) {
            snprintf(err, errlen, "--set %s: unknown reference (recommended, sb3, cleanrl)", sets[i]);
            return -1;
        }
        ref = (sac_reference)r;
    }
    *cfg = sac_config_reference(part, ref);
    for (int i = 0; i < nsets; i++) {
        if (strncmp(sets[i], "reference=", 10) == 0) continue;
        char key[128];
        const char *value;
        if (loss_split_setting(sets[i], key, sizeof key, &value, err, errlen) < 0) return -1;
        if (sac_config_set(cfg, part, key, value) != RT_OK) {
            snprintf(err, errlen, "--set '%s': %s", sets[i], rt_last_error());
            return -1;
        }
    }
    if (sac_config_check(cfg) != RT_OK) {
        snprintf(err, errlen, "%s", rt_last_error());
        return -1;
    }
    return 0;
}

static void add_metrics(loss_result *out, sac_part part, const sac_metrics *m)
{
    size_t n;
    const sac_metric_desc *d = sac_metric_table(&n);
    for (size_t i = 0; i < n; i++)
        if (sac_metric_applies(&d[i], part)) loss_add_metric(out, d[i].name, sac_metric_value(m, &d[i]));
}

static int failed(char *err, size_t errlen)
{
    snprintf(err, errlen, "%s", rt_last_error());
    return -1;
}

static void help_part(FILE *out, sac_part part, const char *outputs)
{
    size_t n;
    const sac_setting *s = sac_settings(part, &n);
    sac_config def = sac_config_default(part);
    fprintf(out, "  settings: reference=recommended|sb3|cleanrl (default recommended; applied first), then:\n");
    for (size_t i = 0; i < n; i++) {
        char buf[64];
        fprintf(out, "    %-22s default %-10s %s\n", s[i].name, sac_setting_format(&def, &s[i], buf, sizeof buf),
                s[i].help);
    }
    if (outputs) fprintf(out, "  outputs: %s\n", outputs);
}

/* ------------------------------------------------------------------------ */
/* sac_critic                                                                */
/* ------------------------------------------------------------------------ */

enum { CR_Q1, CR_Q2, CR_Q1N, CR_Q2N, CR_NLP, CR_R, CR_TERM };

static const loss_input critic_inputs[] = {
    [CR_Q1] = {"q1", LOSS_IN_FLOAT, "B", 1, 0, "Q1(s,a) of the stored actions (differentiated)"},
    [CR_Q2] = {"q2", LOSS_IN_FLOAT, "B", 1, 0, "Q2(s,a) (differentiated)"},
    [CR_Q1N] = {"q1_next", LOSS_IN_FLOAT, "B", 0, 0, "target Q1'(s',a'), a' ~ pi(.|s') (detached)"},
    [CR_Q2N] = {"q2_next", LOSS_IN_FLOAT, "B", 0, 0, "target Q2'(s',a') (detached)"},
    [CR_NLP] = {"next_logp", LOSS_IN_FLOAT, "B", 0, 0, "log pi(a'|s') (detached)"},
    [CR_R] = {"rewards", LOSS_IN_FLOAT, "B", 0, 0, "rewards r"},
    [CR_TERM] = {"terminated", LOSS_IN_MASK, "B", 0, 1,
                 "nonzero = terminal s' (no bootstrap; truncation still bootstraps); absent = none"},
};

static int critic_run(rt_scope *S, rt_tensor *const *in, const char *const *sets, int nsets, loss_result *out,
                      char *err, size_t errlen)
{
    sac_config cfg;
    if (config_from_sets(SAC_PART_CRITIC, sets, nsets, &cfg, err, errlen) < 0) return -1;
    sac_critic_inputs ci = {in[CR_Q1], in[CR_Q2], in[CR_Q1N], in[CR_Q2N], in[CR_NLP], in[CR_R], in[CR_TERM]};
    sac_metrics m;
    rt_tensor *target = NULL;
    out->loss = sac_critic_loss(S, &cfg, &ci, &m, &target);
    if (!out->loss) return failed(err, errlen);
    add_metrics(out, SAC_PART_CRITIC, &m);
    loss_add_value(out, "target", target);
    return 0;
}

static void critic_help(FILE *out)
{
    fprintf(out, "  y = r + gamma (1 - terminated)(min(q1_next, q2_next) - alpha next_logp);"
                 " loss = k (mse(q1, y) + mse(q2, y))\n");
    help_part(out, SAC_PART_CRITIC, "/values/target [B] (y)");
}

const loss_entry loss_entry_sac_critic = {
    "sac_critic", "SAC twin-Q loss against the clipped double-Q soft Bellman target",
    critic_inputs, NIN(critic_inputs), critic_run, critic_help,
};

/* ------------------------------------------------------------------------ */
/* sac_actor                                                                 */
/* ------------------------------------------------------------------------ */

static const loss_input actor_inputs[] = {
    {"logp", LOSS_IN_FLOAT, "B", 1, 0, "log pi(a~|s) of the reparameterized sample (differentiated)"},
    {"q1", LOSS_IN_FLOAT, "B", 1, 0, "Q1(s, a~) (differentiated: the gradient flows into a~)"},
    {"q2", LOSS_IN_FLOAT, "B", 1, 0, "Q2(s, a~) (differentiated)"},
};

static int actor_run(rt_scope *S, rt_tensor *const *in, const char *const *sets, int nsets, loss_result *out,
                     char *err, size_t errlen)
{
    sac_config cfg;
    if (config_from_sets(SAC_PART_ACTOR, sets, nsets, &cfg, err, errlen) < 0) return -1;
    sac_actor_inputs ai = {in[0], in[1], in[2]};
    sac_metrics m;
    out->loss = sac_actor_loss(S, &cfg, &ai, &m);
    if (!out->loss) return failed(err, errlen);
    add_metrics(out, SAC_PART_ACTOR, &m);
    return 0;
}

static void actor_help(FILE *out)
{
    fprintf(out, "  loss = mean(alpha logp - min(q1, q2))\n");
    help_part(out, SAC_PART_ACTOR, NULL);
}

const loss_entry loss_entry_sac_actor = {
    "sac_actor", "SAC reparameterized policy loss", actor_inputs, NIN(actor_inputs), actor_run, actor_help,
};

/* ------------------------------------------------------------------------ */
/* sac_alpha                                                                 */
/* ------------------------------------------------------------------------ */

/* "1" binds a one-element dimension: log_alpha is [1] in CleanRL and SB3 */
static const loss_input alpha_inputs[] = {
    {"log_alpha", LOSS_IN_FLOAT, "1", 1, 0, "log of the temperature, one value (differentiated)"},
    {"logp", LOSS_IN_FLOAT, "B", 0, 0, "log pi(a|s) of fresh policy samples (detached)"},
};

static int alpha_run(rt_scope *S, rt_tensor *const *in, const char *const *sets, int nsets, loss_result *out,
                     char *err, size_t errlen)
{
    sac_config cfg;
    if (config_from_sets(SAC_PART_ALPHA, sets, nsets, &cfg, err, errlen) < 0) return -1;
    sac_alpha_inputs ai = {in[0], in[1]};
    sac_metrics m;
    out->loss = sac_alpha_loss(S, &cfg, &ai, &m);
    if (!out->loss) return failed(err, errlen);
    add_metrics(out, SAC_PART_ALPHA, &m);
    return 0;
}

static void alpha_help(FILE *out)
{
    fprintf(out, "  loss = -mean(log_alpha (logp + H)) (log_alpha) or -mean(exp(log_alpha)(logp + H)) (alpha)\n");
    help_part(out, SAC_PART_ALPHA, NULL);
}

const loss_entry loss_entry_sac_alpha = {
    "sac_alpha", "SAC temperature loss on log alpha with target entropy -|A|",
    alpha_inputs, NIN(alpha_inputs), alpha_run, alpha_help,
};

/* ------------------------------------------------------------------------ */
/* squashed_gaussian_logp                                                    */
/* ------------------------------------------------------------------------ */

enum { SG_MEAN, SG_LOG_STD, SG_NOISE, SG_LOW, SG_HIGH };

static const loss_input squash_inputs[] = {
    [SG_MEAN] = {"mean", LOSS_IN_FLOAT, "B,A", 1, 0, "Gaussian mean head (differentiated)"},
    [SG_LOG_STD] = {"log_std", LOSS_IN_FLOAT, "B,A", 1, 0,
                    "log-std head's raw output, transformed by log_std_mode (differentiated)"},
    [SG_NOISE] = {"noise", LOSS_IN_FLOAT, "B,A", 0, 0, "eps ~ N(0,1): u = mean + exp(log_std) eps"},
    [SG_LOW] = {"action_low", LOSS_IN_FLOAT, "A", 0, 1, "Box lower bounds (absent: actions in [-1,1])"},
    [SG_HIGH] = {"action_high", LOSS_IN_FLOAT, "A", 0, 1, "Box upper bounds (given with action_low)"},
};

static int squash_run(rt_scope *S, rt_tensor *const *in, const char *const *sets, int nsets, loss_result *out,
                      char *err, size_t errlen)
{
    sac_config cfg;
    if (config_from_sets(SAC_PART_SQUASH, sets, nsets, &cfg, err, errlen) < 0) return -1;
    sac_squash_inputs si = {in[SG_MEAN], in[SG_LOG_STD], in[SG_NOISE], in[SG_LOW], in[SG_HIGH]};
    sac_squash_out o;
    sac_metrics m;
    if (sac_squashed_gaussian(S, &cfg, &si, NULL, &o, &m) != RT_OK) return failed(err, errlen);
    /* the rows are independent, so /grad/<x>[b] = d logp[b] / d x[b] */
    out->loss = rt_sum(S, o.logp, RT_DIM_ALL, 0);
    if (!out->loss) return failed(err, errlen);
    add_metrics(out, SAC_PART_SQUASH, &m);
    loss_add_value(out, "action", o.action);
    loss_add_value(out, "logp", o.logp);
    loss_add_value(out, "squashed", o.squashed);
    loss_add_value(out, "log_std", o.log_std);
    loss_add_value(out, "mean_action", o.mean_action);
    return 0;
}

static void squash_help(FILE *out)
{
    fprintf(out, "  a = tanh(mean + exp(log_std) noise) * scale + bias; loss = sum_b logp[b], so /grad/<x>[b] is"
                 " d logp[b] / d x[b]\n");
    help_part(out, SAC_PART_SQUASH,
              "/values/action [B,A] (env units), /values/logp [B], /values/squashed [B,A] (tanh(u)), "
              "/values/log_std [B,A] (effective), /values/mean_action [B,A] (deterministic)");
}

const loss_entry loss_entry_squashed_gaussian_logp = {
    "squashed_gaussian_logp", "tanh-squashed Gaussian sample and its log-prob (stable correction)",
    squash_inputs, NIN(squash_inputs), squash_run, squash_help,
};

/* ------------------------------------------------------------------------ */
/* Discrete SAC (CleanRL sac_atari)                                          */
/* ------------------------------------------------------------------------ */

enum { DC_Q1, DC_Q2, DC_ACT, DC_Q1N, DC_Q2N, DC_NLOGITS, DC_R, DC_TERM };

static const loss_input dcritic_inputs[] = {
    [DC_Q1] = {"q1", LOSS_IN_FLOAT, "B,A", 1, 0, "Q1(s,.) over all actions (differentiated)"},
    [DC_Q2] = {"q2", LOSS_IN_FLOAT, "B,A", 1, 0, "Q2(s,.) (differentiated)"},
    [DC_ACT] = {"actions", LOSS_IN_INT64, "B", 0, 0, "the actions taken, in [0, A)"},
    [DC_Q1N] = {"q1_next", LOSS_IN_FLOAT, "B,A", 0, 0, "target Q1'(s',.) (detached)"},
    [DC_Q2N] = {"q2_next", LOSS_IN_FLOAT, "B,A", 0, 0, "target Q2'(s',.) (detached)"},
    [DC_NLOGITS] = {"next_logits", LOSS_IN_FLOAT, "B,A", 0, 0, "policy logits at s' (detached; -inf = forbidden)"},
    [DC_R] = {"rewards", LOSS_IN_FLOAT, "B", 0, 0, "rewards r"},
    [DC_TERM] = {"terminated", LOSS_IN_MASK, "B", 0, 1, "nonzero = terminal s'; absent = none"},
};

static int dcritic_run(rt_scope *S, rt_tensor *const *in, const char *const *sets, int nsets, loss_result *out,
                       char *err, size_t errlen)
{
    sac_config cfg;
    if (config_from_sets(SAC_PART_DISCRETE_CRITIC, sets, nsets, &cfg, err, errlen) < 0) return -1;
    sac_discrete_critic_inputs ci = {in[DC_Q1],      in[DC_Q2], in[DC_ACT], in[DC_Q1N], in[DC_Q2N],
                                     in[DC_NLOGITS], in[DC_R],  in[DC_TERM]};
    sac_metrics m;
    rt_tensor *target = NULL;
    out->loss = sac_discrete_critic_loss(S, &cfg, &ci, &m, &target);
    if (!out->loss) return failed(err, errlen);
    add_metrics(out, SAC_PART_DISCRETE_CRITIC, &m);
    loss_add_value(out, "target", target);
    return 0;
}

static void dcritic_help(FILE *out)
{
    fprintf(out, "  y = r + gamma (1 - terminated) sum_a pi'(a)(min(q1_next, q2_next)(a) - alpha log pi'(a));"
                 " loss = k (mse(q1[a], y) + mse(q2[a], y))\n");
    help_part(out, SAC_PART_DISCRETE_CRITIC, "/values/target [B] (y)");
}

const loss_entry loss_entry_sac_discrete_critic = {
    "sac_discrete_critic", "discrete SAC twin-Q loss, target under the full next-state policy (CleanRL sac_atari)",
    dcritic_inputs, NIN(dcritic_inputs), dcritic_run, dcritic_help,
};

static const loss_input dactor_inputs[] = {
    {"logits", LOSS_IN_FLOAT, "B,A", 1, 0, "policy logits at s (differentiated)"},
    {"q1", LOSS_IN_FLOAT, "B,A", 0, 0, "Q1(s,.) (detached)"},
    {"q2", LOSS_IN_FLOAT, "B,A", 0, 0, "Q2(s,.) (detached)"},
};

static int dactor_run(rt_scope *S, rt_tensor *const *in, const char *const *sets, int nsets, loss_result *out,
                      char *err, size_t errlen)
{
    sac_config cfg;
    if (config_from_sets(SAC_PART_DISCRETE_ACTOR, sets, nsets, &cfg, err, errlen) < 0) return -1;
    sac_discrete_actor_inputs ai = {in[0], in[1], in[2]};
    sac_metrics m;
    out->loss = sac_discrete_actor_loss(S, &cfg, &ai, &m);
    if (!out->loss) return failed(err, errlen);
    add_metrics(out, SAC_PART_DISCRETE_ACTOR, &m);
    return 0;
}

static void dactor_help(FILE *out)
{
    fprintf(out, "  loss = R(pi (alpha log pi - min(q1, q2)))\n");
    help_part(out, SAC_PART_DISCRETE_ACTOR, NULL);
}

const loss_entry loss_entry_sac_discrete_actor = {
    "sac_discrete_actor", "discrete SAC policy loss (exact expectation over actions, CleanRL sac_atari)",
    dactor_inputs, NIN(dactor_inputs), dactor_run, dactor_help,
};

static const loss_input dalpha_inputs[] = {
    {"log_alpha", LOSS_IN_FLOAT, "1", 1, 0, "log of the temperature, one value (differentiated)"},
    {"logits", LOSS_IN_FLOAT, "B,A", 0, 0, "policy logits at s (detached)"},
};

static int dalpha_run(rt_scope *S, rt_tensor *const *in, const char *const *sets, int nsets, loss_result *out,
                      char *err, size_t errlen)
{
    sac_config cfg;
    if (config_from_sets(SAC_PART_DISCRETE_ALPHA, sets, nsets, &cfg, err, errlen) < 0) return -1;
    sac_discrete_alpha_inputs ai = {in[0], in[1]};
    sac_metrics m;
    out->loss = sac_discrete_alpha_loss(S, &cfg, &ai, &m);
    if (!out->loss) return failed(err, errlen);
    add_metrics(out, SAC_PART_DISCRETE_ALPHA, &m);
    return 0;
}

static void dalpha_help(FILE *out)
{
    fprintf(out, "  loss = R(pi * -(exp(log_alpha) or log_alpha)(log pi + H)), H = 0.89 log A by default\n");
    help_part(out, SAC_PART_DISCRETE_ALPHA, NULL);
}

const loss_entry loss_entry_sac_discrete_alpha = {
    "sac_discrete_alpha", "discrete SAC temperature loss (CleanRL sac_atari)",
    dalpha_inputs, NIN(dalpha_inputs), dalpha_run, dalpha_help,
};
