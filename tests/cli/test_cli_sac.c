/*
 * test_cli_sac.c -- end-to-end tests of SAC training and the environment
 * commands through the real `rlt` executable (issue 6, "Tests"):
 *
 *   1. `rlt train runs/sac-pendulum.ini` on a tiny job (300 env steps, hidden
 *      32, learning from step 50): metrics.jsonl, the checkpoint's replay
 *      buffer, networks, log alpha and env RNG state, `rlt eval`, `rlt
 *      inspect`; then bit-exact resume after run.stop_at (h5diff of /model
 *      /optim /rng /replay /algo, metrics equal without the perf/ keys) and a
 *      negative control with another seed;
 *   2. SIGINT during a longer run: exit 130, a checkpoint at the step
 *      reached, and a resume that ends where an uninterrupted run ends;
 *   3. `rlt envs`, `rlt env replay` against Gymnasium's reset and dynamics
 *      (a numpy oracle in /usr/bin/python3), the loader's error paths, and
 *      the SAC loop's env config errors.
 *
 * The binary does not link libtorch: it spawns rlt, /usr/bin/python3 (h5py
 * writes inputs and reads outputs) and /usr/bin/h5diff with posix_spawn,
 * capturing stdout and stderr to files in a mkdtemp sandbox under /tmp. A
 * sandbox is removed when its test reaches its end and kept (its path is in
 * the messages) when a fatal assertion stops the test early. RLT_ENV_PATH is
 * unset so only the build's plugin folder (and --env-path) is searched.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
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

#define RECIPE RLT_SOURCE_DIR "/runs/sac-pendulum.ini"
#define PLUGIN_DIR RLT_BINARY_DIR "/envs"

/* Pendulum-v1: reward per step in [-(pi^2 + 0.1*8^2 + 0.001*2^2), 0]. */
#define PENDULUM_MIN_REWARD (-16.2736044)

/* ------------------------------------------------------------------------ */
/* Sandbox and processes                                                     */
/* ------------------------------------------------------------------------ */

/* A sandbox under /tmp (see cli_util.h). RLT_ENV_PATH is unset so that only
 * the build's plugin folder (and --env-path) is searched. */
static void sb_open(cu_sandbox *sb) {
    unsetenv("RLT_ENV_PATH");
    cu_sb_open(sb, "/tmp/rlt-cli-sac-XXXXXX");
}

/* ------------------------------------------------------------------------ */
/* The tiny SAC job                                                          */
/* ------------------------------------------------------------------------ */

/* 300 env steps of one Pendulum-v1 (one finished episode at step 200, the
 * time limit), 50 warm-up steps then 250 updates of 2x32 networks. */
static const char *const tiny_sets[] = {"sac.hidden=32", "sac.total_steps=300", "sac.learning_starts=50",
                                        "run.threads=1", "run.log_every=50"};
#define TINY_TOTAL 300
#define TINY_LINES (TINY_TOTAL / 50)

/* rlt train RECIPE --run-dir DIR <tiny sets> [extra...] */
static const cu_job TINY = {RLT_BIN, RECIPE, tiny_sets, sizeof tiny_sets / sizeof tiny_sets[0]};

static void ckpt_path(char *buf, size_t cap, const char *run_dir, long long step) {
    snprintf(buf, cap, "%s/checkpoints/step_%08lld.h5", run_dir, step);
}

/* The value after "key=" in a line of key=value tokens (NAN if absent). */
static double kv(const char *text, const char *key) {
    char k[64];
    snprintf(k, sizeof k, " %s=", key);
    const char *p = strstr(text, k);
    return p ? strtod(p + strlen(k), NULL) : NAN;
}

/* The word after "key=" into buf ("" if absent). */
static const char *kv_word(const char *text, const char *key, char *buf, size_t cap) {
    char k[64];
    snprintf(k, sizeof k, " %s=", key);
    const char *p = strstr(text, k);
    buf[0] = '\0';
    if (p) {
        p += strlen(k);
        size_t n = strcspn(p, " \n");
        snprintf(buf, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
    }
    return buf;
}

/* ------------------------------------------------------------------------ */
/* Python oracles: each prints parsable lines                                */
/* ------------------------------------------------------------------------ */

/* metrics.jsonl: every line an object whose first key is "step" (an int,
 * strictly increasing) and whose other keys are '/'-namespaced. Prints one
 * line per record: "step return length qf_loss alpha episodes" (nan when the
 * key is absent). */
static const char *const PY_SAC_METRICS =
    "import json,sys\n"
    "prev=0\n"
    "for i,l in enumerate(open(sys.argv[1])):\n"
    "    o=json.loads(l,object_pairs_hook=lambda p:p)\n"
    "    assert o and o[0][0]=='step', 'line %d: first key %r' % (i+1, o[0][0] if o else None)\n"
    "    s=o[0][1]\n"
    "    assert isinstance(s,int) and s>prev, 'line %d: step %r after %d' % (i+1, s, prev)\n"
    "    prev=s\n"
    "    for k,v in o[1:]:\n"
    "        assert '/' in k, 'line %d: key %r is not namespaced' % (i+1, k)\n"
    "    d=dict(o); g=lambda k: d.get(k,float('nan'))\n"
    "    print('%d %.17g %.17g %.17g %.17g %.17g' % (s, g('charts/episodic_return'), g('charts/episodic_length'),\n"
    "          g('losses/qf_loss'), g('losses/alpha'), g('charts/episodes')))\n";

/* A SAC checkpoint as one line of " key=value" tokens: root attributes, the
 * replay buffer's shape and cursor, the groups that are missing, and what
 * the stored transitions must satisfy for Pendulum-v1 (unit circle, speed
 * and action bounds, rewards, one time-limit truncation at row 199 and no
 * termination, s' of row i equal to s of row i+1 except across the reset). */
static const char *const PY_SAC_CKPT =
    "import h5py,numpy as np,sys\n"
    "f=h5py.File(sys.argv[1],'r'); a=f.attrs\n"
    "alg=a['algorithm']; alg=alg.decode() if isinstance(alg,bytes) else alg\n"
    "r=f['replay']; o=r['observations'][()]; no=r['next_observations'][()]; act=r['actions'][()]\n"
    "rew=r['rewards'][()]; dn=r['dones'][()]; to=r['timeouts'][()]\n"
    "pos=int(r['pos'][()]); full=int(r['full'][()]); n=len(o) if full else pos\n"
    "want=['model/actor','model/q1','model/q2','model/q1_target','model/q2_target','optim/actor','optim/critic',\n"
    "      'optim/alpha','algo/log_alpha','algo/updates','rng/env','rng/torch_init','rng/torch_sample',\n"
    "      'replay/next_observations','replay/actions','replay/rewards','replay/dones','replay/timeouts']\n"
    "missing=[p for p in want if p not in f] or ['none']\n"
    "ends=[i for i in range(n) if to[i]]\n"
    "chain=max([float(np.abs(no[i]-o[i+1]).max()) for i in range(n-1) if not to[i]] or [0.0])\n"
    "print(' step=%d complete=%d algorithm=%s obs_shape=%s obs_dtype=%s act_shape=%s pos=%d full=%d missing=%s'\n"
    "      ' unit=%.3e speed=%.6g act=%.6g rmin=%.6g rmax=%.6g dones=%d timeouts=%s chain=%.3e'\n"
    "      ' log_alpha=%.9g updates=%d env_bytes=%d' % (\n"
    "      int(a['step']), int(a['complete']), alg, 'x'.join(map(str,o.shape)), o.dtype, 'x'.join(map(str,act.shape)),\n"
    "      pos, full, ','.join(missing), np.abs(o[:n,0]**2+o[:n,1]**2-1).max() if n else 0,\n"
    "      np.abs(o[:n,2]).max() if n else 0, np.abs(act[:n]).max() if n else 0, rew[:n].min() if n else 0,\n"
    "      rew[:n].max() if n else 0, int(dn[:n].sum()), ','.join(map(str,ends)) or 'none', chain,\n"
    "      float(f['algo/log_alpha'][0]), int(f['algo/updates'][()]), f['rng/env'].size))\n";

/* Actions files for `rlt env replay`: pendulum.h5 float32 [5,1] (the last,
 * 3.0, beyond the Box bound 2: clipped), cart.h5 int64 [3], cart_bad.h5
 * int64 [2] with 2 outside Discrete(2), wide.h5 float32 [4,2]. */
static const char *const PY_ACTIONS =
    "import h5py,numpy as np,sys\n"
    "d=sys.argv[1]\n"
    "def w(name,x):\n"
    "    with h5py.File(d+'/'+name,'w') as f: f['actions']=x\n"
    "w('pendulum.h5',np.array([[0.5],[-1.0],[2.0],[0.0],[3.0]],dtype=np.float32))\n"
    "w('cart.h5',np.array([1,0,1],dtype=np.int64))\n"
    "w('cart_bad.h5',np.array([0,2],dtype=np.int64))\n"
    "w('wide.h5',np.zeros((4,2),dtype=np.float32))\n";

/* Gymnasium's Pendulum-v1 and CartPole-v1 resets (seeding.np_random:
 * Generator(PCG64(SeedSequence(seed)))), and Pendulum-v1's step under NumPy
 * 1.x promotion, against the trajectory files rlt wrote. argv: actions
 * file, pendulum trajectory, seed, cartpole trajectory. Prints two lines of
 * key=value tokens. */
static const char *const PY_REPLAY_ORACLE =
    "import h5py,numpy as np,sys\n"
    "A=h5py.File(sys.argv[1],'r')['actions'][()]; T=h5py.File(sys.argv[2],'r'); seed=int(sys.argv[3])\n"
    "rng=np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))\n"
    "high=np.array([np.pi,1.0]); st=rng.uniform(low=-high,high=high)\n"
    "ob=lambda s: np.array([np.cos(s[0]),np.sin(s[0]),s[1]],dtype=np.float32)\n"
    "obs=[ob(st)]; rew=[]\n"
    "for a in A:\n"
    "    th,thd=st; u=np.clip(a,-2.0,2.0)[0]\n"
    "    cost=(((th+np.pi)%(2*np.pi))-np.pi)**2+.1*thd**2+.001*(u**2)\n"
    "    nthd=np.clip(thd+(3*10.0/(2*1.0)*np.sin(th)+3.0/(1.0*1.0**2)*u)*0.05,-8.0,8.0)\n"
    "    st=np.array([th+nthd*0.05,nthd]); obs.append(ob(st)); rew.append(-cost)\n"
    "obs=np.array(obs); rew=np.array(rew,dtype=np.float32)\n"
    "o=T['obs'][()]; r=T['reward'][()]; te=T['terminated'][()]; tr=T['truncated'][()]\n"
    "g=T.attrs['gym_id']; g=g.decode() if isinstance(g,bytes) else g\n"
    "print(' shape=%s dtype=%s rshape=%s flagdtype=%s,%s reset_equal=%d reset=%s want=%s obs_diff=%.3e rew_diff=%.3e'\n"
    "      ' finite=%d term=%d trunc=%d steps=%d seed=%d gym_id=%s ret_diff=%.3e' % (\n"
    "      'x'.join(map(str,o.shape)), o.dtype, 'x'.join(map(str,r.shape)), te.dtype, tr.dtype,\n"
    "      int(o.shape==(len(A)+1,3) and (o[0]==obs[0]).all()), ','.join('%.9g' % v for v in o[0]),\n"
    "      ','.join('%.9g' % v for v in obs[0]), np.abs(o-obs).max() if o.shape==obs.shape else 1e9,\n"
    "      np.abs(r-rew).max() if r.shape==rew.shape else 1e9, int(np.isfinite(r).all()), int(te.sum()),\n"
    "      int(tr.sum()), int(T.attrs['steps']), int(T.attrs['seed']), g,\n"
    "      abs(float(T.attrs['episode_return'])-float(np.sum(rew.astype(np.float64))))))\n"
    "C=h5py.File(sys.argv[4],'r'); co=C['obs'][()]\n"
    "rng=np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))\n"
    "cw=np.array(rng.uniform(low=-0.05,high=0.05,size=(4,)),dtype=np.float32)\n"
    "print(' cart_shape=%s cart_reset_equal=%d cart_rewards=%s' % ('x'.join(map(str,co.shape)),\n"
    "      int((co[0]==cw).all()), ','.join('%g' % v for v in C['reward'][()])))\n";

/* A checkpoint of the discrete variant on CartPole-v1 as " key=value"
 * tokens: shapes, the action choices stored, the actor's logits head and the
 * critics' per-action output, terminations and truncations, and whether s'
 * of row i is s of row i+1 wherever no episode ended. */
static const char *const PY_DISCRETE_CKPT =
    "import h5py,numpy as np,sys\n"
    "f=h5py.File(sys.argv[1],'r'); r=f['replay']; o=r['observations'][()]; no=r['next_observations'][()]\n"
    "act=r['actions'][()]; dn=r['dones'][()]; to=r['timeouts'][()]\n"
    "n=len(o) if int(r['full'][()]) else int(r['pos'][()])\n"
    "ends=[i for i in range(n) if dn[i] or to[i]]\n"
    "chain=max([float(np.abs(no[i]-o[i+1]).max()) for i in range(n-1) if i not in ends] or [0.0])\n"
    "print(' obs=%s act=%s choices=%s logits=%s q_out=%s timeouts=%d chain=%g dones=%d' % (\n"
    "      'x'.join(map(str,o.shape)), 'x'.join(map(str,act.shape)), ','.join('%g' % v for v in np.unique(act[:n])),\n"
    "      'x'.join(map(str,f['model/actor/logits.weight'].shape)), 'x'.join(map(str,f['model/q1/net.4.weight'].shape)),\n"
    "      int(to[:n].sum()), chain, int(dn[:n].sum())))\n";

/* ------------------------------------------------------------------------ */
/* Checks shared by the tests                                                */
/* ------------------------------------------------------------------------ */

/* Two checkpoints hold the same state, bit for bit (h5diff exits 0 when
 * identical, 1 when different). */
static void assert_same_state(cu_sandbox *sb, const char *a, const char *b) {
    const char *const groups[] = {"/model", "/optim", "/rng", "/replay", "/algo", NULL};
    cu_assert_h5_same(sb, a, b, groups);
}

/* The checkpoint summary of PY_SAC_CKPT (caller frees). */
static char *ckpt_summary(cu_sandbox *sb, const char *path) {
    cu_proc c = cu_py(sb, PY_SAC_CKPT, path, NULL);
    cr_assert_eq(c.code, 0, "h5py summary of %s: %s", path, c.err);
    free(c.err);
    return c.out;
}

/* The console line "last K episodes: mean return R (E episodes, U updates)"
 * into buf ("" if absent). */
static void final_line(const char *out, char *buf, size_t cap) {
    buf[0] = '\0';
    for (const char *p = strstr(out, "\nlast "); p; p = strstr(p + 1, "\nlast ")) {
        int len = (int)strcspn(p + 1, "\n");
        snprintf(buf, cap, "%.*s", len, p + 1);
        if (strstr(buf, " episodes: mean return ")) return;
        buf[0] = '\0';
    }
}

/* ------------------------------------------------------------------------ */
/* 1 + 2: train, metrics, checkpoint, eval, inspect; bit-exact resume        */
/* ------------------------------------------------------------------------ */

Test(cli_sac, train_eval_inspect_resume, .timeout = 600) {
    cu_sandbox sb;
    sb_open(&sb);
    char A[256], a_ckpt[512], name[64], path[512], last_a[256], last_b[256];
    cu_sb_path(&sb, A, sizeof A, "A");

    /* A: straight to the end */
    cu_proc t = cu_train(&sb, &TINY, A, NULL);
    cr_assert_eq(t.code, 0, "[%s] rlt train exit %d\nstdout: %s\nstderr: %s", sb.dir, t.code, t.out, t.err);
    cr_assert(strstr(t.out, "plan: 300 vector steps of 1 Pendulum-v1 env(s), learning from env step 50, "
                            "target entropy -1.000"),
              "plan line:\n%s", t.out);
    cr_assert(strstr(t.out, "step  300/300 | return "), "no log line for the last step:\n%s", t.out);
    final_line(t.out, last_a, sizeof last_a);
    cr_assert(strstr(last_a, "last 1 episodes: mean return -") && strstr(last_a, "(1 episodes, 250 updates)"),
              "final line '%s':\n%s", last_a, t.out);
    double final_return = strtod(strstr(last_a, "mean return ") + strlen("mean return "), NULL);
    cr_assert(final_return >= 200 * PENDULUM_MIN_REWARD && final_return < 0, "episode return %g", final_return);

    /* metrics.jsonl: a line every 50 steps; the return once the first
     * episode ended (200 steps, the time limit); losses once updates ran
     * (the first at env step 51) */
    cu_proc m = cu_py(&sb, PY_SAC_METRICS, cu_sb_path(&sb, path, sizeof path, "A/metrics.jsonl"), NULL);
    cr_assert_eq(m.code, 0, "metrics.jsonl check failed: %s", m.err);
    const char *line = m.out;
    double alpha_300 = NAN;
    for (int i = 0; i < TINY_LINES; i++) {
        long long step = 0;
        double ret, len, qf, alpha, episodes;
        cr_assert_eq(sscanf(line, "%lld %lf %lf %lf %lf %lf", &step, &ret, &len, &qf, &alpha, &episodes), 6,
                     "metrics summary line %d: %s", i + 1, m.out);
        cr_assert_eq(step, 50LL * (i + 1), "metrics line %d has step %lld", i + 1, step);
        if (step < 200) {
            cr_assert(isnan(ret) && episodes == 0, "step %lld: a return (%g) before the first episode ended", step, ret);
        } else {
            cr_assert(ret == final_return || fabs(ret - final_return) < 0.05,
                      "step %lld: charts/episodic_return %g, console says %g", step, ret, final_return);
            cr_assert(len == 200 && episodes == 1, "step %lld: episode length %g, episodes %g", step, len, episodes);
        }
        if (step == 50) {
            cr_assert(isnan(qf) && isnan(alpha), "step 50: losses before any update (qf %g, alpha %g)", qf, alpha);
        } else {
            cr_assert(isfinite(qf) && qf >= 0, "step %lld: losses/qf_loss %g", step, qf);
            cr_assert(alpha > 0 && alpha < 1, "step %lld: losses/alpha %g (starts at 1 and falls)", step, alpha);
        }
        alpha_300 = alpha;
        line = strchr(line, '\n');
        cr_assert_not_null(line);
        line++;
    }
    cr_assert_eq(*line, '\0', "metrics.jsonl has more than %d lines:\n%s", TINY_LINES, m.out);
    cu_proc_free(&m);

    /* the checkpoint: latest, root attributes, a full replay buffer of the
     * 300 transitions (capacity min(buffer_size, total_steps) = 300), every
     * network, optimizer, log alpha, the generators and the env state */
    cu_read_latest(A, name, sizeof name);
    cr_assert_str_eq(name, "step_00000300.h5", "checkpoints/latest");
    ckpt_path(a_ckpt, sizeof a_ckpt, A, TINY_TOTAL);
    char *s = ckpt_summary(&sb, a_ckpt);
    cr_assert(strstr(s, " step=300 complete=1 algorithm=sac obs_shape=300x3 obs_dtype=float32 act_shape=300x1 "
                        "pos=0 full=1 missing=none "),
              "checkpoint %s: %s", a_ckpt, s);
    cr_assert_lt(kv(s, "unit"), 1e-6, "stored observations are not [cos, sin, thetadot]: %s", s);
    cr_assert_leq(kv(s, "speed"), 8.0, "|thetadot| beyond max_speed 8: %s", s);
    cr_assert_leq(kv(s, "act"), 1.0, "stored actions are not normalized to [-1, 1]: %s", s);
    cr_assert(kv(s, "rmin") >= PENDULUM_MIN_REWARD && kv(s, "rmax") <= 0, "rewards outside Pendulum's range: %s", s);
    cr_assert(strstr(s, " dones=0 timeouts=199 "), "want no termination and one truncation at row 199: %s", s);
    cr_assert_eq(kv(s, "chain"), 0.0, "s' of a transition differs from the next s (not across a reset): %s", s);
    cr_assert_eq(kv(s, "updates"), 250, "%s", s);
    cr_assert_gt(kv(s, "env_bytes"), 0, "%s", s);
    cr_assert_lt(fabs(exp(kv(s, "log_alpha")) - alpha_300), 1e-6 * alpha_300,
                 "exp(/algo/log_alpha) = %g, metrics losses/alpha = %g", exp(kv(s, "log_alpha")), alpha_300);
    free(s);

    /* eval RUN_DIR: 10 deterministic episodes of 200 steps; the same twice */
    cu_proc e = cu_run(&sb, RLT_BIN, "eval", A, NULL);
    cr_assert_eq(e.code, 0, "rlt eval exit %d: %s", e.code, e.err);
    const char *ev = strstr(e.out, "(step 300): deterministic policy on Pendulum-v1, 10 episodes: return ");
    cr_assert_not_null(ev, "rlt eval:\n%s", e.out);
    double mean = NAN, sd = NAN;
    cr_assert_eq(sscanf(strstr(ev, "return "), "return %lf +- %lf", &mean, &sd), 2, "%s", e.out);
    cr_assert(mean >= 200 * PENDULUM_MIN_REWARD && mean < 0 && sd >= 0 && sd <= -200 * PENDULUM_MIN_REWARD,
              "eval return %g +- %g", mean, sd);
    cu_proc e2 = cu_run(&sb, RLT_BIN, "eval", A, NULL);
    cr_assert_eq(e2.code, 0);
    cr_assert_str_eq(e2.out, e.out, "rlt eval is not deterministic");
    cu_proc_free(&e2);
    e2 = cu_run(&sb, RLT_BIN, "eval", a_ckpt, "--set", "eval.episodes=3", NULL);
    cr_assert_eq(e2.code, 0, "rlt eval --set eval.episodes=3: exit %d: %s", e2.code, e2.err);
    cr_assert(strstr(e2.out, "Pendulum-v1, 3 episodes: return "), "%s", e2.out);
    cu_proc_free(&e2);
    cu_proc_free(&e);

    /* inspect: algorithm, step, the replay and model rows */
    cu_proc in = cu_run(&sb, RLT_BIN, "inspect", a_ckpt, NULL);
    cr_assert_eq(in.code, 0, "rlt inspect exit %d: %s", in.code, in.err);
    cr_assert(strstr(in.out, "format        rlt-checkpoint v1 (complete)") && strstr(in.out, "\nalgorithm     sac\n") &&
                  strstr(in.out, "\nstep          300 "),
              "rlt inspect:\n%s", in.out);
    const char *rows[][3] = {{"/replay/observations", "float32", "[300, 3]"},
                             {"/replay/actions", "float32", "[300, 1]"},
                             {"/replay/pos", "int64", "[]"},
                             {"/model/actor/body.0.weight", "float32", "[32, 3]"},
                             {"/model/q1_target/net.0.weight", "float32", "[32, 4]"},
                             {"/algo/log_alpha", "float32", "[1]"},
                             {"/rng/env", "uint8", "["}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char key[96], dtype[16], shape[32];
        snprintf(key, sizeof key, "\n  %s ", rows[i][0]);
        const char *row = strstr(in.out, key);
        cr_assert_not_null(row, "inspect lacks %s:\n%s", rows[i][0], in.out);
        row += strlen(key);
        cr_assert_eq(sscanf(row, " %15s", dtype), 1, "row %s", rows[i][0]);
        const char *sh = strchr(row, '[');
        cr_assert_not_null(sh, "row %s has no shape", rows[i][0]);
        snprintf(shape, sizeof shape, "%.*s", (int)strcspn(sh, "]") + 1, sh);
        cr_assert_str_eq(dtype, rows[i][1], "inspect %s dtype", rows[i][0]);
        cr_assert_eq(strncmp(shape, rows[i][2], strlen(rows[i][2])), 0, "inspect %s shape %s, want %s", rows[i][0],
                     shape, rows[i][2]);
    }
    cr_assert(strstr(in.out, "  | hidden = 32\n") && strstr(in.out, "  | total_steps = 300\n"),
              "inspect does not show the resolved config:\n%s", in.out);
    cu_proc_free(&in);
    cu_proc_free(&t);

    /* B: stop at 137 (inside learning, between log lines), resume to 300 */
    char B[256], b_stop[512], want[700];
    cu_sb_path(&sb, B, sizeof B, "B");
    cu_proc b = cu_train(&sb, &TINY, B, "--set", "run.stop_at=137", NULL);
    cr_assert_eq(b.code, 0, "[%s] run B (stop_at 137) exit %d: %s", sb.dir, b.code, b.err);
    snprintf(want, sizeof want, "stopped at step 137 of 300 (run.stop_at); continue with: rlt resume %s", B);
    cr_assert(strstr(b.out, want), "no '%s' in:\n%s", want, b.out);
    final_line(b.out, last_b, sizeof last_b);
    cr_assert_str_empty(last_b, "a stopped run reports its final return: %s", last_b);
    cu_read_latest(B, name, sizeof name);
    cr_assert_str_eq(name, "step_00000137.h5", "latest after stop_at 137");
    ckpt_path(b_stop, sizeof b_stop, B, 137);
    s = ckpt_summary(&sb, b_stop);
    cr_assert(strstr(s, " step=137 complete=1 algorithm=sac obs_shape=300x3 obs_dtype=float32 act_shape=300x1 "
                        "pos=137 full=0 missing=none "),
              "checkpoint %s: %s", b_stop, s);
    cr_assert(strstr(s, " dones=0 timeouts=none "), "%s", s);
    cr_assert_eq(kv(s, "updates"), 87, "137 steps from env step 51 on make 87 updates: %s", s);
    free(s);
    cu_proc_free(&b);

    cu_proc r = cu_run(&sb, RLT_BIN, "resume", B, NULL);
    cr_assert_eq(r.code, 0, "[%s] rlt resume %s exit %d: %s", sb.dir, B, r.code, r.err);
    snprintf(want, sizeof want, "resumed from %s at step 137", b_stop);
    cr_assert(strstr(r.out, want), "no '%s' in:\n%s", want, r.out);
    final_line(r.out, last_b, sizeof last_b);
    cr_assert_str_eq(last_b, last_a, "final line of the resumed run");
    cu_read_latest(B, name, sizeof name);
    cr_assert_str_eq(name, "step_00000300.h5", "latest after resume");
    cu_proc_free(&r);
    ckpt_path(path, sizeof path, B, TINY_TOTAL);
    assert_same_state(&sb, a_ckpt, path);
    cu_assert_metrics_equal(&sb, A, B, TINY_LINES);

    /* negative control: another seed gives other weights, transitions, metrics */
    char C[256];
    cu_sb_path(&sb, C, sizeof C, "C");
    cu_proc c = cu_train(&sb, &TINY, C, "--set", "run.seed=1", NULL);
    cr_assert_eq(c.code, 0, "run C exit %d: %s", c.code, c.err);
    cu_proc_free(&c);
    ckpt_path(path, sizeof path, C, TINY_TOTAL);
    const char *groups[] = {"/model", "/replay"};
    for (size_t i = 0; i < 2; i++) {
        cu_proc d = cu_run(&sb, CU_H5DIFF, "-q", a_ckpt, path, groups[i], groups[i], NULL);
        cr_assert_eq(d.code, 1, "h5diff of seeds 0 and 1 %s: exit %d (want 1 = different)", groups[i], d.code);
        cu_proc_free(&d);
    }
    cu_proc me = cu_metrics_compare(&sb, A, C);
    cr_assert_eq(me.code, 1, "metrics of seeds 0 and 1 compare equal: %s%s", me.out, me.err);
    cu_proc_free(&me);
    cu_rm_rf(sb.dir);
}

/* ------------------------------------------------------------------------ */
/* 3: SIGINT saves at the step reached, exits 130; resume ends like a        */
/*    straight run                                                           */
/* ------------------------------------------------------------------------ */

#define LONG_TOTAL 3000

Test(cli_sac, sigint_save_and_resume, .timeout = 600) {
    cu_sandbox sb;
    sb_open(&sb);
    char run_dir[256], out[256], err[256], name[64], want_name[64], want[700], path[512], ref[256], ref_ckpt[512];
    cu_sb_path(&sb, run_dir, sizeof run_dir, "int");
    cu_argvec a = {.n = 0};
    cu_av_train(&a, &TINY, run_dir);
    cu_av_add(&a, "--set");
    cu_av_add(&a, "sac.total_steps=3000");
    cu_sb_next_outputs(&sb, out, err, sizeof out);
    pid_t pid = cu_spawn_to(a.v, out, err);
    cu_wait_first_metrics(run_dir, pid, err);
    cr_assert_eq(kill(pid, SIGINT), 0, "kill -INT %d: %s", (int)pid, strerror(errno));
    int code = cu_wait_code(pid);
    char *o = cu_slurp(out, NULL), *e = cu_slurp(err, NULL);
    cr_assert(o && e);
    cr_assert_eq(code, 130, "[%s] SIGINT: exit %d, want 130\nstdout: %s\nstderr: %s", sb.dir, code, o, e);
    const char *p = strstr(o, "received SIGINT: stopped after step ");
    cr_assert_not_null(p, "no 'received SIGINT' line:\n%s", o);
    long long step = strtoll(p + strlen("received SIGINT: stopped after step "), NULL, 10);
    cr_assert(step >= 50 && step < LONG_TOTAL, "SIGINT: stopped after step %lld?\n%s", step, o);
    snprintf(want_name, sizeof want_name, "step_%08lld.h5", step);
    snprintf(want, sizeof want, "saved %s/checkpoints/%s", run_dir, want_name);
    cr_assert(strstr(o, want), "no '%s' after SIGINT:\n%s", want, o);
    cu_read_latest(run_dir, name, sizeof name);
    cr_assert_str_eq(name, want_name, "latest after SIGINT");
    ckpt_path(path, sizeof path, run_dir, step);
    char *s = ckpt_summary(&sb, path);
    char tok[64];
    snprintf(tok, sizeof tok, " step=%lld complete=1 algorithm=sac obs_shape=3000x3 ", step);
    cr_assert(strstr(s, tok), "checkpoint after SIGINT: %s (want%s)", s, tok);
    cr_assert_eq(kv(s, "pos"), (double)step, "replay pos after SIGINT at step %lld: %s", step, s);
    cr_assert_eq(kv(s, "full"), 0.0, "%s", s);
    cr_assert_eq(kv(s, "updates"), (double)(step > 50 ? step - 50 : 0), "updates after SIGINT: %s", s);
    free(s);
    free(o);
    free(e);

    /* resume finishes; one metrics history, equal to an uninterrupted run */
    cu_proc r = cu_run(&sb, RLT_BIN, "resume", run_dir, NULL);
    cr_assert_eq(r.code, 0, "[%s] resume after SIGINT: exit %d\n%s", sb.dir, r.code, r.err);
    snprintf(want, sizeof want, "resumed from %s at step %lld", path, step);
    cr_assert(strstr(r.out, want), "no '%s' in:\n%s", want, r.out);
    cu_read_latest(run_dir, name, sizeof name);
    cr_assert_str_eq(name, "step_00003000.h5", "latest after resume");
    cu_proc_free(&r);
    char *log = cu_slurp(cu_sb_path(&sb, path, sizeof path, "int/train.log"), NULL);
    cr_assert(log && strstr(log, "received SIGINT: stopped after step") && strstr(log, "resumed from "),
              "train.log does not hold both processes");
    free(log);

    cu_sb_path(&sb, ref, sizeof ref, "straight");
    cu_proc st = cu_train(&sb, &TINY, ref, "--set", "sac.total_steps=3000", NULL);
    cr_assert_eq(st.code, 0, "straight run exit %d: %s", st.code, st.err);
    cu_proc_free(&st);
    ckpt_path(ref_ckpt, sizeof ref_ckpt, ref, LONG_TOTAL);
    ckpt_path(path, sizeof path, run_dir, LONG_TOTAL);
    assert_same_state(&sb, ref_ckpt, path);
    cu_assert_metrics_equal(&sb, ref, run_dir, LONG_TOTAL / 50);
    cu_rm_rf(sb.dir);
}

/* ------------------------------------------------------------------------ */
/* 4 + 5: rlt envs, rlt env replay, loader errors, SAC env config errors     */
/* ------------------------------------------------------------------------ */

/* The block of `rlt envs` output for plugin `name` (from its header line to
 * the blank line after it) into buf; "" if absent. */
static const char *envs_block(const char *out, const char *name, char *buf, size_t cap) {
    char head[64];
    snprintf(head, sizeof head, "\n%s ", name);
    const char *p = strstr(out, head);
    buf[0] = '\0';
    if (!p) return buf;
    p++;
    const char *end = strstr(p, "\n\n");
    size_t n = end ? (size_t)(end - p) : strlen(p);
    snprintf(buf, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
    return buf;
}

/* rlt train RECIPE --run-dir DIR --set SET: exit 2 with every needle in
 * stderr. Returns whether the run directory was created. */
static int expect_train_error(cu_sandbox *sb, const char *set, const char *const *needles) {
    char run_dir[256];
    snprintf(run_dir, sizeof run_dir, "%s/never-%d", sb->dir, sb->calls);
    cu_proc p = cu_run(sb, RLT_BIN, "train", RECIPE, "--run-dir", run_dir, "--set", set, NULL);
    cr_assert_eq(p.code, 2, "--set %s: exit %d, want 2\nstdout: %s\nstderr: %s", set, p.code, p.out, p.err);
    for (int i = 0; needles[i]; i++)
        cr_assert(strstr(p.err, needles[i]), "--set %s: stderr lacks \"%s\":\n%s", set, needles[i], p.err);
    cu_proc_free(&p);
    return cu_file_exists(run_dir);
}

#define LIST(...) ((const char *const[]){__VA_ARGS__, NULL})

Test(cli_sac, env_commands_and_errors, .timeout = 300) {
    cu_sandbox sb;
    sb_open(&sb);
    char block[1024], fake_dir[256], fake_so[300], acts[300], cart[300], cart_bad[300], wide[300], traj[300],
        ctraj[300], never[300], word[64];

    /* rlt envs: the four built-ins with their gym ids, time limits, spaces */
    cu_proc l = cu_run(&sb, RLT_BIN, "envs", NULL);
    cr_assert_eq(l.code, 0, "rlt envs exit %d: %s", l.code, l.err);
    cr_assert(strstr(l.out, "search path (first match wins): " PLUGIN_DIR "\n"), "%s", l.out);
    const char *envs[][4] = {
        {"pendulum", "Pendulum-v1", "max_episode_steps 200 ", "actions:      Box(1) low=[-2] high=[2]"},
        {"cartpole", "CartPole-v1", "max_episode_steps 500 ", "actions:      Discrete(2)"},
        {"mountain_car_continuous", "MountainCarContinuous-v0", "max_episode_steps 999 ",
         "actions:      Box(1) low=[-1] high=[1]"},
        {"acrobot", "Acrobot-v1", "max_episode_steps 500 ", "actions:      Discrete(3)"},
    };
    for (size_t i = 0; i < sizeof envs / sizeof envs[0]; i++) {
        envs_block(l.out, envs[i][0], block, sizeof block);
        cr_assert(block[0], "rlt envs does not list %s:\n%s", envs[i][0], l.out);
        const char *id = block + strlen(envs[i][0]);
        while (*id == ' ') id++;
        snprintf(word, sizeof word, "%.*s", (int)strcspn(id, " "), id);
        cr_assert_str_eq(word, envs[i][1], "gym id of %s", envs[i][0]);
        for (int k = 2; k < 4; k++) cr_assert(strstr(block, envs[i][k]), "%s block lacks '%s':\n%s", envs[i][0], envs[i][k], block);
        char file[300];
        snprintf(file, sizeof file, "file:         %s/%s.so", PLUGIN_DIR, envs[i][0]);
        cr_assert(strstr(block, file), "%s block lacks '%s':\n%s", envs[i][0], file, block);
    }
    envs_block(l.out, "pendulum", block, sizeof block);
    cr_assert(strstr(block, "observations: Box(3) low=[-1, -1, -8] high=[1, 1, 8]"), "%s", block);
    cr_assert(strstr(l.out, "\n8 plugins (4 control environments, 4 text tasks), 0 broken\n"), "%s", l.out);
    cu_proc_free(&l);

    /* a text file named fake.so in an --env-path folder: listed as broken
     * with the reason, and a clear error when opened by name */
    cu_sb_path(&sb, fake_dir, sizeof fake_dir, "plugins");
    cr_assert_eq(mkdir(fake_dir, 0755), 0);
    snprintf(fake_so, sizeof fake_so, "%s/fake.so", fake_dir);
    cr_assert_eq(cu_write_text(fake_so, "this text file is not a shared object\n"), 0);
    l = cu_run(&sb, RLT_BIN, "envs", "--env-path", fake_dir, NULL);
    cr_assert_eq(l.code, 0, "rlt envs --env-path %s: exit %d: %s", fake_dir, l.code, l.err);
    envs_block(l.out, "fake", block, sizeof block);
    cr_assert(strstr(block, "BROKEN: ") && strstr(block, fake_so) && strstr(block, "dlopen failed"),
              "rlt envs --env-path: fake.so is not listed as broken:\n%s", l.out);
    cr_assert(strstr(l.out, "\n8 plugins (4 control environments, 4 text tasks), 1 broken\n"), "%s", l.out);
    cu_proc_free(&l);

    cu_proc w = cu_py(&sb, PY_ACTIONS, sb.dir, NULL);
    cr_assert_eq(w.code, 0, "writing the actions files: %s", w.err);
    cu_proc_free(&w);
    cu_sb_path(&sb, acts, sizeof acts, "pendulum.h5");
    cu_sb_path(&sb, cart, sizeof cart, "cart.h5");
    cu_sb_path(&sb, cart_bad, sizeof cart_bad, "cart_bad.h5");
    cu_sb_path(&sb, wide, sizeof wide, "wide.h5");
    cu_sb_path(&sb, traj, sizeof traj, "T.h5");
    cu_sb_path(&sb, ctraj, sizeof ctraj, "Tc.h5");
    cu_sb_path(&sb, never, sizeof never, "never.h5");

    /* replay: Gymnasium's reset for seed 42 and its dynamics */
    cu_proc rp = cu_run(&sb, RLT_BIN, "env", "replay", "pendulum", "--seed", "42", "--actions", acts, "--out", traj, NULL);
    cr_assert_eq(rp.code, 0, "rlt env replay pendulum exit %d: %s", rp.code, rp.err);
    cr_assert(strstr(rp.out, "pendulum (Pendulum-v1) seed 42: 5 of 5 actions, return "), "%s", rp.out);
    cu_proc_free(&rp);
    rp = cu_run(&sb, RLT_BIN, "env", "replay", "cartpole", "--seed", "42", "--actions", cart, "--out", ctraj, NULL);
    cr_assert_eq(rp.code, 0, "rlt env replay cartpole exit %d: %s", rp.code, rp.err);
    cu_proc_free(&rp);
    cu_proc orc = cu_py(&sb, PY_REPLAY_ORACLE, acts, traj, "42", ctraj, NULL);
    cr_assert_eq(orc.code, 0, "replay oracle: %s", orc.err);
    const char *s = orc.out;
    cr_assert(strstr(s, " shape=6x3 dtype=float32 rshape=5 flagdtype=bool,bool "), "trajectory: %s", s);
    cr_assert_eq(kv(s, "reset_equal"), 1, "obs[0] = %s differs from Gymnasium's reset for seed 42 = %s",
                 kv_word(s, "reset", block, sizeof block), kv_word(s, "want", word, sizeof word));
    cr_assert_leq(kv(s, "obs_diff"), 1e-6, "observations differ from Gymnasium's step: %s", s);
    cr_assert_leq(kv(s, "rew_diff"), 1e-6, "rewards differ from Gymnasium's step: %s", s);
    cr_assert_leq(kv(s, "ret_diff"), 1e-5, "episode_return attribute: %s", s);
    cr_assert(strstr(s, " finite=1 term=0 trunc=0 steps=5 seed=42 gym_id=Pendulum-v1 "), "%s", s);
    cr_assert(strstr(s, " cart_shape=4x4 cart_reset_equal=1 cart_rewards=1,1,1"), "cartpole replay: %s", s);
    cu_proc_free(&orc);

    /* replay errors: exit 2, the reason, no output file */
    struct {
        const char *name, *actions, *env_path;
        const char *needles[4];
    } errs[] = {
        {"nosuch", acts, fake_dir, {"environment plugin 'nosuch' not found", "nosuch.so", fake_dir, PLUGIN_DIR}},
        {"fake", acts, fake_dir, {fake_so, "dlopen failed", NULL}},
        {"cartpole", acts, NULL, {"pendulum.h5", "/actions is float32", "Discrete action space needs integers", NULL}},
        {"cartpole", cart_bad, NULL, {"cart_bad.h5", "/actions[1] = 2", "outside Discrete(2)", NULL}},
        {"pendulum", wide, NULL, {"wide.h5", "[4, 2]", "[N, 1]", NULL}},
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        cu_argvec a = {.n = 0};
        cu_av_add(&a, RLT_BIN);
        cu_av_add(&a, "env");
        cu_av_add(&a, "replay");
        cu_av_add(&a, errs[i].name);
        cu_av_add(&a, "--actions");
        cu_av_add(&a, errs[i].actions);
        cu_av_add(&a, "--out");
        cu_av_add(&a, never);
        if (errs[i].env_path) {
            cu_av_add(&a, "--env-path");
            cu_av_add(&a, errs[i].env_path);
        }
        cu_proc p = cu_run_argv(&sb, a.v);
        cr_assert_eq(p.code, 2, "replay error case %zu (%s): exit %d\n%s%s", i, errs[i].name, p.code, p.out, p.err);
        for (int k = 0; k < 4 && errs[i].needles[k]; k++)
            cr_assert(strstr(p.err, errs[i].needles[k]), "replay error case %zu: stderr lacks \"%s\":\n%s", i,
                      errs[i].needles[k], p.err);
        cr_assert_not(cu_file_exists(never), "replay error case %zu wrote %s", i, never);
        cu_proc_free(&p);
    }
    /* the loader's reason for the text file is the dynamic linker's */
    cu_proc fk = cu_run(&sb, RLT_BIN, "env", "replay", "fake", "--env-path", fake_dir, "--actions", acts, "--out", never, NULL);
    cr_assert(strstr(fk.err, "file too short") || strstr(fk.err, "invalid ELF header"), "no reason: %s", fk.err);
    cu_proc_free(&fk);

    /* the SAC loop's env errors: an unknown plugin, a config key the plugin
     * does not know */
    int made_nosuch = expect_train_error(&sb, "env.name=nosuch",
                                         LIST("env.name = 'nosuch'", "environment plugin 'nosuch' not found",
                                              "no nosuch.so in " PLUGIN_DIR));
    int made_config = expect_train_error(&sb, "env.config=bogus=1",
                                         LIST("env pendulum", "config key 'bogus' is unknown", "max_episode_steps"));

    /* a Discrete env runs the discrete variant: tiny CartPole-v1 job */
    char cp_dir[256], cp_ckpt[512];
    cu_sb_path(&sb, cp_dir, sizeof cp_dir, "cartpole");
    cu_proc cp = cu_train(&sb, &TINY, cp_dir, "--set", "env.name=cartpole", NULL);
    cr_assert_eq(cp.code, 0, "[%s] SAC on cartpole: exit %d\n%s", sb.dir, cp.code, cp.err);
    cr_assert(strstr(cp.out, "plan: 300 vector steps of 1 CartPole-v1 env(s), learning from env step 50, "
                             "target entropy 0.617"),
              "plan line (target entropy 0.89 log 2):\n%s", cp.out);
    cr_assert(strstr(cp.out, "episodes, 250 updates)"), "%s", cp.out);
    cu_proc_free(&cp);
    ckpt_path(cp_ckpt, sizeof cp_ckpt, cp_dir, TINY_TOTAL);
    cu_proc dc = cu_py(&sb, PY_DISCRETE_CKPT, cp_ckpt, NULL);
    cr_assert_eq(dc.code, 0, "h5py summary of %s: %s", cp_ckpt, dc.err);
    cr_assert(strstr(dc.out, " obs=300x4 act=300x1 choices=0,1 logits=2x32 q_out=2x32 timeouts=0 chain=0 "),
              "discrete checkpoint %s: %s", cp_ckpt, dc.out);
    cr_assert_geq(kv(dc.out, "dones"), 1, "300 CartPole steps with a random start hold a termination: %s", dc.out);
    cu_proc_free(&dc);
    cu_proc ce = cu_run(&sb, RLT_BIN, "eval", cp_dir, NULL);
    cr_assert_eq(ce.code, 0, "rlt eval of the cartpole run: exit %d: %s", ce.code, ce.err);
    double cmean = NAN, csd = NAN;
    const char *cr = strstr(ce.out, "deterministic policy on CartPole-v1, 10 episodes: return ");
    cr_assert(cr && sscanf(strstr(cr, "return "), "return %lf +- %lf", &cmean, &csd) == 2, "%s", ce.out);
    cr_assert(cmean >= 8 && cmean <= 500 && csd >= 0, "CartPole eval return %g +- %g", cmean, csd);
    cu_proc_free(&ce);

    /* KNOWN BUG (reported): unlike the schema's config errors, these are
     * found after the run directory is created (config.ini, train.log and
     * an empty checkpoints/ stay behind). Last, and non-fatal. */
    cr_expect_not(made_nosuch, "BUG: --set env.name=nosuch (exit 2) created the run directory");
    cr_expect_not(made_config, "BUG: --set env.config=bogus=1 (exit 2) created the run directory");
    cu_rm_rf(sb.dir);
}
