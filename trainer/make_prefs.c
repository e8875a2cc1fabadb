/*
 * make_prefs.c -- `rlt make-prefs`: real preference data from a verifiable
 * text task. A policy checkpoint (an SFT or RL run) samples G completions for
 * each of N prompts, the task's plugin scores them, and the prompts that got
 * both a correct completion (score 1.0) and a wrong one (any other score)
 * become records of data/prefs.h's JSONL kinds:
 *
 *   pairs     {"prompt", "chosen": a correct completion, "rejected": a wrong one}
 *             (each drawn uniformly among the prompt's correct / wrong ones)
 *   lists     {"prompt", "completions": the G scorable completions, "scores": their scores}
 *   unpaired  the pairs, unpaired: {"prompt", "completion": chosen, "label": true}
 *             and {"prompt", "completion": rejected, "label": false} (TRL's
 *             unpair_preference_dataset), so desirable and undesirable balance
 *
 * Prompts with no correct or no wrong completion give no record; they are
 * counted and reported. --flip F reverses the preference of round(F * K) of
 * the K records, picked with the seeded generator (the noisy-preference
 * setting): pairs swap chosen and rejected, unpaired records swap labels in
 * the same pairs, lists map every score s to (max + min - s) over the list,
 * which reverses its order.
 *
 * The task and the model come from the checkpoint's own resolved config
 * ([task] and [model]; --set task.KEY=VALUE overrides the task), the policy
 * from its /model/policy. Prompt i is the task's item sp_pref_seed(seed, i):
 * a seed range used by neither training nor held-out items, so the held-out
 * pass@1 of a policy trained on the data stays honest. A completion is
 * written as the task scores it ("<think>" + the decoded tokens with
 * task.think), the form the preference loops encode back. The output is a
 * pure function of the checkpoint, the options and the thread count.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "algo.h"
#include "metrics.h"
#include "prefs.h"
#include "run.h"
#include "seqpol.h"
#include "shuffle.h"
#include "tensor.h"

#define MP_MAX_SETS 64

typedef enum mp_kind { MP_PAIRS = 0, MP_LISTS = 1, MP_UNPAIRED = 2 } mp_kind;
static const char *const mp_kind_names[] = {"pairs", "lists", "unpaired", NULL};

typedef struct mp_opts {
    const char *from, *out;
    int kind;
    int64_t prompts, samples, batch, max_new_tokens;
    double temperature, flip;
    uint64_t seed;
    int threads;
    const char *sets[MP_MAX_SETS];
    int nsets;
} mp_opts;

static void mp_help(FILE *out) {
    fprintf(out,
            "usage: rlt make-prefs --from RUN_DIR|CKPT --out FILE.jsonl [options]\n\n"
            "Samples completions from a policy checkpoint on its own text task, scores them with the task's\n"
            "plugin and writes the prompts that got both a correct (score 1.0) and a wrong completion as a\n"
            "preference dataset (JSONL, data/prefs.h kinds).\n\n"
            "options:\n"
            "  --from RUN_DIR|CKPT       the policy (a run directory: its newest complete checkpoint); its\n"
            "                            [task] and [model] sections give the task and the model (required)\n"
            "  --out FILE.jsonl          where to write the dataset, atomically (required)\n"
            "  --kind pairs|lists|unpaired  pairs: chosen/rejected; lists: every completion with its score;\n"
            "                            unpaired: the pairs as desirable/undesirable records (default pairs)\n"
            "  --prompts N               prompts to sample (default 512)\n"
            "  --samples G               completions per prompt, >= 2 (default 8)\n"
            "  --temperature T           sampling temperature, > 0 (default 1.0)\n"
            "  --max-new-tokens M        completion budget (default 0 = the task's longest demonstration + 8)\n"
            "  --batch B                 prompts per sampling batch (default 64)\n"
            "  --seed S                  seed of the prompts, the sampling and the picks (default 0)\n"
            "  --flip F                  reverse the preference of this fraction of the records, seeded\n"
            "                            (noisy preferences; default 0)\n"
            "  --threads N               intra-op threads (default 1; the output is exact at a fixed count)\n"
            "  --set task.KEY=VALUE      override a [task] key of the checkpoint (repeatable)\n\n"
            "Prompts come from a seed range that neither training items nor held-out items use. Prompts\n"
            "without a correct or without a wrong completion give no record and are counted.\n");
}

/* Strict number parsing for the options. */
static int mp_int(const char *opt, const char *v, int64_t lo, int64_t hi, int64_t *out) {
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || !end || *end || end == v || x < lo || x > hi) {
        fprintf(stderr, "error: %s '%s': expected an integer in [%lld, %lld]\n", opt, v, (long long)lo, (long long)hi);
        return -1;
    }
    *out = x;
    return 0;
}

static int mp_real(const char *opt, const char *v, double lo, double hi, int lo_open, double *out) {
    char *end = NULL;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || !end || *end || end == v || !isfinite(x) || x < lo || x > hi || (lo_open && x == lo)) {
        fprintf(stderr, "error: %s '%s': expected a number in %s%g, %g]\n", opt, v, lo_open ? "(" : "[", lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

static int mp_parse(int argc, char **argv, mp_opts *o, int *help) {
    memset(o, 0, sizeof *o);
    o->kind = MP_PAIRS;
    o->prompts = 512;
    o->samples = 8;
    o->batch = 64;
    o->temperature = 1.0;
    o->threads = 1;
    *help = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            *help = 1;
            return 0;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "error: unexpected argument '%s' (rlt make-prefs --help)\n", a);
            return -1;
        }
        char name[32];
        const char *eq = strchr(a, '='), *v;
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        snprintf(name, sizeof name, "%.*s", (int)(len < sizeof name ? len : sizeof name - 1), a);
        if (eq) {
            v = eq + 1;
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            fprintf(stderr, "error: option '%s' needs a value\n", name);
            return -1;
        }
        int64_t n;
        if (strcmp(name, "--from") == 0) {
            o->from = v;
        } else if (strcmp(name, "--out") == 0) {
            o->out = v;
        } else if (strcmp(name, "--kind") == 0) {
            o->kind = -1;
            for (int k = 0; mp_kind_names[k]; k++)
                if (strcmp(v, mp_kind_names[k]) == 0) o->kind = k;
            if (o->kind < 0) {
                fprintf(stderr, "error: --kind '%s': expected pairs, lists or unpaired\n", v);
                return -1;
            }
        } else if (strcmp(name, "--prompts") == 0) {
            if (mp_int(name, v, 1, 100000000, &o->prompts) < 0) return -1;
        } else if (strcmp(name, "--samples") == 0) {
            if (mp_int(name, v, 2, 1024, &o->samples) < 0) return -1;
        } else if (strcmp(name, "--batch") == 0) {
            if (mp_int(name, v, 1, 100000, &o->batch) < 0) return -1;
        } else if (strcmp(name, "--max-new-tokens") == 0) {
            if (mp_int(name, v, 0, 8192, &o->max_new_tokens) < 0) return -1;
        } else if (strcmp(name, "--seed") == 0) {
            if (mp_int(name, v, 0, INT64_MAX, &n) < 0) return -1;
            o->seed = (uint64_t)n;
        } else if (strcmp(name, "--threads") == 0) {
            if (mp_int(name, v, 1, 256, &n) < 0) return -1;
            o->threads = (int)n;
        } else if (strcmp(name, "--temperature") == 0) {
            if (mp_real(name, v, 0, 100, 1, &o->temperature) < 0) return -1;
        } else if (strcmp(name, "--flip") == 0) {
            if (mp_real(name, v, 0, 1, 0, &o->flip) < 0) return -1;
        } else if (strcmp(name, "--set") == 0) {
            if (o->nsets == MP_MAX_SETS) {
                fprintf(stderr, "error: more than %d --set options\n", MP_MAX_SETS);
                return -1;
            }
            o->sets[o->nsets++] = v;
        } else {
            fprintf(stderr, "error: unknown option '%s' (rlt make-prefs --help)\n", name);
            return -1;
        }
    }
    if (!o->from || !o->out) {
        fprintf(stderr,
                "error: rlt make-prefs needs --from RUN_DIR|CKPT and --out FILE.jsonl (rlt make-prefs --help)\n");
        return -1;
    }
    return 0;
}

/* One prompt's sampled completions, kept when it has a correct and a wrong one. */
typedef struct mp_item {
    char *prompt;
    char **texts;     /* [n] scorable completions, as the task scores them */
    double *scores;   /* [n]                                               */
    int64_t n;
    int64_t chosen, rejected; /* indices into texts (pairs, unpaired)      */
    int flipped;
} mp_item;

static void mp_item_free(mp_item *it) {
    free(it->prompt);
    for (int64_t i = 0; it->texts && i < it->n; i++) free(it->texts[i]);
    free(it->texts);
    free(it->scores);
    memset(it, 0, sizeof *it);
}

/* Counts over the whole job. */
typedef struct mp_counts {
    int64_t prompts, completions, correct, unscorable, no_correct, no_wrong, kept, flipped;
} mp_counts;

/* Samples one batch of prompts and appends its kept items. */
static int mp_batch(const mp_opts *o, sp_task *t, gpt *m, int64_t start, int64_t np, int64_t max_new, rt_gen *gen,
                    shuf_rng *pick, mp_item *items, mp_counts *cnt, char *err, size_t errlen) {
    rt_scope *S = rt_scope_new();
    char **prompts = calloc((size_t)np, sizeof *prompts);
    double *rewards = malloc((size_t)(np * o->samples) * sizeof *rewards);
    smp_out out;
    memset(&out, 0, sizeof out);
    int rc = -1;
    if (!S || !prompts || !rewards) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (int64_t i = 0; i < np; i++)
        if (sp_sample(t, sp_pref_seed(o->seed, start + i), &prompts[i], NULL, err, errlen) < 0) goto out;
    rt_tensor *ids, *mask;
    if (sp_encode_prompts(S, t, prompts, np, &ids, &mask, err, errlen) < 0) goto out;
    smp_config sc = smp_config_default();
    sc.temperature = o->temperature;
    sc.max_new_tokens = max_new;
    sc.stop_ids[0] = TOK_EOS;
    sc.n_stop = 1;
    sc.pad_id = TOK_PAD;
    int g = rt_no_grad_begin();
    int grc = smp_generate(S, m, &sc, ids, mask, o->samples, gen, &out);
    rt_grad_mode_restore(g);
    if (grc < 0) {
        snprintf(err, errlen, "sampling: %s", rt_last_error());
        goto out;
    }
    int64_t G = o->samples, C = rt_size(out.ids, 1);
    rt_tensor *host = rt_contiguous(S, out.ids);
    const int64_t *h = host ? rt_data_ptr(host) : NULL;
    if (!h) {
        snprintf(err, errlen, "%s", rt_last_error());
        goto out;
    }
    if (sp_score_rows(t, prompts, G, h, out.lengths, np * G, C, rewards, err, errlen) < 0) goto out;
    for (int64_t i = 0; i < np; i++) {
        int64_t correct = 0, wrong = 0;
        for (int64_t j = 0; j < G; j++) {
            double r = rewards[i * G + j];
            correct += !isnan(r) && r >= 1.0;
            wrong += !isnan(r) && r < 1.0;
            cnt->unscorable += isnan(r);
        }
        cnt->prompts++;
        cnt->completions += G;
        cnt->correct += correct;
        if (correct == 0) {
            cnt->no_correct++;
            continue;
        }
        if (wrong == 0) {
            cnt->no_wrong++;
            continue;
        }
        mp_item *it = &items[cnt->kept];
        it->prompt = prompts[i];
        prompts[i] = NULL;
        it->texts = calloc((size_t)G, sizeof *it->texts);
        it->scores = malloc((size_t)G * sizeof *it->scores);
        if (!it->texts || !it->scores) {
            snprintf(err, errlen, "out of memory");
            cnt->kept++; /* so the caller frees it */
            goto out;
        }
        cnt->kept++;
        for (int64_t j = 0; j < G; j++) {
            double r = rewards[i * G + j];
            if (isnan(r)) continue;
            it->texts[it->n] = strdup(sp_completion_text(t, h + (i * G + j) * C, out.lengths[i * G + j]));
            if (!it->texts[it->n]) {
                snprintf(err, errlen, "out of memory");
                goto out;
            }
            it->scores[it->n++] = r;
        }
        /* chosen: the k-th correct completion, rejected: the k'-th wrong one (uniform) */
        int64_t kc = (int64_t)shuf_rng_bounded(pick, (uint64_t)correct);
        int64_t kw = (int64_t)shuf_rng_bounded(pick, (uint64_t)wrong);
        for (int64_t j = 0; j < it->n; j++) {
            if (it->scores[j] >= 1.0 && kc-- == 0) it->chosen = j;
            if (it->scores[j] < 1.0 && kw-- == 0) it->rejected = j;
        }
    }
    rc = 0;
out:
    for (int64_t i = 0; prompts && i < np; i++) free(prompts[i]);
    free(prompts);
    free(rewards);
    smp_out_free(&out);
    rt_scope_free(S);
    return rc;
}

/* Reverses the preference of round(flip * kept) items picked by a seeded permutation. */
static void mp_flip(const mp_opts *o, mp_item *items, mp_counts *cnt, shuf_rng *pick) {
    int64_t n = cnt->kept, nflip = llround(o->flip * (double)n);
    if (nflip == 0) return;
    int64_t *perm = malloc((size_t)n * sizeof *perm);
    if (!perm) return;
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    shuf_permute(pick, perm, n);
    for (int64_t f = 0; f < nflip; f++) {
        mp_item *it = &items[perm[f]];
        it->flipped = 1;
        int64_t tmp = it->chosen;
        it->chosen = it->rejected;
        it->rejected = tmp;
        double lo = it->scores[0], hi = it->scores[0];
        for (int64_t j = 1; j < it->n; j++) {
            lo = it->scores[j] < lo ? it->scores[j] : lo;
            hi = it->scores[j] > hi ? it->scores[j] : hi;
        }
        for (int64_t j = 0; j < it->n; j++) it->scores[j] = hi + lo - it->scores[j];
    }
    cnt->flipped = nflip;
    free(perm);
}

static int mp_write(const mp_opts *o, const mp_item *items, const mp_counts *cnt, size_t *written, char *err,
                    size_t errlen) {
    size_t n = (size_t)cnt->kept * (o->kind == MP_UNPAIRED ? 2 : 1);
    pref_record *recs = calloc(n ? n : 1, sizeof *recs);
    if (!recs) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pref_kind kind = o->kind == MP_PAIRS ? PREF_PAIRWISE : o->kind == MP_LISTS ? PREF_LISTWISE : PREF_UNPAIRED;
    for (int64_t i = 0; i < cnt->kept; i++) {
        const mp_item *it = &items[i];
        if (o->kind == MP_PAIRS) {
            recs[i].prompt = it->prompt;
            recs[i].chosen = it->texts[it->chosen];
            recs[i].rejected = it->texts[it->rejected];
        } else if (o->kind == MP_LISTS) {
            recs[i].prompt = it->prompt;
            recs[i].n_completions = (size_t)it->n;
            recs[i].completions = (const char *const *)it->texts;
            recs[i].scores = it->scores;
        } else {
            pref_record *d = &recs[2 * i], *u = &recs[2 * i + 1];
            d->prompt = u->prompt = it->prompt;
            d->completion = it->texts[it->chosen];
            d->label = 1;
            u->completion = it->texts[it->rejected];
            u->label = 0;
        }
    }
    int rc = pref_write(o->out, kind, recs, n, err, errlen);
    free(recs);
    *written = n;
    return rc == PREF_OK ? 0 : -1;
}

int make_prefs_main(int argc, char **argv) {
    mp_opts o;
    int help;
    if (mp_parse(argc, argv, &o, &help) < 0) return RUN_EXIT_USAGE;
    if (help) {
        mp_help(stdout);
        return RUN_EXIT_OK;
    }
    char err[8192], path[CK_PATH_MAX], tok_spec[SP_TOK_SPEC_MAX];
    sp_task_cfg tcfg;
    sp_model_cfg mcfg;
    sp_task task;
    memset(&task, 0, sizeof task);
    gpt *m = NULL;
    rt_gen *gen = NULL;
    mp_item *items = NULL;
    mp_counts cnt;
    memset(&cnt, 0, sizeof cnt);
    int code = RUN_EXIT_USAGE;
    if (rt_set_num_threads(o.threads) < 0 || rt_set_deterministic(1) < 0) {
        fprintf(stderr, "error: %s\n", rt_last_error());
        goto out;
    }
    if (sp_read_ckpt_sections(o.from, o.sets, o.nsets, path, sizeof path, &tcfg, &mcfg, err, sizeof err) < 0) {
        fprintf(stderr, "error: --from %s: %s\n", o.from, err);
        goto out;
    }
    if (sp_task_open(&task, &tcfg, err, sizeof err) < 0 ||
        sp_tok_spec(&task, tok_spec, sizeof tok_spec, err, sizeof err) < 0) {
        fprintf(stderr, "error: %s\n", err);
        goto out;
    }
    int64_t max_new = o.max_new_tokens > 0 ? o.max_new_tokens : sp_max_demo_tokens(&task) + 8;
    if (sp_max_prompt_tokens(&task) + max_new > mcfg.context) {
        fprintf(stderr,
                "error: the checkpoint's model.context (%lld) is too small for task '%s': longest prompt %lld + "
                "completion budget %lld tokens (lower --max-new-tokens or the task's lengths)\n",
                (long long)mcfg.context, tcfg.name, (long long)sp_max_prompt_tokens(&task), (long long)max_new);
        goto out;
    }
    gen = rt_gen_new(o.seed);
    if (!gen || sp_model_new(&mcfg, &task, gen, &m, err, sizeof err) < 0) {
        fprintf(stderr, "error: %s\n", gen ? err : rt_last_error());
        goto out;
    }
    if (sp_load_policy(m, &mcfg, tok_spec, path, "policy", err, sizeof err) < 0) {
        fprintf(stderr, "error: --from %s: %s\n", o.from, err);
        goto out;
    }
    items = calloc((size_t)o.prompts, sizeof *items);
    if (!items) {
        fprintf(stderr, "error: out of memory\n");
        code = RUN_EXIT_FAIL;
        goto out;
    }
    printf("make-prefs: %s, task %s (%s), %lld prompts x %lld samples at temperature %g, seed %llu, %s\n", path,
           tcfg.name, tcfg.settings[0] ? tcfg.settings : "defaults", (long long)o.prompts, (long long)o.samples,
           o.temperature, (unsigned long long)o.seed, mp_kind_names[o.kind]);
    fflush(stdout);

    rt_gen_seed(gen, o.seed); /* sampling starts from the seed, whatever the model init drew */
    shuf_rng pick;
    shuf_rng_seed(&pick, o.seed ^ 0x7069636b73ULL); /* "picks" */
    double t0 = mx_wall_time();
    code = RUN_EXIT_FAIL;
    for (int64_t start = 0; start < o.prompts; start += o.batch) {
        int64_t np = o.prompts - start < o.batch ? o.prompts - start : o.batch;
        if (mp_batch(&o, &task, m, start, np, max_new, gen, &pick, items, &cnt, err, sizeof err) < 0) {
            fprintf(stderr, "error: %s\n", err);
            goto out;
        }
    }
    mp_flip(&o, items, &cnt, &pick);
    printf("sampled %lld completions in %.1f s: %.4f correct (score 1.0), %lld unscorable\n",
           (long long)cnt.completions, mx_wall_time() - t0,
           cnt.completions ? (double)cnt.correct / (double)cnt.completions : 0.0, (long long)cnt.unscorable);
    printf("prompts: %lld kept, %lld without a correct completion, %lld without a wrong completion (no record)\n",
           (long long)cnt.kept, (long long)cnt.no_correct, (long long)cnt.no_wrong);
    if (cnt.kept == 0) {
        fprintf(stderr, "error: no prompt got both a correct and a wrong completion: nothing to write to %s "
                "(sample more prompts or completions, or use a different checkpoint)\n", o.out);
        goto out;
    }
    size_t written = 0;
    if (mp_write(&o, items, &cnt, &written, err, sizeof err) < 0) {
        fprintf(stderr, "error: %s\n", err);
        goto out;
    }
    printf("wrote %zu %s records to %s (%lld of %lld prompts flipped)\n", written,
           o.kind == MP_PAIRS ? "pairwise" : o.kind == MP_LISTS ? "listwise" : "unpaired", o.out,
           (long long)cnt.flipped, (long long)cnt.kept);
    code = RUN_EXIT_OK;
out:
    for (int64_t i = 0; items && i < cnt.kept; i++) mp_item_free(&items[i]);
    free(items);
    gpt_free(m);
    rt_gen_free(gen);
    sp_task_close(&task);
    return code;
}
