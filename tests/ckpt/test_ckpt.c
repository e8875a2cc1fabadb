/*
 * test_ckpt.c -- Criterion tests for trainer/h5io.h and trainer/ckpt.h:
 * HDF5 dataset/attribute/string round trips, a bit-exact checkpoint round trip
 * (params, Adam state, two generators, blob, arrays, scalars) that h5py reads
 * as a state_dict, all-at-once mismatch reports that leave state untouched,
 * foreign / newer / incomplete / non-HDF5 files, truncated and bit-flipped
 * files, the checkpoints/ directory (latest, stray temp files, rotation) and
 * a SIGKILL in the middle of a 50 MB save.
 *
 * Each Test() pays libtorch's ~0.6 s start-up, so each one checks a lot.
 * Every test works in its own mkdtemp directory under /tmp and removes it.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "h5io.h"

/* ---- helpers ------------------------------------------------------------- */

static void make_tmpdir(char *dir, size_t cap) {
    snprintf(dir, cap, "/tmp/rlt-ckpt-XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
}

/* Remove a flat directory and everything in it. */
static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char p[1200];
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat sb;
        if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) remove_tree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int file_exists(const char *dir, const char *name) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

static void copy_file(const char *src, const char *dst) {
    FILE *a = fopen(src, "rb"), *b = fopen(dst, "wb");
    cr_assert(a && b, "copy %s -> %s", src, dst);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) cr_assert_eq(fwrite(buf, 1, n, b), n);
    fclose(a);
    fclose(b);
}

static void flip_bit(const char *path, long offset, int bit) {
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f);
    cr_assert_eq(fseek(f, offset, SEEK_SET), 0);
    int c = fgetc(f);
    cr_assert_neq(c, EOF);
    cr_assert_eq(fseek(f, offset, SEEK_SET), 0);
    fputc(c ^ (1 << bit), f);
    fclose(f);
}

/* The first line a shell command prints. */
static void run_capture(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "popen %s", cmd);
    out[0] = 0;
    if (!fgets(out, (int)cap, p)) out[0] = 0;
    pclose(p);
    out[strcspn(out, "\n")] = 0;
}

/* A two-layer MLP under Adam. hidden and the dtype of fc2.bias vary so the
 * mismatch test can build a model that does not fit a file. */
typedef struct model {
    rt_tensor *p[4];
    rt_optim *opt;
} model;

static const char *const NAMES[4] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};

static void model_init(model *m, uint64_t seed, int64_t hidden, rt_dtype bias2) {
    rt_gen *g = rt_gen_new(seed);
    int64_t s0[2] = {hidden, 20}, s1[1] = {hidden}, s2[2] = {10, hidden}, s3[1] = {10};
    m->p[0] = rt_randn(NULL, s0, 2, g, RT_OPTS(RT_F32));
    m->p[1] = rt_randn(NULL, s1, 1, g, RT_OPTS(RT_F32));
    m->p[2] = rt_randn(NULL, s2, 2, g, RT_OPTS(RT_F32));
    m->p[3] = rt_randn(NULL, s3, 1, g, RT_OPTS(bias2));
    for (int i = 0; i < 4; i++) {
        cr_assert_not_null(m->p[i], "%s", rt_last_error());
        rt_set_requires_grad(m->p[i], 1);
    }
    rt_optim_opts o = rt_optim_defaults(RT_ADAM);
    o.lr = 1e-2;
    m->opt = rt_optim_new(RT_ADAM, m->p, NAMES, 4, &o);
    cr_assert_not_null(m->opt, "%s", rt_last_error());
    rt_gen_free(g);
}

static void model_step(model *m, rt_gen *g) {
    rt_scope *S = rt_scope_new();
    int64_t xs[2] = {8, 20};
    rt_tensor *x = rt_randn(S, xs, 2, g, RT_OPTS(RT_F32));
    rt_tensor *h = rt_tanh(S, rt_linear(S, x, m->p[0], m->p[1]));
    rt_tensor *loss = rt_mean(S, rt_square(S, rt_linear(S, h, m->p[2], m->p[3])), RT_DIM_ALL, 0);
    cr_assert_not_null(loss, "%s", rt_last_error());
    cr_assert_eq(rt_optim_zero_grad(m->opt), RT_OK);
    cr_assert_eq(rt_backward(loss), RT_OK, "%s", rt_last_error());
    cr_assert_eq(rt_optim_step(m->opt), RT_OK, "%s", rt_last_error());
    rt_scope_free(S);
}

static void model_free(model *m) {
    rt_optim_free(m->opt);
    for (int i = 0; i < 4; i++) rt_free(m->p[i]);
}

/* Everything a trainer checkpoints besides the model. */
typedef struct sampler {
    int64_t epoch, cursor;
    double temperature;
    char tag[16];
} sampler;

typedef struct world {
    model m;
    rt_gen *g_cpu, *g_env;
    sampler smp;
    int64_t perm[6];
    int64_t phase;
    double log_alpha;
    ck_state *st;
} world;

static void world_init(world *w, uint64_t seed, int64_t hidden, rt_dtype bias2) {
    memset(w, 0, sizeof *w);
    model_init(&w->m, seed, hidden, bias2);
    w->g_cpu = rt_gen_new(seed + 1);
    w->g_env = rt_gen_new(seed + 2);
    w->st = ck_state_new();
    cr_assert_not_null(w->st);
    cr_assert_eq(ck_set_algorithm(w->st, "kd"), CK_OK);
    cr_assert_eq(ck_add_tensors(w->st, "model/student", NAMES, w->m.p, 4), CK_OK);
    cr_assert_eq(ck_add_optim(w->st, "student", w->m.opt), CK_OK);
    cr_assert_eq(ck_add_gen(w->st, "torch_cpu", w->g_cpu), CK_OK);
    cr_assert_eq(ck_add_gen(w->st, "env", w->g_env), CK_OK);
    cr_assert_eq(ck_add_blob(w->st, "data/sampler", &w->smp, sizeof w->smp), CK_OK);
    cr_assert_eq(ck_add_i64_array(w->st, "data/permutation", w->perm, 6), CK_OK);
    cr_assert_eq(ck_add_i64(w->st, "algo/phase", &w->phase), CK_OK);
    cr_assert_eq(ck_add_f64(w->st, "algo/log_alpha", &w->log_alpha), CK_OK);
}

static void world_free(world *w) {
    ck_state_free(w->st);
    rt_gen_free(w->g_cpu);
    rt_gen_free(w->g_env);
    model_free(&w->m);
}

/* Train a few steps and set the side state to recognisable values. */
static void world_advance(world *w) {
    for (int i = 0; i < 3; i++) model_step(&w->m, w->g_cpu);
    rt_scope *S = rt_scope_new();
    int64_t s[1] = {7};
    cr_assert_not_null(rt_rand(S, s, 1, w->g_env, RT_OPTS(RT_F32)));
    cr_assert_not_null(rt_randn(S, s, 1, w->g_env, RT_OPTS(RT_F64))); /* leaves a cached normal */
    rt_scope_free(S);
    w->smp = (sampler){2, 417, 0.7, "fmnist"};
    for (int i = 0; i < 6; i++) w->perm[i] = (i * 5 + 3) % 6;
    w->phase = 3;
    w->log_alpha = -0.123456789012345;
}

static const char *ARGV[3] = {"rlt", "train", "runs/kd-fashion-mnist.ini"};

static void save_world(world *w, const char *path, int64_t step) {
    ck_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.step = step;
    meta.epoch = 2;
    meta.samples_seen = 1234;
    meta.wall_time_s = 12.5;
    meta.config = "[train]\nsteps = 100\nlr = 0.01\n";
    meta.argv = ARGV;
    meta.argc = 3;
    char err[4096];
    cr_assert_eq(ck_save(w->st, path, &meta, err, sizeof err), CK_OK, "%s", err);
}

static int equal_or_fail(const rt_tensor *a, const rt_tensor *b) { return a && b && rt_equal(a, b) == 1; }

/* ---- h5io ---------------------------------------------------------------- */

Test(h5io, datasets_attributes_strings_listing_and_errors) {
    char dir[64], path[128];
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/io.h5", dir);
    char err[H5IO_ERR_MAX];
    h5io_file *f = h5io_create(path, 1, err, sizeof err);
    cr_assert_not_null(f, "%s", err);
    cr_assert_null(h5io_create(path, 1, err, sizeof err), "exclusive create of an existing file must fail");
    cr_assert(strstr(err, path), "create error names the file: %s", err);

    rt_scope *S = rt_scope_new();
    rt_gen *g = rt_gen_new(5);
    int64_t s23[2] = {2, 3}, s4[1] = {4}, s0[2] = {0, 3};
    rt_tensor *f32 = rt_randn(S, s23, 2, g, RT_OPTS(RT_F32));
    rt_tensor *f64 = rt_randn(S, s23, 2, g, RT_OPTS(RT_F64));
    rt_tensor *bf16 = rt_to_dtype(S, f32, RT_BF16);
    rt_tensor *f16 = rt_to_dtype(S, f32, RT_F16);
    rt_tensor *i64 = rt_arange(S, -2, 2, 1, RT_OPTS(RT_I64));
    rt_tensor *i32 = rt_randint(S, -100, 100, s4, 1, g, RT_OPTS(RT_I32));
    rt_tensor *u8 = rt_randint(S, 0, 255, s4, 1, g, RT_OPTS(RT_U8));
    rt_tensor *bl = rt_to_dtype(S, rt_randint(S, 0, 2, s23, 2, g, RT_OPTS(RT_I64)), RT_BOOL);
    rt_tensor *scalar = rt_scalar(S, 2.5, RT_OPTS(RT_F64));
    rt_tensor *empty = rt_zeros(S, s0, 2, RT_OPTS(RT_F32));
    rt_tensor *tr = rt_transpose(S, f32, 0, 1); /* non-contiguous [3, 2] */
    int64_t big[2] = {600, 1000};                /* 2.4 MB: several chunks */
    rt_tensor *large = rt_randn(S, big, 2, g, RT_OPTS(RT_F32));
    cr_assert_not_null(large, "%s", rt_last_error());
    cr_assert(tr && empty && scalar && bl && u8 && i32 && i64 && f16 && bf16 && f64, "%s", rt_last_error());

    struct { const char *path; rt_tensor *t; int deflate; } cases[] = {
        {"a/f32", f32, 0},     {"a/f64", f64, 4},       {"a/b/bf16", bf16, 0}, {"a/b/f16", f16, 0},
        {"ints/i64", i64, 0},  {"ints/i32", i32, 1},    {"ints/u8", u8, 0},    {"mask", bl, 0},
        {"/loss", scalar, 0},  {"empty", empty, 0},     {"tr", tr, 0},         {"large", large, 6}};
    size_t nc = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < nc; i++)
        cr_assert_eq(h5io_write_tensor(f, cases[i].path, cases[i].t, cases[i].deflate), H5IO_OK, "%s",
                     h5io_error(f));
    /* Writing again replaces. */
    cr_assert_eq(h5io_write_tensor(f, "a/f32", f32, 0), H5IO_OK, "%s", h5io_error(f));
    cr_assert_eq(h5io_write_string(f, "config/resolved", "[run]\nname = \"ü\"\n"), H5IO_OK, "%s", h5io_error(f));
    const char *words[3] = {"rlt", "loss", "kd"};
    cr_assert_eq(h5io_write_strings(f, "config/argv", words, 3), H5IO_OK);
    uint8_t blob[5] = {1, 2, 3, 254, 255};
    cr_assert_eq(h5io_write_bytes(f, "rng/x", blob, 5), H5IO_OK);
    cr_assert_eq(h5io_attr_set_i64(f, "/", "step", 1200), H5IO_OK);
    cr_assert_eq(h5io_attr_set_i32(f, "/", "format_version", 1), H5IO_OK);
    cr_assert_eq(h5io_attr_set_f64(f, "a", "lr", 3e-4), H5IO_OK);
    cr_assert_eq(h5io_attr_set_str(f, "/", "algorithm", "kd"), H5IO_OK);
    cr_assert_eq(h5io_attr_set_str(f, "/", "algorithm", "grpo"), H5IO_OK, "replacing an attribute");
    cr_assert_eq(h5io_attr_set_i64(f, "new/group", "n", 7), H5IO_OK, "attributes create their group");
    cr_assert_eq(h5io_close(f, err, sizeof err), H5IO_OK, "%s", err);

    f = h5io_open(path, 0, err, sizeof err);
    cr_assert_not_null(f, "%s", err);
    for (size_t i = 0; i < nc; i++) {
        rt_tensor *back = h5io_read_tensor(f, cases[i].path, S);
        cr_assert_not_null(back, "%s", h5io_error(f));
        cr_assert_eq(rt_dtype_of(back), rt_dtype_of(cases[i].t), "%s dtype", cases[i].path);
        cr_assert(equal_or_fail(back, cases[i].t), "%s round trip", cases[i].path);
    }
    h5io_info in;
    cr_assert_eq(h5io_dataset_info(f, "a/b/bf16", &in), H5IO_OK);
    cr_assert_str_eq(in.dtype_name, "bfloat16");
    cr_assert_eq(h5io_dataset_info(f, "tr", &in), H5IO_OK);
    cr_assert(in.ndim == 2 && in.shape[0] == 3 && in.shape[1] == 2 && in.numel == 6);
    cr_assert_eq(h5io_dataset_info(f, "loss", &in), H5IO_OK);
    cr_assert(in.ndim == 0 && in.numel == 1 && in.dtype == RT_F64);

    /* read_into: in place, and refused (untouched) on a shape mismatch. */
    rt_tensor *dst = rt_zeros(S, s23, 2, RT_OPTS(RT_F32));
    cr_assert_eq(h5io_read_into(f, "a/f32", dst), H5IO_OK, "%s", h5io_error(f));
    cr_assert(equal_or_fail(dst, f32));
    rt_tensor *wrong = rt_zeros(S, s4, 1, RT_OPTS(RT_F32));
    cr_assert_eq(h5io_read_into(f, "a/f32", wrong), H5IO_EMISMATCH);
    cr_assert(strstr(h5io_error(f), "/a/f32") && strstr(h5io_error(f), "[2, 3]") && strstr(h5io_error(f), "[4]"),
              "%s", h5io_error(f));
    cr_assert_eq(rt_item(rt_sum(S, rt_abs(S, wrong), RT_DIM_ALL, 0)), 0.0);
    cr_assert_null(h5io_read_tensor(f, "a/nope", S));
    cr_assert(strstr(h5io_error(f), path) && strstr(h5io_error(f), "/a/nope"), "%s", h5io_error(f));
    cr_assert_eq(h5io_exists(f, "x/y/z"), 0);
    cr_assert_eq(h5io_exists(f, "a/b"), 1);

    char *text = NULL;
    cr_assert_eq(h5io_read_string(f, "config/resolved", &text), H5IO_OK, "%s", h5io_error(f));
    cr_assert_str_eq(text, "[run]\nname = \"ü\"\n");
    free(text);
    char **v = NULL;
    size_t nv = 0;
    cr_assert_eq(h5io_read_strings(f, "config/argv", &v, &nv), H5IO_OK);
    cr_assert(nv == 3 && !strcmp(v[2], "kd"));
    h5io_free_strings(v, nv);
    uint8_t back[5] = {0};
    cr_assert_eq(h5io_read_bytes(f, "rng/x", back, 5), H5IO_OK);
    cr_assert_eq(memcmp(back, blob, 5), 0);
    cr_assert_eq(h5io_read_bytes(f, "rng/x", back, 4), H5IO_EMISMATCH);
    int64_t iv = 0;
    double dv = 0;
    char sv[16];
    cr_assert_eq(h5io_attr_get_i64(f, "/", "step", &iv), H5IO_OK);
    cr_assert_eq(iv, 1200);
    cr_assert_eq(h5io_attr_get_i64(f, "/", "format_version", &iv), H5IO_OK);
    cr_assert_eq(iv, 1);
    cr_assert_eq(h5io_attr_get_f64(f, "/a", "lr", &dv), H5IO_OK);
    cr_assert_eq(dv, 3e-4);
    cr_assert_eq(h5io_attr_get_str(f, "/", "algorithm", sv, sizeof sv), H5IO_OK);
    cr_assert_str_eq(sv, "grpo");
    cr_assert_eq(h5io_attr_get_str(f, "/", "algorithm", sv, 3), H5IO_EMISMATCH);
    cr_assert_eq(h5io_attr_get_i64(f, "/", "missing", &iv), H5IO_ENOTFOUND);
    cr_assert_eq(h5io_attr_get_i64(f, "/", "algorithm", &iv), H5IO_EMISMATCH);
    cr_assert_eq(h5io_write_tensor(f, "ro", f32, 0), H5IO_EINVAL, "read-only handle refuses writes");

    h5io_info *items = NULL;
    size_t n = 0;
    cr_assert_eq(h5io_list(f, "/", &items, &n), H5IO_OK, "%s", h5io_error(f));
    cr_assert_eq(n, nc + 3, "every dataset listed (got %zu)", n);
    int saw_bf16 = 0, saw_argv = 0;
    for (size_t i = 0; i < n; i++) {
        saw_bf16 |= !strcmp(items[i].path, "/a/b/bf16") && items[i].dtype == RT_BF16;
        saw_argv |= !strcmp(items[i].path, "/config/argv") && items[i].is_string && items[i].shape[0] == 3;
    }
    cr_assert(saw_bf16 && saw_argv);
    free(items);
    cr_assert_eq(h5io_list(f, "a", &items, &n), H5IO_OK);
    cr_assert_eq(n, 4);
    cr_assert_str_eq(items[0].path, "/a/b/bf16");
    free(items);
    cr_assert_eq(h5io_close(f, err, sizeof err), H5IO_OK);

    /* What h5py sees: bool as numpy bool, bf16 as uint16 + attr, filters on. */
    char cmd[1024], out[256];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import h5py; f=h5py.File('%s','r'); d=f['large']; "
             "print(f['mask'].dtype, f['a/b/bf16'].attrs['dtype'], f['a/b/f16'].dtype, d.fletcher32, "
             "d.compression, d.shuffle, float(f['loss'][()]), f.attrs['algorithm'])\" 2>&1",
             path);
    run_capture(cmd, out, sizeof out);
    cr_assert_str_eq(out, "bool bfloat16 float16 True gzip True 2.5 grpo");

    rt_gen_free(g);
    rt_scope_free(S);
    remove_tree(dir);
}

/* ---- checkpoint round trip ------------------------------------------------ */

Test(ckpt, round_trip_is_bit_exact_and_h5py_reads_a_state_dict) {
    char dir[64], path[160], err[4096];
    make_tmpdir(dir, sizeof dir);
    cr_assert_eq(ck_path_for_step(dir, 3, path, sizeof path), CK_OK);
    cr_assert(strstr(path, "/step_00000003.h5"), "%s", path);

    world a, b;
    world_init(&a, 1, 32, RT_F32);
    world_advance(&a);
    save_world(&a, path, 3);
    world_init(&b, 100, 32, RT_F32); /* other values, no optimizer state */

    ck_meta meta;
    cr_assert_eq(ck_load(b.st, path, &meta, err, sizeof err), CK_OK, "%s", err);
    cr_assert_eq(meta.step, 3);
    cr_assert_eq(meta.epoch, 2);
    cr_assert_eq(meta.samples_seen, 1234);
    cr_assert_eq(meta.wall_time_s, 12.5);
    cr_assert_eq(meta.format_version, CK_FORMAT_VERSION);
    cr_assert_eq(meta.world_size, 1);
    cr_assert_eq(meta.num_threads, rt_get_num_threads());
    cr_assert_str_eq(meta.algorithm, "kd");
    cr_assert_str_eq(meta.libtorch_version, rt_torch_version());
    cr_assert_str_eq(meta.hdf5_version, h5io_library_version());
    cr_assert_str_eq(meta.blas, rt_blas_info());
    cr_assert_str_eq(meta.loaded_config, "[train]\nsteps = 100\nlr = 0.01\n");
    cr_assert(meta.loaded_argc == 3 && !strcmp(meta.loaded_argv[2], ARGV[2]));
    cr_assert_eq(strlen(meta.created_utc), 20, "ISO-8601 UTC: %s", meta.created_utc);
    ck_meta_release(&meta);

    rt_scope *S = rt_scope_new();
    for (int i = 0; i < 4; i++) {
        cr_assert(equal_or_fail(a.m.p[i], b.m.p[i]), "param %s", NAMES[i]);
        rt_optim_state sa, sb;
        cr_assert_eq(rt_optim_state_get(a.m.opt, NAMES[i], S, &sa), RT_OK);
        cr_assert_eq(rt_optim_state_get(b.m.opt, NAMES[i], S, &sb), RT_OK);
        cr_assert(sa.has_state && sb.has_state && sa.step == 3 && sb.step == 3);
        cr_assert(equal_or_fail(sa.exp_avg, sb.exp_avg) && equal_or_fail(sa.exp_avg_sq, sb.exp_avg_sq),
                  "Adam state of %s", NAMES[i]);
    }
    cr_assert_eq(memcmp(&a.smp, &b.smp, sizeof a.smp), 0);
    cr_assert_eq(memcmp(a.perm, b.perm, sizeof a.perm), 0);
    cr_assert_eq(b.phase, 3);
    cr_assert_eq(b.log_alpha, a.log_alpha);
    cr_assert_eq(rt_optim_get_lr(b.m.opt), 1e-2);
    /* The next random draws are identical (the cached normal included). */
    int64_t s[1] = {5};
    cr_assert(equal_or_fail(rt_randn(S, s, 1, a.g_env, RT_OPTS(RT_F64)), rt_randn(S, s, 1, b.g_env, RT_OPTS(RT_F64))));
    cr_assert(equal_or_fail(rt_rand(S, s, 1, a.g_cpu, RT_OPTS(RT_F32)), rt_rand(S, s, 1, b.g_cpu, RT_OPTS(RT_F32))));
    /* Resume is bit-exact: two more steps on each side stay identical. */
    for (int k = 0; k < 2; k++) {
        model_step(&a.m, a.g_cpu);
        model_step(&b.m, b.g_cpu);
    }
    for (int i = 0; i < 4; i++) cr_assert(equal_or_fail(a.m.p[i], b.m.p[i]), "after resume: %s", NAMES[i]);

    /* h5py turns /model/student into a state_dict in one line. */
    char cmd[1024], out[256];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import h5py; f=h5py.File('%s','r'); "
             "sd={k: f['model/student'][k][()] for k in f['model/student']}; "
             "print(len(sd), sd['fc1.weight'].shape, sd['fc1.weight'].dtype, f.attrs['complete'], "
             "f['optim/student/state/fc2.bias'].attrs['step'], f['rng/torch_cpu'].shape[0] > 0)\" 2>&1",
             path);
    run_capture(cmd, out, sizeof out);
    cr_assert_str_eq(out, "4 (32, 20) float32 1 3 True");

    /* rlt inspect. */
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    cr_assert_eq(ck_inspect(path, mem, err, sizeof err), CK_OK, "%s", err);
    fclose(mem);
    cr_assert(strstr(buf, "rlt-checkpoint v1 (complete)"), "%s", buf);
    cr_assert(strstr(buf, "algorithm     kd"), "%s", buf);
    cr_assert(strstr(buf, "step          3"), "%s", buf);
    cr_assert(strstr(buf, "  | lr = 0.01"), "%s", buf);
    cr_assert(strstr(buf, "/model/student/fc1.weight"), "%s", buf);
    cr_assert(strstr(buf, "[32, 20]") && strstr(buf, "640"), "%s", buf);
    cr_assert(strstr(buf, "/optim/student/state/fc1.weight/exp_avg_sq"), "%s", buf);
    free(buf);

    /* A broken manifest refuses to save. */
    ck_state *bad = ck_state_new();
    cr_assert_eq(ck_set_algorithm(bad, "kd"), CK_OK);
    cr_assert_eq(ck_add_i64(bad, "algo/x", &b.phase), CK_OK);
    cr_assert_eq(ck_add_i64(bad, "algo/x", &b.phase), CK_EINVAL);
    cr_assert_eq(ck_add_f64(bad, "/abs", &b.log_alpha), CK_EINVAL);
    ck_meta m0;
    memset(&m0, 0, sizeof m0);
    cr_assert_eq(ck_save(bad, path, &m0, err, sizeof err), CK_EINVAL);
    cr_assert(strstr(err, "registered twice") && strstr(err, "'/abs'"), "%s", err);
    ck_state_free(bad);

    rt_scope_free(S);
    world_free(&a);
    world_free(&b);
    remove_tree(dir);
}

/* ---- validation ----------------------------------------------------------- */

/* Snapshot of a world's values, to prove a failed load changed nothing. */
typedef struct snapshot {
    rt_tensor *p[4];
    uint8_t gen[2][8192];
    size_t gen_n[2];
    sampler smp;
    int64_t phase;
} snapshot;

static void take(snapshot *s, world *w, rt_scope *S) {
    for (int i = 0; i < 4; i++) s->p[i] = rt_clone(S, rt_detach(S, w->m.p[i]));
    cr_assert_eq(rt_gen_get_state(w->g_cpu, s->gen[0], sizeof s->gen[0], &s->gen_n[0]), RT_OK);
    cr_assert_eq(rt_gen_get_state(w->g_env, s->gen[1], sizeof s->gen[1], &s->gen_n[1]), RT_OK);
    s->smp = w->smp;
    s->phase = w->phase;
}

static void assert_untouched(const snapshot *s, world *w, rt_scope *S) {
    snapshot now;
    take(&now, w, S);
    for (int i = 0; i < 4; i++) cr_assert(equal_or_fail(s->p[i], now.p[i]), "%s changed by a failed load", NAMES[i]);
    cr_assert(now.gen_n[0] == s->gen_n[0] && !memcmp(now.gen[0], s->gen[0], s->gen_n[0]));
    cr_assert(now.gen_n[1] == s->gen_n[1] && !memcmp(now.gen[1], s->gen[1], s->gen_n[1]));
    cr_assert_eq(memcmp(&now.smp, &s->smp, sizeof s->smp), 0);
    cr_assert_eq(now.phase, s->phase);
    for (int i = 0; i < 4; i++) {
        rt_optim_state os;
        cr_assert_eq(rt_optim_state_get(w->m.opt, NAMES[i], S, &os), RT_OK);
        cr_assert_eq(os.has_state, 0, "optimizer state set by a failed load");
    }
}

Test(ckpt, mismatches_all_reported_and_bad_files_refused) {
    char dir[64], path[160], other[200], err[8192];
    make_tmpdir(dir, sizeof dir);
    ck_path_for_step(dir, 10, path, sizeof path);
    world a;
    world_init(&a, 1, 32, RT_F32);
    world_advance(&a);
    save_world(&a, path, 10);

    /* A model with another hidden size, a float64 bias, an extra entry and a
     * blob of another size: every problem in one message. */
    world c;
    world_init(&c, 7, 16, RT_F64);
    int64_t extra = 0;
    uint8_t small_blob[3] = {0};
    cr_assert_eq(ck_add_i64(c.st, "algo/extra", &extra), CK_OK);
    cr_assert_eq(ck_add_blob(c.st, "data/other", small_blob, 3), CK_OK);
    rt_scope *S = rt_scope_new();
    snapshot before;
    take(&before, &c, S);
    int rc = ck_load(c.st, path, NULL, err, sizeof err);
    cr_assert_eq(rc, CK_EMISMATCH, "rc %d: %s", rc, err);
    const char *want[] = {
        "model/student/fc1.weight: shape [32, 20] in file, [16, 20] expected",
        "model/student/fc1.bias: shape [32] in file, [16] expected",
        "model/student/fc2.weight: shape [10, 32] in file, [10, 16] expected",
        "model/student/fc2.bias: dtype float32 in file, float64 expected",
        "optim/student/state/fc1.weight/exp_avg: shape [32, 20] in file, [16, 20] expected",
        "optim/student/state/fc2.bias/exp_avg_sq: dtype float32 in file, float64 expected",
        "algo/extra: missing",
        "data/other: missing",
        "nothing was changed"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) cr_assert(strstr(err, want[i]), "no '%s' in:\n%s", want[i], err);
    cr_assert_str_eq(ck_error(c.st), err);
    assert_untouched(&before, &c, S);

    /* Another algorithm. */
    cr_assert_eq(ck_set_algorithm(c.st, "sac"), CK_OK);
    cr_assert_eq(ck_load(c.st, path, NULL, err, sizeof err), CK_EMISMATCH);
    cr_assert(strstr(err, "algorithm: kd in file, sac expected"), "%s", err);
    assert_untouched(&before, &c, S);

    /* A newer format_version. */
    snprintf(other, sizeof other, "%s/newer.h5", dir);
    copy_file(path, other);
    h5io_file *f = h5io_open(other, 1, err, sizeof err);
    cr_assert_not_null(f, "%s", err);
    cr_assert_eq(h5io_attr_set_i32(f, "/", "format_version", 2), H5IO_OK);
    cr_assert_eq(h5io_close(f, err, sizeof err), H5IO_OK);
    cr_assert_eq(ck_load(a.st, other, NULL, err, sizeof err), CK_EFORMAT);
    cr_assert(strstr(err, "written by a newer rlt (format_version 2 > 1)"), "%s", err);

    /* complete=0: an interrupted writer. */
    snprintf(other, sizeof other, "%s/incomplete.h5", dir);
    copy_file(path, other);
    f = h5io_open(other, 1, err, sizeof err);
    cr_assert_eq(h5io_attr_set_i32(f, "/", "complete", 0), H5IO_OK);
    h5io_close(f, NULL, 0);
    cr_assert_eq(ck_load(a.st, other, NULL, err, sizeof err), CK_EFORMAT);
    cr_assert(strstr(err, "incomplete checkpoint"), "%s", err);

    /* A foreign HDF5 file. */
    snprintf(other, sizeof other, "%s/foreign.h5", dir);
    f = h5io_create(other, 0, err, sizeof err);
    cr_assert_eq(h5io_write_bytes(f, "weights", "abc", 3), H5IO_OK);
    h5io_close(f, NULL, 0);
    cr_assert_eq(ck_load(a.st, other, NULL, err, sizeof err), CK_EFORMAT);
    cr_assert(strstr(err, "not an rlt checkpoint") && strstr(err, other), "%s", err);
    char *listing = NULL;
    size_t listing_len = 0;
    FILE *mem = open_memstream(&listing, &listing_len);
    cr_assert_eq(ck_inspect(other, mem, err, sizeof err), CK_EFORMAT);
    fclose(mem);
    cr_assert(strstr(listing, "/weights") && strstr(listing, "uint8"), "inspect still lists a foreign file:\n%s", listing);
    free(listing);

    /* Not HDF5 at all, and no file. */
    snprintf(other, sizeof other, "%s/notes.txt", dir);
    FILE *t = fopen(other, "w");
    fputs("this is not a checkpoint\n", t);
    fclose(t);
    cr_assert_eq(ck_load(a.st, other, NULL, err, sizeof err), CK_EIO);
    cr_assert(strstr(err, "not an HDF5 file") && strstr(err, other), "%s", err);
    snprintf(other, sizeof other, "%s/none.h5", dir);
    cr_assert_eq(ck_load(a.st, other, NULL, err, sizeof err), CK_EIO);
    cr_assert(strstr(err, "does not exist"), "%s", err);
    ck_meta meta;
    cr_assert_eq(ck_read_meta(path, &meta, err, sizeof err), CK_OK, "%s", err);
    cr_assert(meta.step == 10 && !strcmp(meta.loaded_config, "[train]\nsteps = 100\nlr = 0.01\n"));
    ck_meta_release(&meta);

    rt_scope_free(S);
    world_free(&a);
    world_free(&c);
    remove_tree(dir);
}

/* Byte offset of the middle of the first chunk of dataset name. */
static long chunk_middle(const char *path, const char *name) {
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    hsize_t off[2];
    unsigned mask;
    haddr_t addr;
    hsize_t size;
    hid_t space = H5Dget_space(ds);
    herr_t r = H5Dget_chunk_info(ds, space, 0, off, &mask, &addr, &size);
    H5Sclose(space);
    H5Dclose(ds);
    H5Fclose(file);
    cr_assert(r >= 0 && size > 1000, "chunk info of %s", name);
    return (long)(addr + size / 2);
}

Test(ckpt, truncated_and_bit_flipped_files_fail_cleanly) {
    char dir[64], path[160], bad[200], err[8192];
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/good.h5", dir);
    world w;
    world_init(&w, 1, 32, RT_F32);
    world_advance(&w);
    int64_t shape[2] = {512, 1024}; /* 2 MiB of float32: two chunks */
    rt_gen *g = rt_gen_new(3);
    rt_tensor *big = rt_randn(NULL, shape, 2, g, RT_OPTS(RT_F32));
    const char *big_name[1] = {"layers.0.weight"};
    cr_assert_eq(ck_add_tensors(w.st, "model/teacher", big_name, &big, 1), CK_OK);
    save_world(&w, path, 5);
    long size = file_size(path);
    cr_assert_gt(size, 2 * 1024 * 1024);
    rt_scope *S = rt_scope_new();
    rt_tensor *big_before = rt_clone(S, big);
    snapshot before;
    take(&before, &w, S);

    /* Truncated to half. */
    snprintf(bad, sizeof bad, "%s/truncated.h5", dir);
    copy_file(path, bad);
    cr_assert_eq(truncate(bad, size / 2), 0);
    int rc = ck_load(w.st, bad, NULL, err, sizeof err);
    cr_assert(rc < 0 && strstr(err, bad), "rc %d: %s", rc, err);
    cr_assert(strstr(err, "truncated"), "%s", err);

    /* A flipped bit in the middle of the big dataset's data. */
    snprintf(bad, sizeof bad, "%s/flipped.h5", dir);
    copy_file(path, bad);
    flip_bit(bad, chunk_middle(bad, "/model/teacher/layers.0.weight"), 3);
    rc = ck_load(w.st, bad, NULL, err, sizeof err);
    cr_assert_eq(rc, CK_EIO, "rc %d: %s", rc, err);
    cr_assert(strstr(err, "/model/teacher/layers.0.weight") && strstr(err, "Fletcher32"), "%s", err);
    cr_assert(equal_or_fail(big, big_before), "the big tensor is untouched");
    for (int i = 0; i < 4; i++) cr_assert(equal_or_fail(before.p[i], w.m.p[i]));

    /* Flipped bits in the superblock: its signature, then its addresses
     * (superblock v2 carries a checksum). */
    snprintf(bad, sizeof bad, "%s/sb_sig.h5", dir);
    copy_file(path, bad);
    flip_bit(bad, 2, 0);
    cr_assert_eq(ck_load(w.st, bad, NULL, err, sizeof err), CK_EIO);
    cr_assert(strstr(err, "not an HDF5 file"), "%s", err);
    snprintf(bad, sizeof bad, "%s/sb_addr.h5", dir);
    copy_file(path, bad);
    flip_bit(bad, 30, 4);
    rc = ck_load(w.st, bad, NULL, err, sizeof err);
    cr_assert(rc == CK_EIO && strstr(err, bad) && strstr(err, "HDF5"), "rc %d: %s", rc, err);
    /* Every byte of the superblock, each flipped in turn: never a crash,
     * never a successful load of a damaged header. */
    for (long off = 0; off < 48; off++) {
        copy_file(path, bad);
        flip_bit(bad, off, 1);
        rc = ck_load(w.st, bad, NULL, err, sizeof err);
        cr_assert_lt(rc, 0, "superblock byte %ld flipped, load succeeded", off);
    }
    /* The original still loads. */
    cr_assert_eq(ck_load(w.st, path, NULL, err, sizeof err), CK_OK, "%s", err);

    rt_free(big);
    rt_gen_free(g);
    rt_scope_free(S);
    world_free(&w);
    remove_tree(dir);
}

/* ---- the checkpoints/ directory ------------------------------------------ */

/* A pid that certainly belongs to no process: a reaped child's. */
static long dead_pid(void) {
    pid_t p = fork();
    if (p == 0) _exit(0);
    cr_assert_gt(p, 0);
    waitpid(p, NULL, 0);
    return (long)p;
}

Test(ckpt, latest_discovery_stray_files_and_rotation) {
    char dir[64], sub[128], path[200], name[64], err[4096];
    make_tmpdir(dir, sizeof dir);
    ck_scan scan;
    snprintf(sub, sizeof sub, "%s/none", dir);
    cr_assert_eq(ck_find_latest(sub, &scan, err, sizeof err), CK_ENOTFOUND);
    cr_assert_eq(ck_find_latest(dir, &scan, err, sizeof err), CK_ENOTFOUND, "empty dir");

    world w;
    world_init(&w, 1, 4, RT_F32);
    world_advance(&w);
    for (int64_t s = 100; s <= 300; s += 100) {
        ck_path_for_step(dir, s, path, sizeof path);
        save_world(&w, path, s);
    }
    cr_assert_eq(ck_write_latest(dir, "step_00000300.h5", err, sizeof err), CK_OK, "%s", err);
    /* An incomplete newer file and a stray temp file of a dead writer. */
    char src[200];
    ck_path_for_step(dir, 300, src, sizeof src);
    ck_path_for_step(dir, 400, path, sizeof path);
    copy_file(src, path);
    h5io_file *f = h5io_open(path, 1, err, sizeof err);
    cr_assert_eq(h5io_attr_set_i32(f, "/", "complete", 0), H5IO_OK);
    h5io_close(f, NULL, 0);
    snprintf(path, sizeof path, "%s/step_00000500.h5.tmp.%ld", dir, dead_pid());
    FILE *t = fopen(path, "w");
    fputs("half a file", t);
    fclose(t);

    cr_assert_eq(ck_find_latest(dir, &scan, err, sizeof err), CK_OK, "%s", err);
    cr_assert(strstr(scan.path, "step_00000300.h5") && scan.step == 300 && scan.used_latest == 1);
    cr_assert_eq(scan.n_stray_tmp, 1);
    cr_assert(strstr(scan.notes, "step_00000500.h5.tmp."), "%s", scan.notes);

    /* latest names the incomplete file: fall back to the scan. */
    cr_assert_eq(ck_write_latest(dir, "step_00000400.h5", err, sizeof err), CK_OK);
    cr_assert_eq(ck_find_latest(dir, &scan, err, sizeof err), CK_OK, "%s", err);
    cr_assert(scan.step == 300 && !scan.used_latest);
    cr_assert(strstr(scan.notes, "step_00000400.h5, which is not usable") && strstr(scan.notes, "incomplete"),
              "%s", scan.notes);
    /* No latest at all: the scan skips the incomplete 400. */
    snprintf(path, sizeof path, "%s/latest", dir);
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(ck_find_latest(dir, &scan, err, sizeof err), CK_OK, "%s", err);
    cr_assert(scan.step == 300 && scan.n_skipped == 1, "step %lld skipped %d", (long long)scan.step, scan.n_skipped);

    int removed = -1;
    cr_assert_eq(ck_remove_stray_tmp(dir, &removed, err, sizeof err), CK_OK, "%s", err);
    cr_assert_eq(removed, 1);
    /* A live process's temp file (ours is not live for this purpose: use the parent's). */
    snprintf(path, sizeof path, "%s/step_00000600.h5.tmp.%ld", dir, (long)getppid());
    t = fopen(path, "w");
    fclose(t);
    cr_assert_eq(ck_remove_stray_tmp(dir, &removed, err, sizeof err), CK_OK);
    cr_assert_eq(removed, 0, "a live writer's temp file is kept");
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(ck_find_latest(dir, &scan, err, sizeof err), CK_OK);
    cr_assert_eq(scan.n_stray_tmp, 0);

    /* Rotation: steps 100..1000, latest = 500, keep_last 3, keep_every 400. */
    snprintf(sub, sizeof sub, "%s/rot", dir);
    cr_assert_eq(mkdir(sub, 0755), 0);
    for (int64_t s = 100; s <= 1000; s += 100) {
        ck_path_for_step(sub, s, path, sizeof path);
        save_world(&w, path, s);
    }
    cr_assert_eq(ck_write_latest(sub, "step_00000500.h5", err, sizeof err), CK_OK);
    cr_assert_eq(ck_rotate(sub, 3, 400, &removed, err, sizeof err), CK_OK, "%s", err);
    cr_assert_eq(removed, 5);
    for (int64_t s = 100; s <= 1000; s += 100) {
        snprintf(name, sizeof name, "step_%08lld.h5", (long long)s);
        int keep = s == 400 || s == 500 || s == 800 || s == 900 || s == 1000;
        cr_assert_eq(file_exists(sub, name), keep, "%s kept=%d", name, keep);
    }
    cr_assert(file_exists(sub, "latest"));
    cr_assert_eq(ck_rotate(sub, 1, 0, &removed, err, sizeof err), CK_OK);
    cr_assert_eq(removed, 3, "keep_last 1 keeps only the newest and latest's file");
    cr_assert(file_exists(sub, "step_00001000.h5") && file_exists(sub, "step_00000500.h5"));

    world_free(&w);
    remove_tree(dir);
}

/* ---- kill -9 during a save ------------------------------------------------ */

/* A 52 MB state: one big tensor, a counter blob and a scalar, all equal to
 * the same value v so a mixed (torn) file would show. */
typedef struct heavy {
    rt_tensor *big;
    int64_t counter;
    double value;
    ck_state *st;
} heavy;

static void heavy_init(heavy *h) {
    int64_t shape[2] = {3200, 4096};
    h->big = rt_zeros(NULL, shape, 2, RT_OPTS(RT_F32));
    cr_assert_not_null(h->big, "%s", rt_last_error());
    h->st = ck_state_new();
    const char *names[1] = {"big"};
    ck_set_algorithm(h->st, "kd");
    cr_assert_eq(ck_add_tensors(h->st, "model/policy", names, &h->big, 1), CK_OK);
    cr_assert_eq(ck_add_i64(h->st, "algo/counter", &h->counter), CK_OK);
    cr_assert_eq(ck_add_f64(h->st, "algo/value", &h->value), CK_OK);
}

static int heavy_set_and_save(heavy *h, int64_t v, const char *path) {
    rt_fill_(h->big, (double)v);
    h->counter = v;
    h->value = (double)v;
    ck_meta m;
    memset(&m, 0, sizeof m);
    m.step = 100;
    char err[2048];
    return ck_save(h->st, path, &m, err, sizeof err);
}

/* First "*.tmp.*" file in dir larger than min_bytes (its path into out). */
static int find_tmp(const char *dir, long min_bytes, char *out, size_t cap) {
    DIR *d = opendir(dir);
    struct dirent *de;
    int found = 0;
    while (d && (de = readdir(d)) && !found) {
        if (!strstr(de->d_name, ".tmp.")) continue;
        if (snprintf(out, cap, "%s/%s", dir, de->d_name) >= (int)cap) continue;
        found = file_size(out) > min_bytes;
    }
    if (d) closedir(d);
    return found;
}

Test(ckpt, sigkill_during_save_leaves_a_loadable_checkpoint, .timeout = 240) {
    char dir[64], path[160], tmp[300], err[4096];
    make_tmpdir(dir, sizeof dir);
    ck_path_for_step(dir, 100, path, sizeof path);
    heavy h = {0};
    heavy_init(&h);
    cr_assert_eq(heavy_set_and_save(&h, 1, path), CK_OK);
    cr_assert_eq(ck_write_latest(dir, "step_00000100.h5", err, sizeof err), CK_OK);

    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        rt_after_fork_child();
        /* Overwrite the same checkpoint again and again until killed. */
        for (int64_t v = 2;; v++)
            if (heavy_set_and_save(&h, v, path) != CK_OK) _exit(3);
    }
    /* Kill once a temp file holds > 8 MB: the save is mid-way, far from its
     * rename (tens of MB and an fsync still to go). */
    int seen = 0;
    for (int i = 0; i < 60000 && !seen; i++) {
        seen = find_tmp(dir, 8L << 20, tmp, sizeof tmp);
        if (!seen) nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    kill(child, SIGKILL);
    int status = 0;
    cr_assert_eq(waitpid(child, &status, 0), child);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the writer was killed, not exited");
    cr_assert(seen, "the child never got into a save");

    ck_scan scan;
    cr_assert_eq(ck_find_latest(dir, &scan, err, sizeof err), CK_OK, "%s", err);
    cr_assert(strstr(scan.path, "step_00000100.h5") && scan.used_latest);
    cr_assert_geq(scan.n_stray_tmp, 1, "the killed save's temp file is reported: %s", scan.notes);

    /* Loadable, and whole: every value from one and the same save. */
    rt_fill_(h.big, -1.0);
    h.counter = -1;
    h.value = -1;
    cr_assert_eq(ck_load(h.st, scan.path, NULL, err, sizeof err), CK_OK, "%s", err);
    cr_assert_geq(h.counter, 1);
    cr_assert_eq(h.value, (double)h.counter);
    rt_scope *S = rt_scope_new();
    rt_tensor *full = rt_full_like(S, h.big, (double)h.counter);
    cr_assert(equal_or_fail(h.big, full), "a torn checkpoint (counter %lld)", (long long)h.counter);

    int removed = 0;
    cr_assert_eq(ck_remove_stray_tmp(dir, &removed, err, sizeof err), CK_OK, "%s", err);
    cr_assert_geq(removed, 1);
    cr_assert_eq(ck_find_latest(dir, &scan, err, sizeof err), CK_OK);
    cr_assert_eq(scan.n_stray_tmp, 0);

    rt_scope_free(S);
    ck_state_free(h.st);
    rt_free(h.big);
    remove_tree(dir);
}
