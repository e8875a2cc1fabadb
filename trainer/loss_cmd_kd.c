/*
 * loss_cmd_kd.c -- the `rlt loss kd` entry: the knowledge-distillation
 * losses of losses/kd.h on stored logits and labels.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <string.h>

#include "kd.h"
#include "loss_registry.h"

/* ------------------------------------------------------------------------ */
/* kd                                                                        */
/* ------------------------------------------------------------------------ */

static const loss_input kd_inputs_table[] = {
    {"student_logits", LOSS_IN_FLOAT, "B,C", 1, 0, "student logits (differentiated)"},
    {"teacher_logits", LOSS_IN_FLOAT, "B,C", 0, 0, "teacher logits (constant)"},
    {"labels", LOSS_IN_INT64, "B", 0, 0, "class labels"},
    {"student_aux_logits", LOSS_IN_FLOAT, "B,C", 1, 1, "dhkd: auxiliary head logits (differentiated)"},
};

/* --set kind=NAME first, then every other setting for that kind. */
static int kd_run(rt_scope *S, rt_tensor *const *in, const char *const *sets, int nsets, loss_result *out,
                  char *err, size_t errlen) {
    kd_kind kind = KD_HINTON;
    for (int i = 0; i < nsets; i++) {
        if (strncmp(sets[i], "kind=", 5) == 0) {
            kind = kd_kind_from_name(sets[i] + 5);
            if ((int)kind < 0 || kind >= KD_KIND_COUNT) {
                snprintf(err, errlen, "--set %s: unknown kind (hinton, lskd, dkd, nkd, pld, dhkd, topk, fkl, rkl, jsd)",
                         sets[i]);
                return -1;
            }
        }
    }
    kd_config cfg = kd_config_default(kind);
    for (int i = 0; i < nsets; i++) {
        if (strncmp(sets[i], "kind=", 5) == 0) continue;
        char key[128];
        const char *value;
        if (loss_split_setting(sets[i], key, sizeof key, &value, err, errlen) < 0) return -1;
        if (kd_config_set(&cfg, key, value) != RT_OK) {
            snprintf(err, errlen, "--set '%s': %s", sets[i], rt_last_error());
            return -1;
        }
    }
    kd_inputs ki = {in[0], in[1], in[2], in[3]};
    kd_metrics m;
    out->loss = kd_loss(S, &cfg, &ki, &m);
    if (!out->loss) {
        snprintf(err, errlen, "%s", rt_last_error());
        return -1;
    }
    size_t n;
    const kd_metric_desc *d = kd_metric_table(&n);
    for (size_t i = 0; i < n; i++)
        if (kd_metric_applies(&d[i], kind)) loss_add_metric(out, d[i].name, kd_metric_value(&m, &d[i]));
    return 0;
}

static void kd_help(FILE *out) {
    fprintf(out, "  settings: kind=NAME (default hinton), then that kind's settings:\n");
    for (int k = 0; k < KD_KIND_COUNT; k++) {
        size_t n;
        const kd_setting *s = kd_settings((kd_kind)k, &n);
        kd_config def = kd_config_default((kd_kind)k);
        fprintf(out, "    %-7s %s\n", kd_kind_name((kd_kind)k), kd_kind_help((kd_kind)k));
        for (size_t i = 0; i < n; i++) {
            char buf[64];
            fprintf(out, "      %-14s default %-8s %s\n", s[i].name, kd_setting_format(&def, &s[i], buf, sizeof buf),
                    s[i].help);
        }
    }
}

const loss_entry loss_entry_kd = {
    "kd", "knowledge-distillation losses (Hinton KD, LSKD, DKD, NKD, PLD, DHKD, top-k, FKL, RKL, JSD)",
    kd_inputs_table, (int)(sizeof kd_inputs_table / sizeof kd_inputs_table[0]), kd_run, kd_help,
};
