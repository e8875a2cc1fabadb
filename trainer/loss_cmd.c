/*
 * loss_cmd.c -- `rlt loss NAME --in IN.h5 --out OUT.h5 [--set k=v ...]`:
 * evaluate any registered loss on tensors stored in HDF5, so a user can check
 * rlt's numbers against another implementation from outside.
 *
 * Inputs are root datasets named as the loss's inputs (float32 or float64, the
 * computation runs in that dtype; int64 for labels/ids). The output file gets
 *   /loss               scalar, the input dtype
 *   /grad/<input>       d loss / d input for every differentiated float input
 *   /metrics/<name>     float64 scalars (what the training loop logs)
 * A missing or ill-shaped input, an unknown NAME or setting exits with 2 and a
 * message naming the dataset and the expected shape.
 *
 * Each loss is one table entry: its inputs with symbolic shapes ("B,C": every
 * input using B must agree on it) and a run function.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5io.h"
#include "kd.h"
#include "loss_cmd.h"
#include "run.h"
#include "tensor.h"

#define LOSS_MAX_INPUTS 16
#define LOSS_MAX_METRICS 64

typedef enum { IN_FLOAT, IN_INT64 } loss_in_kind;

typedef struct loss_input {
    const char *name;
    loss_in_kind kind;
    const char *dims;   /* symbolic shape, e.g. "B,C" */
    int differentiate;  /* float inputs whose gradient is written */
    int optional;
    const char *help;
} loss_input;

typedef struct loss_result {
    rt_tensor *loss; /* 0-dim */
    int nmetrics;
    const char *metric_name[LOSS_MAX_METRICS];
    double metric_value[LOSS_MAX_METRICS];
} loss_result;

typedef struct loss_entry {
    const char *name;
    const char *summary;
    const loss_input *inputs;
    int ninputs;
    /* Parse settings; evaluate. in[i] is NULL for an absent optional input. */
    int (*run)(rt_scope *S, rt_tensor *const *in, const char *const *sets, int nsets, loss_result *out,
               char *err, size_t errlen);
    void (*help)(FILE *out);
} loss_entry;

/* ------------------------------------------------------------------------ */
/* kd                                                                        */
/* ------------------------------------------------------------------------ */

static const loss_input kd_inputs_table[] = {
    {"student_logits", IN_FLOAT, "B,C", 1, 0, "student logits (differentiated)"},
    {"teacher_logits", IN_FLOAT, "B,C", 0, 0, "teacher logits (constant)"},
    {"labels", IN_INT64, "B", 0, 0, "class labels"},
    {"student_aux_logits", IN_FLOAT, "B,C", 1, 1, "dhkd: auxiliary head logits (differentiated)"},
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
        const char *eq = strchr(sets[i], '=');
        if (!eq || eq == sets[i] || (size_t)(eq - sets[i]) >= sizeof key) {
            snprintf(err, errlen, "--set '%s': expected name=value", sets[i]);
            return -1;
        }
        memcpy(key, sets[i], (size_t)(eq - sets[i]));
        key[eq - sets[i]] = '\0';
        if (kd_config_set(&cfg, key, eq + 1) != RT_OK) {
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
    for (size_t i = 0; i < n && out->nmetrics < LOSS_MAX_METRICS; i++) {
        if (!kd_metric_applies(&d[i], kind)) continue;
        out->metric_name[out->nmetrics] = d[i].name;
        out->metric_value[out->nmetrics++] = kd_metric_value(&m, &d[i]);
    }
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

/* ------------------------------------------------------------------------ */
/* Registry                                                                  */
/* ------------------------------------------------------------------------ */

static const loss_entry loss_registry[] = {
    {"kd", "knowledge-distillation losses (Hinton KD, LSKD, DKD, NKD, PLD, DHKD, top-k, FKL, RKL, JSD)",
     kd_inputs_table, (int)(sizeof kd_inputs_table / sizeof kd_inputs_table[0]), kd_run, kd_help},
};
static const int loss_registry_count = (int)(sizeof loss_registry / sizeof loss_registry[0]);

void loss_cmd_help(FILE *out) {
    fprintf(out,
            "usage: rlt loss NAME --in IN.h5 --out OUT.h5 [--set name=value ...]\n\n"
            "Evaluates a loss on root datasets of IN.h5 (float32 or float64; the loss runs in that dtype;\n"
            "int64 labels) and writes /loss, /grad/<input> and /metrics/<name> to OUT.h5.\n"
            "Options:\n"
            "  --in PATH         input HDF5 file (required)\n"
            "  --out PATH        output HDF5 file, replaced atomically (required)\n"
            "  --set NAME=VALUE  a loss setting (repeatable; default: the reference's value)\n\n");
    for (int i = 0; i < loss_registry_count; i++) {
        const loss_entry *e = &loss_registry[i];
        fprintf(out, "%s: %s\n  inputs:\n", e->name, e->summary);
        for (int j = 0; j < e->ninputs; j++)
            fprintf(out, "    %-20s [%s] %s%s%s\n", e->inputs[j].name, e->inputs[j].dims,
                    e->inputs[j].kind == IN_INT64 ? "int64" : "float32|float64",
                    e->inputs[j].optional ? ", optional" : "", "");
        for (int j = 0; j < e->ninputs; j++)
            fprintf(out, "      %s: %s\n", e->inputs[j].name, e->inputs[j].help);
        if (e->help) e->help(out);
    }
}

/* Binds symbolic dims ("B,C") to the dataset's shape; reports disagreement. */
typedef struct dim_binding {
    char sym[8][8];
    int64_t val[8];
    int n;
} dim_binding;

static int bind_dims(dim_binding *b, const loss_input *in, const int64_t *shape, int ndim, char *err, size_t errlen) {
    char syms[8][8];
    int ns = 0;
    const char *p = in->dims;
    while (*p && ns < 8) {
        int k = 0;
        while (*p && *p != ',' && k < 7) syms[ns][k++] = *p++;
        syms[ns++][k] = '\0';
        if (*p == ',') p++;
    }
    char expected[512] = "[", got[128];
    for (int i = 0; i < ns; i++) {
        int64_t v = -1;
        for (int j = 0; j < b->n; j++)
            if (strcmp(b->sym[j], syms[i]) == 0) v = b->val[j];
        char part[96];
        if (v >= 0) snprintf(part, sizeof part, "%s%s=%lld", i ? ", " : "", syms[i], (long long)v);
        else snprintf(part, sizeof part, "%s%s", i ? ", " : "", syms[i]);
        strncat(expected, part, sizeof expected - strlen(expected) - 1);
    }
    strncat(expected, "]", sizeof expected - strlen(expected) - 1);
    h5io_shape_str(shape, ndim, got, sizeof got);
    if (ndim != ns) {
        snprintf(err, errlen, "dataset '%s' has shape %s, expected %s", in->name, got, expected);
        return -1;
    }
    for (int i = 0; i < ns; i++) {
        int found = 0;
        for (int j = 0; j < b->n; j++) {
            if (strcmp(b->sym[j], syms[i]) != 0) continue;
            found = 1;
            if (b->val[j] != shape[i]) {
                snprintf(err, errlen, "dataset '%s' has shape %s, expected %s (from the inputs before it)", in->name,
                         got, expected);
                return -1;
            }
        }
        if (!found && b->n < 8) {
            memcpy(b->sym[b->n], syms[i], sizeof b->sym[b->n]);
            b->val[b->n++] = shape[i];
        }
    }
    return 0;
}

int loss_cmd_run(const char *name, const char *in_path, const char *out_path, const char *const *sets, int nsets) {
    const loss_entry *e = NULL;
    for (int i = 0; i < loss_registry_count; i++)
        if (strcmp(loss_registry[i].name, name) == 0) e = &loss_registry[i];
    if (!e) {
        fprintf(stderr, "error: unknown loss '%s'; known:", name);
        for (int i = 0; i < loss_registry_count; i++) fprintf(stderr, " %s", loss_registry[i].name);
        fprintf(stderr, " (rlt loss --help)\n");
        return RUN_EXIT_USAGE;
    }
    char err[2048] = "";
    int code = RUN_EXIT_USAGE;
    rt_scope *S = rt_scope_new();
    rt_tensor *in[LOSS_MAX_INPUTS] = {0};
    h5io_file *fin = h5io_open(in_path, 0, err, sizeof err), *fout = NULL;
    char tmp[4096];
    tmp[0] = '\0';
    if (!fin) {
        fprintf(stderr, "error: %s\n", err);
        goto out;
    }

    /* Inputs: presence, dtype, shape agreement. */
    dim_binding dims = {.n = 0};
    rt_dtype float_dt = RT_F64;
    int have_float = 0;
    for (int i = 0; i < e->ninputs; i++) {
        const loss_input *li = &e->inputs[i];
        char path[128];
        snprintf(path, sizeof path, "/%s", li->name);
        h5io_info info;
        int rc = h5io_dataset_info(fin, path, &info);
        if (rc == H5IO_ENOTFOUND) {
            if (li->optional) continue;
            fprintf(stderr, "error: %s: dataset '%s' [%s] is missing (rlt loss --help)\n", in_path, li->name, li->dims);
            goto out;
        }
        if (rc < 0) {
            fprintf(stderr, "error: %s: dataset '%s': %s\n", in_path, li->name, h5io_error(fin));
            goto out;
        }
        if (li->kind == IN_FLOAT) {
            if (info.dtype != RT_F32 && info.dtype != RT_F64) {
                fprintf(stderr, "error: %s: dataset '%s' is %s, expected float32 or float64\n", in_path, li->name,
                        rt_dtype_name((rt_dtype)info.dtype));
                goto out;
            }
            if (have_float && info.dtype != (int)float_dt) {
                fprintf(stderr, "error: %s: dataset '%s' is %s but earlier float inputs are %s; use one dtype\n",
                        in_path, li->name, rt_dtype_name((rt_dtype)info.dtype), rt_dtype_name(float_dt));
                goto out;
            }
            float_dt = (rt_dtype)info.dtype;
            have_float = 1;
        } else if (info.dtype != RT_I64) {
            fprintf(stderr, "error: %s: dataset '%s' is %s, expected int64\n", in_path, li->name,
                    rt_dtype_name((rt_dtype)info.dtype));
            goto out;
        }
        if (bind_dims(&dims, li, info.shape, info.ndim, err, sizeof err) < 0) {
            fprintf(stderr, "error: %s: %s\n", in_path, err);
            goto out;
        }
        in[i] = h5io_read_tensor(fin, path, S);
        if (!in[i]) {
            fprintf(stderr, "error: %s: dataset '%s': %s\n", in_path, li->name, h5io_error(fin));
            goto out;
        }
        if (li->differentiate && rt_set_requires_grad(in[i], 1) < 0) {
            fprintf(stderr, "error: %s\n", rt_last_error());
            goto out;
        }
    }

    /* Evaluate, differentiate. */
    loss_result res;
    memset(&res, 0, sizeof res);
    if (e->run(S, in, sets, nsets, &res, err, sizeof err) < 0) {
        fprintf(stderr, "error: loss %s: %s\n", e->name, err);
        goto out;
    }
    code = RUN_EXIT_FAIL;
    if (rt_requires_grad(res.loss) == 1 && rt_backward(res.loss) < 0) {
        fprintf(stderr, "error: backward: %s\n", rt_last_error());
        goto out;
    }

    /* Output: written to a temp file, renamed into place. */
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out_path, (long)getpid());
    fout = h5io_create(tmp, 1, err, sizeof err);
    if (!fout) {
        fprintf(stderr, "error: %s\n", err);
        goto out;
    }
    int ok = h5io_write_tensor(fout, "/loss", rt_detach(S, res.loss), 0) == 0;
    for (int i = 0; ok && i < e->ninputs; i++) {
        if (!in[i] || !e->inputs[i].differentiate) continue;
        char path[128];
        snprintf(path, sizeof path, "/grad/%s", e->inputs[i].name);
        rt_tensor *g = rt_grad(S, in[i]);
        if (!g) g = rt_zeros_like(S, in[i]); /* the loss does not depend on it */
        ok = g && h5io_write_tensor(fout, path, g, 0) == 0;
    }
    for (int i = 0; ok && i < res.nmetrics; i++) {
        char path[128];
        snprintf(path, sizeof path, "/metrics/%s", res.metric_name[i]);
        int64_t none[1] = {0};
        ok = h5io_write_array(fout, path, RT_F64, none, 0, &res.metric_value[i], 0) == 0;
    }
    if (ok) ok = h5io_attr_set_str(fout, "/", "loss", e->name) == 0;
    if (!ok) {
        fprintf(stderr, "error: writing %s: %s\n", out_path, h5io_error(fout));
        goto out;
    }
    if (h5io_close(fout, err, sizeof err) < 0) {
        fout = NULL;
        fprintf(stderr, "error: %s\n", err);
        goto out;
    }
    fout = NULL;
    if (rename(tmp, out_path) != 0) {
        fprintf(stderr, "error: cannot rename %s to %s: %s\n", tmp, out_path, strerror(errno));
        goto out;
    }
    tmp[0] = '\0';
    printf("%s: loss %.17g -> %s\n", e->name, rt_item(res.loss), out_path);
    code = RUN_EXIT_OK;
out:
    if (fout) h5io_close(fout, err, sizeof err);
    if (tmp[0]) remove(tmp);
    h5io_close(fin, err, sizeof err);
    rt_scope_free(S);
    return code;
}
