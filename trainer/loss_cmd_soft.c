/*
 * loss_cmd_soft.c -- the `rlt loss soft_logp` entry: SofT-GRPO's log-prob of
 * soft-thinking tokens (losses/soft.h, specs/pg_losses.md 4.3) on stored
 * top-k logits and perturbed logits g'. Writes /values/logp [N], /loss = the
 * sum of logp, /grad/topk_logits and the metrics.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <string.h>

#include "loss_registry.h"
#include "settings.h"
#include "soft.h"

static const loss_input soft_inputs_table[] = {
    {"topk_logits", LOSS_IN_FLOAT, "N,K", 1, 0,
     "logits of the K stored candidate ids of each soft token, in stored order (differentiated)"},
    {"gumbel_logits", LOSS_IN_FLOAT, "N,K", 0, 0, "the stored perturbed logits g' = log p~ + eps (constant)"},
};

/* The settings soft_logp reads; the rollout's (tau_g, top_k, ...) do not
 * apply to a stored token. */
static const char *const logp_settings[] = {"temperature", "z_min", "z_max", "keep_logp", "prob_eps"};
#define NSET (sizeof logp_settings / sizeof logp_settings[0])

static int soft_logp_run(rt_scope *S, rt_tensor *const *in, const char *const *sets, int nsets, loss_result *out,
                         char *err, size_t errlen) {
    soft_config cfg = soft_config_default();
    for (int i = 0; i < nsets; i++) {
        char key[128];
        const char *value;
        if (loss_split_setting(sets[i], key, sizeof key, &value, err, errlen) < 0) return -1;
        size_t j = 0;
        while (j < NSET && strcmp(key, logp_settings[j]) != 0) j++;
        if (j == NSET) {
            char valid[128];
            const char *near = lset_nearest(key, logp_settings, NSET);
            lset_join(valid, sizeof valid, logp_settings, NSET);
            if (near)
                snprintf(err, errlen, "--set '%s': unknown setting '%s' (did you mean '%s'?); valid: %s", sets[i], key,
                         near, valid);
            else
                snprintf(err, errlen, "--set '%s': unknown setting '%s'; valid: %s", sets[i], key, valid);
            return -1;
        }
        if (soft_config_set(&cfg, key, value) != RT_OK) {
            snprintf(err, errlen, "--set '%s': %s", sets[i], rt_last_error());
            return -1;
        }
    }
    soft_metrics m;
    rt_tensor *logp = soft_logp(S, &cfg, in[0], in[1], &m); /* [N] */
    out->loss = logp ? rt_sum(S, logp, RT_DIM_ALL, 0) : NULL;
    if (!out->loss) {
        snprintf(err, errlen, "%s", rt_last_error());
        return -1;
    }
    loss_add_value(out, "logp", logp);
    loss_add_metric(out, "count", m.count);
    loss_add_metric(out, "kept_mean", m.kept_mean);
    loss_add_metric(out, "clamp_frac", m.clamp_frac);
    loss_add_metric(out, "empty_rows", m.empty_rows);
    return 0;
}

static void soft_logp_help(FILE *out) {
    soft_config def = soft_config_default();
    size_t n;
    const soft_setting *s = soft_settings(&n);
    fprintf(out, "  outputs: /values/logp [N], /loss = sum of logp, /grad/topk_logits;\n"
                 "           metrics count, kept_mean (mean M), clamp_frac, empty_rows (M = 0 -> logp 0)\n"
                 "  settings:\n");
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < NSET; j++) {
            if (strcmp(s[i].name, logp_settings[j]) != 0) continue;
            char buf[64];
            fprintf(out, "    %-12s default %-8s %s\n", s[i].name, soft_setting_format(&def, &s[i], buf, sizeof buf),
                    s[i].help);
        }
    }
}

const loss_entry loss_entry_soft_logp = {
    "soft_logp",
    "SofT-GRPO soft-token log-prob: masked mean of clamped Gumbel log-densities of g' - log q (pg_losses.md 4.3)",
    soft_inputs_table, (int)(sizeof soft_inputs_table / sizeof soft_inputs_table[0]), soft_logp_run, soft_logp_help,
};
