/*
 * algo.h -- the training loops the rlt CLI knows. Each algorithm is one file
 * that reads top to bottom (kd_train.c, ...) and exports one rlt_algo; main.c
 * picks it by the recipe's [run] algorithm key.
 */
#ifndef RLT_ALGO_H
#define RLT_ALGO_H

#include "config.h"
#include "run.h"

typedef struct rlt_algo {
    const char *name;          /* the value of [run] algorithm               */
    const char *summary;       /* one line for `rlt --help`                  */
    const cfg_schema *schema;  /* every recipe key, for parsing and --help   */
    /* Runs (or resumes) a job; returns the process exit code (run.h). */
    int (*train)(const run_args *args);
    /* Evaluates the models of a checkpoint (file path); returns the exit code. */
    int (*eval)(const char *ckpt_path, const char *const *sets, int nsets);
} rlt_algo;

extern const rlt_algo rlt_algo_kd;
extern const rlt_algo rlt_algo_sac;
extern const rlt_algo rlt_algo_sft;  /* sft_train.c  */
extern const rlt_algo rlt_algo_grpo; /* grpo_train.c */
extern const rlt_algo rlt_algo_distill; /* distill_train.c */
extern const rlt_algo rlt_algo_dpo, rlt_algo_sdpo, rlt_algo_adpo, rlt_algo_simpo, rlt_algo_orpo, rlt_algo_kto,
    rlt_algo_bco; /* pref_algos.c */
int make_prefs_main(int argc, char **argv); /* make_prefs.c: `rlt make-prefs` */

#endif /* RLT_ALGO_H */
