/*
 * kd.h -- knowledge-distillation losses over classification or per-token
 * logits. One entry point, kd_loss(), evaluates the loss selected by
 * kd_config.kind; each kind reproduces its reference's formula, reduction and
 * defaults (specs/pref_kd_losses.md section 5):
 *
 *   kind    reference                        loss
 *   ------  -------------------------------  ----------------------------------------------
 *   hinton  mdistiller KD.py (form=kl);      ce_weight*CE + kd_weight*T^2*mean_b KL(pt||ps)
 *           cls_KD kd.py (form=ce)           form=ce: T^2*mean_b CE(pt, ps) instead of KL
 *   lskd    logit-standardization-KD         hinton on z' = (z-mean)/(1e-7+std_unbiased) of
 *                                            both models; CE stays on the raw logits
 *   dkd     mdistiller DKD.py                ce_weight*CE + warm*(alpha*TCKD + beta*NCKD)
 *   nkd     cls_KD nkd.py                    ce_weight*CE + L_target + L_nontarget
 *   pld     PLD (arXiv 2506.12542) App. C    Plackett-Luce list loss; replaces CE + KD
 *   dhkd    DHKD BinaryKLNorm / BinaryKL     ce_weight*CE(main) + kd_weight*BinaryKL(aux)
 *   fkl     TRL GKD generalized_jsd, beta=0  KL(teacher||student) per position
 *   rkl     TRL GKD generalized_jsd, beta=1  KL(student||teacher) per position
 *   jsd     TRL GKD generalized_jsd          beta-skewed Jensen-Shannon per position
 *   topk    TRL IW-OPD sparse top-k JSD      the same on a top-k support (+ tail bucket)
 *
 * Classification kinds (hinton .. dhkd) reduce over the B samples as their
 * reference does (see each setting table); every label must be in [0, C).
 * Per-token kinds (fkl, rkl, jsd, topk) read rows as token positions: a row
 * whose label equals ignore_index (-100) is dropped, and `reduction` picks
 * TRL's batchmean (sum / kept rows), sum, or mean (sum / kept elements).
 * Temperature-scaled terms carry the T^2 factor exactly where the reference
 * does (mdistiller, cls_KD, DHKD) and not where it does not (TRL).
 *
 * Computation runs in the dtype of the student logits (float32 or float64);
 * the teacher logits must have the same dtype and shape and are detached.
 * Masked entries are selected with rt_where / rt_masked_fill, never multiplied
 * by zero, so a NaN or inf in a dropped row cannot reach the loss or gradient.
 * Nothing here does I/O or keeps state: the loss tensor is the only thing that
 * outlives the call.
 */
#ifndef RLT_KD_H
#define RLT_KD_H

#include <stddef.h>
#include <stdint.h>

#include "settings.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kd_kind {
    KD_KIND_INVALID = -1, /* what kd_kind_from_name returns for an unknown name */
    KD_HINTON = 0,
    KD_LSKD,
    KD_DKD,
    KD_NKD,
    KD_PLD,
    KD_DHKD,
    KD_TOPK,
    KD_FKL,
    KD_RKL,
    KD_JSD,
    KD_KIND_COUNT
} kd_kind;

/* Which soft-target term hinton/lskd use. Same gradient; the values differ by
 * kd_weight*T^2*mean H(pt), the teacher's entropy. */
typedef enum kd_form {
    KD_FORM_KL = 0, /* mdistiller: T^2 * KL(pt || ps)               */
    KD_FORM_CE = 1  /* cls_KD:     T^2 * -sum pt log ps (cross-ent.) */
} kd_form;

/* How per-token kinds reduce the per-position divergence (TRL names). */
typedef enum kd_reduction {
    KD_RED_BATCHMEAN = 0, /* sum over kept rows and classes / max(kept rows, 1)    */
    KD_RED_SUM = 1,       /* plain sum                                             */
    KD_RED_MEAN = 2       /* sum / (kept rows * support width); 0 when none kept   */
} kd_reduction;

/* Every kind's settings in one struct; a kind reads only the fields its
 * setting table (kd_settings) lists. Get one from kd_config_default(kind),
 * never from {0}: the defaults are the references' and not zero. */
typedef struct kd_config {
    kd_kind kind;
    double temperature; /* T (tau for pld); logits are divided by it         */
    double ce_weight;   /* weight of CE(student, labels) on the raw logits   */
    double kd_weight;   /* hinton, lskd, dhkd: weight of the distillation term */
    int form;           /* hinton, lskd: kd_form                             */
    double alpha;       /* dkd: weight of TCKD                               */
    double beta;        /* dkd: weight of NCKD; jsd, topk: skew (0 = forward KL, 1 = reverse KL) */
    double gamma;       /* nkd: weight of the non-target term                */
    double warmup;      /* dkd: epochs until the KD term has full weight     */
    double epoch;       /* dkd: current epoch (mdistiller counts from 1); the KD
                           term is scaled by min(epoch/warmup, 1). Negative
                           means "no warmup" (factor 1), the default, which is
                           what evaluating the loss on its own wants.        */
    int standardize;    /* dkd: apply LSKD's logit standardization first     */
    int norm;           /* dhkd: 1 = BinaryKLNorm (the paper's loss), 0 = BinaryKL */
    int64_t k;          /* topk: support size per model; 0 or >= C = full vocabulary */
    int add_tail;       /* topk: append the 1 - sum(support) tail bucket     */
    int reduction;      /* fkl, rkl, jsd, topk: kd_reduction                 */
    int64_t ignore_index; /* fkl, rkl, jsd, topk: label marking a dropped row */
} kd_config;

/* Inputs. All handles are borrowed; nothing is modified. */
typedef struct kd_inputs {
    const rt_tensor *student_logits;     /* [B,C] float32/float64, differentiable   */
    const rt_tensor *teacher_logits;     /* [B,C] same dtype; treated as constant   */
    const rt_tensor *labels;             /* int64 [B]                               */
    const rt_tensor *student_aux_logits; /* dhkd only: [B,C] auxiliary head, which
                                            gets the BinaryKL term while the main
                                            head gets CE. NULL = student_logits.   */
} kd_inputs;

/* What a call reports. Values not produced by a kind are NaN; kd_metric_table
 * says which fields each kind fills. */
typedef struct kd_metrics {
    double loss;        /* the returned loss                                      */
    double loss_ce;     /* the CE term as added to the loss (ce_weight * ce)      */
    double loss_kd;     /* the distillation term as added to the loss (weighted,
                           warmup included) -- mdistiller's two logged losses    */
    double ce;          /* CE(student, labels), unweighted, over the kept rows    */
    double kd;          /* the distillation term before its weight (T^2 included
                           where the reference has it)                            */
    double tckd, nckd;  /* dkd: the two parts, unweighted                         */
    double warmup;      /* dkd: min(epoch/warmup, 1), or 1                        */
    double nkd_target, nkd_nontarget; /* nkd: L_t and L_non (gamma*T^2 included)  */
    double student_acc; /* argmax(student) == label over the kept rows            */
    double teacher_acc; /* argmax(teacher) == label over the kept rows            */
    double count;       /* rows that contributed (B, or the kept token positions) */
} kd_metrics;

/* Evaluate the loss. Returns a 0-dim tensor owned by S (S == NULL: the caller
 * frees it), differentiable with respect to the student (and aux) logits, or
 * NULL with rt_last_error() naming the input, its shape and the reason. m may
 * be NULL; when given it is filled (the values cost one host sync each). The
 * intermediates live in a private scope and are freed before return. */
rt_tensor *kd_loss(rt_scope *S, const kd_config *cfg, const kd_inputs *in, kd_metrics *m);

/* The reference defaults of kind (see the setting tables). An out-of-range
 * kind gives the hinton defaults with kind set as given; kd_config_check
 * then refuses it. */
kd_config kd_config_default(kd_kind kind);

/* RT_OK, or RT_EINVAL with a message naming the offending setting, its value
 * and the allowed range. kd_loss calls it. */
int kd_config_check(const kd_config *cfg);

/* "hinton", "lskd", ... ; NULL for an unknown kind. */
const char *kd_kind_name(kd_kind kind);
/* The kind named name, or KD_KIND_INVALID when unknown. */
kd_kind kd_kind_from_name(const char *name);
/* One line describing the kind and its reference (for `rlt loss --help`). */
const char *kd_kind_help(kd_kind kind);

/* ---- Settings: a descriptor table per kind (for --set k=v and --help) ---- */

/* A setting descriptor: name, type (LSET_REAL, LSET_INT, LSET_BOOL,
 * LSET_CHOICE), offsetof(kd_config, field), this kind's default, inclusive
 * bounds, choices and help (settings.h). */
typedef lset_desc kd_setting;

/* The settings kind reads, in display order; *n receives the count. NULL
 * (and *n = 0) for an unknown kind. */
const kd_setting *kd_settings(kd_kind kind, size_t *n);
/* The setting of kind called name, or NULL. */
const kd_setting *kd_setting_find(kd_kind kind, const char *name);
/* Parse value into cfg's setting name (for cfg->kind). RT_OK, or RT_EINVAL /
 * RT_ENOTFOUND with a message that names the key, the value, the allowed
 * range or choices, and for an unknown key the nearest valid one. */
int kd_config_set(kd_config *cfg, const char *name, const char *value);
/* The current value of setting s in cfg, formatted into buf ("4", "kl", ...).
 * Returns buf. */
const char *kd_setting_format(const kd_config *cfg, const kd_setting *s, char *buf, size_t cap);

/* ---- Metrics: a descriptor table (for /metrics/<name> and logs) ---- */

typedef struct kd_metric_desc {
    const char *name;   /* "loss", "loss_ce", ..., as written to /metrics/  */
    size_t offset;      /* offsetof(kd_metrics, field), a double             */
    unsigned kinds;     /* bit (1u << kind) set when the kind fills it       */
    const char *help;
} kd_metric_desc;

/* All metric descriptors; *n receives the count. */
const kd_metric_desc *kd_metric_table(size_t *n);
/* 1 when kind fills metric d. */
int kd_metric_applies(const kd_metric_desc *d, kd_kind kind);
/* The value of d in m. */
double kd_metric_value(const kd_metrics *m, const kd_metric_desc *d);

#ifdef __cplusplus
}
#endif
#endif /* RLT_KD_H */
