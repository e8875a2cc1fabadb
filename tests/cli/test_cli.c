/*
 * test_cli.c -- end-to-end tests of the `rlt` command line (issue 3, "Tests"):
 * train, resume (bit-exact, after run.stop_at and after SIGINT/SIGTERM),
 * inspect, eval, loss, help, and the config/usage errors with exit code 2.
 *
 * The binary does not link libtorch: every check spawns a process with
 * posix_spawn (rlt itself, /usr/bin/python3 with h5py as an independent
 * reader/writer of HDF5, /usr/bin/h5diff), captures stdout and stderr to files
 * in a mkdtemp sandbox under /tmp, and asserts on exit codes AND on values:
 * file contents, parsed numbers, checkpoint attributes, bitwise equality.
 *
 * Training runs are tiny (1024 images, widths 32/16, one epoch per phase = 48
 * steps) so each costs about a second of CPU; the cost is rlt's start-up.
 * A sandbox is removed when its test reaches its end and kept when a fatal
 * assertion stops the test early (most messages name its path).
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <criterion/criterion.h>

#include "cli_util.h"

#ifndef RLT_BIN
#error "RLT_BIN (path of the rlt executable) must be defined by the build"
#endif

#define RECIPE RLT_SOURCE_DIR "/runs/kd-fashion-mnist.ini"

/* ------------------------------------------------------------------------ */
/* Sandbox and processes                                                     */
/* ------------------------------------------------------------------------ */

/* A sandbox under /tmp (see cli_util.h). */
static void sb_open(cu_sandbox *sb) { cu_sb_open(sb, "/tmp/rlt-cli-XXXXXX"); }

/* The tiny job: 1024 images (256 labelled), teacher 784-32-10, students
 * 784-16-10, one epoch per phase of 16 batches of 64: 48 steps. */
static const char *const tiny_sets[] = {
    "data.train_limit=1024", "data.labeled=256", "teacher.hidden=32", "student.hidden=16",
    "teacher.epochs=1",      "student.epochs=1", "train.batch_size=64", "run.threads=1",
    "run.log_every=4",       "run.save_every=8", "run.tensorboard=true", "run.keep_last=2",
};
#define TINY_TOTAL 48

/* rlt train RECIPE --run-dir DIR <tiny sets> [extra...] */
static const cu_job TINY = {RLT_BIN, RECIPE, tiny_sets, sizeof tiny_sets / sizeof tiny_sets[0]};

/* The checkpoint file name of a step. */
static void ckpt_name(char *buf, size_t cap, long long step) { snprintf(buf, cap, "step_%08lld.h5", step); }

/* ------------------------------------------------------------------------ */
/* Python oracles (h5py / json): they print one parsable line                */
/* ------------------------------------------------------------------------ */

/* metrics.jsonl: every line a JSON object whose first key is "step" (an
 * int, strictly increasing); every other key is '/'-namespaced.
 * Prints "lines=N first=F last=L" and, when the last line has them,
 * "eval=teacher,student_ce,student_kd" with 4 decimals. */
static const char *const PY_METRICS_CHECK =
    "import json,sys\n"
    "steps=[]; last=None\n"
    "for i,l in enumerate(open(sys.argv[1])):\n"
    "    o=json.loads(l,object_pairs_hook=lambda p:p)\n"
    "    assert o and o[0][0]=='step', 'line %d: first key is %r, not step' % (i+1, o[0][0] if o else None)\n"
    "    s=o[0][1]\n"
    "    assert isinstance(s,int), 'line %d: step %r is not an int' % (i+1, s)\n"
    "    assert not steps or s>steps[-1], 'line %d: step %d after %d' % (i+1, s, steps[-1])\n"
    "    for k,v in o[1:]:\n"
    "        assert '/' in k, 'line %d: key %r is not namespaced' % (i+1, k)\n"
    "    steps.append(s); last=dict(o)\n"
    "print('lines=%d first=%d last=%d' % (len(steps), steps[0], steps[-1]))\n"
    "if 'eval/teacher_acc' in last:\n"
    "    print('eval=%.4f,%.4f,%.4f' % (last['eval/teacher_acc'], last['eval/student_ce_acc'], "
    "last['eval/student_kd_acc']))\n";

/* A TensorBoard event file: records chain to the end of the file (uint64
 * length, masked CRC32C of it, data, masked CRC32C of the data), the first
 * is the file_version event. Prints "records=N loss_records=M". */
static const char *const PY_TFEVENTS_CHECK =
    "import struct,sys\n"
    "def crc(d):\n"
    "    c=0xffffffff\n"
    "    for b in d:\n"
    "        c^=b\n"
    "        for _ in range(8): c=(c>>1)^(0x82f63b78 if c&1 else 0)\n"
    "    return c^0xffffffff\n"
    "def mask(c): return ((((c>>15)|(c<<17))&0xffffffff)+0xa282ead8)&0xffffffff\n"
    "b=open(sys.argv[1],'rb').read(); i=0; n=0; loss=0; first=None\n"
    "while i<len(b):\n"
    "    h=b[i:i+8]; (ln,)=struct.unpack('<Q',h); (hc,)=struct.unpack('<I',b[i+8:i+12])\n"
    "    assert mask(crc(h))==hc, 'record %d: bad length crc' % n\n"
    "    d=b[i+12:i+12+ln]; (dc,)=struct.unpack('<I',b[i+12+ln:i+16+ln])\n"
    "    assert len(d)==ln and mask(crc(d))==dc, 'record %d: bad data crc' % n\n"
    "    if first is None: first=d\n"
    "    loss+=b'train/loss' in d; n+=1; i+=16+ln\n"
    "assert i==len(b), 'trailing bytes'\n"
    "assert b'brain.Event:2' in first, 'first record is not file_version'\n"
    "print('records=%d loss_records=%d' % (n, loss))\n";

/* A checkpoint's root attributes: "step=S complete=C algorithm=A". */
static const char *const PY_CKPT_ATTRS =
    "import h5py,sys\n"
    "f=h5py.File(sys.argv[1],'r'); a=f.attrs\n"
    "alg=a['algorithm']; alg=alg.decode() if isinstance(alg,bytes) else alg\n"
    "print('step=%d complete=%d algorithm=%s' % (int(a['step']), int(a['complete']), alg))\n";

/* Copies argv[1] to argv[2] keeping the first argv[3] bytes (truncate) or
 * flipping the byte at the middle (argv[3] == 'flip'). */
static const char *const PY_DAMAGE =
    "import sys\n"
    "b=bytearray(open(sys.argv[1],'rb').read())\n"
    "if sys.argv[3]=='flip': b[len(b)//2]^=0xff\n"
    "else: b=b[:int(sys.argv[3])]\n"
    "open(sys.argv[2],'wb').write(b)\n"
    "print(len(b))\n";

/* The shared KD example of pref_kd_losses.md §5 into an h5 file:
 * argv: path, f64|f32, variant (ok, aux, missing_teacher, bad_shape, mixed,
 * foreign). */
static const char *const PY_LOSS_INPUT =
    "import h5py,numpy as np,sys\n"
    "p,dt,v=sys.argv[1:4]; d=np.float64 if dt=='f64' else np.float32\n"
    "S=np.array([[2.0,1.0,0.1,-1.0,0.5],[0.3,2.5,-0.5,1.0,0.0]])\n"
    "T=np.array([[3.0,0.5,0.2,-2.0,1.0],[-0.5,4.0,0.0,1.5,-1.0]])\n"
    "with h5py.File(p,'w') as f:\n"
    "    if v=='foreign':\n"
    "        f['x']=S; sys.exit(0)\n"
    "    f['student_logits']=S.astype(d)\n"
    "    if v!='missing_teacher':\n"
    "        f['teacher_logits']=(T[:,:4] if v=='bad_shape' else T).astype(np.float32 if v=='mixed' else d)\n"
    "    f['labels']=np.array([0,3],dtype=np.int64)\n"
    "    if v=='aux': f['student_aux_logits']=S.astype(d)\n";

/* `rlt loss` outputs, one line each: "loss=V dtype=D shape=S grad=G
 * graddtype=GD metrics=a,b,c" (shape "scalar" for a 0-dim /loss). */
static const char *const PY_LOSS_OUTPUT =
    "import h5py,sys\n"
    "for p in sys.argv[1:]:\n"
    "    f=h5py.File(p,'r'); l=f['loss']; g=f['grad/student_logits']\n"
    "    print('loss=%.12f dtype=%s shape=%s grad=%s graddtype=%s metrics=%s' % (float(l[()]), l.dtype, "
    "'x'.join(map(str,l.shape)) or 'scalar', 'x'.join(map(str,g.shape)), g.dtype, "
    "','.join(sorted(f['metrics'].keys()))))\n";

/* Hinton KD's gradient wrt the student logits, analytically:
 * w_ce (softmax(s) - onehot(y))/B + w_kd T (softmax(s/T) - softmax(t/T))/B.
 * argv: in, out, T, w_ce, w_kd. Prints the max abs difference. */
static const char *const PY_HINTON_GRAD =
    "import h5py,numpy as np,sys\n"
    "i=h5py.File(sys.argv[1],'r'); o=h5py.File(sys.argv[2],'r'); T,wc,wk=map(float,sys.argv[3:6])\n"
    "s=i['student_logits'][()]; t=i['teacher_logits'][()]; y=i['labels'][()]; B,C=s.shape\n"
    "def sm(z):\n"
    "    e=np.exp(z-z.max(1,keepdims=True)); return e/e.sum(1,keepdims=True)\n"
    "g=wc*(sm(s)-np.eye(C)[y])/B+wk*T*(sm(s/T)-sm(t/T))/B\n"
    "print('%.3e' % np.abs(g-o['grad/student_logits'][()]).max())\n";

/* ------------------------------------------------------------------------ */
/* Small parsers over captured output                                        */
/* ------------------------------------------------------------------------ */

/* The final console line of a kd run:
 * "test accuracy (10000 images): teacher A | student CE only B | student KD (K) C" */
static int parse_test_accuracy(const char *out, double acc[3]) {
    const char *p = strstr(out, "test accuracy (10000 images): teacher ");
    if (!p) return -1;
    char kind[32];
    return sscanf(p, "test accuracy (10000 images): teacher %lf | student CE only %lf | student KD (%31[^)]) %lf",
                  &acc[0], &acc[1], kind, &acc[2]) == 4
               ? 0
               : -1;
}

/* "| role       | done / total | acc |" from `rlt eval`. */
static int parse_eval_row(const char *out, const char *role, long long *done, long long *total, double *acc) {
    char key[48];
    snprintf(key, sizeof key, "| %s ", role);
    const char *p = strstr(out, key);
    if (!p) return -1;
    p += strlen(key);
    return sscanf(p, " | %lld / %lld | %lf |", done, total, acc) == 3 ? 0 : -1;
}

/* The first word after `key` and the blanks (and one '|') that follow it,
 * e.g. the value of a row "| teacher.hidden     | 32    |" of the parameter
 * table, or of a line "step          48   epoch 0" of `rlt inspect`. */
static const char *word_after(const char *text, const char *key, char *buf, size_t cap) {
    const char *p = strstr(text, key);
    buf[0] = '\0';
    if (!p) return buf;
    p += strlen(key);
    while (*p == ' ') p++;
    if (*p == '|') p++;
    while (*p == ' ') p++;
    size_t n = strcspn(p, " |\n");
    snprintf(buf, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
    return buf;
}

/* "received SIGINT: stopped after step N" -> N */
static long long parse_stopped_step(const char *out, const char *signame) {
    char key[64];
    snprintf(key, sizeof key, "received %s: stopped after step ", signame);
    const char *p = strstr(out, key);
    return p ? strtoll(p + strlen(key), NULL, 10) : -1;
}

/* A directory's files as "name size mtime_ns fnv1a64" lines, sorted by name,
 * so a before/after comparison shows any change. */
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *dir_fingerprint(const char *dir) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "opendir %s: %s", dir, strerror(errno));
    char *names[256];
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        cr_assert_lt(n, 256);
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    size_t cap = 256 * (size_t)(n + 1), len = 0;
    char *fp = calloc(1, cap);
    cr_assert_not_null(fp);
    for (int i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat st;
        cr_assert_eq(stat(path, &st), 0, "stat %s", path);
        size_t flen = 0;
        char *bytes = cu_slurp(path, &flen);
        cr_assert_not_null(bytes, "read %s", path);
        uint64_t h = 1469598103934665603ULL;
        for (size_t k = 0; k < flen; k++) h = (h ^ (unsigned char)bytes[k]) * 1099511628211ULL;
        free(bytes);
        len += (size_t)snprintf(fp + len, cap - len, "%s %lld %lld.%09ld %016llx\n", names[i], (long long)st.st_size,
                                (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, (unsigned long long)h);
        free(names[i]);
    }
    return fp;
}

static int count_prefix(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) n++;
    closedir(d);
    return n;
}

/* What h5py reads back from an `rlt loss` output file. */
typedef struct loss_out {
    double loss;
    char dtype[16], shape[16], grad[16], graddtype[16], metrics[512];
} loss_out;

/* rlt loss kd --in IN --out OUT --set ...; returns the process (not freed). */
static cu_proc loss_cmd(cu_sandbox *sb, const char *in, const char *out, const char *const *sets) {
    cu_argvec a = {.n = 0};
    cu_av_add(&a, RLT_BIN);
    cu_av_add(&a, "loss");
    cu_av_add(&a, "kd");
    cu_av_add(&a, "--in");
    cu_av_add(&a, in);
    cu_av_add(&a, "--out");
    cu_av_add(&a, out);
    for (int i = 0; sets[i]; i++) {
        cu_av_add(&a, "--set");
        cu_av_add(&a, sets[i]);
    }
    return cu_run_argv(sb, a.v);
}

/* Reads n output files with one python process (start-up is the cost). */
static void loss_read(cu_sandbox *sb, const char *const *paths, int n, loss_out *lo) {
    cu_argvec a = {.n = 0};
    cu_av_add(&a, CU_PYTHON);
    cu_av_add(&a, "-c");
    cu_av_add(&a, PY_LOSS_OUTPUT);
    for (int i = 0; i < n; i++) cu_av_add(&a, paths[i]);
    cu_proc r = cu_run_argv(sb, a.v);
    cr_assert_eq(r.code, 0, "reading rlt loss outputs: %s", r.err);
    const char *line = r.out;
    for (int i = 0; i < n; i++) {
        memset(&lo[i], 0, sizeof lo[i]);
        int got = line ? sscanf(line, "loss=%lf dtype=%15s shape=%15s grad=%15s graddtype=%15s metrics=%511s",
                                &lo[i].loss, lo[i].dtype, lo[i].shape, lo[i].grad, lo[i].graddtype, lo[i].metrics)
                       : 0;
        cr_assert_eq(got, 6, "unexpected h5py summary of %s: %s", paths[i], r.out);
        line = strchr(line, '\n');
        if (line) line++;
    }
    cu_proc_free(&r);
}

/* ------------------------------------------------------------------------ */
/* 1 + 5: train a tiny job; its run directory; inspect; eval; --resume never */
/* ------------------------------------------------------------------------ */

Test(cli, train_inspect_eval, .timeout = 600) {
    cu_sandbox sb;
    sb_open(&sb);
    char run_dir[256], path[512], name[64];
    cu_sb_path(&sb, run_dir, sizeof run_dir, "run");

    /* train */
    cu_proc t = cu_train(&sb, &TINY, run_dir, NULL);
    cr_assert_eq(t.code, 0, "[%s] rlt train exit %d\nstderr: %s", sb.dir, t.code, t.err);
    /* the parameter table at start (one row per key, resolved values) */
    cr_assert(strstr(t.out, "| Parameter "), "no parameter table:\n%s", t.out);
    char word[64];
    cr_assert_str_eq(word_after(t.out, "| teacher.hidden ", word, sizeof word), "32", "table row teacher.hidden");
    cr_assert_str_eq(word_after(t.out, "| train.batch_size ", word, sizeof word), "64", "table row train.batch_size");
    cr_assert_str_eq(word_after(t.out, "| run.stop_at ", word, sizeof word), "0", "table row run.stop_at");
    cr_assert(strstr(t.out, "plan: teacher 16 steps, student_ce 16 steps on 256 labelled examples, "
                            "student_kd 16 steps"),
              "plan line:\n%s", t.out);
    cr_assert(strstr(t.out, "step  48/48 | "), "no log line for the last step:\n%s", t.out);
    double acc[3];
    cr_assert_eq(parse_test_accuracy(t.out, acc), 0, "no final test accuracy line:\n%s", t.out);
    for (int i = 0; i < 3; i++)
        cr_assert(acc[i] > 0.2 && acc[i] <= 1.0, "test accuracy %d = %g: not better than chance (0.1)", i, acc[i]);

    /* config.ini: every section, the resolved --set values, re-readable
     * (rlt resume reads it back: covered by the resume tests) */
    char *cfg = cu_slurp(cu_sb_path(&sb, path, sizeof path, "run/config.ini"), NULL);
    cr_assert_not_null(cfg, "no config.ini");
    const char *sections[] = {"[run]", "[data]", "[teacher]", "[student]", "[train]", "[kd]"};
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
        cr_assert(strstr(cfg, sections[i]), "config.ini lacks %s", sections[i]);
    cr_assert(strstr(cfg, "\ntrain_limit = 1024\n") && strstr(cfg, "\nbatch_size = 64\n") &&
                  strstr(cfg, "\nstop_at = 0\n") && strstr(cfg, "\nkeep_last = 2\n"),
              "config.ini does not hold the --set values:\n%s", cfg);
    /* ... and the recipe's own [kd] settings line, unchanged */
    char *recipe = cu_slurp(RECIPE, NULL);
    cr_assert_not_null(recipe);
    const char *rs = strstr(recipe, "\nsettings = ");
    cr_assert_not_null(rs, "the recipe has no [kd] settings line");
    char line[256];
    snprintf(line, sizeof line, "%.*s", (int)strcspn(rs + 1, "\n") + 2, rs);
    cr_assert(strstr(cfg, line), "config.ini lacks the recipe's '%s'", line + 1);
    free(recipe);
    free(cfg);

    /* train.log: what the console showed */
    char *log = cu_slurp(cu_sb_path(&sb, path, sizeof path, "run/train.log"), NULL);
    cr_assert_not_null(log, "no train.log");
    cr_assert(strstr(log, "| Parameter ") && strstr(log, "test accuracy (10000 images): teacher ") &&
                  strstr(log, "step  48/48 | "),
              "train.log lacks the table / log lines / final accuracy:\n%s", log);
    free(log);

    /* metrics.jsonl: 12 log lines (every 4th of 48 steps; the last one carries the eval keys) */
    cu_proc m = cu_py(&sb, PY_METRICS_CHECK, cu_sb_path(&sb, path, sizeof path, "run/metrics.jsonl"), NULL);
    cr_assert_eq(m.code, 0, "metrics.jsonl check failed: %s", m.err);
    int lines = 0;
    long long first = 0, last = 0;
    cr_assert_eq(sscanf(m.out, "lines=%d first=%lld last=%lld", &lines, &first, &last), 3, "%s", m.out);
    cr_assert_eq(lines, TINY_TOTAL / 4, "metrics.jsonl has %d lines:\n%s", lines, m.out);
    cr_assert_eq(first, 4);
    cr_assert_geq(last, TINY_TOTAL);
    /* the eval record equals the console's final accuracies */
    char want[64];
    snprintf(want, sizeof want, "eval=%.4f,%.4f,%.4f", acc[0], acc[1], acc[2]);
    cr_assert(strstr(m.out, want), "metrics eval record '%s' != console '%s'", m.out, want);
    cu_proc_free(&m);

    /* the TensorBoard event file: valid records, one with train/loss per log line */
    DIR *d = opendir(run_dir);
    cr_assert_not_null(d);
    char events[600] = "";
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strncmp(e->d_name, "events.out.tfevents.", 20) == 0)
            snprintf(events, sizeof events, "%s/%s", run_dir, e->d_name);
    closedir(d);
    cr_assert(events[0], "no events.out.tfevents.* in %s", run_dir);
    cu_proc ev = cu_py(&sb, PY_TFEVENTS_CHECK, events, NULL);
    cr_assert_eq(ev.code, 0, "event file %s: %s", events, ev.err);
    int nrec = 0, nloss = 0;
    cr_assert_eq(sscanf(ev.out, "records=%d loss_records=%d", &nrec, &nloss), 2, "%s", ev.out);
    cr_assert_eq(nloss, TINY_TOTAL / 4, "train/loss in %d records, want %d", nloss, TINY_TOTAL / 4);
    cr_assert_gt(nrec, nloss);
    cu_proc_free(&ev);

    /* checkpoints: latest names the final one, rotation kept keep_last = 2
     * (the recipe's) */
    cu_read_latest(run_dir, name, sizeof name);
    char final_name[64];
    ckpt_name(final_name, sizeof final_name, TINY_TOTAL);
    cr_assert_str_eq(name, final_name, "checkpoints/latest");
    char ckpt[512], ckdir[300];
    snprintf(ckpt, sizeof ckpt, "%s/checkpoints/%s", run_dir, name);
    snprintf(ckdir, sizeof ckdir, "%s/checkpoints", run_dir);
    cr_assert(cu_file_exists(ckpt), "%s does not exist", ckpt);
    cr_assert_eq(count_prefix(ckdir, "step_"), 2, "keep_last = 2 should leave 2 checkpoints");
    cu_proc at = cu_py(&sb, PY_CKPT_ATTRS, ckpt, NULL);
    cr_assert_eq(at.code, 0, "%s", at.err);
    cr_assert(strstr(at.out, "step=48 complete=1 algorithm=kd"), "h5py attrs of %s: %s", ckpt, at.out);
    cu_proc_free(&at);

    /* inspect CKPT: step, config, tensor table */
    cu_proc in = cu_run(&sb, RLT_BIN, "inspect", ckpt, NULL);
    cr_assert_eq(in.code, 0, "rlt inspect exit %d: %s", in.code, in.err);
    cr_assert(strstr(in.out, "format        rlt-checkpoint v1 (complete)"), "%s", in.out);
    cr_assert_str_eq(word_after(in.out, "\nstep ", word, sizeof word), "48", "inspect: step");
    cr_assert_str_eq(word_after(in.out, "\nthreads ", word, sizeof word), "1", "inspect: threads");
    cr_assert_str_eq(word_after(in.out, "\nalgorithm ", word, sizeof word), "kd", "inspect: algorithm");
    cr_assert(strstr(in.out, "config (/config/resolved):") && strstr(in.out, "  | hidden = 32\n") &&
                  strstr(in.out, "  | train_limit = 1024\n"),
              "inspect does not show the resolved config:\n%s", in.out);
    const char *rows[] = {"/model/teacher/head.weight", "/model/student_kd/head.weight",
                          "/optim/teacher/state/head.weight/exp_avg_sq", "/rng/torch_init"};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        cr_assert(strstr(in.out, rows[i]), "inspect table lacks %s", rows[i]);
    const char *hw = strstr(in.out, "/model/teacher/head.weight ");
    char dtype[16], shape[32];
    long long nel = 0;
    cr_assert_eq(sscanf(hw + strlen("/model/teacher/head.weight"), " %15s [%31[^]]] %lld", dtype, shape, &nel), 3,
                 "teacher head row: %.120s", hw);
    cr_assert_str_eq(dtype, "float32");
    cr_assert_str_eq(shape, "10, 32");
    cr_assert_eq(nel, 320);

    /* inspect RUN_DIR: the newest checkpoint, same report */
    cu_proc ind = cu_run(&sb, RLT_BIN, "inspect", run_dir, NULL);
    cr_assert_eq(ind.code, 0, "rlt inspect RUN_DIR exit %d: %s", ind.code, ind.err);
    cr_assert(strstr(ind.out, final_name) && strcmp(word_after(ind.out, "\nstep ", word, sizeof word), "48") == 0 &&
                  strstr(ind.out, "/model/teacher/head.weight "),
              "inspect RUN_DIR:\n%s", ind.out);
    cr_assert_not_null(strstr(ind.out, "\nalgorithm"), "inspect RUN_DIR:\n%s", ind.out);
    cr_assert_str_eq(strstr(ind.out, "\nalgorithm"), strstr(in.out, "\nalgorithm"),
                     "inspect RUN_DIR and inspect CKPT differ below the file line");
    cu_proc_free(&ind);
    cu_proc_free(&in);

    /* eval RUN_DIR: the accuracy table equals the training's final line */
    cu_proc e = cu_run(&sb, RLT_BIN, "eval", run_dir, NULL);
    cr_assert_eq(e.code, 0, "rlt eval exit %d: %s", e.code, e.err);
    cr_assert(strstr(e.out, "| model      | trained steps   | test accuracy |"), "%s", e.out);
    const char *roles[] = {"teacher", "student_ce", "student_kd"};
    for (int i = 0; i < 3; i++) {
        long long done = 0, total = 0;
        double a = -1;
        cr_assert_eq(parse_eval_row(e.out, roles[i], &done, &total, &a), 0, "no eval row for %s:\n%s", roles[i], e.out);
        cr_assert_eq(done, 16, "%s trained %lld steps", roles[i], done);
        cr_assert_eq(total, 16);
        char x[32], y[32];
        snprintf(x, sizeof x, "%.4f", a);
        snprintf(y, sizeof y, "%.4f", acc[i]);
        cr_assert_str_eq(x, y, "eval accuracy of %s differs from the training's", roles[i]);
    }
    cu_proc_free(&e);

    /* damaged copies: a clear error naming the file, never a crash */
    char trunc[300], flip[300], foreign[300];
    cu_sb_path(&sb, trunc, sizeof trunc, "truncated.h5");
    cu_sb_path(&sb, flip, sizeof flip, "flipped.h5");
    cu_sb_path(&sb, foreign, sizeof foreign, "foreign.h5");
    cu_proc dm = cu_py(&sb, PY_DAMAGE, ckpt, trunc, "200000", NULL);
    cr_assert_eq(dm.code, 0, "%s", dm.err);
    cu_proc_free(&dm);
    dm = cu_py(&sb, PY_DAMAGE, ckpt, flip, "flip", NULL);
    cr_assert_eq(dm.code, 0, "%s", dm.err);
    cu_proc_free(&dm);
    dm = cu_py(&sb, PY_LOSS_INPUT, foreign, "f64", "foreign", NULL);
    cr_assert_eq(dm.code, 0, "%s", dm.err);
    cu_proc_free(&dm);

    cu_proc it = cu_run(&sb, RLT_BIN, "inspect", trunc, NULL);
    cr_assert_eq(it.code, 2, "inspect truncated: exit %d\n%s%s", it.code, it.out, it.err);
    cr_assert(strstr(it.err, "truncated.h5") && strstr(it.err, "truncated"), "inspect truncated stderr: %s", it.err);
    cu_proc_free(&it);
    cu_proc et = cu_run(&sb, RLT_BIN, "eval", trunc, NULL);
    cr_assert_eq(et.code, 2, "eval truncated: exit %d\n%s", et.code, et.err);
    cr_assert(strstr(et.err, "truncated.h5"), "eval truncated stderr: %s", et.err);
    cu_proc_free(&et);
    cu_proc io = cu_run(&sb, RLT_BIN, "inspect", foreign, NULL);
    cr_assert_eq(io.code, 2, "inspect foreign h5: exit %d\n%s%s", io.code, io.out, io.err);
    cr_assert(strstr(io.err, "foreign.h5"), "inspect foreign stderr: %s", io.err);
    cu_proc_free(&io);
    cu_proc ef = cu_run(&sb, RLT_BIN, "eval", flip, NULL);
    cr_assert(ef.code > 0 && ef.code < 128, "eval flipped byte: exit %d (want an error, not a crash)\n%s", ef.code,
              ef.err);
    cr_assert(strstr(ef.err, "flipped.h5") && strstr(ef.err, "checksum"), "eval flipped stderr: %s", ef.err);
    cu_proc_free(&ef);

    /* --resume never on a run directory with checkpoints: exit 2, and
     * nothing in it changes (checkpoints, latest, config.ini, train.log) */
    char *before_ck = dir_fingerprint(ckdir), *before_run = dir_fingerprint(run_dir);
    cu_proc nv = cu_train(&sb, &TINY, run_dir, "--resume", "never", NULL);
    cr_assert_eq(nv.code, 2, "--resume never: exit %d\n%s", nv.code, nv.err);
    cr_assert(strstr(nv.err, "already holds checkpoints") && strstr(nv.err, final_name),
              "--resume never stderr: %s", nv.err);
    char *after_ck = dir_fingerprint(ckdir), *after_run = dir_fingerprint(run_dir);
    cr_assert_str_eq(after_ck, before_ck, "--resume never changed the checkpoints");
    cr_assert_str_eq(after_run, before_run, "--resume never changed the run directory");
    free(before_ck);
    free(after_ck);
    free(before_run);
    free(after_run);
    cu_proc_free(&nv);

    /* KNOWN BUG (reported): `rlt inspect` does not verify the data
     * checksums, so a flipped byte in tensor data prints the report and
     * exits 0. Last, and non-fatal, so every check above still runs. */
    cu_proc ifl = cu_run(&sb, RLT_BIN, "inspect", flip, NULL);
    cr_assert_lt(ifl.code, 128, "inspect flipped byte crashed: exit %d", ifl.code);
    cr_expect_neq(ifl.code, 0, "BUG: `rlt inspect` of a checkpoint with a flipped data byte exits 0 (%s)", flip);
    cu_proc_free(&ifl);
    cu_proc_free(&t);
    cu_rm_rf(sb.dir);
}

/* ------------------------------------------------------------------------ */
/* 2: bit-exact resume after run.stop_at                                     */
/* ------------------------------------------------------------------------ */

/* Two checkpoints hold the same model, optimizer, generator and sampler
 * state, bit for bit (h5diff exits 0 when identical, 1 when different). */
static void assert_same_state(cu_sandbox *sb, const char *a, const char *b) {
    const char *const groups[] = {"/model", "/optim", "/rng", "/data", NULL};
    cu_assert_h5_same(sb, a, b, groups);
}

Test(cli, bit_exact_resume, .timeout = 600) {
    cu_sandbox sb;
    sb_open(&sb);
    char A[256], a_ckpt[512], name[64], final_name[64], path[512];
    ckpt_name(final_name, sizeof final_name, TINY_TOTAL);

    /* A: straight to the end */
    cu_sb_path(&sb, A, sizeof A, "A");
    cu_proc a = cu_train(&sb, &TINY, A, NULL);
    cr_assert_eq(a.code, 0, "[%s] run A exit %d: %s", sb.dir, a.code, a.err);
    double acc_a[3];
    cr_assert_eq(parse_test_accuracy(a.out, acc_a), 0, "%s", a.out);
    snprintf(a_ckpt, sizeof a_ckpt, "%s/checkpoints/%s", A, final_name);
    cr_assert(cu_file_exists(a_ckpt), "%s", a_ckpt);
    const char *a_line = strstr(a.out, "test accuracy (10000 images):");

    /* B: stop inside student_ce (steps 16..31) at 21, or inside student_kd
     * (32..47, teacher targets recomputed after the load) at 37 -- neither a
     * multiple of save_every = 8 -- then resume to the end. */
    const long long stops[] = {21, 37};
    for (size_t i = 0; i < sizeof stops / sizeof stops[0]; i++) {
        long long K = stops[i];
        char B[256], stop_set[64], want[600], k_name[64];
        snprintf(path, sizeof path, "B%lld", K);
        cu_sb_path(&sb, B, sizeof B, path);
        snprintf(stop_set, sizeof stop_set, "run.stop_at=%lld", K);
        cu_proc b = cu_train(&sb, &TINY, B, "--set", stop_set, NULL);
        cr_assert_eq(b.code, 0, "[%s] run B (stop_at %lld) exit %d: %s", sb.dir, K, b.code, b.err);
        snprintf(want, sizeof want, "stopped at step %lld of %d (run.stop_at); continue with: rlt resume %s", K,
                 TINY_TOTAL, B);
        cr_assert(strstr(b.out, want), "no '%s' in:\n%s", want, b.out);
        cr_assert_null(strstr(b.out, "test accuracy (10000 images)"), "a stopped run reports final accuracy");
        ckpt_name(k_name, sizeof k_name, K);
        cu_read_latest(B, name, sizeof name);
        cr_assert_str_eq(name, k_name, "latest after stop_at %lld", K);
        snprintf(path, sizeof path, "%s/checkpoints/%s", B, k_name);
        cu_proc at = cu_py(&sb, PY_CKPT_ATTRS, path, NULL);
        cr_assert_eq(at.code, 0, "%s", at.err);
        snprintf(want, sizeof want, "step=%lld complete=1 algorithm=kd", K);
        cr_assert(strstr(at.out, want), "h5py attrs of %s: %s", path, at.out);
        cu_proc_free(&at);
        cu_proc_free(&b);

        cu_proc r = cu_run(&sb, RLT_BIN, "resume", B, NULL);
        cr_assert_eq(r.code, 0, "[%s] rlt resume %s exit %d: %s", sb.dir, B, r.code, r.err);
        snprintf(want, sizeof want, "resumed from %s/checkpoints/%s at step %lld", B, k_name, K);
        cr_assert(strstr(r.out, want), "no '%s' in:\n%s", want, r.out);
        const char *r_line = strstr(r.out, "test accuracy (10000 images):");
        cr_assert_not_null(r_line, "resumed run has no final accuracy:\n%s", r.out);
        cr_assert_eq(strcspn(r_line, "\n"), strcspn(a_line, "\n"));
        cr_assert_eq(strncmp(r_line, a_line, strcspn(a_line, "\n")), 0, "final accuracy differs:\nA: %.120s\nB: %.120s",
                     a_line, r_line);
        cu_read_latest(B, name, sizeof name);
        cr_assert_str_eq(name, final_name, "latest after resume");
        cu_proc_free(&r);

        snprintf(path, sizeof path, "%s/checkpoints/%s", B, final_name);
        assert_same_state(&sb, a_ckpt, path);
        cu_assert_metrics_equal(&sb, A, B, 12);
    }

    /* Negative control: another seed gives other weights and metrics. */
    char C[256];
    cu_sb_path(&sb, C, sizeof C, "C");
    cu_proc c = cu_train(&sb, &TINY, C, "--set", "run.seed=1", NULL);
    cr_assert_eq(c.code, 0, "run C exit %d: %s", c.code, c.err);
    cu_proc_free(&c);
    snprintf(path, sizeof path, "%s/checkpoints/%s", C, final_name);
    cu_proc d = cu_run(&sb, CU_H5DIFF, "-q", a_ckpt, path, "/model", "/model", NULL);
    cr_assert_eq(d.code, 1, "h5diff of seeds 0 and 1 /model: exit %d (want 1 = different)", d.code);
    cu_proc_free(&d);
    cu_proc me = cu_metrics_compare(&sb, A, C);
    cr_assert_eq(me.code, 1, "metrics of seeds 0 and 1 compare equal: %s%s", me.out, me.err);
    cu_proc_free(&me);
    cu_proc_free(&a);
    cu_rm_rf(sb.dir);
}

/* ------------------------------------------------------------------------ */
/* 3: SIGINT / SIGTERM save and exit 130 / 143; resume completes             */
/* ------------------------------------------------------------------------ */

/* A job of 1408 steps (teacher 784-128-10 for 20 epochs of 4096 images),
 * long enough to be interrupted once its first metrics line is written. */
static pid_t start_long(cu_sandbox *sb, const char *run_dir, char *out, char *err, size_t cap) {
    cu_argvec a = {.n = 0};
    cu_av_train(&a, &TINY, run_dir);
    const char *more[] = {"data.train_limit=4096", "teacher.epochs=20", "teacher.hidden=128", "run.save_every=256"};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) {
        cu_av_add(&a, "--set");
        cu_av_add(&a, more[i]);
    }
    cu_sb_next_outputs(sb, out, err, cap);
    return cu_spawn_to(a.v, out, err);
}
#define LONG_TOTAL 1408

/* Interrupts a long run with sig: exit code, the step it stopped after,
 * `latest` and the checkpoint's step attribute. Returns that step. */
static long long interrupt_run(cu_sandbox *sb, const char *run_dir, int sig, const char *signame, int want_code) {
    char out[256], err[256], name[64], want_name[64], path[600], want[96];
    pid_t pid = start_long(sb, run_dir, out, err, sizeof out);
    cu_wait_first_metrics(run_dir, pid, err);
    cr_assert_eq(kill(pid, sig), 0);
    int code = cu_wait_code(pid);
    char *o = cu_slurp(out, NULL), *e = cu_slurp(err, NULL);
    cr_assert(o && e);
    cr_assert_eq(code, want_code, "[%s] %s: exit %d, want %d\nstderr: %s", sb->dir, signame, code, want_code, e);
    long long step = parse_stopped_step(o, signame);
    cr_assert(step > 0 && step < LONG_TOTAL, "%s: stopped after step %lld?\n%s", signame, step, o);
    ckpt_name(want_name, sizeof want_name, step);
    snprintf(want, sizeof want, "saved %s/checkpoints/%s", run_dir, want_name);
    cr_assert(strstr(o, want), "no '%s' after %s:\n%s", want, signame, o);
    cu_read_latest(run_dir, name, sizeof name);
    cr_assert_str_eq(name, want_name, "latest after %s", signame);
    snprintf(path, sizeof path, "%s/checkpoints/%s", run_dir, name);
    cu_proc at = cu_py(sb, PY_CKPT_ATTRS, path, NULL);
    cr_assert_eq(at.code, 0, "%s", at.err);
    snprintf(want, sizeof want, "step=%lld complete=1 algorithm=kd", step);
    cr_assert(strstr(at.out, want), "h5py attrs of %s: %s", path, at.out);
    cu_proc_free(&at);
    free(o);
    free(e);
    return step;
}

Test(cli, signals_save_and_resume, .timeout = 600) {
    cu_sandbox sb;
    sb_open(&sb);
    char run_dir[256], path[512], want[600], final_name[64], name[64];

    /* SIGINT -> 130 with a checkpoint at the step reached; resume finishes */
    cu_sb_path(&sb, run_dir, sizeof run_dir, "int");
    long long step = interrupt_run(&sb, run_dir, SIGINT, "SIGINT", 130);
    cu_proc r = cu_run(&sb, RLT_BIN, "resume", run_dir, NULL);
    cr_assert_eq(r.code, 0, "[%s] resume after SIGINT: exit %d\n%s", sb.dir, r.code, r.err);
    snprintf(want, sizeof want, "at step %lld", step);
    cr_assert(strstr(r.out, "resumed from ") && strstr(r.out, want), "resume does not say where from:\n%s", r.out);
    double acc[3];
    cr_assert_eq(parse_test_accuracy(r.out, acc), 0, "resume did not finish:\n%s", r.out);
    ckpt_name(final_name, sizeof final_name, LONG_TOTAL);
    cu_read_latest(run_dir, name, sizeof name);
    cr_assert_str_eq(name, final_name);
    cu_proc_free(&r);
    /* one metrics history: no step twice across the interruption */
    cu_proc m = cu_py(&sb, PY_METRICS_CHECK, cu_sb_path(&sb, path, sizeof path, "int/metrics.jsonl"), NULL);
    cr_assert_eq(m.code, 0, "metrics.jsonl after SIGINT + resume: %s", m.err);
    cr_assert(strstr(m.out, "lines=352 first=4 last="), "want 352 log lines (the last with eval): %s", m.out);
    cu_proc_free(&m);
    char *log = cu_slurp(cu_sb_path(&sb, path, sizeof path, "int/train.log"), NULL);
    cr_assert(log && strstr(log, "received SIGINT: stopped after step") && strstr(log, "resumed from "),
              "train.log does not hold both processes");
    free(log);

    /* SIGTERM -> 143, same saving */
    cu_sb_path(&sb, run_dir, sizeof run_dir, "term");
    interrupt_run(&sb, run_dir, SIGTERM, "SIGTERM", 143);
    cu_rm_rf(sb.dir);
}

/* ------------------------------------------------------------------------ */
/* 4: config and usage errors: exit 2, a message on stderr, nothing created  */
/* ------------------------------------------------------------------------ */

/* rlt train FILE --run-dir sb/NAME [--set s]... must exit 2 with every
 * needle in stderr and without creating the run directory. */
static void expect_config_error(cu_sandbox *sb, const char *recipe, const char *const *sets, const char *const *needles) {
    char run_dir[256];
    snprintf(run_dir, sizeof run_dir, "%s/never-%d", sb->dir, sb->calls);
    cu_argvec a = {.n = 0};
    cu_av_add(&a, RLT_BIN);
    cu_av_add(&a, "train");
    cu_av_add(&a, recipe);
    cu_av_add(&a, "--run-dir");
    cu_av_add(&a, run_dir);
    for (int i = 0; sets && sets[i]; i++) {
        cu_av_add(&a, "--set");
        cu_av_add(&a, sets[i]);
    }
    cu_proc p = cu_run_argv(sb, a.v);
    cr_assert_eq(p.code, 2, "%s %s: exit %d, want 2\nstdout: %s\nstderr: %s", recipe, sets && sets[0] ? sets[0] : "",
                 p.code, p.out, p.err);
    for (int i = 0; needles[i]; i++)
        cr_assert(strstr(p.err, needles[i]), "%s %s: stderr lacks \"%s\":\n%s", recipe, sets && sets[0] ? sets[0] : "",
                  needles[i], p.err);
    cr_assert_not(cu_file_exists(run_dir), "a config error created %s", run_dir);
    cu_proc_free(&p);
}

#define LIST(...) ((const char *const[]){__VA_ARGS__, NULL})

Test(cli, config_errors, .timeout = 600) {
    cu_sandbox sb;
    sb_open(&sb);
    char unk[256], sect[256], badtype[256], noalgo[256], foreign_algo[256], missing[256];

    /* unknown key in a recipe: file:line and the nearest key */
    cr_assert_eq(cu_write_text(cu_sb_path(&sb, unk, sizeof unk, "typo.ini"),
                            "; a recipe with a typo\n[run]\nalgorithm = kd\n\n[teacher]\nepochz = 3\n"), 0);
    expect_config_error(&sb, unk, NULL,
                        LIST("typo.ini:6", "unknown key 'teacher.epochz'", "did you mean 'teacher.epochs'"));
    /* unknown section */
    cr_assert_eq(cu_write_text(cu_sb_path(&sb, sect, sizeof sect, "section.ini"),
                            "[run]\nalgorithm = kd\n[trian]\nbatch_size = 8\n"),
                 0);
    expect_config_error(&sb, sect, NULL, LIST("section.ini:3", "trian", "did you mean [train]"));
    /* bad type in the file: the key, the value, the allowed range */
    cr_assert_eq(cu_write_text(cu_sb_path(&sb, badtype, sizeof badtype, "badtype.ini"),
                            "[run]\nalgorithm = kd\n[teacher]\nepochs = ten\n"),
                 0);
    expect_config_error(&sb, badtype, NULL, LIST("badtype.ini:4", "teacher.epochs", "'ten'", "[0, 1000]"));
    /* bad type and out of range with --set */
    expect_config_error(&sb, RECIPE, LIST("run.deterministic=maybe"), LIST("run.deterministic", "maybe"));
    expect_config_error(&sb, RECIPE, LIST("data.labeled=70000"),
                        LIST("data.labeled", "70000", "out of range, allowed [0, 60000]"));
    /* unknown --set key */
    expect_config_error(&sb, RECIPE, LIST("teacher.epoch=3"),
                        LIST("unknown key 'teacher.epoch'", "did you mean 'teacher.epochs'"));
    /* batch arithmetic is validated at start-up */
    expect_config_error(&sb, RECIPE, LIST("train.batch_size=512", "data.labeled=256"),
                        LIST("train.batch_size", "larger than data.labeled (256)"));
    /* the KD loss settings string is validated too */
    expect_config_error(&sb, RECIPE, LIST("kd.settings=temprature=2"),
                        LIST("kd.settings", "temprature", "did you mean 'temperature'"));
    /* missing recipe file */
    cu_sb_path(&sb, missing, sizeof missing, "nosuch.ini");
    expect_config_error(&sb, missing, NULL, LIST("cannot open recipe", "nosuch.ini"));
    /* no [run] algorithm; an unknown one */
    cr_assert_eq(cu_write_text(cu_sb_path(&sb, noalgo, sizeof noalgo, "noalgo.ini"), "[data]\nlabeled = 10\n"), 0);
    expect_config_error(&sb, noalgo, NULL, LIST("noalgo.ini", "no [run] algorithm", "kd "));
    cr_assert_eq(cu_write_text(cu_sb_path(&sb, foreign_algo, sizeof foreign_algo, "ppo.ini"), "[run]\nalgorithm = ppo\n"), 0);
    expect_config_error(&sb, foreign_algo, NULL, LIST("ppo.ini", "'ppo' is not known"));

    /* usage errors */
    cu_proc p = cu_run(&sb, RLT_BIN, "train", RECIPE, "--frobnicate", "1", NULL);
    cr_assert_eq(p.code, 2, "unknown option: exit %d", p.code);
    cr_assert(strstr(p.err, "unknown option '--frobnicate'"), "%s", p.err);
    cu_proc_free(&p);
    p = cu_run(&sb, RLT_BIN, "train", RECIPE, "--resume", missing, NULL);
    cr_assert_eq(p.code, 2, "--resume MISSING: exit %d", p.code);
    cr_assert(strstr(p.err, "nosuch.ini") && strstr(p.err, "expected auto, never or an existing checkpoint file"), "%s",
              p.err);
    cu_proc_free(&p);
    p = cu_run(&sb, RLT_BIN, "resume", sb.dir, NULL);
    cr_assert_eq(p.code, 2, "resume of a directory without checkpoints: exit %d", p.code);
    cr_assert(strstr(p.err, "nothing to resume"), "%s", p.err);
    cu_proc_free(&p);
    cu_rm_rf(sb.dir);
}

/* ------------------------------------------------------------------------ */
/* 6: rlt loss against the worked numbers of pref_kd_losses.md §5            */
/* ------------------------------------------------------------------------ */

Test(cli, loss, .timeout = 600) {
    cu_sandbox sb;
    sb_open(&sb);
    char in64[256], in32[256], aux[256], miss[256], bad[256], mixed[256];
    struct {
        char *path;
        const char *dtype, *variant;
    } inputs[] = {
        {in64, "f64", "ok"},   {in32, "f32", "ok"},        {aux, "f64", "aux"},
        {miss, "f64", "missing_teacher"}, {bad, "f64", "bad_shape"}, {mixed, "f64", "mixed"},
    };
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "in-%s-%s.h5", inputs[i].dtype, inputs[i].variant);
        cu_sb_path(&sb, inputs[i].path, 256, name);
        cu_proc w = cu_py(&sb, PY_LOSS_INPUT, inputs[i].path, inputs[i].dtype, inputs[i].variant, NULL);
        cr_assert_eq(w.code, 0, "writing %s: %s", inputs[i].path, w.err);
        cu_proc_free(&w);
    }

    /* The spec's totals (6 decimals) with each reference's defaults unless
     * the settings say otherwise. */
    struct {
        const char *in;
        const char *sets[6];
        double want;
        const char *metric; /* one metric the output must have */
    } cases[] = {
        {in64, {"kind=hinton", NULL}, 0.432696, "kd"},                                          /* mdistiller T=4 */
        {in64, {"kind=hinton", "temperature=1", "ce_weight=0", "kd_weight=1", NULL}, 0.136535, "kd"}, /* KL, T=1 */
        {in64, {"kind=hinton", "temperature=2", "ce_weight=0", "kd_weight=1", NULL}, 0.291517, "kd"}, /* KL, T=2 */
        {in64, {"kind=lskd", NULL}, 0.434606, "kd"},         /* 0.1 CE + 9 KD(LS, T=2) */
        {in64, {"kind=dkd", NULL}, 4.171678, "kd"},          /* alpha 1, beta 8, T 4, + CE */
        {in64, {"kind=nkd", NULL}, 2.691888, "kd"},          /* temp 1, gamma 1.5, + CE */
        {in64, {"kind=pld", "temperature=4", NULL}, 0.689956, "kd"}, /* tau 4 */
        {aux, {"kind=dhkd", NULL}, 1.658138, "kd"},          /* CE + BinaryKLNorm(aux = S, T = 2) */
        {in32, {"kind=hinton", NULL}, 0.432696, "kd"},       /* float32 in, float32 out */
    };
    enum { NCASES = sizeof cases / sizeof cases[0] };
    char outs[NCASES][256];
    const char *out_ptrs[NCASES];
    for (int i = 0; i < NCASES; i++) {
        snprintf(outs[i], sizeof outs[i], "%s/out-%d.h5", sb.dir, i);
        out_ptrs[i] = outs[i];
        cu_proc p = loss_cmd(&sb, cases[i].in, outs[i], cases[i].sets);
        cr_assert_eq(p.code, 0, "rlt loss kd --set %s ...: exit %d\n%s", cases[i].sets[0], p.code, p.err);
        cr_assert(strstr(p.out, "kd: loss ") && strstr(p.out, outs[i]), "stdout: %s", p.out);
        cu_proc_free(&p);
    }
    loss_out lo[NCASES];
    loss_read(&sb, out_ptrs, NCASES, lo);
    for (int i = 0; i < NCASES; i++) {
        int f32 = cases[i].in == in32;
        double tol = f32 ? 1e-5 : 1e-6;
        cr_assert(lo[i].loss > cases[i].want - tol && lo[i].loss < cases[i].want + tol,
                  "case %d (%s %s): /loss = %.9f, spec %.6f (tolerance %g)", i, cases[i].sets[0],
                  cases[i].sets[1] ? cases[i].sets[1] : "", lo[i].loss, cases[i].want, tol);
        cr_assert_str_eq(lo[i].dtype, f32 ? "float32" : "float64", "case %d: /loss dtype", i);
        cr_assert_str_eq(lo[i].graddtype, f32 ? "float32" : "float64", "case %d: grad dtype", i);
        cr_assert_str_eq(lo[i].shape, "scalar", "case %d: /loss shape", i);
        cr_assert_str_eq(lo[i].grad, "2x5", "case %d: /grad/student_logits shape", i);
        cr_assert(lo[i].metrics[0] && strstr(lo[i].metrics, cases[i].metric), "case %d: /metrics = '%s'", i,
                  lo[i].metrics);
    }
    /* the gradient of Hinton KD (T=4, 0.1 CE + 0.9 KD) against the analytic one */
    cu_proc g = cu_py(&sb, PY_HINTON_GRAD, in64, outs[0], "4", "0.1", "0.9", NULL);
    cr_assert_eq(g.code, 0, "%s", g.err);
    double maxdiff = strtod(g.out, NULL);
    cr_assert_lt(maxdiff, 1e-12, "hinton /grad/student_logits differs from the analytic gradient by %g", maxdiff);
    cu_proc_free(&g);

    /* input errors: exit 2, a message naming the dataset, no output file */
    struct {
        const char *in;
        const char *sets[3];
        const char *needles[4];
    } errs[] = {
        {miss, {"kind=hinton", NULL}, {"teacher_logits", "[B,C]", "missing", NULL}},
        {bad, {"kind=hinton", NULL}, {"teacher_logits", "shape", "C=5", NULL}},
        {mixed, {"kind=hinton", NULL}, {"teacher_logits", "float32", "float64", NULL}},
        {in64, {"kind=hinton", "temprature=2", NULL}, {"temprature", "did you mean", NULL}},
        {in64, {"kind=hintn", NULL}, {"hintn", "unknown kind", NULL}},
        {in64, {"kind=pld", "temperature=-1", NULL}, {"temperature", NULL}},
    };
    char err_out[256];
    cu_sb_path(&sb, err_out, sizeof err_out, "never.h5");
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        cu_proc p = loss_cmd(&sb, errs[i].in, err_out, errs[i].sets);
        cr_assert_eq(p.code, 2, "error case %zu (%s): exit %d\n%s", i, errs[i].sets[1] ? errs[i].sets[1] : errs[i].in,
                     p.code, p.err);
        for (int k = 0; errs[i].needles[k]; k++)
            cr_assert(strstr(p.err, errs[i].needles[k]), "error case %zu: stderr lacks \"%s\":\n%s", i,
                      errs[i].needles[k], p.err);
        cr_assert_not(cu_file_exists(err_out), "error case %zu wrote %s", i, err_out);
        cu_proc_free(&p);
    }
    cu_proc p = cu_run(&sb, RLT_BIN, "loss", "kdd", "--in", in64, "--out", err_out, NULL);
    cr_assert_eq(p.code, 2, "unknown loss: exit %d", p.code);
    cr_assert(strstr(p.err, "unknown loss 'kdd'") && strstr(p.err, "kd"), "%s", p.err);
    cu_proc_free(&p);
    p = cu_run(&sb, RLT_BIN, "loss", "kd", "--in", in64, NULL);
    cr_assert_eq(p.code, 2, "loss without --out: exit %d", p.code);
    cu_proc_free(&p);
    cu_rm_rf(sb.dir);
}

/* ------------------------------------------------------------------------ */
/* 7: help                                                                   */
/* ------------------------------------------------------------------------ */

Test(cli, help, .timeout = 600) {
    cu_sandbox sb;
    sb_open(&sb);
    cu_proc h = cu_run(&sb, RLT_BIN, "--help", NULL);
    cr_assert_eq(h.code, 0);
    const char *top[] = {"usage: rlt <command>", "\n  train RECIPE.ini ", "\n  resume RUN_DIR ",
                         "\n  eval RUN_DIR|CKPT ", "\n  inspect CKPT ", "\n  loss NAME ", "\n  help [ALGORITHM] ",
                         "\n  kd ",
                         "exit codes: 0 done, 1 runtime error, 2 usage/config/input error, 130/143 interrupted"};
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        cr_assert(strstr(h.out, top[i]), "rlt --help lacks '%s'", top[i]);
    cu_proc h2 = cu_run(&sb, RLT_BIN, "help", NULL);
    cr_assert_eq(h2.code, 0);
    cr_assert_str_eq(h2.out, h.out, "rlt help and rlt --help differ");
    cu_proc_free(&h2);
    cu_proc_free(&h);

    h = cu_run(&sb, RLT_BIN, "train", "--help", NULL);
    cr_assert_eq(h.code, 0);
    cr_assert(strstr(h.out, "usage: rlt train RECIPE.ini") && strstr(h.out, "--set SECTION.KEY=VALUE") &&
                  strstr(h.out, "--run-dir DIR") && strstr(h.out, "--resume auto|never|PATH") &&
                  strstr(h.out, "auto (default)"),
              "rlt train --help:\n%s", h.out);
    cu_proc_free(&h);
    const char *sub[][2] = {{"resume", "usage: rlt resume RUN_DIR"},
                            {"eval", "usage: rlt eval RUN_DIR|CKPT"},
                            {"inspect", "usage: rlt inspect CKPT"}};
    for (size_t i = 0; i < sizeof sub / sizeof sub[0]; i++) {
        h = cu_run(&sb, RLT_BIN, sub[i][0], "--help", NULL);
        cr_assert_eq(h.code, 0, "rlt %s --help: exit %d", sub[i][0], h.code);
        cr_assert(strstr(h.out, sub[i][1]), "rlt %s --help:\n%s", sub[i][0], h.out);
        cu_proc_free(&h);
    }

    /* help kd: every recipe key with its default */
    h = cu_run(&sb, RLT_BIN, "help", "kd", NULL);
    cr_assert_eq(h.code, 0);
    const char *keys[][2] = {
        {"run.algorithm", "default ''"},     {"run.name", "default ''"},          {"run.runs_dir", "default 'runs'"},
        {"run.seed", "default 0"},           {"run.threads", "default 1"},        {"run.deterministic", "default true"},
        {"run.log_every", "default 100"},    {"run.save_every", "default 1000"},  {"run.keep_last", "default 3"},
        {"run.keep_every", "default 0"},     {"run.nonfinite", "default skip"},   {"run.tensorboard", "default true"},
        {"run.stop_at", "default 0"},        {"data.dir", "default '/usr/share/datasets/fashion-mnist'"},
        {"data.standardize", "default true"}, {"data.labeled", "default 1000"},   {"data.train_limit", "default 0"},
        {"teacher.hidden", "default '512,512'"}, {"teacher.epochs", "default 10"}, {"teacher.lr", "default 0.001"},
        {"student.hidden", "default '64'"},  {"student.epochs", "default 10"},    {"student.lr", "default 0.001"},
        {"train.batch_size", "default 128"}, {"train.optimizer", "default adam"}, {"train.weight_decay", "default 0"},
        {"train.grad_clip", "default 0"},    {"train.eval_batch", "default 2000"}, {"kd.kind", "default hinton"},
        {"kd.settings", "default ''"},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char head[64];
        snprintf(head, sizeof head, "\n  %s (", keys[i][0]);
        const char *line = strstr(h.out, head);
        cr_assert_not_null(line, "rlt help kd lacks %s", keys[i][0]);
        line++;
        size_t len = strcspn(line, "\n");
        char buf[256];
        snprintf(buf, sizeof buf, "%.*s", (int)len, line);
        cr_assert(strstr(buf, keys[i][1]), "rlt help kd: '%s' does not say '%s'", buf, keys[i][1]);
        cr_assert_neq(line[len + 1], '\0', "no help text after %s", keys[i][0]);
    }
    cu_proc_free(&h);

    /* loss --help: inputs with shapes, every kind, settings with defaults */
    h = cu_run(&sb, RLT_BIN, "loss", "--help", NULL);
    cr_assert_eq(h.code, 0);
    const char *lh[] = {"usage: rlt loss NAME --in IN.h5 --out OUT.h5", "student_logits       [B,C]",
                        "teacher_logits       [B,C]", "labels               [B] int64", "student_aux_logits",
                        "temperature    default 4 ", "kd_weight      default 0.9 "};
    for (size_t i = 0; i < sizeof lh / sizeof lh[0]; i++)
        cr_assert(strstr(h.out, lh[i]), "rlt loss --help lacks '%s'", lh[i]);
    const char *kinds[] = {"hinton", "lskd", "dkd", "nkd", "pld", "dhkd", "topk", "fkl", "rkl", "jsd"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        char k[32];
        snprintf(k, sizeof k, "\n    %s ", kinds[i]);
        cr_assert(strstr(h.out, k), "rlt loss --help lacks kind %s", kinds[i]);
    }
    cu_proc_free(&h);

    /* usage errors */
    h = cu_run(&sb, RLT_BIN, "frobnicate", NULL);
    cr_assert_eq(h.code, 2, "unknown command: exit %d", h.code);
    cr_assert(strstr(h.err, "unknown command 'frobnicate'"), "%s", h.err);
    cr_assert_str_empty(h.out, "an error printed on stdout: %s", h.out);
    cu_proc_free(&h);
    h = cu_run(&sb, RLT_BIN, NULL);
    cr_assert_eq(h.code, 2, "no command: exit %d", h.code);
    cr_assert(strstr(h.err, "usage: rlt <command>"), "%s", h.err);
    cu_proc_free(&h);
    h = cu_run(&sb, RLT_BIN, "help", "ppo", NULL);
    cr_assert_eq(h.code, 2, "help of an unknown algorithm: exit %d", h.code);
    cr_assert(strstr(h.err, "unknown algorithm 'ppo'"), "%s", h.err);
    cu_proc_free(&h);
    h = cu_run(&sb, RLT_BIN, "--version", NULL);
    cr_assert_eq(h.code, 0);
    cr_assert(strstr(h.out, "rlt 0.1.0 (libtorch "), "%s", h.out);
    cu_proc_free(&h);
    cu_rm_rf(sb.dir);
}
