/*
 * loss_cmd_prefx.c -- the `rlt loss` entries simpo, orpo, kto and bco:
 * the losses of losses/prefx.h on stored sequence log-probs. Inputs are named
 * as in the spec's formulas (specs/pref_kd_losses.md section 4); log-probs are
 * SUMMED over completion tokens and the *_lengths inputs (token counts, same
 * float dtype) turn them into per-token averages where the loss wants them.
 * Every entry writes the per-example losses to /values/losses; kto and bco
 * also the implicit rewards beta*(policy - ref) to /values/rewards. Metrics a
 * batch cannot give (e.g. rewards/rejected with no undesirable example) are
 * left out, as TRL leaves them out of its logs.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loss_registry.h"
#include "prefx.h"

#define NIN(t) ((int)(sizeof(t) / sizeof((t)[0])))

/* ------------------------------------------------------------------------ */
/* Shared plumbing                                                           */
/* ------------------------------------------------------------------------ */

typedef int (*setter)(void *cfg, const char *name, const char *value);

/* Apply every --set except those named in skip (NULL-terminated). */
static int apply_sets(const char *const *sets, int nsets, const char *const *skip, setter set, void *cfg,
                      char *err, size_t errlen)
{
    for (int i = 0; i < nsets; i++) {
        char key[128];
        const char *value;
        if (loss_split_setting(sets[i], key, sizeof key, &value, err, errlen) < 0) return -1;
        int skipped = 0;
        for (int j = 0; skip && skip[j]; j++) skipped |= strcmp(key, skip[j]) == 0;
        if (skipped) continue;
        if (set(cfg, key, value) != RT_OK) {
            snprintf(err, errlen, "--set '%s': %s", sets[i], rt_last_error());
            return -1;
        }
    }
    return 0;
}

static void add_metrics(loss_result *out, const prefx_metric *tab, size_t n, const void *m)
{
    for (size_t i = 0; i < n; i++) {
        double v = prefx_metric_value(m, &tab[i]);
        if (!isnan(v)) loss_add_metric(out, tab[i].name, v);
    }
}

static void print_settings(FILE *out, const prefx_setting *tab, size_t n, const void *def)
{
    fprintf(out, "  settings:\n");
    for (size_t i = 0; i < n; i++) {
        char buf[64];
        fprintf(out, "    %-18s default %-9s %s\n", tab[i].name, prefx_setting_format(def, &tab[i], buf, sizeof buf),
                tab[i].help);
    }
}

static int failed(char *err, size_t errlen)
{
    snprintf(err, errlen, "%s", rt_last_error());
    return -1;
}

/* ------------------------------------------------------------------------ */
/* simpo                                                                     */
/* ------------------------------------------------------------------------ */

static const loss_input simpo_in[] = {
    {"policy_chosen_logps", LOSS_IN_FLOAT, "B", 1, 0,
     "summed log-prob of each chosen completion (differentiated)"},
    {"policy_rejected_logps", LOSS_IN_FLOAT, "B", 1, 0,
     "summed log-prob of each rejected completion (differentiated)"},
    {"chosen_lengths", LOSS_IN_FLOAT, "B", 0, 1,
     "chosen completion token counts; avg_w = policy_chosen_logps / chosen_lengths. Absent: the logps "
     "given are already per-token averages"},
    {"rejected_lengths", LOSS_IN_FLOAT, "B", 0, 1, "rejected completion token counts (with chosen_lengths)"},
};

static int set_simpo(void *c, const char *k, const char *v) { return simpo_config_set(c, k, v); }

static int simpo_run(rt_scope *S, rt_tensor *const *in, const char *const *sets, int nsets, loss_result *out,
                     char *err, size_t errlen)
{
    static const char *const presets[] = {"preset", NULL};
    simpo_config cfg = simpo_config_default();
    /* preset first, whatever the order on the command line */
    for (int i = 0; i < nsets; i++)
        if (strncmp(sets[i], "preset=", 7) == 0 && simpo_config_set(&cfg, "preset", sets[i] + 7) != RT_OK) {
            snprintf(err, errlen, "--set '%s': %s", sets[i], rt_last_error());
            return -1;
        }
    if (apply_sets(sets, nsets, presets, set_simpo, &cfg, err, errlen) < 0) return -1;
    simpo_inputs si = {in[0], in[1], in[2], in[3]};
    simpo_metrics m;
    rt_tensor *per = NULL;
    out->loss = simpo_loss(S, &cfg, &si, &m, &per);
    if (!out->loss) return failed(err, errlen);
    size_t n;
    const prefx_metric *tab = simpo_metric_table(&n);
    add_metrics(out, tab, n, &m);
    loss_add_value(out, "losses", per);
    return 0;
}

static void simpo_help(FILE *out)
{
    size_t n;
    const prefx_setting *tab = simpo_settings(&n);
    simpo_config def = simpo_config_default();
    fprintf(out, "  per pair: x = beta*(avg_w - avg_l) - gamma; sigmoid -(1-eps)logsig(x) - eps*logsig(-x) or\n"
                 "  hinge relu(1-x); loss = mean + sft_weight * token-mean NLL of the chosen completions\n");
    print_settings(out, tab, n, &def);
}

const loss_entry loss_entry_simpo = {
    "simpo", "SimPO: reference-free, length-normalized, target margin (official and TRL CPO loss_type=simpo)",
    simpo_in, NIN(simpo_in), simpo_run, simpo_help,
};

/* ------------------------------------------------------------------------ */
/* orpo                                                                      */
/* ------------------------------------------------------------------------ */

static const loss_input orpo_in[] = {
    {"policy_chosen_logps", LOSS_IN_FLOAT, "B", 1, 0, "summed log-prob of each chosen completion (differentiated)"},
    {"policy_rejected_logps", LOSS_IN_FLOAT, "B", 1, 0,
     "summed log-prob of each rejected completion (differentiated)"},
    {"chosen_lengths", LOSS_IN_FLOAT, "B", 0, 1,
     "chosen completion token counts (avg_w = logps / lengths); absent: the logps are averages"},
    {"rejected_lengths", LOSS_IN_FLOAT, "B", 0, 1, "rejected completion token counts (with chosen_lengths)"},
    {"policy_chosen_full_logps", LOSS_IN_FLOAT, "B", 1, 1,
     "summed log-prob of every non-pad token of prompt+chosen after the first: ORPO's NLL covers the prompt "
     "(differentiated). Absent: the NLL is over the chosen completions"},
    {"chosen_full_lengths", LOSS_IN_FLOAT, "B", 0, 1, "token count of policy_chosen_full_logps"},
};

static int set_orpo(void *c, const char *k, const char *v) { return orpo_config_set(c, k, v); }

static int orpo_run(rt_scope *S, rt_tensor *const *in, const char *const *sets, int nsets, loss_result *out,
                    char *err, size_t errlen)
{
    orpo_config cfg = orpo_config_default();
    if (apply_sets(sets, nsets, NULL, set_orpo, &cfg, err, errlen) < 0) return -1;
    orpo_inputs oi = {in[0], in[1], in[2], in[3], in[4], in[5]};
    orpo_metrics m;
    rt_tensor *per = NULL;
    out->loss = orpo_loss(S, &cfg, &oi, &m, &per);
    if (!out->loss) return failed(err, errlen);
    size_t n;
    const prefx_metric *tab = orpo_metric_table(&n);
    add_metrics(out, tab, n, &m);
    loss_add_value(out, "losses", per);
    return 0;
}

static void orpo_help(FILE *out)
{
    size_t n;
    const prefx_setting *tab = orpo_settings(&n);
    orpo_config def = orpo_config_default();
    fprintf(out, "  loss = NLL - beta * mean logsig(log_odds), log_odds = (aw - al) - (log(1-e^aw) - log(1-e^al));\n"
                 "  /values/losses holds -beta*logsig(log_odds) per pair\n");
    print_settings(out, tab, n, &def);
}

const loss_entry loss_entry_orpo = {
    "orpo", "ORPO: odds-ratio preference term + NLL of the chosen sequence (TRL ORPOTrainer)",
    orpo_in, NIN(orpo_in), orpo_run, orpo_help,
};

/* ------------------------------------------------------------------------ */
/* kto                                                                       */
/* ------------------------------------------------------------------------ */

static const loss_input kto_in[] = {
    {"policy_logps", LOSS_IN_FLOAT, "B", 1, 0, "summed log-prob of each completion (differentiated)"},
    {"ref_logps", LOSS_IN_FLOAT, "B", 0, 0, "the same under the reference model (constant)"},
    {"labels", LOSS_IN_MASK, "B", 0, 0, "1 = desirable, 0 = undesirable"},
    {"policy_kl_logps", LOSS_IN_FLOAT, "N", 0, 1,
     "policy log-probs of mismatched (prompt_i, completion_{i-1}) pairs for the KL reference point z = "
     "max(0, mean(policy_kl_logps - ref_kl_logps)), detached; required unless loss_type=apo_zero_unpaired"},
    {"ref_kl_logps", LOSS_IN_FLOAT, "N", 0, 1, "reference log-probs of the same mismatched pairs"},
};

static int set_kto(void *c, const char *k, const char *v) { return kto_config_set(c, k, v); }

/* beta*(policy - ref), detached, for /values/rewards. */
static rt_tensor *rewards_of(rt_scope *S, const rt_tensor *policy, const rt_tensor *ref, double beta)
{
    return rt_mul_scalar(S, rt_detach(S, rt_sub(S, policy, ref)), beta);
}

static int kto_run(rt_scope *S, rt_tensor *const *in, const char *const *sets, int nsets, loss_result *out,
                   char *err, size_t errlen)
{
    kto_config cfg = kto_config_default();
    if (apply_sets(sets, nsets, NULL, set_kto, &cfg, err, errlen) < 0) return -1;
    kto_inputs ki = {in[0], in[1], in[2], in[3], in[4]};
    kto_metrics m;
    rt_tensor *per = NULL;
    out->loss = kto_loss(S, &cfg, &ki, &m, &per);
    if (!out->loss) return failed(err, errlen);
    size_t n;
    const prefx_metric *tab = kto_metric_table(&n);
    add_metrics(out, tab, n, &m);
    loss_add_value(out, "losses", per);
    loss_add_value(out, "rewards", rewards_of(S, in[0], in[1], cfg.beta));
    return 0;
}

static void kto_help(FILE *out)
{
    size_t n;
    const prefx_setting *tab = kto_settings(&n);
    kto_config def = kto_config_default();
    fprintf(out, "  desirable lambda_D*(1 - sig(beta(r - z))), undesirable lambda_U*(1 - sig(beta(z - r))),\n"
                 "  r = policy - ref; loss = mean over all examples\n");
    print_settings(out, tab, n, &def);
}

const loss_entry loss_entry_kto = {
    "kto", "KTO: unpaired desirable/undesirable with a KL reference point (TRL KTOTrainer)",
    kto_in, NIN(kto_in), kto_run, kto_help,
};

/* ------------------------------------------------------------------------ */
/* bco                                                                       */
/* ------------------------------------------------------------------------ */

static const loss_input bco_in[] = {
    {"policy_logps", LOSS_IN_FLOAT, "B", 1, 0, "summed log-prob of each completion (differentiated)"},
    {"ref_logps", LOSS_IN_FLOAT, "B", 0, 0, "the same under the reference model (constant)"},
    {"labels", LOSS_IN_MASK, "B", 0, 0, "1 = desirable, 0 = undesirable"},
    {"udm_prob", LOSS_IN_FLOAT, "B", 0, 1,
     "UDM: P(desirable | prompt) from a prompt classifier; undesirable losses are weighted by "
     "clamp(p/(1-p+1e-8), min_density_ratio, max_density_ratio)"},
};

/* The running state comes in through settings and goes out as metrics
 * (running/mean, running/var, running/std, running/count). */
static const struct {
    const char *name;
    size_t offset;
    const char *help;
} bco_state_sets[] = {
    {"running_mean", offsetof(bco_running, mean), "running mean of the rewards before this batch (delta)"},
    {"running_var", offsetof(bco_running, var), "running population variance"},
    {"running_std", offsetof(bco_running, std), "running unbiased std (kept, not used by the loss)"},
    {"running_count", offsetof(bco_running, count), "rewards seen so far (TRL starts at 1e-24)"},
};

static int set_bco(void *c, const char *k, const char *v) { return bco_config_set(c, k, v); }

static int bco_run(rt_scope *S, rt_tensor *const *in, const char *const *sets, int nsets, loss_result *out,
                   char *err, size_t errlen)
{
    static const char *const skip[] = {"running_mean", "running_var", "running_std", "running_count", NULL};
    bco_config cfg = bco_config_default();
    bco_running st = bco_running_init();
    for (int i = 0; i < nsets; i++) {
        char key[128];
        const char *value;
        if (loss_split_setting(sets[i], key, sizeof key, &value, err, errlen) < 0) return -1;
        for (int j = 0; j < NIN(bco_state_sets); j++) {
            if (strcmp(key, bco_state_sets[j].name) != 0) continue;
            char *end = NULL;
            double v = strtod(value, &end);
            if (end == value || *end || !isfinite(v) || (j == 3 && !(v > 0)) || ((j == 1 || j == 2) && v < 0)) {
                snprintf(err, errlen, "--set '%s': %s must be a finite number%s", sets[i], key,
                         j == 3 ? " > 0" : j ? " >= 0" : "");
                return -1;
            }
            *(double *)((char *)&st + bco_state_sets[j].offset) = v;
        }
    }
    if (apply_sets(sets, nsets, skip, set_bco, &cfg, err, errlen) < 0) return -1;
    bco_inputs bi = {in[0], in[1], in[2], in[3]};
    bco_metrics m;
    rt_tensor *per = NULL;
    out->loss = bco_loss(S, &cfg, &bi, &st, &m, &per);
    if (!out->loss) return failed(err, errlen);
    size_t n;
    const prefx_metric *tab = bco_metric_table(&n);
    add_metrics(out, tab, n, &m);
    loss_add_value(out, "losses", per);
    loss_add_value(out, "rewards", rewards_of(S, in[0], in[1], cfg.beta));
    return 0;
}

static void bco_help(FILE *out)
{
    size_t n;
    const prefx_setting *tab = bco_settings(&n);
    bco_config def = bco_config_default();
    bco_running init = bco_running_init();
    fprintf(out, "  rw = beta*(policy - ref); delta = running mean of rw, updated with this batch first\n"
                 "  (TRL RunningMoments); desirable -logsig(rw - delta), undesirable -logsig(delta - rw)\n");
    print_settings(out, tab, n, &def);
    for (int j = 0; j < NIN(bco_state_sets); j++) {
        char buf[32];
        snprintf(buf, sizeof buf, "%.10g", *(const double *)((const char *)&init + bco_state_sets[j].offset));
        fprintf(out, "    %-18s default %-9s %s\n", bco_state_sets[j].name, buf, bco_state_sets[j].help);
    }
}

const loss_entry loss_entry_bco = {
    "bco", "BCO: binary classifier with a running-mean reward shift, optional UDM (TRL BCOTrainer)",
    bco_in, NIN(bco_in), bco_run, bco_help,
};
