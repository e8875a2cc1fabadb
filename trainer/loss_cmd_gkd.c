/*
 * loss_cmd_gkd.c -- the `rlt loss` entries gkd and aligndistil: the
 * token-level distillation losses of losses/gkd.h on stored sequence-model
 * logits [B,T,V] and a completion mask [B,T] (1 = a position that counts).
 *
 *   gkd          student_logits, teacher_logits, mask -> /loss, /grad/student_logits,
 *                /metrics/{loss,tokens,agreement}
 *   aligndistil  student_logits, dpo_logits, rev_logits, mask -> /loss,
 *                /grad/student_logits, /values/token_losses [B,T], /values/weights [B,T],
 *                /metrics/{loss,mean_weight,expected_reward,...}
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gkd.h"
#include "loss_registry.h"

#define NIN(t) ((int)(sizeof(t) / sizeof((t)[0])))

typedef int (*gkd_setter)(void *cfg, const char *name, const char *value);

/* Apply every --set, those named first_key first (a preset resets the rest). */
static int apply_sets(const char *const *sets, int nsets, const char *first_key, gkd_setter set, void *cfg, char *err,
                      size_t errlen)
{
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < nsets; i++) {
            char key[128];
            const char *value;
            if (loss_split_setting(sets[i], key, sizeof key, &value, err, errlen) < 0) return -1;
            int first = first_key && strcmp(key, first_key) == 0;
            if (first != (pass == 0)) continue;
            if (set(cfg, key, value) != RT_OK) {
                snprintf(err, errlen, "--set '%s': %s", sets[i], rt_last_error());
                return -1;
            }
        }
    }
    return 0;
}

static void add_metrics(loss_result *out, const gkd_metric *tab, size_t n, const void *m)
{
    for (size_t i = 0; i < n; i++) {
        double v = gkd_metric_value(m, &tab[i]);
        if (!isnan(v)) loss_add_metric(out, tab[i].name, v);
    }
}

static void print_settings(FILE *out, const gkd_setting *tab, size_t n, const void *def)
{
    fprintf(out, "  settings:\n");
    for (size_t i = 0; i < n; i++) {
        char buf[64];
        fprintf(out, "    %-16s default %-11s %s\n", tab[i].name, gkd_setting_format(def, &tab[i], buf, sizeof buf),
                tab[i].help);
    }
}

/* ------------------------------------------------------------------------ */
/* gkd                                                                       */
/* ------------------------------------------------------------------------ */

static const loss_input gkd_in[] = {
    {"student_logits", LOSS_IN_FLOAT, "B,T,V", 1, 0, "student logits per position (differentiated)"},
    {"teacher_logits", LOSS_IN_FLOAT, "B,T,V", 0, 0, "teacher logits per position (constant)"},
    {"mask", LOSS_IN_MASK, "B,T", 0, 0, "1 = a completion position that counts (TRL's label != -100)"},
};

static int set_gkd(void *c, const char *k, const char *v) { return gkd_config_set(c, k, v); }

static int gkd_run(rt_scope *S, rt_tensor *const *in, const char *const *sets, int nsets, loss_result *out,
                   char *err, size_t errlen)
{
    gkd_config cfg = gkd_config_default();
    if (apply_sets(sets, nsets, "preset", set_gkd, &cfg, err, errlen) < 0) return -1;
    gkd_inputs gi = {in[0], in[1], in[2]};
    gkd_metrics m;
    out->loss = gkd_loss(S, &cfg, &gi, &m);
    if (!out->loss) {
        snprintf(err, errlen, "%s", rt_last_error());
        return -1;
    }
    size_t n;
    const gkd_metric *tab = gkd_metric_table(&n);
    add_metrics(out, tab, n, &m);
    return 0;
}

static void gkd_help(FILE *out)
{
    size_t n;
    const gkd_setting *tab = gkd_settings(&n);
    gkd_config def = gkd_config_default();
    fprintf(out, "  per kept position, after z/T: beta 0 KL(teacher||student), beta 1 KL(student||teacher), else\n"
                 "  beta KL(t||m) + (1-beta) KL(s||m) with m = (1-beta) p_s + beta p_t; top_k > 0 restricts it to\n"
                 "  the top-k support (+ tail bucket). Masked positions are dropped before any arithmetic.\n");
    print_settings(out, tab, n, &def);
}

const loss_entry loss_entry_gkd = {
    "gkd", "GKD generalized JSD per token over [B,T,V] logits (TRL GKD/distillation; IW-OPD sparse top-k)",
    gkd_in, NIN(gkd_in), gkd_run, gkd_help,
};

/* ------------------------------------------------------------------------ */
/* aligndistil                                                               */
/* ------------------------------------------------------------------------ */

static const loss_input ald_in[] = {
    {"student_logits", LOSS_IN_FLOAT, "B,T,V", 1, 0, "student logits per response position (differentiated)"},
    {"dpo_logits", LOSS_IN_FLOAT, "B,T,V", 0, 0, "the DPO model's logits z_dpo (constant)"},
    {"rev_logits", LOSS_IN_FLOAT, "B,T,V", 0, 0,
     "the reverse DPO model's logits z_rev, trained on swapped pairs (constant)"},
    {"mask", LOSS_IN_MASK, "B,T", 0, 0, "1 = a response position that counts"},
};

static int set_ald(void *c, const char *k, const char *v) { return gkd_aligndistil_config_set(c, k, v); }

static int ald_run(rt_scope *S, rt_tensor *const *in, const char *const *sets, int nsets, loss_result *out,
                   char *err, size_t errlen)
{
    gkd_aligndistil_config cfg = gkd_aligndistil_config_default();
    if (apply_sets(sets, nsets, NULL, set_ald, &cfg, err, errlen) < 0) return -1;
    gkd_aligndistil_inputs ai = {in[0], in[1], in[2], in[3]};
    gkd_aligndistil_metrics m;
    rt_tensor *tok = NULL, *w = NULL;
    out->loss = gkd_aligndistil_loss(S, &cfg, &ai, &m, &tok, &w);
    if (!out->loss) {
        snprintf(err, errlen, "%s", rt_last_error());
        return -1;
    }
    size_t n;
    const gkd_metric *tab = gkd_aligndistil_metric_table(&n);
    add_metrics(out, tab, n, &m);
    loss_add_value(out, "token_losses", tok);
    loss_add_value(out, "weights", w);
    return 0;
}

static void ald_help(FILE *out)
{
    size_t n;
    const gkd_setting *tab = gkd_aligndistil_settings(&n);
    gkd_aligndistil_config def = gkd_aligndistil_config_default();
    fprintf(out, "  per kept position: w_t = beta2*TVD(p_dpo, p_rev) + 1e-3, teacher softmax((z_dpo + w_t(z_dpo -\n"
                 "  z_rev))/kd_temperature), l_t = (beta/w_t) KL(p_student || teacher); loss = mean over sequences\n"
                 "  of sum_t l_t (/ tokens with length_norm). Writes /values/token_losses and /values/weights [B,T].\n");
    print_settings(out, tab, n, &def);
}

const loss_entry loss_entry_aligndistil = {
    "aligndistil", "AlignDistil token-adaptive logit extrapolation from a DPO and a reverse DPO model (ACL 2025)",
    ald_in, NIN(ald_in), ald_run, ald_help,
};
