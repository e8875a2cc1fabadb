/*
 * loss_registry.h -- how a loss family plugs into `rlt loss` (loss_cmd.c).
 * Each family defines one loss_entry in its own file (loss_cmd_kd.c, ...)
 * and loss_cmd.c lists it. The command reads the declared inputs from the
 * HDF5 file, checks their dtypes and symbolic shapes, calls run(), then writes
 * /loss, /grad/<input> for every differentiated input, /metrics/<name> and
 * /values/<name>.
 */
#ifndef RLT_LOSS_REGISTRY_H
#define RLT_LOSS_REGISTRY_H

#include <stddef.h>
#include <stdio.h>

#include "tensor.h"

#define LOSS_MAX_INPUTS 16
#define LOSS_MAX_METRICS 64
#define LOSS_MAX_VALUES 16

typedef enum loss_in_kind {
    LOSS_IN_FLOAT, /* float32 or float64; every float input of a call shares one dtype */
    LOSS_IN_INT64, /* labels, ids                                                       */
    LOSS_IN_MASK   /* bool, uint8, int64 or float (nonzero = kept); handed over as bool  */
} loss_in_kind;

typedef struct loss_input {
    const char *name;   /* the root dataset's name                                */
    loss_in_kind kind;
    const char *dims;   /* symbolic shape, "B,T": every input using B must agree */
    int differentiate;  /* float inputs whose gradient is written to /grad/<name> */
    int optional;       /* absent -> NULL in run()'s inputs                        */
    const char *help;
} loss_input;

/* What run() reports. Tensors are owned by the scope run() was given. */
typedef struct loss_result {
    rt_tensor *loss; /* 0-dim */
    int nmetrics;
    const char *metric_name[LOSS_MAX_METRICS];
    double metric_value[LOSS_MAX_METRICS];
    int nvalues; /* per-element outputs -> /values/<name> */
    const char *value_name[LOSS_MAX_VALUES];
    rt_tensor *value[LOSS_MAX_VALUES];
} loss_result;

typedef struct loss_entry {
    const char *name;
    const char *summary;
    const loss_input *inputs;
    int ninputs;
    /* Parse the settings ("name=value" strings), evaluate. in[i] matches
     * inputs[i] (NULL for an absent optional input). Return 0, or -1 with a
     * message naming the input or setting and the reason. */
    int (*run)(rt_scope *S, rt_tensor *const *in, const char *const *sets, int nsets, loss_result *out,
               char *err, size_t errlen);
    /* Settings with their defaults, for `rlt loss --help`. */
    void (*help)(FILE *out);
} loss_entry;

/* "name=value" -> key (NUL-terminated copy) and *value. Returns 0 or -1 with
 * a message. */
int loss_split_setting(const char *set, char *key, size_t cap, const char **value, char *err, size_t errlen);

/* Appends a metric / a per-element value to out (ignored past the limits). */
void loss_add_metric(loss_result *out, const char *name, double value);
void loss_add_value(loss_result *out, const char *name, rt_tensor *value);

/* The families. */
extern const loss_entry loss_entry_kd;
extern const loss_entry loss_entry_gkd;
extern const loss_entry loss_entry_aligndistil;
extern const loss_entry loss_entry_grpo;
extern const loss_entry loss_entry_token_logps;
extern const loss_entry loss_entry_dpo;
extern const loss_entry loss_entry_sdpo;
extern const loss_entry loss_entry_adpo;
extern const loss_entry loss_entry_soft_logp;
extern const loss_entry loss_entry_simpo;
extern const loss_entry loss_entry_orpo;
extern const loss_entry loss_entry_kto;
extern const loss_entry loss_entry_bco;
extern const loss_entry loss_entry_sac_critic;
extern const loss_entry loss_entry_sac_actor;
extern const loss_entry loss_entry_sac_alpha;
extern const loss_entry loss_entry_squashed_gaussian_logp;
extern const loss_entry loss_entry_sac_discrete_critic;
extern const loss_entry loss_entry_sac_discrete_actor;
extern const loss_entry loss_entry_sac_discrete_alpha;

#endif /* RLT_LOSS_REGISTRY_H */
