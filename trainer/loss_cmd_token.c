/*
 * loss_cmd_token.c -- the `rlt loss token_logps` entry: per-token
 * log-probabilities and entropies of sampled ids under tempered logits, by
 * the fused kernel rt_token_logps (tensor.h), which every sequence loss
 * consumes.
 *
 *   inputs   logits [B,T,V] float (differentiated), ids [B,T] int64
 *   setting  temperature (default 1.0; logits are divided by it, as TRL does)
 *   outputs  /values/logps [B,T], /values/entropy [B,T],
 *            /loss = sum of logps, /grad/logits = d loss / d logits,
 *            /metrics/logp_mean, /metrics/entropy_mean (over all B*T tokens)
 * The entropy is written detached (TRL computes it under no_grad); the loss,
 * and so /grad/logits, depends on the log-probs only.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loss_registry.h"
#include "settings.h"

#define TOKEN_DEFAULT_TEMPERATURE 1.0

static const loss_input token_inputs_table[] = {
    {"logits", LOSS_IN_FLOAT, "B,T,V", 1, 0, "policy logits over the vocabulary (differentiated)"},
    {"ids", LOSS_IN_INT64, "B,T", 0, 0, "sampled token ids in [0, V)"},
};

static int token_run(rt_scope *S, rt_tensor *const *in, const char *const *sets, int nsets, loss_result *out,
                     char *err, size_t errlen) {
    double temperature = TOKEN_DEFAULT_TEMPERATURE;
    for (int i = 0; i < nsets; i++) {
        char key[64];
        const char *value;
        if (loss_split_setting(sets[i], key, sizeof key, &value, err, errlen) < 0) return -1;
        if (strcmp(key, "temperature") != 0) {
            static const char *const names[] = {"temperature"};
            const char *near = lset_nearest(key, names, 1);
            if (near)
                snprintf(err, errlen, "--set '%s': unknown setting '%s' (did you mean '%s'?); token_logps has: %s",
                         sets[i], key, near, names[0]);
            else
                snprintf(err, errlen, "--set '%s': unknown setting '%s'; token_logps has: %s", sets[i], key,
                         names[0]);
            return -1;
        }
        char *end;
        errno = 0;
        double v = strtod(value, &end);
        if (end == value || *end != '\0' || errno != 0 || !isfinite(v) || v <= 0.0) {
            snprintf(err, errlen, "--set '%s': temperature must be a finite number > 0", sets[i]);
            return -1;
        }
        temperature = v;
    }

    rt_tensor *entropy = NULL;
    rt_tensor *logps = rt_token_logps(S, in[0], in[1], temperature, &entropy);
    out->loss = rt_sum(S, logps, RT_DIM_ALL, 0);
    rt_tensor *ent = rt_detach(S, entropy);
    double logp_mean = rt_item(rt_mean(S, logps, RT_DIM_ALL, 0));
    double entropy_mean = rt_item(rt_mean(S, ent, RT_DIM_ALL, 0));
    if (!out->loss || !ent || !logps) {
        snprintf(err, errlen, "%s", rt_last_error());
        return -1;
    }
    loss_add_value(out, "logps", logps);
    loss_add_value(out, "entropy", ent);
    loss_add_metric(out, "logp_mean", logp_mean);
    loss_add_metric(out, "entropy_mean", entropy_mean);
    return 0;
}

static void token_help(FILE *out) {
    fprintf(out, "  settings:\n");
    fprintf(out, "    %-14s default %-8g %s\n", "temperature", TOKEN_DEFAULT_TEMPERATURE,
            "sampling temperature; log-probs and entropies are of softmax(logits / temperature)");
    fprintf(out, "  outputs: /values/logps [B,T], /values/entropy [B,T] (detached), /loss = sum of logps,\n"
                 "           /grad/logits, /metrics/logp_mean, /metrics/entropy_mean\n");
}

const loss_entry loss_entry_token_logps = {
    "token_logps",
    "per-token log-probs and entropies of sampled ids from logits (fused kernel, temperature as TRL)",
    token_inputs_table,
    (int)(sizeof token_inputs_table / sizeof token_inputs_table[0]),
    token_run,
    token_help,
};
