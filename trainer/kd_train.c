/*
 * kd_train.c -- knowledge distillation on Fashion-MNIST, top to bottom.
 *
 * One job, three phases, one global step counter (so a checkpoint at any step
 * resumes any phase):
 *   phase 0  teacher     MLP 784-512-512-10, cross-entropy on all 60,000 labels
 *   phase 1  student_ce  small MLP, cross-entropy on the `labeled` examples only
 *   phase 2  student_kd  the same small MLP, distilled from the frozen teacher on
 *                        all 60,000 images with the KD loss chosen in [kd]
 * and the test accuracy of all three on the 10,000 test images at the end.
 *
 * Why few labels: with every label available a small MLP gains nothing from an
 * MLP teacher in 10 epochs (specs/anchors.md); distillation pays when the
 * student has few labels and the teacher labels the rest (+8 points at 1,000
 * labels there). So in phase 2 a row's label is its true label when it is in
 * the labelled subset and the teacher's argmax otherwise (pseudo-label); the
 * soft targets come from the teacher everywhere. `labeled = 0` gives every
 * student every label.
 *
 * Randomness: one torch generator initialises the three models (so a phase
 * starts from the same weights whatever happened before it); one sampler per
 * phase, seeded from (seed, phase), orders the data. All of it is in every
 * checkpoint, so resume is bit-exact at a fixed thread count.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "algo.h"
#include "ckpt.h"
#include "idx.h"
#include "kd.h"
#include "nn.h"
#include "run.h"
#include "shuffle.h"
#include "tensor.h"

/* ------------------------------------------------------------------------ */
/* Config                                                                    */
/* ------------------------------------------------------------------------ */

enum { KD_OPT_ADAM, KD_OPT_ADAMW, KD_OPT_SGD };
static const char *const kd_optimizer_choices[] = {"adam", "adamw", "sgd", NULL};
static const char *const kd_kind_choices[] = {"hinton", "lskd", "dkd", "nkd", "pld", "dhkd",
                                              "topk",   "fkl",  "rkl", "jsd", NULL};

typedef struct kd_train_cfg {
    run_common run;
    /* [data] */
    char data_dir[256];
    bool standardize;
    int64_t labeled;
    int64_t train_limit;
    /* [teacher] / [student] */
    char teacher_hidden[64];
    int64_t teacher_epochs;
    double teacher_lr;
    char student_hidden[64];
    int64_t student_epochs;
    double student_lr;
    /* [train] */
    int64_t batch_size;
    int optimizer;
    double weight_decay;
    double grad_clip;
    int64_t eval_batch;
    /* [kd] */
    int kind;
    char settings[192];
} kd_train_cfg;

static void kd_train_check(const void *cfgp, cfg_check *ck);

static const cfg_field kd_train_fields[] = {
    RUN_COMMON_FIELDS(kd_train_cfg),
    CFG_STRING(kd_train_cfg, "data", "dir", data_dir, IDX_FASHION_MNIST_DIR,
               "folder with the Fashion-MNIST idx .gz files (Debian: dataset-fashion-mnist)"),
    CFG_BOOL(kd_train_cfg, "data", "standardize", standardize, "true",
             "standardize pixels with the training set's mean and std"),
    CFG_INT64(kd_train_cfg, "data", "labeled", labeled, 0, 60000, "1000",
              "training labels the students see (0 = all 60000); the teacher labels the rest"),
    CFG_INT64(kd_train_cfg, "data", "train_limit", train_limit, 0, 60000, "0",
              "use only the first N training images (0 = all 60000; for quick runs)"),
    CFG_STRING(kd_train_cfg, "teacher", "hidden", teacher_hidden, "512,512", "teacher MLP hidden widths"),
    CFG_INT64(kd_train_cfg, "teacher", "epochs", teacher_epochs, 0, 1000, "10", "teacher epochs over 60000 images"),
    CFG_DOUBLE(kd_train_cfg, "teacher", "lr", teacher_lr, 0, 10, "1e-3", "teacher learning rate"),
    CFG_STRING(kd_train_cfg, "student", "hidden", student_hidden, "64", "student MLP hidden widths"),
    CFG_INT64(kd_train_cfg, "student", "epochs", student_epochs, 0, 1000, "10",
              "student epochs over 60000 images (the CE-only twin takes as many steps)"),
    CFG_DOUBLE(kd_train_cfg, "student", "lr", student_lr, 0, 10, "1e-3", "student learning rate"),
    CFG_INT64(kd_train_cfg, "train", "batch_size", batch_size, 1, 60000, "128", "examples per step"),
    CFG_ENUM(kd_train_cfg, "train", "optimizer", optimizer, kd_optimizer_choices, "adam", "optimizer"),
    CFG_DOUBLE(kd_train_cfg, "train", "weight_decay", weight_decay, 0, 1, "0", "weight decay"),
    CFG_DOUBLE(kd_train_cfg, "train", "grad_clip", grad_clip, 0, 1e9, "0",
               "clip the global grad norm to this (0 = measure only)"),
    CFG_INT64(kd_train_cfg, "train", "eval_batch", eval_batch, 1, 1000000, "2000", "rows per evaluation forward"),
    CFG_ENUM(kd_train_cfg, "kd", "kind", kind, kd_kind_choices, "hinton",
             "distillation loss of the student_kd phase (rlt loss --help lists each)"),
    CFG_STRING(kd_train_cfg, "kd", "settings", settings, "",
               "the loss's settings as 'name=value' pairs separated by blanks or commas "
               "(empty = the reference's defaults; rlt loss --help lists them)"),
};

const cfg_schema kd_train_schema = CFG_SCHEMA("kd", kd_train_cfg, kd_train_fields, kd_train_check);

/* "512,512" -> widths[1..]; returns the count or -1. */
static int kd_parse_widths(const char *text, int64_t *out, int cap) {
    int n = 0;
    const char *p = text;
    while (*p) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < 1 || v > 1000000 || n >= cap) return -1;
        out[n++] = v;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') p++;
        else if (*p) return -1;
    }
    return n;
}

/* The [kd] section as a kd_config. Returns 0, or -1 with the message. */
static int kd_settings_parse(const kd_train_cfg *c, kd_config *out, char *err, size_t errlen) {
    *out = kd_config_default((kd_kind)c->kind);
    char buf[sizeof c->settings];
    snprintf(buf, sizeof buf, "%s", c->settings);
    for (char *save = NULL, *tok = strtok_r(buf, " ,", &save); tok; tok = strtok_r(NULL, " ,", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) {
            snprintf(err, errlen, "'%s' is not name=value", tok);
            return -1;
        }
        *eq = '\0';
        if (kd_config_set(out, tok, eq + 1) != RT_OK) {
            snprintf(err, errlen, "%s", rt_last_error());
            return -1;
        }
    }
    if (kd_config_check(out) != RT_OK) {
        snprintf(err, errlen, "%s", rt_last_error());
        return -1;
    }
    return 0;
}

static void kd_train_check(const void *cfgp, cfg_check *ck) {
    const kd_train_cfg *c = cfgp;
    int64_t w[16];
    if (strcmp(c->run.algorithm, "kd") != 0)
        cfg_check_fail(ck, "run.algorithm", "this loop is 'kd'");
    if (kd_parse_widths(c->teacher_hidden, w, 15) < 1)
        cfg_check_fail(ck, "teacher.hidden", "expected positive widths separated by commas, at most 15");
    if (kd_parse_widths(c->student_hidden, w, 15) < 1)
        cfg_check_fail(ck, "student.hidden", "expected positive widths separated by commas, at most 15");
    if (c->train_limit > 0 && c->labeled > c->train_limit)
        cfg_check_fail(ck, "data.labeled", "is larger than data.train_limit (%lld)", (long long)c->train_limit);
    if (c->train_limit > 0 && c->batch_size > c->train_limit)
        cfg_check_fail(ck, "train.batch_size", "is larger than data.train_limit (%lld)", (long long)c->train_limit);
    if (c->labeled > 0 && c->batch_size > c->labeled)
        cfg_check_fail(ck, "train.batch_size", "is larger than data.labeled (%lld): the CE-only student's "
                       "batches come from the labelled examples", (long long)c->labeled);
    if (c->teacher_epochs == 0 && c->student_epochs == 0)
        cfg_check_fail(ck, "student.epochs", "teacher.epochs and student.epochs are both 0: nothing to train");
    kd_config kc;
    char err[512];
    if (kd_settings_parse(c, &kc, err, sizeof err) < 0) cfg_check_fail(ck, "kd.settings", "%s", err);
}

/* ------------------------------------------------------------------------ */
/* The job: data, three models, their optimizers and samplers                */
/* ------------------------------------------------------------------------ */

enum { PH_TEACHER = 0, PH_STUDENT_CE = 1, PH_STUDENT_KD = 2, PH_COUNT = 3 };
static const char *const kd_role[PH_COUNT] = {"teacher", "student_ce", "student_kd"};

/* A classifier: an MLP body with ReLUs, a linear head, and (for dhkd) an
 * auxiliary head on the same features. */
typedef struct kd_model {
    nn_params *params;
    nn_mlp body;       /* 784 -> ... -> last hidden, ReLU after every layer */
    nn_linear head;    /* last hidden -> 10                                  */
    nn_linear aux;     /* dhkd only                                          */
    int has_aux;
    rt_optim *opt;
} kd_model;

typedef struct kd_job {
    kd_train_cfg cfg;
    kd_config kd;              /* the student_kd loss                        */
    idx_dataset train, test;   /* pixels [N,784] f32, labels [N] i64         */
    rt_tensor *x_train;        /* [60000, 784] f32                           */
    rt_tensor *y_train;        /* [60000] i64                                */
    rt_tensor *x_test;         /* [10000, 784] f32                           */
    rt_tensor *y_test;         /* [10000] i64                                */
    int64_t *labeled_idx;      /* the labelled subset: indices into train    */
    int64_t n_labeled;
    rt_tensor *y_kd;           /* [60000] i64: label or teacher pseudo-label */
    rt_tensor *t_logits;       /* [60000, 10] teacher logits (phase 2)       */
    kd_model model[PH_COUNT];
    rt_gen *init_gen;
    shuf_sampler *sampler[PH_COUNT];
    uint8_t *sampler_blob[PH_COUNT];
    size_t sampler_blob_size[PH_COUNT];
    int64_t phase_steps[PH_COUNT];
    int64_t phase_start[PH_COUNT];
    int teacher_targets_ready; /* y_kd / t_logits computed from the teacher */
    double final_acc[PH_COUNT];/* test accuracy after the last step (NaN: phase empty) */
} kd_job;

static int kd_model_init(kd_model *m, const char *hidden, int aux, rt_gen *g) {
    int64_t w[17];
    int nh = kd_parse_widths(hidden, w + 1, 15);
    w[0] = 784;
    m->params = nn_params_new();
    if (!m->params) return -1;
    if (nn_mlp_init(&m->body, m->params, "body", w, nh + 1, NN_ACT_RELU, NN_ACT_RELU, RT_OPTS(RT_F32), g) < 0 ||
        nn_linear_init(&m->head, m->params, "head", w[nh], 10, 1, RT_OPTS(RT_F32), g) < 0)
        return -1;
    m->has_aux = aux;
    if (aux && nn_linear_init(&m->aux, m->params, "aux_head", w[nh], 10, 1, RT_OPTS(RT_F32), g) < 0) return -1;
    return 0;
}

static int kd_model_optim(kd_model *m, const kd_train_cfg *c, double lr) {
    rt_optim_kind kind = c->optimizer == KD_OPT_SGD ? RT_SGD : c->optimizer == KD_OPT_ADAMW ? RT_ADAMW : RT_ADAM;
    rt_optim_opts o = rt_optim_defaults(kind);
    o.lr = lr;
    o.weight_decay = c->weight_decay;
    m->opt = rt_optim_new(kind, nn_params_tensors(m->params), nn_params_names(m->params),
                          nn_params_count(m->params), &o);
    return m->opt ? 0 : -1;
}

/* logits [B,10] (and aux logits when asked) of x [B,784]. */
static rt_tensor *kd_forward(rt_scope *S, const kd_model *m, const rt_tensor *x, rt_tensor **aux) {
    rt_tensor *h = nn_mlp_forward(S, &m->body, x); /* [B, hidden] */
    if (aux) *aux = m->has_aux ? nn_linear_forward(S, &m->aux, h) : NULL;
    return nn_linear_forward(S, &m->head, h); /* [B, 10] */
}

/* Fraction of rows of x whose argmax matches y, in chunks, without grad. */
static double kd_accuracy(const kd_job *J, const kd_model *m, const rt_tensor *x, const rt_tensor *y) {
    int g = rt_no_grad_begin();
    rt_scope *S = rt_scope_new();
    int64_t n = rt_size(x, 0), correct = 0;
    for (int64_t i = 0; i < n; i += J->cfg.eval_batch) {
        int64_t len = n - i < J->cfg.eval_batch ? n - i : J->cfg.eval_batch;
        rt_tensor *logits = kd_forward(S, m, rt_narrow(S, x, 0, i, len), NULL);
        rt_tensor *hit = rt_compare(S, rt_argmax(S, logits, 1, 0), RT_EQ, rt_narrow(S, y, 0, i, len));
        int64_t c = rt_item_i64(rt_sum(S, hit, RT_DIM_ALL, 0));
        if (c < 0) {
            correct = -1;
            break;
        }
        correct += c;
        rt_scope_reset(S);
    }
    rt_scope_free(S);
    rt_grad_mode_restore(g);
    return correct < 0 ? NAN : (double)correct / (double)n;
}

/* The frozen teacher's logits on every training image, and the labels the
 * KD student sees: the true label for the labelled subset, else the argmax. */
static int kd_teacher_targets(kd_job *J) {
    int g = rt_no_grad_begin();
    rt_scope *S = rt_scope_new();
    int64_t n = J->train.n;
    rt_tensor *chunks[64];
    int nc = 0, rc = -1;
    int64_t chunk = (n + 63) / 64 > J->cfg.eval_batch ? (n + 63) / 64 : J->cfg.eval_batch;
    for (int64_t i = 0; i < n && nc < 64; i += chunk, nc++) {
        int64_t len = n - i < chunk ? n - i : chunk;
        chunks[nc] = kd_forward(S, &J->model[PH_TEACHER], rt_narrow(S, J->x_train, 0, i, len), NULL);
    }
    rt_tensor *logits = rt_cat(S, chunks, nc, 0);                       /* [N, 10] */
    rt_tensor *y = rt_argmax(S, logits, 1, 0);                          /* [N]     */
    if (J->n_labeled < n) {
        int64_t shape[1] = {J->n_labeled};
        rt_tensor *idx = rt_from_data(S, J->labeled_idx, shape, 1, RT_OPTS(RT_I64));
        y = rt_scatter(S, y, 0, idx, rt_index_select(S, J->y_train, 0, idx));
    } else {
        y = J->y_train;
    }
    if (logits && y) {
        rt_free(J->t_logits);
        rt_free(J->y_kd);
        J->t_logits = rt_keep(rt_contiguous(S, logits));
        J->y_kd = rt_keep(rt_contiguous(S, y));
        J->teacher_targets_ready = J->t_logits && J->y_kd;
        rc = J->teacher_targets_ready ? 0 : -1;
    }
    rt_scope_free(S);
    rt_grad_mode_restore(g);
    return rc;
}

static void kd_job_free(kd_job *J) {
    for (int p = 0; p < PH_COUNT; p++) {
        rt_optim_free(J->model[p].opt);
        nn_params_free(J->model[p].params);
        shuf_sampler_free(J->sampler[p]);
        free(J->sampler_blob[p]);
    }
    rt_free(J->x_train);
    rt_free(J->y_train);
    rt_free(J->x_test);
    rt_free(J->y_test);
    rt_free(J->y_kd);
    rt_free(J->t_logits);
    rt_gen_free(J->init_gen);
    free(J->labeled_idx);
    idx_dataset_free(&J->train);
    idx_dataset_free(&J->test);
}

/* Loads the data, builds models/optimizers/samplers, registers every piece of
 * state in ck (when not NULL). Messages go through run_fail. */
static int kd_job_build(kd_job *J, run_ctx *r, ck_state *ck) {
    kd_train_cfg *c = &J->cfg;
    char err[1024];
    if (kd_settings_parse(c, &J->kd, err, sizeof err) < 0) return run_fail(r, RUN_EXIT_USAGE, "kd.settings: %s", err);

    /* Data: standardized with the training set's statistics (as torchvision's
     * usual Normalize((0.2860,), (0.3530,))). */
    idx_norm norm = {c->standardize ? 1 : 0, IDX_FASHION_MNIST_MEAN, IDX_FASHION_MNIST_STD};
    if (idx_load_fashion_mnist(c->data_dir, IDX_SPLIT_TRAIN, &norm, &J->train, err, sizeof err) < 0 ||
        idx_load_fashion_mnist(c->data_dir, IDX_SPLIT_TEST, &norm, &J->test, err, sizeof err) < 0)
        return run_fail(r, RUN_EXIT_USAGE, "%s", err);
    if (c->train_limit > 0 && c->train_limit < J->train.n) J->train.n = c->train_limit; /* a prefix */
    int64_t xs[2] = {J->train.n, J->train.dim}, ys[1] = {J->train.n};
    int64_t xt[2] = {J->test.n, J->test.dim}, yt[1] = {J->test.n};
    J->x_train = rt_from_data(NULL, J->train.images, xs, 2, RT_OPTS(RT_F32));
    J->y_train = rt_from_data(NULL, J->train.labels, ys, 1, RT_OPTS(RT_I64));
    J->x_test = rt_from_data(NULL, J->test.images, xt, 2, RT_OPTS(RT_F32));
    J->y_test = rt_from_data(NULL, J->test.labels, yt, 1, RT_OPTS(RT_I64));
    if (!J->x_train || !J->y_train || !J->x_test || !J->y_test) return run_fail(r, RUN_EXIT_FAIL, "%s", rt_last_error());

    /* The labelled subset: the first `labeled` items of a permutation drawn
     * from the seed (derived, so never stored). */
    J->n_labeled = c->labeled > 0 ? c->labeled : J->train.n;
    J->labeled_idx = malloc((size_t)J->train.n * sizeof *J->labeled_idx);
    if (!J->labeled_idx) return run_fail(r, RUN_EXIT_FAIL, "out of memory");
    for (int64_t i = 0; i < J->train.n; i++) J->labeled_idx[i] = i;
    if (J->n_labeled < J->train.n) {
        shuf_rng rng;
        shuf_rng_seed(&rng, (uint64_t)c->run.seed ^ 0x6c6162656c6564ULL); /* "labeled" */
        shuf_permute(&rng, J->labeled_idx, J->train.n);
    }

    /* Models, all initialised up front from one generator. */
    J->init_gen = rt_gen_new((uint64_t)c->run.seed);
    if (!J->init_gen || kd_model_init(&J->model[PH_TEACHER], c->teacher_hidden, 0, J->init_gen) < 0 ||
        kd_model_init(&J->model[PH_STUDENT_CE], c->student_hidden, 0, J->init_gen) < 0 ||
        kd_model_init(&J->model[PH_STUDENT_KD], c->student_hidden, J->kd.kind == KD_DHKD, J->init_gen) < 0)
        return run_fail(r, RUN_EXIT_FAIL, "building the models: %s", rt_last_error());
    for (int p = 0; p < PH_COUNT; p++)
        if (kd_model_optim(&J->model[p], c, p == PH_TEACHER ? c->teacher_lr : c->student_lr) < 0)
            return run_fail(r, RUN_EXIT_FAIL, "optimizer: %s", rt_last_error());

    /* Samplers and the step plan. */
    int64_t per_epoch = (J->train.n + c->batch_size - 1) / c->batch_size;
    J->phase_steps[PH_TEACHER] = c->teacher_epochs * per_epoch;
    J->phase_steps[PH_STUDENT_CE] = c->student_epochs * per_epoch;
    J->phase_steps[PH_STUDENT_KD] = c->student_epochs * per_epoch;
    J->phase_start[0] = 0;
    for (int p = 1; p < PH_COUNT; p++) J->phase_start[p] = J->phase_start[p - 1] + J->phase_steps[p - 1];
    for (int p = 0; p < PH_COUNT; p++) {
        int64_t n = p == PH_STUDENT_CE ? J->n_labeled : J->train.n;
        shuf_config sc = shuf_config_default(n, (uint64_t)c->run.seed * 3 + (uint64_t)p + 1);
        if (shuf_sampler_create(&sc, &J->sampler[p], err, sizeof err) < 0)
            return run_fail(r, RUN_EXIT_FAIL, "sampler: %s", err);
        shuf_state st;
        if (shuf_get_state(J->sampler[p], &st, err, sizeof err) < 0) return run_fail(r, RUN_EXIT_FAIL, "sampler: %s", err);
        J->sampler_blob_size[p] = shuf_state_packed_size(&st);
        shuf_state_free(&st);
        J->sampler_blob[p] = calloc(1, J->sampler_blob_size[p]);
        if (!J->sampler_blob[p]) return run_fail(r, RUN_EXIT_FAIL, "out of memory");
    }

    if (!ck) return 0;
    /* What a checkpoint holds: every model, optimizer, generator and sampler. */
    for (int p = 0; p < PH_COUNT; p++) {
        char group[64], blob[64];
        snprintf(group, sizeof group, "model/%s", kd_role[p]);
        snprintf(blob, sizeof blob, "data/sampler_%s", kd_role[p]);
        kd_model *m = &J->model[p];
        if (ck_add_tensors(ck, group, nn_params_names(m->params), nn_params_tensors(m->params),
                           nn_params_count(m->params)) < 0 ||
            ck_add_optim(ck, kd_role[p], m->opt) < 0 ||
            ck_add_blob(ck, blob, J->sampler_blob[p], J->sampler_blob_size[p]) < 0)
            return run_fail(r, RUN_EXIT_FAIL, "checkpoint manifest: %s", rt_last_error());
    }
    if (ck_add_gen(ck, "torch_init", J->init_gen) < 0)
        return run_fail(r, RUN_EXIT_FAIL, "checkpoint manifest: %s", rt_last_error());
    return 0;
}

static int kd_before_save(run_ctx *r, void *user) {
    kd_job *J = user;
    char err[512];
    for (int p = 0; p < PH_COUNT; p++) {
        shuf_state st;
        if (shuf_get_state(J->sampler[p], &st, err, sizeof err) < 0 ||
            shuf_state_pack(&st, J->sampler_blob[p], J->sampler_blob_size[p], err, sizeof err) < 0) {
            shuf_state_free(&st);
            return run_fail(r, RUN_EXIT_FAIL, "sampler %s: %s", kd_role[p], err);
        }
        shuf_state_free(&st);
    }
    return 0;
}

static int kd_after_load(run_ctx *r, void *user) {
    kd_job *J = user;
    char err[512];
    for (int p = 0; p < PH_COUNT; p++) {
        shuf_state st;
        if (shuf_state_unpack(J->sampler_blob[p], J->sampler_blob_size[p], &st, err, sizeof err) < 0 ||
            shuf_set_state(J->sampler[p], &st, err, sizeof err) < 0) {
            shuf_state_free(&st);
            return run_fail(r, RUN_EXIT_USAGE, "checkpoint sampler %s: %s", kd_role[p], err);
        }
        shuf_state_free(&st);
    }
    J->teacher_targets_ready = 0; /* recomputed from the restored teacher */
    return 0;
}

/* ------------------------------------------------------------------------ */
/* One step                                                                  */
/* ------------------------------------------------------------------------ */

static int kd_phase_of(const kd_job *J, int64_t step) {
    for (int p = PH_COUNT - 1; p >= 0; p--)
        if (step >= J->phase_start[p] && J->phase_steps[p] > 0) return p;
    return 0;
}

/* Test accuracy of every model whose phase has steps, added to rec as
 * eval/<role>_acc and kept in J->final_acc. */
static void kd_final_eval(kd_job *J, mx_record *rec) {
    for (int p = 0; p < PH_COUNT; p++) {
        J->final_acc[p] = NAN;
        if (J->phase_steps[p] == 0) continue;
        J->final_acc[p] = kd_accuracy(J, &J->model[p], J->x_test, J->y_test);
        char key[64];
        snprintf(key, sizeof key, "eval/%s_acc", kd_role[p]);
        mx_add(rec, key, J->final_acc[p]);
    }
}

/* Runs global step r->step. Returns 0, or -1 on a fatal error. */
static int kd_step(kd_job *J, run_ctx *r, rt_scope *S, int64_t *batch_idx) {
    const kd_train_cfg *c = &J->cfg;
    int p = kd_phase_of(J, r->step);
    kd_model *m = &J->model[p];
    char err[512];

    if (p == PH_STUDENT_KD && !J->teacher_targets_ready && kd_teacher_targets(J) < 0)
        return run_fail(r, RUN_EXIT_FAIL, "teacher targets: %s", rt_last_error());

    /* The batch: indices into the training set. */
    if (shuf_next_batch(J->sampler[p], c->batch_size, batch_idx, err, sizeof err) < 0)
        return run_fail(r, RUN_EXIT_FAIL, "sampler: %s", err);
    if (p == PH_STUDENT_CE && J->n_labeled < J->train.n)
        for (int64_t i = 0; i < c->batch_size; i++) batch_idx[i] = J->labeled_idx[batch_idx[i]];
    int64_t bs[1] = {c->batch_size};
    rt_tensor *idx = rt_from_data(S, batch_idx, bs, 1, RT_OPTS(RT_I64)); /* [B]      */
    rt_tensor *x = rt_index_select(S, J->x_train, 0, idx);               /* [B, 784] */

    rt_tensor *aux = NULL;
    rt_tensor *logits = kd_forward(S, m, x, p == PH_STUDENT_KD ? &aux : NULL); /* [B, 10] */
    rt_tensor *loss;
    kd_metrics km;
    if (p == PH_STUDENT_KD) {
        kd_inputs in = {logits, rt_index_select(S, J->t_logits, 0, idx), rt_index_select(S, J->y_kd, 0, idx), aux};
        loss = kd_loss(S, &J->kd, &in, &km);
    } else {
        loss = rt_cross_entropy(S, logits, rt_index_select(S, J->y_train, 0, idx), RT_MEAN, -100, 0.0);
    }
    if (!loss) return run_fail(r, RUN_EXIT_FAIL, "step %lld (%s): %s", (long long)r->step, kd_role[p], rt_last_error());

    double grad_norm = NAN;
    if (rt_optim_zero_grad(m->opt) < 0 || rt_backward(loss) < 0 ||
        rt_clip_grad_norm(nn_params_tensors(m->params), nn_params_count(m->params), c->grad_clip, &grad_norm) < 0)
        return run_fail(r, RUN_EXIT_FAIL, "step %lld backward: %s", (long long)r->step, rt_last_error());
    double loss_v = rt_item(loss);
    int ok = run_check_finite(r, loss_v, grad_norm);
    if (ok < 0) return -1;
    if (ok > 0 && rt_optim_step(m->opt) < 0)
        return run_fail(r, RUN_EXIT_FAIL, "step %lld optimizer: %s", (long long)r->step, rt_last_error());

    if (run_log_due(r)) {
        mx_record *rec = run_record(r);
        mx_add(rec, "train/phase", p);
        mx_add(rec, "train/loss", loss_v);
        mx_add(rec, "train/grad_norm", grad_norm);
        mx_add(rec, "train/lr", rt_optim_get_lr(m->opt));
        if (p == PH_STUDENT_KD) {
            mx_add(rec, "kd/ce", km.ce);
            mx_add(rec, "kd/kd", km.kd);
            mx_add(rec, "train/acc", km.student_acc);
            mx_add(rec, "kd/teacher_acc", km.teacher_acc);
        } else {
            rt_tensor *y = rt_index_select(S, J->y_train, 0, idx);
            rt_tensor *hit = rt_compare(S, rt_argmax(S, logits, 1, 0), RT_EQ, y);
            mx_add(rec, "train/acc", (double)rt_item_i64(rt_sum(S, hit, RT_DIM_ALL, 0)) / (double)c->batch_size);
        }
        mx_add_str(rec, "train/model", kd_role[p]);
        if (r->step + 1 == r->total_steps) kd_final_eval(J, rec); /* one record per log step */
        run_log(r);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* train / eval                                                              */
/* ------------------------------------------------------------------------ */

static const mx_column kd_columns[] = {
    {"train/phase", "phase", MX_INT, NULL},  {"train/loss", "loss", MX_NUM, NULL},
    {"train/acc", "acc", MX_PCT, NULL},    {"kd/teacher_acc", "teacher", MX_PCT, NULL},
    {"train/grad_norm", "gnorm", MX_NUM, NULL}, {"train/lr", "lr", MX_SCI, NULL},
    {"perf/ms_per_step", "ms", MX_MS, NULL}, {"perf/samples_per_s", "samples/s", MX_RATE, NULL},
};

static int kd_train(const run_args *args) {
    kd_job J;
    memset(&J, 0, sizeof J);
    run_ctx R;
    rt_scope *S = NULL;
    int64_t *batch_idx = NULL;
    if (run_open(&R, args, &kd_train_schema, &J.cfg, &J.cfg.run) < 0) {
        int code = R.exit_code;
        run_close(&R);
        return code;
    }
    R.columns = kd_columns;
    R.ncolumns = sizeof kd_columns / sizeof kd_columns[0];
    R.before_save = kd_before_save;
    R.after_load = kd_after_load;
    R.hook_user = &J;
    R.samples_per_step = J.cfg.batch_size;

    if (kd_job_build(&J, &R, R.ck) < 0) goto out;
    R.total_steps = J.phase_start[PH_COUNT - 1] + J.phase_steps[PH_COUNT - 1];
    run_printf(&R, "plan: teacher %lld steps, student_ce %lld steps on %lld labelled examples, student_kd %lld "
                   "steps (%s)",
               (long long)J.phase_steps[0], (long long)J.phase_steps[1], (long long)J.n_labeled,
               (long long)J.phase_steps[2], kd_kind_name(J.kd.kind));
    if (run_resume(&R) < 0) goto out;

    S = rt_scope_new();
    batch_idx = malloc((size_t)J.cfg.batch_size * sizeof *batch_idx);
    if (!S || !batch_idx) {
        run_fail(&R, RUN_EXIT_FAIL, "out of memory");
        goto out;
    }
    double t0 = mx_wall_time();
    int last_phase = R.step < R.total_steps ? kd_phase_of(&J, R.step) : PH_COUNT;
    for (; R.step < R.total_steps && !run_stop_requested(&R); rt_scope_reset(S)) {
        int p = kd_phase_of(&J, R.step);
        if (p != last_phase) {
            run_printf(&R, "phase %s done: test accuracy %.4f", kd_role[last_phase],
                       kd_accuracy(&J, &J.model[last_phase], J.x_test, J.y_test));
            last_phase = p;
        }
        if (kd_step(&J, &R, S, batch_idx) < 0) break;
        R.step++;
        if (run_after_step(&R) < 0) break;
    }
    if (R.step == R.total_steps && R.step > R.start_step && R.exit_code == RUN_EXIT_OK) {
        run_printf(&R, "test accuracy (10000 images): teacher %.4f | student CE only %.4f | student KD (%s) %.4f",
                   J.final_acc[0], J.final_acc[1], kd_kind_name(J.kd.kind), J.final_acc[2]);
        run_printf(&R, "wall time this process: %.1f s", mx_wall_time() - t0);
    }
out:
    free(batch_idx);
    rt_scope_free(S);
    int code = run_close(&R);
    kd_job_free(&J);
    return code;
}

/* `rlt eval`: rebuild the job from the checkpoint's own config, load, test. */
static int kd_eval(const char *ckpt_path, const char *const *sets, int nsets) {
    kd_job J;
    memset(&J, 0, sizeof J);
    char err[8192];
    ck_meta meta;
    int64_t step = 0;
    if (run_eval_config(&kd_train_schema, &J.cfg, &J.cfg.run, ckpt_path, sets, nsets, &step) != 0) return RUN_EXIT_USAGE;
    ck_state *ck = ck_state_new();
    int code = RUN_EXIT_OK;
    if (!ck || ck_set_algorithm(ck, "kd") < 0 || kd_job_build(&J, NULL, ck) < 0) {
        code = RUN_EXIT_FAIL;
        goto out;
    }
    if (ck_load(ck, ckpt_path, &meta, err, sizeof err) < 0) {
        fprintf(stderr, "error: cannot load '%s':\n%s\n", ckpt_path, err);
        code = RUN_EXIT_USAGE;
        goto out;
    }
    ck_meta_release(&meta);
    printf("checkpoint %s (step %lld)\n", ckpt_path, (long long)step);
    printf("| model      | trained steps   | test accuracy |\n|------------|-----------------|---------------|\n");
    for (int p = 0; p < PH_COUNT; p++) {
        int64_t done = step - J.phase_start[p];
        done = done < 0 ? 0 : done > J.phase_steps[p] ? J.phase_steps[p] : done;
        printf("| %-10s | %6lld / %-6lld | %13.4f |\n", kd_role[p], (long long)done, (long long)J.phase_steps[p],
               kd_accuracy(&J, &J.model[p], J.x_test, J.y_test));
    }
out:
    ck_state_free(ck);
    kd_job_free(&J);
    return code;
}

const rlt_algo rlt_algo_kd = {
    "kd", "knowledge distillation on Fashion-MNIST: teacher, CE-only student, distilled student",
    &kd_train_schema, kd_train, kd_eval,
};
