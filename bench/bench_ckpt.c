/*
 * bench_ckpt.c -- checkpoint save and load time and file size for an MLP of
 * ~1M float32 parameters (784-1024-256-10 = 1,068,810) with its Adam state
 * (exp_avg, exp_avg_sq after one step), one generator and a data permutation.
 *
 *   bench_ckpt [DIR]      (DIR defaults to /tmp; the file is removed after)
 *
 * Prints the median of 5 saves (atomic: temp, fsync, rename, fsync dir) and
 * of 5 loads (two-phase: validate + stage, then apply).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"

#define REPS 5

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    rt_tune_malloc();
    enum { NP = 6 };
    const char *names[NP] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"};
    int64_t shapes[NP][2] = {{1024, 784}, {1024, 0}, {256, 1024}, {256, 0}, {10, 256}, {10, 0}};
    rt_tensor *p[NP];
    rt_gen *g = rt_gen_new(0);
    int64_t n_params = 0;
    for (int i = 0; i < NP; i++) {
        int nd = shapes[i][1] ? 2 : 1;
        p[i] = rt_randn(NULL, shapes[i], nd, g, RT_OPTS(RT_F32));
        if (!p[i]) return fprintf(stderr, "%s\n", rt_last_error()), 1;
        rt_set_requires_grad(p[i], 1);
        n_params += rt_numel(p[i]);
    }
    rt_optim_opts oo = rt_optim_defaults(RT_ADAM);
    rt_optim *opt = rt_optim_new(RT_ADAM, p, names, NP, &oo);
    /* One step so the Adam state exists. */
    rt_scope *S = rt_scope_new();
    int64_t xs[2] = {64, 784};
    rt_tensor *x = rt_randn(S, xs, 2, g, RT_OPTS(RT_F32));
    rt_tensor *h = rt_tanh(S, rt_linear(S, x, p[0], p[1]));
    h = rt_tanh(S, rt_linear(S, h, p[2], p[3]));
    rt_tensor *loss = rt_mean(S, rt_square(S, rt_linear(S, h, p[4], p[5])), RT_DIM_ALL, 0);
    if (!loss || rt_backward(loss) || rt_optim_step(opt)) return fprintf(stderr, "%s\n", rt_last_error()), 1;
    rt_scope_free(S);

    int64_t perm[60000];
    for (int i = 0; i < 60000; i++) perm[i] = 59999 - i;
    ck_state *st = ck_state_new();
    ck_set_algorithm(st, "kd");
    ck_add_tensors(st, "model/student", names, p, NP);
    ck_add_optim(st, "student", opt);
    ck_add_gen(st, "torch_cpu", g);
    ck_add_i64_array(st, "data/permutation", perm, 60000);

    char path[1024], err[4096];
    snprintf(path, sizeof path, "%s/bench_ckpt_%ld.h5", dir, (long)getpid());
    ck_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.step = 1;
    meta.config = "[bench]\n";
    double ts[REPS], tl[REPS];
    for (int r = 0; r < REPS; r++) {
        double t0 = now_s();
        if (ck_save(st, path, &meta, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
        ts[r] = now_s() - t0;
    }
    for (int r = 0; r < REPS; r++) {
        double t0 = now_s();
        if (ck_load(st, path, NULL, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
        tl[r] = now_s() - t0;
    }
    struct stat sb;
    stat(path, &sb);
    printf("params %lld (+ Adam exp_avg, exp_avg_sq = %lld floats, %.1f MB raw float32)\n", (long long)n_params,
           (long long)(3 * n_params), 3.0 * 4.0 * (double)n_params / 1e6);
    printf("file   %.2f MB\n", (double)sb.st_size / 1e6);
    printf("save   %.1f ms (median of %d; atomic, with fsync)\n", 1e3 * median(ts, REPS), REPS);
    printf("load   %.1f ms (median of %d; validate + stage + apply)\n", 1e3 * median(tl, REPS), REPS);
    unlink(path);
    ck_state_free(st);
    rt_optim_free(opt);
    for (int i = 0; i < NP; i++) rt_free(p[i]);
    rt_gen_free(g);
    return 0;
}
