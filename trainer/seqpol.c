/*
 * seqpol.c -- the pieces every sequence-policy loop shares: a text task with
 * its tokenizer, prompt/completion tensors, and held-out evaluation. The
 * layout conventions are documented in seqpol.h.
 */
#define _POSIX_C_SOURCE 200809L

#include "seqpol.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <ini.h>

#include "env.h"
#include "metrics.h"

void sp_check_sections(const sp_task_cfg *t, const sp_model_cfg *m, const sp_eval_cfg *e, cfg_check *ck) {
    if (t->name[0] == '\0') cfg_check_fail(ck, "task.name", "is empty: name a text-task plugin (rlt envs lists them)");
    if (m->width % m->heads != 0)
        cfg_check_fail(ck, "model.heads", "%lld does not divide model.width (%lld)", (long long)m->heads,
                       (long long)m->width);
    if (e->k > e->samples)
        cfg_check_fail(ck, "eval.k", "%lld is larger than eval.samples (%lld)", (long long)e->k, (long long)e->samples);
}

/* ------------------------------------------------------------------------ */
/* The task                                                                  */
/* ------------------------------------------------------------------------ */

void sp_task_close(sp_task *t) {
    if (!t) return;
    if (t->task && t->plugin) t->plugin->vt->destroy(t->task);
    t->task = NULL;
    envl_close_text(t->plugin);
    t->plugin = NULL;
    tok_free(t->tok);
    t->tok = NULL;
    free(t->prompt_buf);
    free(t->demo_buf);
    free(t->text_buf);
    t->prompt_buf = t->demo_buf = t->text_buf = NULL;
}

/* Splits "a:b:c" into at most cap directory strings inside buf. */
static size_t sp_split_path(char *buf, const char **dirs, size_t cap) {
    size_t n = 0;
    for (char *save = NULL, *d = strtok_r(buf, ":", &save); d && n < cap; d = strtok_r(NULL, ":", &save))
        if (*d) dirs[n++] = d;
    return n;
}

int sp_task_open(sp_task *t, const sp_task_cfg *cfg, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    t->think = cfg->think;
    char paths[sizeof cfg->env_path];
    snprintf(paths, sizeof paths, "%s", cfg->env_path);
    const char *dirs[16];
    size_t ndirs = sp_split_path(paths, dirs, 16);
    envl_search search;
    if (envl_search_init(&search, dirs, ndirs, err, errlen) < 0) return -1;
    int rc = envl_open_text(&search, cfg->name, &t->plugin, err, errlen);
    envl_search_free(&search);
    if (rc < 0) return -1;

    const env_text_plugin *vt = t->plugin->vt;
    char perr[512] = "";
    if (vt->create(cfg->settings, &t->task, perr, sizeof perr) != ENV_OK || !t->task) {
        snprintf(err, errlen, "task.settings: text task '%s' (%s) rejects \"%s\": %s", cfg->name, t->plugin->path,
                 cfg->settings, perr[0] ? perr : "no reason given");
        goto fail;
    }
    if (vt->limits(t->task, &t->max_prompt_chars, &t->max_demo_chars) != ENV_OK) {
        snprintf(err, errlen, "text task '%s': limits(): %s", cfg->name, vt->last_error(t->task));
        goto fail;
    }
    if (tok_new_chars(vt->alphabet, &t->tok, perr, sizeof perr) < 0) {
        snprintf(err, errlen, "text task '%s' (%s): its alphabet: %s", cfg->name, t->plugin->path, perr);
        goto fail;
    }
    t->prompt_buf = malloc((size_t)t->max_prompt_chars + 1);
    t->demo_buf = malloc((size_t)t->max_demo_chars + 1);
    /* Decoded completions: at most a few characters per token (the longest
     * special is "</think>"); sized for the longest context we allow. */
    t->text_cap = 16 * 8192 + 16;
    t->text_buf = malloc(t->text_cap);
    if (!t->prompt_buf || !t->demo_buf || !t->text_buf) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return 0;
fail:
    sp_task_close(t);
    return -1;
}

/* splitmix64: the item seed stream (a bijection, so distinct indices give
 * distinct seeds). */
static uint64_t sp_mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

uint64_t sp_train_seed(uint64_t run_seed, int64_t index) {
    return sp_mix(sp_mix(run_seed) ^ (uint64_t)index) & ~(1ULL << 63);
}

uint64_t sp_heldout_seed(int64_t index) { return (1ULL << 63) | (uint64_t)index; }

int sp_sample(sp_task *t, uint64_t seed, char **prompt, char **demo, char *err, size_t errlen) {
    const env_text_plugin *vt = t->plugin->vt;
    *prompt = NULL;
    if (demo) *demo = NULL;
    if (vt->sample(t->task, seed, t->prompt_buf, (size_t)t->max_prompt_chars + 1, t->demo_buf,
                   (size_t)t->max_demo_chars + 1) != ENV_OK) {
        snprintf(err, errlen, "text task '%s': sample(seed %llu): %s", vt->name, (unsigned long long)seed,
                 vt->last_error(t->task));
        return -1;
    }
    *prompt = strdup(t->prompt_buf);
    if (demo) *demo = strdup(t->demo_buf);
    if (!*prompt || (demo && !*demo)) {
        free(*prompt);
        if (demo) free(*demo);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int64_t sp_max_prompt_tokens(const sp_task *t) { return (int64_t)t->max_prompt_chars + 2; }
int64_t sp_max_demo_tokens(const sp_task *t) { return (int64_t)t->max_demo_chars + 1; }

/* The part of a demonstration the model writes: with think, the demo minus
 * its leading "<think>" (which ends the prompt); without, the answer after
 * the last "</think>". */
static const char *sp_demo_target(const sp_task *t, const char *demo) {
    if (t->think) {
        size_t nb = strlen(ENV_THINK_BEGIN);
        return strncmp(demo, ENV_THINK_BEGIN, nb) == 0 ? demo + nb : demo;
    }
    const char *last = NULL;
    for (const char *p = strstr(demo, ENV_THINK_END); p; p = strstr(p + 1, ENV_THINK_END)) last = p;
    return last ? last + strlen(ENV_THINK_END) : demo;
}

static int sp_encode_texts(rt_scope *S, sp_task *t, const char *const *texts, int64_t n, int prompts, rt_tensor **ids,
                           rt_tensor **mask, char *err, size_t errlen);

int sp_encode_prompts(rt_scope *S, sp_task *t, char *const *prompts, int64_t n, rt_tensor **ids, rt_tensor **mask,
                      char *err, size_t errlen) {
    return sp_encode_texts(S, t, (const char *const *)prompts, n, 1, ids, mask, err, errlen);
}

int sp_encode_completions(rt_scope *S, sp_task *t, char *const *demos, int64_t n, rt_tensor **ids, rt_tensor **mask,
                          char *err, size_t errlen) {
    return sp_encode_texts(S, t, (const char *const *)demos, n, 0, ids, mask, err, errlen);
}

const char *sp_completion_text(sp_task *t, const int64_t *ids, int64_t len) {
    size_t off = 0;
    if (t->think) {
        memcpy(t->text_buf, ENV_THINK_BEGIN, strlen(ENV_THINK_BEGIN));
        off = strlen(ENV_THINK_BEGIN);
    }
    if (tok_decode(t->tok, ids, len, t->text_buf + off, t->text_cap - off) < 0) t->text_buf[off] = '\0';
    return t->text_buf;
}

int sp_score_rows(sp_task *t, char *const *prompts, int64_t group, const int64_t *ids, const int64_t *lengths,
                  int64_t n, int64_t C, double *rewards, char *err, size_t errlen) {
    const env_text_plugin *vt = t->plugin->vt;
    for (int64_t i = 0; i < n; i++) {
        const char *text = sp_completion_text(t, ids + i * C, lengths[i]);
        double r = NAN;
        if (vt->score(t->task, prompts[i / group], text, &r) != ENV_OK) {
            snprintf(err, errlen, "text task '%s': score(prompt \"%.60s\"): %s", vt->name, prompts[i / group],
                     vt->last_error(t->task));
            return -1;
        }
        rewards[i] = r;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Model plumbing                                                            */
/* ------------------------------------------------------------------------ */

int sp_model_new(const sp_model_cfg *cfg, const sp_task *t, rt_gen *g, gpt **out, char *err, size_t errlen) {
    gpt_config c = gpt_config_default();
    c.vocab = tok_vocab_size(t->tok);
    c.context = cfg->context;
    c.n_layer = cfg->layers;
    c.n_head = cfg->heads;
    c.d_model = cfg->width;
    c.mlp_hidden = cfg->mlp_hidden;
    if (gpt_config_check(&c, err, errlen) < 0) return -1;
    if (gpt_new(&c, RT_OPTS(RT_F32), g, out) < 0) {
        snprintf(err, errlen, "building the model: %s", rt_last_error());
        return -1;
    }
    return 0;
}

int sp_join(rt_scope *S, const rt_tensor *p_ids, const rt_tensor *p_mask, const rt_tensor *c_ids,
            const rt_tensor *c_mask, rt_tensor **ids, rt_tensor **mask) {
    rt_tensor *a[2] = {(rt_tensor *)p_ids, (rt_tensor *)c_ids};
    rt_tensor *b[2] = {(rt_tensor *)p_mask, (rt_tensor *)c_mask};
    *ids = rt_cat(S, a, 2, 1);  /* [N, P+C] */
    *mask = rt_cat(S, b, 2, 1); /* [N, P+C] */
    return *ids && *mask ? 0 : -1;
}

rt_tensor *sp_completion_logits(rt_scope *S, const rt_tensor *logits, int64_t P, int64_t C) {
    return rt_narrow(S, logits, 1, P - 1, C); /* [N, C, V] */
}

/* ------------------------------------------------------------------------ */
/* Evaluation                                                                */
/* ------------------------------------------------------------------------ */

double sp_pass_at_k(int64_t n, int64_t c, int64_t k) {
    if (n - c < k) return 1.0;
    double miss = 1.0; /* C(n-c, k) / C(n, k) as a product, no overflow */
    for (int64_t i = n - c + 1; i <= n; i++) miss *= 1.0 - (double)k / (double)i;
    return 1.0 - miss;
}

int64_t sp_eval_max_new(const sp_eval_cfg *cfg, const sp_task *t) {
    return cfg->max_new_tokens > 0 ? cfg->max_new_tokens : sp_max_demo_tokens(t) + 8;
}

/* Generates for prompts [P] x G and scores; adds the per-prompt counts of
 * 1.0 scores to correct[], and reward/length sums. */
static int sp_eval_batch(gpt *m, sp_task *t, char *const *prompts, int64_t np, int64_t G, double temperature,
                         int64_t max_new, rt_gen *gen, int64_t *correct, double *reward_sum, int64_t *reward_n,
                         double *len_sum, char *err, size_t errlen) {
    rt_scope *S = rt_scope_new();
    smp_out out;
    memset(&out, 0, sizeof out);
    double *rewards = NULL;
    int rc = -1;
    rt_tensor *ids, *mask;
    if (!S || sp_encode_prompts(S, t, prompts, np, &ids, &mask, err, errlen) < 0) goto out;
    smp_config sc = smp_config_default();
    sc.temperature = temperature;
    sc.max_new_tokens = max_new;
    sc.stop_ids[0] = TOK_EOS;
    sc.n_stop = 1;
    sc.pad_id = TOK_PAD;
    if (smp_generate(S, m, &sc, ids, mask, G, gen, &out) < 0) {
        snprintf(err, errlen, "sampling: %s", rt_last_error());
        goto out;
    }
    int64_t N = np * G, C = rt_size(out.ids, 1);
    rt_tensor *host = rt_contiguous(S, out.ids);
    const int64_t *h = host ? rt_data_ptr(host) : NULL;
    rewards = malloc((size_t)N * sizeof *rewards);
    if (!h || !rewards) {
        snprintf(err, errlen, "%s", h ? "out of memory" : rt_last_error());
        goto out;
    }
    if (sp_score_rows(t, prompts, G, h, out.lengths, N, C, rewards, err, errlen) < 0) goto out;
    for (int64_t i = 0; i < N; i++) {
        if (rewards[i] >= 1.0) correct[i / G]++;
        if (!isnan(rewards[i])) {
            *reward_sum += rewards[i];
            (*reward_n)++;
        }
        *len_sum += (double)out.lengths[i];
    }
    rc = 0;
out:
    free(rewards);
    smp_out_free(&out);
    rt_scope_free(S);
    return rc;
}

int sp_evaluate(gpt *m, sp_task *t, const sp_eval_cfg *cfg, sp_eval_result *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->prompts = cfg->prompts;
    out->samples = cfg->samples;
    out->k = cfg->k;
    double t0 = mx_wall_time();
    int64_t B = cfg->batch, n = cfg->prompts, max_new = sp_eval_max_new(cfg, t);
    char **prompts = calloc((size_t)B, sizeof *prompts);
    int64_t *correct = calloc((size_t)B, sizeof *correct), *gcorrect = calloc((size_t)B, sizeof *gcorrect);
    rt_gen *gen = rt_gen_new((uint64_t)cfg->seed);
    int rc = -1, g = rt_no_grad_begin();
    double rsum = 0, lsum = 0, gr = 0, gl = 0, p1 = 0, pk = 0, greedy = 0;
    int64_t rn = 0, grn = 0;
    if (!prompts || !correct || !gcorrect || !gen) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (int64_t start = 0; start < n; start += B) {
        int64_t np = n - start < B ? n - start : B;
        for (int64_t i = 0; i < np; i++) {
            free(prompts[i]);
            prompts[i] = NULL;
            correct[i] = gcorrect[i] = 0;
            if (sp_sample(t, sp_heldout_seed(start + i), &prompts[i], NULL, err, errlen) < 0) goto out;
        }
        if (sp_eval_batch(m, t, prompts, np, cfg->samples, cfg->temperature, max_new, gen, correct, &rsum, &rn,
                          &lsum, err, errlen) < 0 ||
            sp_eval_batch(m, t, prompts, np, 1, 0.0, max_new, gen, gcorrect, &gr, &grn, &gl, err, errlen) < 0)
            goto out;
        for (int64_t i = 0; i < np; i++) {
            p1 += (double)correct[i] / (double)cfg->samples;
            pk += sp_pass_at_k(cfg->samples, correct[i], cfg->k);
            greedy += gcorrect[i] > 0;
        }
    }
    out->pass1 = p1 / (double)n;
    out->passk = pk / (double)n;
    out->greedy = greedy / (double)n;
    out->reward = rn ? rsum / (double)rn : NAN;
    out->length = lsum / (double)(n * cfg->samples);
    rc = 0;
out:
    out->seconds = mx_wall_time() - t0;
    rt_grad_mode_restore(g);
    for (int64_t i = 0; prompts && i < B; i++) free(prompts[i]);
    free(prompts);
    free(correct);
    free(gcorrect);
    rt_gen_free(gen);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Settings strings                                                          */
/* ------------------------------------------------------------------------ */

int sp_apply_settings(const char *text, void *cfg, int (*set)(void *, const char *, const char *), char *err,
                      size_t errlen) {
    size_t len = strlen(text);
    char *buf = malloc(len + 1);
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(buf, text, len + 1);
    /* A comma separates pairs only when a name=value follows it, so
     * comma-list values ("loss_type=sigmoid,sft") stay whole. */
    for (char *c = strchr(buf, ','); c; c = strchr(c + 1, ',')) {
        const char *next = c + 1;
        if (memchr(next, '=', strcspn(next, ", \t"))) *c = ' ';
    }
    int rc = 0;
    for (char *save = NULL, *tok = strtok_r(buf, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) {
            snprintf(err, errlen, "'%s' is not name=value", tok);
            rc = -1;
            break;
        }
        *eq = '\0';
        if (set(cfg, tok, eq + 1) != RT_OK) {
            snprintf(err, errlen, "%s", rt_last_error());
            rc = -1;
            break;
        }
    }
    free(buf);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Checkpoints                                                               */
/* ------------------------------------------------------------------------ */

int sp_fail(run_ctx *r, int exit_code, const char *fmt, ...) {
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r) return run_fail(r, exit_code, "%s", msg);
    fprintf(stderr, "error: %s\n", msg);
    return -1;
}

int sp_tok_spec(const sp_task *t, char *spec, size_t cap, char *err, size_t errlen) {
    memset(spec, 0, cap);
    if (tok_spec(t->tok, spec, cap - 1) < 0) {
        snprintf(err, errlen, "the tokenizer's description does not fit in %zu bytes", cap - 1);
        return -1;
    }
    return 0;
}

int sp_ck_add_policy(ck_state *ck, const char *role, gpt *m, char *tok_spec) {
    char group[96];
    snprintf(group, sizeof group, "model/%s", role);
    nn_params *P = gpt_params(m);
    if (ck_add_tensors(ck, group, nn_params_names(P), nn_params_tensors(P), nn_params_count(P)) < 0) return -1;
    if (tok_spec && ck_add_blob(ck, "data/tokenizer", tok_spec, SP_TOK_SPEC_MAX) < 0) return -1;
    return 0;
}

int sp_resolve_ckpt(const char *ref, char *path, size_t cap, char *err, size_t errlen) {
    struct stat st;
    if (stat(ref, &st) != 0) {
        snprintf(err, errlen, "'%s': %s", ref, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(path, cap, "%s", ref);
        return 0;
    }
    char dir[CK_PATH_MAX];
    snprintf(dir, sizeof dir, "%s/checkpoints", ref);
    ck_scan scan;
    if (ck_find_latest(dir, &scan, err, errlen) < 0) return -1;
    snprintf(path, cap, "%s", scan.path);
    return 0;
}

/* inih handler: the [model] keys of a resolved config. */
typedef struct sp_model_read {
    sp_model_cfg cfg;
    int seen;
} sp_model_read;

static int sp_model_key(void *user, const char *section, const char *name, const char *value) {
    sp_model_read *mr = user;
    if (strcmp(section, "model") != 0) return 1;
    int64_t v = strtoll(value, NULL, 10);
    if (strcmp(name, "layers") == 0) mr->cfg.layers = v, mr->seen |= 1;
    else if (strcmp(name, "width") == 0) mr->cfg.width = v, mr->seen |= 2;
    else if (strcmp(name, "heads") == 0) mr->cfg.heads = v, mr->seen |= 4;
    else if (strcmp(name, "context") == 0) mr->cfg.context = v, mr->seen |= 8;
    else if (strcmp(name, "mlp_hidden") == 0) mr->cfg.mlp_hidden = v, mr->seen |= 16;
    return 1;
}

int sp_load_policy(gpt *m, const sp_model_cfg *mcfg, const char *tok_spec, const char *ref, const char *role,
                   char *err, size_t errlen) {
    char path[CK_PATH_MAX];
    if (sp_resolve_ckpt(ref, path, sizeof path, err, errlen) < 0) return -1;
    /* The vocabulary first: a policy over another alphabet is refused for
     * that reason, not for the embedding shape it implies. */
    if (sp_check_policy_tokenizer(path, tok_spec, err, errlen) < 0) return -1;
    ck_meta meta;
    memset(&meta, 0, sizeof meta);
    char e[4096];
    if (ck_read_meta(path, &meta, e, sizeof e) < 0) {
        snprintf(err, errlen, "%s", e);
        return -1;
    }
    int rc = -1;
    ck_state *ck = NULL;
    sp_model_read mr;
    memset(&mr, 0, sizeof mr);
    if (!meta.loaded_config || ini_parse_string(meta.loaded_config, sp_model_key, &mr) < 0 || mr.seen != 31) {
        snprintf(err, errlen, "%s (algorithm '%s') has no [model] section: not a sequence-policy checkpoint", path,
                 meta.algorithm);
        goto out;
    }
    if (mr.cfg.layers != mcfg->layers || mr.cfg.width != mcfg->width || mr.cfg.heads != mcfg->heads ||
        mr.cfg.context != mcfg->context || mr.cfg.mlp_hidden != mcfg->mlp_hidden) {
        snprintf(err, errlen,
                 "%s holds a model with layers=%lld width=%lld heads=%lld context=%lld mlp_hidden=%lld, but this "
                 "recipe's [model] says layers=%lld width=%lld heads=%lld context=%lld mlp_hidden=%lld: make [model] "
                 "match",
                 path, (long long)mr.cfg.layers, (long long)mr.cfg.width, (long long)mr.cfg.heads,
                 (long long)mr.cfg.context, (long long)mr.cfg.mlp_hidden, (long long)mcfg->layers,
                 (long long)mcfg->width, (long long)mcfg->heads, (long long)mcfg->context, (long long)mcfg->mlp_hidden);
        goto out;
    }
    ck = ck_state_new();
    char group[96];
    snprintf(group, sizeof group, "model/%s", role);
    nn_params *P = gpt_params(m);
    if (!ck || ck_set_algorithm(ck, meta.algorithm) < 0 ||
        ck_add_tensors(ck, group, nn_params_names(P), nn_params_tensors(P), nn_params_count(P)) < 0) {
        snprintf(err, errlen, "%s", ck ? ck_error(ck) : "out of memory");
        goto out;
    }
    if (ck_load(ck, path, NULL, e, sizeof e) < 0) { /* validates everything before it writes */
        snprintf(err, errlen, "%s: %s", path, e);
        goto out;
    }
    rc = 0;
out:
    ck_state_free(ck);
    ck_meta_release(&meta);
    return rc;
}

bool sp_run_is_fresh(const run_ctx *r) {
    if (r->args.resume == RUN_RESUME_NEVER) return true;
    if (r->args.resume == RUN_RESUME_PATH) return false;
    ck_scan scan;
    char e[512];
    return ck_find_latest(r->ckpt_dir, &scan, e, sizeof e) == CK_ENOTFOUND;
}

void sp_eval_record(mx_record *rec, const sp_eval_result *e) {
    mx_add(rec, "eval/pass@1", e->pass1);
    mx_add(rec, "eval/pass@k", e->passk);
    mx_add(rec, "eval/k", (double)e->k);
    mx_add(rec, "eval/greedy", e->greedy);
    mx_add(rec, "eval/reward", e->reward);
    mx_add(rec, "eval/completion_length", e->length);
    mx_add(rec, "perf/eval_seconds", e->seconds); /* a timing: perf/ keys are not compared on resume */
}

int sp_eval_run(run_ctx *r, gpt *m, sp_task *t, const sp_eval_cfg *cfg, sp_eval_result *e, mx_record *rec) {
    char err[2048];
    if (sp_evaluate(m, t, cfg, e, err, sizeof err) < 0)
        return run_fail(r, RUN_EXIT_FAIL, "evaluation: %s", err);
    if (rec)
        sp_eval_record(rec, e);
    return 0;
}

void sp_eval_report(run_ctx *r, const sp_eval_result *first, const sp_eval_result *last) {
    if (!last)
        run_printf(r, "held-out before training: pass@1 %.4f  pass@%lld %.4f  greedy %.4f", first->pass1,
                   (long long)first->k, first->passk, first->greedy);
    else if (first)
        run_printf(r, "held-out (%lld prompts): pass@1 %.4f -> %.4f  pass@%lld %.4f -> %.4f  greedy %.4f -> %.4f",
                   (long long)last->prompts, first->pass1, last->pass1, (long long)last->k, first->passk, last->passk,
                   first->greedy, last->greedy);
    else
        run_printf(r, "held-out (%lld prompts): pass@1 %.4f  pass@%lld %.4f  greedy %.4f", (long long)last->prompts,
                   last->pass1, (long long)last->k, last->passk, last->greedy);
}

int sp_eval_checkpoint(ck_state *ck, const char *path, int64_t step, gpt *m, sp_task *t, const sp_eval_cfg *cfg) {
    char err[8192];
    ck_meta meta;
    if (ck_load(ck, path, &meta, err, sizeof err) < 0) {
        fprintf(stderr, "error: cannot load '%s':\n%s\n", path, err);
        return RUN_EXIT_USAGE;
    }
    ck_meta_release(&meta);
    sp_eval_result e;
    if (sp_evaluate(m, t, cfg, &e, err, sizeof err) < 0) {
        fprintf(stderr, "error: evaluation: %s\n", err);
        return RUN_EXIT_FAIL;
    }
    printf("checkpoint %s (step %lld), task %s, %lld held-out prompts, %lld samples each at temperature %g\n", path,
           (long long)step, t->plugin->vt->name, (long long)e.prompts, (long long)e.samples, cfg->temperature);
    printf("| pass@1 | pass@%-3lld | greedy | mean reward | mean length | seconds |\n", (long long)e.k);
    printf("|--------|----------|--------|-------------|-------------|---------|\n");
    printf("| %6.4f | %8.4f | %6.4f | %11.4f | %11.2f | %7.1f |\n", e.pass1, e.passk, e.greedy, e.reward, e.length,
           e.seconds);
    return RUN_EXIT_OK;
}

/* ------------------------------------------------------------------------ */
/* Preference data                                                           */
/* ------------------------------------------------------------------------ */

uint64_t sp_pref_seed(uint64_t seed, int64_t index) {
    return (3ULL << 62) | (sp_mix(sp_mix(seed ^ 0x707265666572ULL) ^ (uint64_t)index) >> 2); /* "prefer" */
}

/* [task] and [model] of a resolved config, through the same schema fields the
 * loops use (so values are checked the same way). */
typedef struct sp_sections {
    sp_task_cfg task;
    sp_model_cfg model;
} sp_sections;

static const cfg_field sp_section_fields[] = {
    SP_TASK_FIELDS(sp_sections, task),
    SP_MODEL_FIELDS(sp_sections, model),
};
static const cfg_schema sp_section_schema = CFG_SCHEMA("task+model", sp_sections, sp_section_fields, NULL);

/* A copy of INI text with every line outside [task] and [model] blanked
 * (line numbers stay those of the stored config). */
static char *sp_keep_sections(const char *text) {
    size_t len = strlen(text);
    char *out = malloc(len + 1);
    if (!out) return NULL;
    int keep = 0;
    size_t o = 0;
    for (const char *p = text; *p;) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        const char *q = p;
        while (q < p + n && (*q == ' ' || *q == '\t')) q++;
        if (q < p + n && *q == '[') {
            keep = (strncmp(q, "[task]", 6) == 0 || strncmp(q, "[model]", 7) == 0);
        }
        if (keep) {
            memcpy(out + o, p, n);
            o += n;
        }
        if (eol) out[o++] = '\n';
        p += n + (eol ? 1 : 0);
    }
    out[o] = '\0';
    return out;
}

int sp_read_ckpt_sections(const char *ref, const char *const *sets, int nsets, char *path, size_t cap,
                          sp_task_cfg *task, sp_model_cfg *model, char *err, size_t errlen) {
    if (sp_resolve_ckpt(ref, path, cap, err, errlen) < 0) return -1;
    ck_meta meta;
    memset(&meta, 0, sizeof meta);
    char e[4096];
    if (ck_read_meta(path, &meta, e, sizeof e) < 0) {
        snprintf(err, errlen, "%s", e);
        return -1;
    }
    int rc = -1;
    char *text = NULL;
    cfg_errors *cerr = malloc(sizeof *cerr);
    sp_sections sec;
    if (!cerr) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    cfg_errors_clear(cerr);
    if (!meta.loaded_config || !strstr(meta.loaded_config, "[model]") || !strstr(meta.loaded_config, "[task]")) {
        snprintf(err, errlen, "%s (algorithm '%s') has no [task] and [model] sections: not a sequence-policy checkpoint",
                 path, meta.algorithm);
        goto out;
    }
    text = sp_keep_sections(meta.loaded_config);
    if (!text) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    int c = cfg_defaults(&sp_section_schema, &sec, cerr);
    if (c == CFG_OK) c = cfg_read_string(&sp_section_schema, &sec, text, path, cerr);
    for (int i = 0; c == CFG_OK && i < nsets; i++) {
        if (strncmp(sets[i], "task.", 5) != 0) {
            cfg_errorf(cerr, "--set '%s': only task.KEY=VALUE can be set here (the model is the checkpoint's)", sets[i]);
            c = CFG_EINVAL;
            break;
        }
        c = cfg_set(&sp_section_schema, &sec, sets[i], cerr);
    }
    if (c == CFG_OK) c = cfg_validate(&sp_section_schema, &sec, cerr);
    if (c != CFG_OK) {
        size_t n = cerr->len;
        while (n > 0 && cerr->text[n - 1] == '\n') n--;
        snprintf(err, errlen, "%.*s", (int)n, cerr->text);
        goto out;
    }
    *task = sec.task;
    *model = sec.model;
    rc = 0;
out:
    free(text);
    free(cerr);
    ck_meta_release(&meta);
    return rc;
}

/* Texts -> one padded [n, L] block (prompts: BOS + text [+ THINK_BEGIN],
 * left-padded; completions: sp_demo_target + EOS, right-padded), with room
 * for texts of any length: rows hold sampled completions, which may run past
 * the task's longest demonstration. */
static int sp_encode_texts(rt_scope *S, sp_task *t, const char *const *texts, int64_t n, int prompts, rt_tensor **ids,
                           rt_tensor **mask, char *err, size_t errlen) {
    *ids = *mask = NULL;
    int64_t L = 0;
    int64_t *lens = malloc((size_t)n * sizeof *lens);
    int64_t **enc = calloc((size_t)n, sizeof *enc);
    int64_t *flat = NULL;
    float *fm = NULL;
    int rc = -1;
    if (!lens || !enc) goto oom;
    for (int64_t i = 0; i < n; i++) {
        const char *text = prompts ? texts[i] : sp_demo_target(t, texts[i]);
        int64_t cap = (int64_t)strlen(text) + 1; /* a byte is at most one id */
        enc[i] = malloc((size_t)(cap + 2) * sizeof **enc);
        if (!enc[i]) goto oom;
        int64_t off = prompts ? 1 : 0;
        int64_t k = tok_encode(t->tok, text, enc[i] + off, cap);
        if (k < 0) {
            snprintf(err, errlen, "%s %lld (\"%.60s\"): %s", prompts ? "prompt" : "completion", (long long)i, text,
                     tok_last_error(t->tok));
            goto out;
        }
        if (prompts) {
            enc[i][0] = TOK_BOS;
            k += 1;
            if (t->think) enc[i][k++] = TOK_THINK_BEGIN;
        } else {
            enc[i][k++] = TOK_EOS;
        }
        lens[i] = k;
        if (k > L) L = k;
    }
    flat = malloc((size_t)(n * L) * sizeof *flat);
    fm = malloc((size_t)(n * L) * sizeof *fm);
    if (!flat || !fm) goto oom;
    for (int64_t i = 0; i < n; i++) {
        int64_t start = prompts ? L - lens[i] : 0;
        for (int64_t j = 0; j < L; j++) {
            flat[i * L + j] = TOK_PAD;
            fm[i * L + j] = 0.0f;
        }
        for (int64_t j = 0; j < lens[i]; j++) {
            flat[i * L + start + j] = enc[i][j];
            fm[i * L + start + j] = 1.0f;
        }
    }
    int64_t shape[2] = {n, L};
    *ids = rt_from_data(S, flat, shape, 2, RT_OPTS(RT_I64));
    *mask = rt_from_data(S, fm, shape, 2, RT_OPTS(RT_F32));
    if (!*ids || !*mask) {
        snprintf(err, errlen, "%s", rt_last_error());
        goto out;
    }
    rc = 0;
    goto out;
oom:
    snprintf(err, errlen, "out of memory");
out:
    if (enc)
        for (int64_t i = 0; i < n; i++) free(enc[i]);
    free(enc);
    free(lens);
    free(flat);
    free(fm);
    return rc;
}

int sp_encode_rows(rt_scope *S, sp_task *t, const char *const *prompts, const char *const *completions,
                   int64_t n, sp_rows *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    rt_tensor *p_ids, *p_mask, *c_ids, *c_maskf;
    if (sp_encode_texts(S, t, prompts, n, 1, &p_ids, &p_mask, err, errlen) < 0 ||
        sp_encode_texts(S, t, completions, n, 0, &c_ids, &c_maskf, err, errlen) < 0)
        return -1;
    out->n = n;
    out->P = rt_size(p_ids, 1);
    out->C = rt_size(c_ids, 1);
    out->c_ids = c_ids;
    out->c_mask = rt_compare_scalar(S, c_maskf, RT_GT, 0.5); /* [n, C] bool */
    out->lengths = rt_sum(S, c_maskf, 1, 0);                 /* [n] */
    if (sp_join(S, p_ids, p_mask, c_ids, c_maskf, &out->ids, &out->mask) < 0 || !out->c_mask || !out->lengths) {
        snprintf(err, errlen, "%s", rt_last_error());
        return -1;
    }
    return 0;
}

rt_tensor *sp_rows_token_logps(rt_scope *S, gpt *m, const sp_rows *rows, rt_tensor **logits) {
    rt_tensor *full = gpt_forward(S, m, rows->ids, rows->mask);              /* [n, P+C, V] */
    if (logits) *logits = full;
    rt_tensor *c_logits = sp_completion_logits(S, full, rows->P, rows->C);   /* [n, C, V]   */
    return rt_token_logps(S, c_logits, rows->c_ids, 1.0, NULL);              /* [n, C]      */
}

/* ------------------------------------------------------------------------ */
/* Distillation                                                              */
/* ------------------------------------------------------------------------ */

int sp_check_policy_tokenizer(const char *ref, const char *tok_spec, char *err, size_t errlen) {
    char path[CK_PATH_MAX];
    if (sp_resolve_ckpt(ref, path, sizeof path, err, errlen) < 0) return -1;
    ck_meta meta;
    memset(&meta, 0, sizeof meta);
    char e[4096];
    if (ck_read_meta(path, &meta, e, sizeof e) < 0) {
        snprintf(err, errlen, "%s", e);
        return -1;
    }
    int rc = -1;
    char *spec = calloc(1, SP_TOK_SPEC_MAX);
    ck_state *ck = ck_state_new();
    if (!spec || !ck || ck_set_algorithm(ck, meta.algorithm) < 0 ||
        ck_add_blob(ck, "data/tokenizer", spec, SP_TOK_SPEC_MAX) < 0) {
        snprintf(err, errlen, "%s", ck ? ck_error(ck) : "out of memory");
        goto out;
    }
    /* Only the blob is registered: the load reads and checks nothing else. */
    if (ck_load(ck, path, NULL, e, sizeof e) < 0) {
        snprintf(err, errlen, "%s (algorithm '%s') stores no tokenizer of %d bytes at /data/tokenizer, so it is not a "
                 "sequence-policy checkpoint:\n%s", path, meta.algorithm, SP_TOK_SPEC_MAX, e);
        goto out;
    }
    if (strncmp(spec, tok_spec, SP_TOK_SPEC_MAX) != 0) {
        snprintf(err, errlen, "%s was trained with tokenizer \"%.200s\", this task's is \"%.200s\": a policy can only "
                 "be used on the vocabulary it was trained on", path, spec, tok_spec);
        goto out;
    }
    rc = 0;
out:
    ck_state_free(ck);
    free(spec);
    ck_meta_release(&meta);
    return rc;
}
