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
 *   /values/<name>      per-element outputs (e.g. per-token log-probs)
 * A missing or ill-shaped input, an unknown NAME or setting exits with 2 and a
 * message naming the dataset and the expected shape.
 *
 * Each loss family is one loss_entry (loss_registry.h) in its own file,
 * listed below: its inputs with symbolic shapes ("B,C": every input using B
 * must agree on it) and a run function.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5io.h"
#include "loss_cmd.h"
#include "loss_registry.h"
#include "run.h"
#include "tensor.h"


/* ------------------------------------------------------------------------ */
/* Registry                                                                  */
/* ------------------------------------------------------------------------ */

static const loss_entry *const loss_registry[] = {
    &loss_entry_kd,
    &loss_entry_gkd,
    &loss_entry_aligndistil,
    &loss_entry_grpo,
    &loss_entry_token_logps,
    &loss_entry_soft_logp,
    &loss_entry_dpo,
    &loss_entry_sdpo,
    &loss_entry_adpo,
    &loss_entry_simpo,
    &loss_entry_orpo,
    &loss_entry_kto,
    &loss_entry_bco,
    &loss_entry_sac_critic,
    &loss_entry_sac_actor,
    &loss_entry_sac_alpha,
    &loss_entry_squashed_gaussian_logp,
    &loss_entry_sac_discrete_critic,
    &loss_entry_sac_discrete_actor,
    &loss_entry_sac_discrete_alpha,
};
static const int loss_registry_count = (int)(sizeof loss_registry / sizeof loss_registry[0]);

int loss_split_setting(const char *set, char *key, size_t cap, const char **value, char *err, size_t errlen) {
    const char *eq = strchr(set, '=');
    if (!eq || eq == set || (size_t)(eq - set) >= cap) {
        snprintf(err, errlen, "--set '%s': expected name=value", set);
        return -1;
    }
    memcpy(key, set, (size_t)(eq - set));
    key[eq - set] = '\0';
    *value = eq + 1;
    return 0;
}

void loss_add_metric(loss_result *out, const char *name, double value) {
    if (out->nmetrics >= LOSS_MAX_METRICS) return;
    out->metric_name[out->nmetrics] = name;
    out->metric_value[out->nmetrics++] = value;
}

void loss_add_value(loss_result *out, const char *name, rt_tensor *value) {
    if (out->nvalues >= LOSS_MAX_VALUES) return;
    out->value_name[out->nvalues] = name;
    out->value[out->nvalues++] = value;
}

void loss_cmd_help(FILE *out) {
    fprintf(out,
            "usage: rlt loss NAME --in IN.h5 --out OUT.h5 [--set name=value ...]\n\n"
            "Evaluates a loss on root datasets of IN.h5 (float32 or float64; the loss runs in that dtype;\n"
            "int64 labels, masks) and writes /loss, /grad/<input>, /metrics/<name> and /values/<name> to OUT.h5.\n"
            "Options:\n"
            "  --in PATH         input HDF5 file (required)\n"
            "  --out PATH        output HDF5 file, replaced atomically (required)\n"
            "  --set NAME=VALUE  a loss setting (repeatable; default: the reference's value)\n\n");
    for (int i = 0; i < loss_registry_count; i++) {
        const loss_entry *e = loss_registry[i];
        fprintf(out, "%s: %s\n  inputs:\n", e->name, e->summary);
        for (int j = 0; j < e->ninputs; j++)
            fprintf(out, "    %-20s [%s] %s%s%s\n", e->inputs[j].name, e->inputs[j].dims,
                    e->inputs[j].kind == LOSS_IN_INT64 ? "int64" : e->inputs[j].kind == LOSS_IN_MASK ? "mask" : "float32|float64",
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
        if (strcmp(loss_registry[i]->name, name) == 0) e = loss_registry[i];
    if (!e) {
        fprintf(stderr, "error: unknown loss '%s'; known:", name);
        for (int i = 0; i < loss_registry_count; i++) fprintf(stderr, " %s", loss_registry[i]->name);
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
        if (li->kind == LOSS_IN_FLOAT) {
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
        } else if (li->kind == LOSS_IN_INT64 && info.dtype != RT_I64) {
            fprintf(stderr, "error: %s: dataset '%s' is %s, expected int64\n", in_path, li->name,
                    rt_dtype_name((rt_dtype)info.dtype));
            goto out;
        } else if (li->kind == LOSS_IN_MASK && info.dtype < 0) {
            fprintf(stderr, "error: %s: dataset '%s' is %s, expected a bool/integer/float mask\n", in_path,
                    li->name, info.dtype_name);
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
        if (li->kind == LOSS_IN_MASK) in[i] = rt_compare_scalar(S, in[i], RT_NE, 0.0); /* -> bool */
        if (!in[i] || (li->differentiate && rt_set_requires_grad(in[i], 1) < 0)) {
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
    for (int i = 0; ok && i < res.nvalues; i++) {
        char path[128];
        snprintf(path, sizeof path, "/values/%s", res.value_name[i]);
        ok = h5io_write_tensor(fout, path, rt_detach(S, res.value[i]), 0) == 0;
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
