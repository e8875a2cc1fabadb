/*
 * test_envs.c -- the classic-control plugins of envs/ (pendulum, cartpole,
 * mountain_car_continuous, acrobot), loaded with dlopen from the build's
 * plugin folder (RLT_ENV_PLUGIN_DIR) exactly as a host would, and the
 * numpy SeedSequence + PCG64 port in envs/np_rng.h.
 *
 * Reference values:
 *   - RNG and reset states: numpy 1.24.2 (/usr/bin/python3); each block
 *     names the command that printed it. Resets are compared bit for bit.
 *   - Step trajectories: specs/sac_envs.md §3.5 (to |Δ| <= 1e-9, float32
 *     states exactly) and tests/envs/gym_oracle.py, a line-by-line
 *     transcription of Gymnasium's step code run under numpy 1.24 with
 *     libm's sin/cos (bit for bit; numpy's AVX-512 sin/cos differ from
 *     libm in the last bit, which a long trajectory can amplify).
 * Also: time-limit truncation at the registered limit, termination, NaN and
 * out-of-range actions, error paths, state round-trip (bit-exact, RNG
 * included) and step_range on disjoint ranges, in one thread and in two.
 *
 * The state buffer layout is known here on purpose (white-box): 7 uint64
 * (tag, phase, elapsed, PCG64 state and increment) then the physics doubles.
 */
#define _POSIX_C_SOURCE 200809L

#include <criterion/criterion.h>
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "np_rng.h"

#define MAXN 8
#define MAXOBS 8
#define HDR_WORDS 7
#define PHASE_RUNNING 1

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

/* dlopen NAME.so from the plugin folder and return its vtable. */
static const env_plugin *load(const char *name, void **dl)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.so", RLT_ENV_PLUGIN_DIR, name);
    *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    cr_assert(*dl != NULL, "dlopen %s: %s", path, dlerror());
    void *sym = dlsym(*dl, ENV_PLUGIN_SYMBOL);
    cr_assert(sym != NULL, "%s: no symbol %s", path, ENV_PLUGIN_SYMBOL);
    env_plugin_get_fn get;
    memcpy(&get, &sym, sizeof get);
    cr_assert_null(get(ENV_ABI_MAJOR + 1), "%s accepts a foreign ABI major", name);
    const env_plugin *p = get(ENV_ABI_MAJOR);
    cr_assert_not_null(p);
    cr_assert_eq(p->abi_major, ENV_ABI_MAJOR);
    cr_assert_eq(p->struct_size, sizeof(env_plugin));
    cr_assert_str_eq(p->name, name);
    return p;
}

static env_batch *make(const env_plugin *p, const char *config, uint32_t n)
{
    env_batch *b = NULL;
    char err[256];
    int rc = p->create(config, n, &b, err, sizeof err);
    cr_assert_eq(rc, ENV_OK, "%s create(\"%s\"): %s", p->name, config ? config : "", err);
    return b;
}

/* Physics part of environment i's state (up to 4 doubles). */
static void get_phys(const env_plugin *p, env_batch *b, uint32_t i, double *s, int dim)
{
    unsigned char buf[256];
    cr_assert_eq(p->state_size(b), HDR_WORDS * 8 + (size_t)dim * 8);
    cr_assert_eq(p->get_state(b, i, buf), ENV_OK);
    memcpy(s, buf + HDR_WORDS * 8, (size_t)dim * sizeof(double));
}

/* Overwrite environment i's physics, leaving it running with elapsed 0. */
static void set_phys(const env_plugin *p, env_batch *b, uint32_t i, const double *s, int dim)
{
    unsigned char buf[256];
    uint64_t hdr[HDR_WORDS];
    cr_assert_eq(p->get_state(b, i, buf), ENV_OK);
    memcpy(hdr, buf, sizeof hdr);
    hdr[1] = PHASE_RUNNING;
    hdr[2] = 0;
    memcpy(buf, hdr, sizeof hdr);
    memcpy(buf + HDR_WORDS * 8, s, (size_t)dim * sizeof(double));
    cr_assert_eq(p->set_state(b, i, buf), ENV_OK, "%s", p->last_error(b));
}

/* Step environment 0 of a one-env batch with a float or int action. */
typedef struct step_out {
    float obs[MAXOBS];
    float reward;
    uint8_t term, trunc;
} step_out;

static step_out step_f(const env_plugin *p, env_batch *b, float a)
{
    step_out o;
    int rc = p->step_range(b, 0, 1, &a, o.obs, &o.reward, &o.term, &o.trunc);
    cr_assert_eq(rc, ENV_OK, "%s step: %s", p->name, p->last_error(b));
    return o;
}

static step_out step_i(const env_plugin *p, env_batch *b, int32_t a)
{
    step_out o;
    int rc = p->step_range(b, 0, 1, &a, o.obs, &o.reward, &o.term, &o.trunc);
    cr_assert_eq(rc, ENV_OK, "%s step: %s", p->name, p->last_error(b));
    return o;
}

static void reset_seed(const env_plugin *p, env_batch *b, uint64_t seed, float *obs)
{
    cr_assert_eq(p->reset(b, NULL, &seed, obs), ENV_OK, "%s", p->last_error(b));
}

static void assert_near(double got, double want, double tol, const char *what, int k)
{
    cr_assert(fabs(got - want) <= tol, "%s[%d]: got %.17g want %.17g (tol %g)", what, k, got, want,
              tol);
}

/* ------------------------------------------------------------------------ */
/* Generic checks: state round-trip and step_range partitions               */
/* ------------------------------------------------------------------------ */

/* A deterministic action stream (a local LCG, no global rand()). */
static void fill_actions(const env_info *inf, const env_space *as, uint32_t n, uint64_t *lcg,
                         void *actions)
{
    for (uint32_t i = 0; i < n * inf->act_dim; i++) {
        *lcg = *lcg * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t r = (uint32_t)(*lcg >> 33);
        if (as->kind == ENV_SPACE_DISCRETE)
            ((int32_t *)actions)[i] = (int32_t)(r % (uint32_t)as->n);
        else
            ((float *)actions)[i] = (float)(as->low[0] + (as->high[0] - as->low[0]) * (r / 2147483648.0));
    }
}

typedef struct range_job {
    const env_plugin *p;
    env_batch *b;
    uint32_t begin, count;
    const void *actions;
    float *obs, *reward;
    uint8_t *term, *trunc;
    int rc;
} range_job;

static void *run_range(void *arg)
{
    range_job *j = arg;
    j->rc = j->p->step_range(j->b, j->begin, j->count, j->actions, j->obs, j->reward, j->term,
                             j->trunc);
    return NULL;
}

/* Drive b for `steps` steps with host-style same-step autoreset (seeds NULL,
 * so the RNG streams continue) and append every output to rec. mode 0: one
 * call for the batch; 1: three disjoint calls (one empty); 2: two threads. */
static size_t drive(const env_plugin *p, env_batch *b, uint32_t n, int steps, int mode,
                    uint64_t lcg, float *rec)
{
    env_info inf;
    env_space as;
    cr_assert_eq(p->info(b, &inf), ENV_OK);
    cr_assert_eq(p->act_space(b, &as), ENV_OK);
    float obs[MAXN * MAXOBS], reward[MAXN];
    uint8_t term[MAXN], trunc[MAXN], mask[MAXN];
    union { float f[MAXN]; int32_t i[MAXN]; } act;
    size_t len = 0;
    for (int t = 0; t < steps; t++) {
        fill_actions(&inf, &as, n, &lcg, &act);
        if (mode == 0) {
            cr_assert_eq(p->step_range(b, 0, n, &act, obs, reward, term, trunc), ENV_OK, "%s",
                         p->last_error(b));
        } else if (mode == 1) {
            uint32_t cut1 = n / 3, cut2 = n / 3; /* [0,cut1) [cut1,cut1) [cut2,n) */
            cr_assert_eq(p->step_range(b, 0, cut1, &act, obs, reward, term, trunc), ENV_OK);
            cr_assert_eq(p->step_range(b, cut1, 0, &act, obs, reward, term, trunc), ENV_OK);
            cr_assert_eq(p->step_range(b, cut2, n - cut2, &act, obs, reward, term, trunc), ENV_OK);
        } else {
            range_job j[2] = {{p, b, 0, n / 2, &act, obs, reward, term, trunc, -99},
                              {p, b, n / 2, n - n / 2, &act, obs, reward, term, trunc, -99}};
            pthread_t th[2];
            for (int k = 0; k < 2; k++)
                cr_assert_eq(pthread_create(&th[k], NULL, run_range, &j[k]), 0);
            for (int k = 0; k < 2; k++) {
                pthread_join(th[k], NULL);
                cr_assert_eq(j[k].rc, ENV_OK);
            }
        }
        int any = 0;
        for (uint32_t i = 0; i < n; i++) {
            rec[len++] = reward[i];
            rec[len++] = term[i];
            rec[len++] = trunc[i];
            mask[i] = term[i] | trunc[i];
            any |= mask[i];
        }
        memcpy(rec + len, obs, n * inf.obs_dim * sizeof(float));
        len += n * inf.obs_dim;
        if (any) {
            cr_assert_eq(p->reset(b, mask, NULL, obs), ENV_OK);
            memcpy(rec + len, obs, n * inf.obs_dim * sizeof(float));
            len += n * inf.obs_dim;
        }
    }
    return len;
}

/* The same outputs whether the batch is stepped at once, in disjoint ranges
 * or from two threads; and a state copied with get_state/set_state into a
 * fresh handle continues bit for bit (physics, elapsed and RNG stream). A
 * short time limit makes resets (seeds NULL) happen along the way. */
static void check_roundtrip_and_ranges(const env_plugin *p)
{
    enum { N = 5, STEPS = 60, REC = STEPS * N * (3 + 2 * MAXOBS) };
    const char *cfg = "max_episode_steps=17";
    static float rec_a[REC], rec_b[REC];
    uint64_t seeds[N] = {11, 12, 13, 14, 15};
    float obs[N * MAXOBS];
    size_t len_a = 0;
    for (int mode = 0; mode < 3; mode++) {
        env_batch *b = make(p, cfg, N);
        cr_assert_eq(p->reset(b, NULL, seeds, obs), ENV_OK);
        size_t len = drive(p, b, N, STEPS, mode, 99, mode == 0 ? rec_a : rec_b);
        if (mode == 0)
            len_a = len;
        else
            cr_assert(len == len_a && memcmp(rec_a, rec_b, len * sizeof(float)) == 0,
                      "%s: step_range mode %d differs from one call", p->name, mode);
        p->destroy(b);
    }

    env_batch *a = make(p, cfg, N), *c = make(p, cfg, N);
    cr_assert_eq(p->reset(a, NULL, seeds, obs), ENV_OK);
    drive(p, a, N, 23, 0, 7, rec_a); /* some way into the episodes, past a reset */
    size_t sz = p->state_size(a);
    unsigned char buf[256];
    cr_assert(sz <= sizeof buf);
    for (uint32_t i = 0; i < N; i++) {
        cr_assert_eq(p->get_state(a, i, buf), ENV_OK);
        cr_assert_eq(p->set_state(c, i, buf), ENV_OK, "%s", p->last_error(c));
    }
    size_t la = drive(p, a, N, 40, 0, 5, rec_a);
    size_t lc = drive(p, c, N, 40, 0, 5, rec_b);
    cr_assert(la == lc && memcmp(rec_a, rec_b, la * sizeof(float)) == 0,
              "%s: restored state does not continue bit for bit", p->name);
    p->destroy(a);
    p->destroy(c);
}

/* ------------------------------------------------------------------------ */
/* np_rng.h                                                                  */
/* ------------------------------------------------------------------------ */

Test(np_rng, numpy_check_values)
{
    nprng r;
    /* specs/sac_envs.md §3.0 (seed 0 state and increment as 128-bit decimals:
     * 35399562948360463058890781895381311971 = 0x1aa1b5345996452d09585eb7a69561e3,
     * 87136372517582989555478159403783844777 = 0x418ddadb3af71a82588133bc447873a9). */
    nprng_seed(&r, 0);
    cr_assert_eq(r.state_hi, 0x1aa1b5345996452dull);
    cr_assert_eq(r.state_lo, 0x09585eb7a69561e3ull);
    cr_assert_eq(r.inc_hi, 0x418ddadb3af71a82ull);
    cr_assert_eq(r.inc_lo, 0x588133bc447873a9ull);
    cr_assert_eq(nprng_next64(&r), 11749869230777074271ull);
    cr_assert_eq(nprng_next64(&r), 4976686463289251617ull);
    cr_assert_eq(nprng_next64(&r), 755828109848996024ull);
    nprng_seed(&r, 0);
    cr_assert_eq(nprng_double(&r), 0.6369616873214543);
    nprng_seed(&r, 42);
    cr_assert_eq(nprng_next64(&r), 14276969152011380360ull);
    nprng_seed(&r, 42);
    cr_assert_eq(nprng_double(&r), 0.7739560485559633);

    /* /usr/bin/python3 -c "import numpy as np; [print(s, list(map(int,
     *   np.random.PCG64(np.random.SeedSequence(s)).random_raw(3)))) for s in
     *   [1,123,2**32-1,2**32,2**40+5,2**64-1]]"   (seeds >= 2^32 use two words) */
    static const struct { uint64_t seed, raw[3]; } raw[] = {
        {1, {9441442522235856127ull, 17532960557476522086ull, 2659275481604167885ull}},
        {123, {12587170189557361101ull, 992822559630912803ull, 4064922177151560342ull}},
        {4294967295ull, {4647538520743280031ull, 4041050679407036418ull, 5299467714154781845ull}},
        {4294967296ull, {16412783775159424549ull, 10277383025879800780ull, 14774146505460541886ull}},
        {1099511627781ull, {87427594128977387ull, 6872972437549564694ull, 10832470946844950135ull}},
        {18446744073709551615ull,
         {12544278110101001871ull, 15593249672699323225ull, 136562751618339402ull}},
    };
    for (size_t k = 0; k < sizeof raw / sizeof raw[0]; k++) {
        nprng_seed(&r, raw[k].seed);
        for (int j = 0; j < 3; j++)
            cr_assert_eq(nprng_next64(&r), raw[k].raw[j], "seed %llu draw %d",
                         (unsigned long long)raw[k].seed, j);
    }

    /* /usr/bin/python3 -c "import numpy as np; print(list(map(int,
     *   np.random.SeedSequence(0).generate_state(8))), list(map(int,
     *   np.random.SeedSequence([1,2,3,4,5,6]).generate_state(8))))"
     * The second has more entropy words than the pool (the second mixing loop). */
    static const uint32_t ss0[8] = {2968811710u, 3677149159u, 745650761u,  2884920346u,
                                    2642120001u, 549907821u,  574372308u,  742431198u};
    static const uint32_t ss6[8] = {488360481u,  3956080669u, 2986500235u, 3488252836u,
                                    3841783222u, 2602687873u, 149055243u,  459133091u};
    uint32_t zero = 0, six[6] = {1, 2, 3, 4, 5, 6}, w[8];
    nprng_seedseq_generate(&zero, 1, w, 8);
    cr_assert_arr_eq(w, ss0, sizeof w);
    nprng_seedseq_generate(six, 6, w, 8);
    cr_assert_arr_eq(w, ss6, sizeof w);

    /* /usr/bin/python3 -c "import numpy as np; print(repr(np.random.Generator(
     *   np.random.PCG64(np.random.SeedSequence(7))).uniform(-3.0, 5.0, size=3).tolist()))" */
    static const double u7[3] = {2.0007637328373358, 4.177710407756604, 3.205485521961548};
    nprng_seed(&r, 7);
    for (int j = 0; j < 3; j++)
        cr_assert_eq(nprng_uniform(&r, -3.0, 5.0), u7[j], "uniform draw %d", j);
}

/* ------------------------------------------------------------------------ */
/* ABI surface and error paths, all four plugins                            */
/* ------------------------------------------------------------------------ */

Test(envs, abi_info_spaces_and_errors)
{
    static const struct {
        const char *name, *gym_id;
        uint32_t obs_dim, state_dim, kind;
        int64_t n_actions;
        int32_t max_steps;
        double obs_low0, obs_high0, act_high0;
    } want[] = {
        {"pendulum", "Pendulum-v1", 3, 2, ENV_SPACE_BOX, 0, 200, -1.0, 1.0, 2.0},
        {"cartpole", "CartPole-v1", 4, 4, ENV_SPACE_DISCRETE, 2, 500, (double)-4.8f, (double)4.8f, 0},
        {"mountain_car_continuous", "MountainCarContinuous-v0", 2, 2, ENV_SPACE_BOX, 0, 999,
         (double)-1.2f, (double)0.6f, 1.0},
        {"acrobot", "Acrobot-v1", 6, 4, ENV_SPACE_DISCRETE, 3, 500, -1.0, 1.0, 0},
    };
    void *dls[4];
    const env_plugin *ps[4];
    for (int k = 0; k < 4; k++)
        ps[k] = load(want[k].name, &dls[k]);
    for (int k = 0; k < 4; k++) {
        const env_plugin *p = ps[k];
        cr_assert(p->summary && p->version && p->summary[0] && p->version[0]);
        env_batch *b = make(p, NULL, 2);
        env_info inf;
        env_space os, as;
        cr_assert_eq(p->info(b, &inf), ENV_OK);
        cr_assert_eq(inf.obs_dim, want[k].obs_dim);
        cr_assert_eq(inf.act_dim, 1u);
        cr_assert_eq(inf.max_episode_steps, want[k].max_steps);
        cr_assert_eq(inf.flags, ENV_HAS_STATE | ENV_NUMPY_RNG);
        cr_assert_str_eq(inf.gym_id, want[k].gym_id);
        cr_assert_eq(p->obs_space(b, &os), ENV_OK);
        cr_assert_eq(os.kind, (uint32_t)ENV_SPACE_BOX);
        cr_assert_eq(os.dim, want[k].obs_dim);
        cr_assert_eq(os.high[0], want[k].obs_high0);
        cr_assert_eq(os.low[0], want[k].obs_low0);
        cr_assert_eq(p->act_space(b, &as), ENV_OK);
        cr_assert_eq(as.kind, want[k].kind);
        cr_assert_eq(as.n, want[k].n_actions);
        if (as.kind == ENV_SPACE_BOX) {
            cr_assert_eq(as.dim, 1u);
            cr_assert_eq(as.high[0], want[k].act_high0);
            cr_assert_eq(as.low[0], -want[k].act_high0);
        }
        cr_assert_eq(p->state_size(b), HDR_WORDS * 8 + want[k].state_dim * 8);
        cr_assert_eq(p->info(NULL, &inf), ENV_EINVAL);

        /* Config errors name the key; max_episode_steps changes the limit. */
        char err[256] = "";
        env_batch *bad = NULL;
        cr_assert_eq(p->create("max_episode_steps=7; bogus_key=1", 1, &bad, err, sizeof err),
                     ENV_EINVAL);
        cr_assert_null(bad);
        cr_assert(strstr(err, "bogus_key") && strstr(err, "unknown") && strstr(err, want[k].name),
                  "%s", err);
        cr_assert_eq(p->create("max_episode_steps=0", 1, &bad, err, sizeof err), ENV_EINVAL);
        cr_assert(strstr(err, "max_episode_steps"), "%s", err);
        cr_assert_eq(p->create("max_episode_steps=12x", 1, &bad, err, sizeof err), ENV_EINVAL);
        cr_assert_eq(p->create("seed=-1", 1, &bad, err, sizeof err), ENV_EINVAL);
        cr_assert(strstr(err, "seed"), "%s", err);
        cr_assert_eq(p->create("max_episode_steps", 1, &bad, err, sizeof err), ENV_EINVAL);
        cr_assert(strstr(err, "key=value"), "%s", err);
        cr_assert_eq(p->create(NULL, 0, &bad, err, sizeof err), ENV_EINVAL);
        cr_assert_eq(p->create(NULL, 1, &bad, NULL, 0), ENV_OK); /* err may be NULL */
        p->destroy(bad);
        env_batch *lim = make(p, " max_episode_steps = 7 ;; seed=3;", 1);
        cr_assert_eq(p->info(lim, &inf), ENV_OK);
        cr_assert_eq(inf.max_episode_steps, 7);
        p->destroy(lim);

        /* Stepping before any reset, bad ranges, NULL buffers. */
        float obs[2 * MAXOBS], rew[2];
        uint8_t te[2], tr[2];
        union { float f[2]; int32_t i[2]; } act = {{0}};
        cr_assert_eq(p->step_range(b, 0, 2, &act, obs, rew, te, tr), ENV_EINVAL);
        cr_assert(strstr(p->last_error(b), "never reset"), "%s", p->last_error(b));
        cr_assert_eq(p->reset(b, NULL, NULL, obs), ENV_OK);
        cr_assert_eq(p->step_range(b, 1, 2, &act, obs, rew, te, tr), ENV_ERANGE);
        cr_assert(strstr(p->last_error(b), "outside"), "%s", p->last_error(b));
        cr_assert_eq(p->step_range(b, 3, 0, &act, obs, rew, te, tr), ENV_ERANGE);
        cr_assert_eq(p->step_range(b, 0, 2, NULL, obs, rew, te, tr), ENV_EINVAL);
        cr_assert_eq(p->step_range(b, 0, 2, &act, obs, rew, te, NULL), ENV_EINVAL);
        cr_assert_eq(p->step_range(b, 0, 2, &act, obs, rew, te, tr), ENV_OK);
        cr_assert_eq(p->reset(b, NULL, NULL, NULL), ENV_EINVAL);
        cr_assert_eq(p->get_state(b, 2, obs), ENV_ERANGE);
        cr_assert_eq(p->set_state(b, 2, obs), ENV_ERANGE);

        /* A state buffer from another plugin, or with a non-finite value. */
        unsigned char buf[256];
        env_batch *other = make(ps[k == 0 ? 1 : 0], NULL, 1);
        cr_assert_eq(ps[k == 0 ? 1 : 0]->get_state(other, 0, buf), ENV_OK);
        cr_assert_eq(p->set_state(b, 0, buf), ENV_ESTATE);
        cr_assert(strstr(p->last_error(b), "tag"), "%s", p->last_error(b));
        ps[k == 0 ? 1 : 0]->destroy(other);
        cr_assert_eq(p->get_state(b, 1, buf), ENV_OK);
        double nan = NAN;
        memcpy(buf + HDR_WORDS * 8, &nan, sizeof nan);
        cr_assert_eq(p->set_state(b, 1, buf), ENV_ESTATE);
        cr_assert(strstr(p->last_error(b), "finite"), "%s", p->last_error(b));

        p->destroy(b);
        p->destroy(NULL);
        cr_assert(p->last_error(NULL) != NULL);
    }
    for (int k = 0; k < 4; k++)
        dlclose(dls[k]);
}

/* ------------------------------------------------------------------------ */
/* Pendulum-v1                                                               */
/* ------------------------------------------------------------------------ */

Test(pendulum, reset_steps_limits_nan)
{
    void *dl;
    const env_plugin *p = load("pendulum", &dl);
    env_batch *b = make(p, NULL, 1);
    float obs[3];
    double s[2];

    /* Gymnasium reset = uniform(low=[-pi,-1], high=[pi,1]), bit for bit:
     * /usr/bin/python3 -c "import numpy as np; G=lambda s: np.random.Generator(
     *   np.random.PCG64(np.random.SeedSequence(s))); [print(s, repr(G(s).uniform(
     *   low=np.array([-np.pi,-1.0]), high=np.array([np.pi,1.0])).tolist())) for s in
     *   [0,1,42,123,2**40+5]]" */
    static const struct { uint64_t seed; double s[2]; } resets[] = {
        {0, {0.8605556614246863, -0.4604265724722594}},
        {1, {0.07427745862364432, 0.9009273926518706}},
        {42, {1.721316619099806, -0.12224312049589536}},
        {123, {1.1457505478975563, -0.8923579623955546}},
        {1099511627781ull, {-3.111813752084018, -0.254830835177577}},
    };
    for (size_t k = 0; k < sizeof resets / sizeof resets[0]; k++) {
        reset_seed(p, b, resets[k].seed, obs);
        get_phys(p, b, 0, s, 2);
        cr_assert(s[0] == resets[k].s[0] && s[1] == resets[k].s[1], "seed %llu: (%.17g, %.17g)",
                  (unsigned long long)resets[k].seed, s[0], s[1]);
        cr_assert(obs[0] == (float)cos(s[0]) && obs[1] == (float)sin(s[0]) && obs[2] == (float)s[1]);
    }
    /* Without seeds the stream continues: a second reset differs, and equals
     * the second draw pair of seed 0's generator. */
    reset_seed(p, b, 0, obs);
    cr_assert_eq(p->reset(b, NULL, NULL, obs), ENV_OK);
    get_phys(p, b, 0, s, 2);
    nprng r;
    nprng_seed(&r, 0);
    nprng_uniform(&r, -1, 1);
    nprng_uniform(&r, -1, 1);
    double th = nprng_uniform(&r, -3.14159265358979323846, 3.14159265358979323846);
    cr_assert_eq(s[0], th);
    /* create's seed key: env i starts from seed + i. */
    env_batch *b3 = make(p, "seed=41", 2);
    float obs3[6];
    cr_assert_eq(p->reset(b3, NULL, NULL, obs3), ENV_OK);
    get_phys(p, b3, 1, s, 2);
    cr_assert(s[0] == resets[2].s[0] && s[1] == resets[2].s[1]);
    p->destroy(b3);

    /* §3.5 A: reset(seed=123, options={"x_init": pi/2, "y_init": 0.5}). */
    env_batch *ba = make(p, "x_init=1.5707963267948966;y_init=0.5", 1);
    reset_seed(p, ba, 123, obs);
    get_phys(p, ba, 0, s, 2);
    cr_assert(s[0] == 0.5728752739487781 && s[1] == -0.4461789811977773);
    cr_assert(obs[0] == 0.8403459f && obs[1] == 0.54205054f && obs[2] == -0.44617897f);
    p->destroy(ba);

    /* §3.5 C: from (1.0, 0.5), actions 2, -2, 0.5, 3 (clipped to 2). */
    static const float acts[4] = {2.0f, -2.0f, 0.5f, 3.0f};
    static const double traj[4][2] = {{1.0715551619, 1.4311032386}, {1.1610333031, 1.7895628242},
                                      {1.2886570165, 2.5524742677}, {1.467298056, 3.5728207895}};
    static const double rew[4] = {-1.029, -1.3570361130, -1.6685018412, -2.3161493950};
    const double s0[2] = {1.0, 0.5};
    set_phys(p, b, 0, s0, 2);
    for (int t = 0; t < 4; t++) {
        step_out o = step_f(p, b, acts[t]);
        get_phys(p, b, 0, s, 2);
        for (int k = 0; k < 2; k++)
            assert_near(s[k], traj[t][k], 1e-9, "pendulum state", t * 2 + k);
        cr_assert_eq(o.reward, (float)rew[t], "step %d reward %.9g", t, o.reward);
        cr_assert(o.obs[0] == (float)cos(s[0]) && o.obs[2] == (float)s[1]);
        cr_assert(!o.term && !o.trunc);
    }
    /* Worst reward is -(pi^2 + 0.1*64 + 0.001*4): θ = π, θ̇ = 8, u = 2. */
    const double worst[2] = {3.14159265358979323846, 8.0};
    set_phys(p, b, 0, worst, 2);
    cr_assert(fabs(step_f(p, b, 2.0f).reward - -16.2736044) < 1e-5);

    /* NaN torque = 0 torque; ±inf are clipped to ±2. */
    env_batch *bz = make(p, NULL, 1);
    float obsz[3];
    reset_seed(p, b, 5, obs);
    reset_seed(p, bz, 5, obsz);
    for (int t = 0; t < 3; t++) {
        step_out o1 = step_f(p, b, NAN), o2 = step_f(p, bz, 0.0f);
        cr_assert(memcmp(o1.obs, o2.obs, sizeof o1.obs[0] * 3) == 0 && o1.reward == o2.reward);
        o1 = step_f(p, b, INFINITY);
        o2 = step_f(p, bz, 2.0f);
        cr_assert(memcmp(o1.obs, o2.obs, sizeof o1.obs[0] * 3) == 0 && o1.reward == o2.reward);
        o1 = step_f(p, b, -INFINITY);
        o2 = step_f(p, bz, -2.0f);
        cr_assert(memcmp(o1.obs, o2.obs, sizeof o1.obs[0] * 3) == 0 && isfinite(o1.reward));
    }
    p->destroy(bz);

    /* TimeLimit: truncated exactly at step 200, never terminated; then ended. */
    reset_seed(p, b, 0, obs);
    for (int t = 1; t <= 200; t++) {
        step_out o = step_f(p, b, 0.0f);
        cr_assert_eq(o.trunc, t == 200, "step %d truncated %d", t, o.trunc);
        cr_assert_eq(o.term, 0);
    }
    float a = 0, rr;
    uint8_t te, tr;
    cr_assert_eq(p->step_range(b, 0, 1, &a, obs, &rr, &te, &tr), ENV_EINVAL);
    cr_assert(strstr(p->last_error(b), "ended"), "%s", p->last_error(b));
    reset_seed(p, b, 0, obs);
    cr_assert_eq(step_f(p, b, 0.0f).trunc, 0);
    env_batch *b5 = make(p, "max_episode_steps=3", 1);
    reset_seed(p, b5, 0, obs);
    cr_assert(!step_f(p, b5, 0).trunc && !step_f(p, b5, 0).trunc && step_f(p, b5, 0).trunc);
    p->destroy(b5);
    /* A bad g is rejected; g=0 removes gravity: from rest, no torque, no motion. */
    char err[256];
    env_batch *bad = NULL;
    cr_assert_eq(p->create("g=nan", 1, &bad, err, sizeof err), ENV_EINVAL);
    cr_assert(strstr(err, "'g'"), "%s", err);
    env_batch *g0 = make(p, "g=0", 1);
    const double rest[2] = {1.0, 0.0};
    set_phys(p, g0, 0, rest, 2);
    step_f(p, g0, 0.0f);
    get_phys(p, g0, 0, s, 2);
    cr_assert(s[0] == 1.0 && s[1] == 0.0);
    p->destroy(g0);
    p->destroy(b);

    check_roundtrip_and_ranges(p);
    dlclose(dl);
}

/* ------------------------------------------------------------------------ */
/* CartPole-v1                                                               */
/* ------------------------------------------------------------------------ */

/* The balancing controller of gym_oracle.py, on the float32 observation. */
static int32_t cart_ctrl(const float *o)
{
    return o[2] + 0.5 * o[3] + 0.05 * o[0] + 0.1 * o[1] > 0 ? 1 : 0;
}

Test(cartpole, reset_steps_limits_actions)
{
    void *dl;
    const env_plugin *p = load("cartpole", &dl);
    env_batch *b = make(p, NULL, 1);
    float obs[4];
    double s[4];

    /* Gymnasium reset = uniform(-0.05, 0.05, size=4):
     * /usr/bin/python3 -c "import numpy as np; G=lambda s: np.random.Generator(
     *   np.random.PCG64(np.random.SeedSequence(s))); [print(s, repr(G(s).uniform(
     *   -0.05, 0.05, size=(4,)).tolist())) for s in [0,1,7,2023]]" */
    static const struct { uint64_t seed; double s[4]; } resets[] = {
        {0, {0.013696168732145436, -0.02302132862361297, -0.045902647606380534, -0.04834723644714709}},
        {1, {0.0011821624700256717, 0.045046369632593536, -0.03558403872803663, 0.04486494471372439}},
        {7, {0.012509546660466692, 0.039721380096957554, 0.02756856902451936, -0.027479281000940815}},
        {2023, {-0.04119455452372156, -0.027955995566273584, -0.038682944576761316,
                -0.0057033165218379756}},
    };
    for (size_t k = 0; k < sizeof resets / sizeof resets[0]; k++) {
        reset_seed(p, b, resets[k].seed, obs);
        get_phys(p, b, 0, s, 4);
        for (int j = 0; j < 4; j++) {
            cr_assert_eq(s[j], resets[k].s[j], "seed %llu [%d]: %.17g",
                         (unsigned long long)resets[k].seed, j, s[j]);
            cr_assert_eq(obs[j], (float)s[j]);
        }
    }
    /* §3.5 A: reset(seed=123, options={"low": -0.1, "high": 0.1}). */
    env_batch *ba = make(p, "reset_low=-0.1;reset_high=0.1", 1);
    reset_seed(p, ba, 123, obs);
    static const double wa[4] = {0.036470372649628685, -0.08923579623955546, -0.05592802544547773,
                                 -0.06312563786026607};
    get_phys(p, ba, 0, s, 4);
    for (int j = 0; j < 4; j++)
        cr_assert(s[j] == wa[j] && obs[j] == (float)wa[j], "[%d] %.17g", j, s[j]);
    p->destroy(ba);
    char err[256];
    env_batch *bad = NULL;
    cr_assert_eq(p->create("reset_low=0.2;reset_high=0.1", 1, &bad, err, sizeof err), ENV_EINVAL);
    cr_assert(strstr(err, "reset_low"), "%s", err);

    /* §3.5 C: from (0.01, -0.02, 0.03, 0.04), actions 1, 1, 0, 1. */
    static const int32_t acts[4] = {1, 1, 0, 1};
    static const double traj[4][4] = {
        {0.0096, 0.1746791957, 0.0308, -0.243068718},
        {0.0130935839, 0.3693479761, 0.0259386256, -0.5258796281},
        {0.0204805434, 0.1738708126, 0.0154210331, -0.2251374161},
        {0.0239579597, 0.3687690102, 0.0109182848, -0.5129163478},
    };
    const double s0[4] = {0.01, -0.02, 0.03, 0.04};
    set_phys(p, b, 0, s0, 4);
    for (int t = 0; t < 4; t++) {
        step_out o = step_i(p, b, acts[t]);
        get_phys(p, b, 0, s, 4);
        for (int k = 0; k < 4; k++)
            assert_near(s[k], traj[t][k], 1e-9, "cartpole state", t * 4 + k);
        cr_assert(o.reward == 1.0f && !o.term && !o.trunc);
    }
    /* §3.5 C: from zeros with action 1 it terminates after 9 steps, reward 1
     * on the terminating step too; stepping it again is an error. */
    const double zeros[4] = {0, 0, 0, 0};
    static const double end9[4] = {0.140650972, 1.7603811258, -0.2151860499, -2.777886494};
    set_phys(p, b, 0, zeros, 4);
    for (int t = 1; t <= 9; t++) {
        step_out o = step_i(p, b, 1);
        cr_assert_eq(o.term, t == 9, "step %d terminated %d", t, o.term);
        cr_assert(o.reward == 1.0f && !o.trunc);
    }
    get_phys(p, b, 0, s, 4);
    for (int k = 0; k < 4; k++)
        assert_near(s[k], end9[k], 1e-9, "cartpole end", k);
    int32_t a1 = 1;
    float rr;
    uint8_t te, tr;
    cr_assert_eq(p->step_range(b, 0, 1, &a1, obs, &rr, &te, &tr), ENV_EINVAL);
    cr_assert(strstr(p->last_error(b), "ended"), "%s", p->last_error(b));

    /* Actions outside Discrete(2) are rejected and nothing in the range moves. */
    env_batch *b2 = make(p, NULL, 2);
    float obs2[8], rew2[2];
    uint8_t te2[2], tr2[2];
    uint64_t seeds[2] = {3, 4};
    cr_assert_eq(p->reset(b2, NULL, seeds, obs2), ENV_OK);
    unsigned char before[256], after[256];
    cr_assert_eq(p->get_state(b2, 0, before), ENV_OK);
    const int32_t badacts[3][2] = {{1, 2}, {-1, 0}, {0, (int32_t)0x80000000u}};
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(p->step_range(b2, 0, 2, badacts[k], obs2, rew2, te2, tr2), ENV_EINVAL);
        cr_assert(strstr(p->last_error(b2), "Discrete(2)"), "%s", p->last_error(b2));
    }
    cr_assert_eq(p->get_state(b2, 0, after), ENV_OK);
    cr_assert_arr_eq(before, after, p->state_size(b2));
    p->destroy(b2);

    /* TimeLimit at 500 with a balancing controller from seed 0, against the
     * oracle's final state, bit for bit (/usr/bin/python3
     * tests/envs/gym_oracle.py: "cart seed 0, 500 steps"; libm sin/cos, see
     * the script for why numpy's own sin/cos end 1e-3 away). */
    static const double end500[4] = {0.08713914225262466, 0.3419120684699458, -0.006423611838335289,
                                     -0.07531551027167305};
    reset_seed(p, b, 0, obs);
    for (int t = 1; t <= 500; t++) {
        step_out o = step_i(p, b, cart_ctrl(obs));
        memcpy(obs, o.obs, sizeof obs);
        cr_assert(!o.term, "fell at step %d", t);
        cr_assert_eq(o.trunc, t == 500, "step %d truncated %d", t, o.trunc);
    }
    get_phys(p, b, 0, s, 4);
    for (int k = 0; k < 4; k++)
        cr_assert_eq(s[k], end500[k], "cartpole step 500 [%d]: %.17g", k, s[k]);
    p->destroy(b);

    check_roundtrip_and_ranges(p);
    dlclose(dl);
}

/* ------------------------------------------------------------------------ */
/* MountainCarContinuous-v0                                                  */
/* ------------------------------------------------------------------------ */

Test(mountain_car_continuous, reset_steps_limits_nan)
{
    void *dl;
    const env_plugin *p = load("mountain_car_continuous", &dl);
    env_batch *b = make(p, NULL, 1);
    float obs[2];
    double s[2];

    /* Gymnasium reset = [uniform(-0.6, -0.4), 0]:
     * /usr/bin/python3 -c "import numpy as np; G=lambda s: np.random.Generator(
     *   np.random.PCG64(np.random.SeedSequence(s))); [print(s, repr(G(s).uniform(
     *   -0.6, -0.4))) for s in [0,5,42,99]]" */
    static const struct { uint64_t seed; double p; } resets[] = {
        {0, -0.4726076625357092}, {5, -0.438999415250924},
        {42, -0.44520879028880733}, {99, -0.4987938650903211},
    };
    for (size_t k = 0; k < sizeof resets / sizeof resets[0]; k++) {
        reset_seed(p, b, resets[k].seed, obs);
        get_phys(p, b, 0, s, 2);
        cr_assert(s[0] == resets[k].p && s[1] == 0.0, "seed %llu: %.17g",
                  (unsigned long long)resets[k].seed, s[0]);
        cr_assert(obs[0] == (float)resets[k].p && obs[1] == 0.0f);
    }
    /* §3.5 A: reset(seed=123, options={"low": -0.7, "high": -0.5}). */
    env_batch *ba = make(p, "reset_low=-0.7;reset_high=-0.5", 1);
    reset_seed(p, ba, 123, obs);
    get_phys(p, ba, 0, s, 2);
    cr_assert(s[0] == -0.5635296273503713 && obs[0] == -0.5635296f && obs[1] == 0.0f);
    p->destroy(ba);

    /* §3.5 C: from (-0.5, 0), actions 1, 1, -0.5, 2: float32 states exactly,
     * and the raw action 2 is penalised (-0.4). */
    static const float acts[4] = {1.0f, 1.0f, -0.5f, 2.0f};
    static const float traj[4][2] = {{-0.49867684f, 0.001323157f},
                                     {-0.49604043f, 0.0026364166f},
                                     {-0.49436048f, 0.0016799644f},
                                     {-0.49139953f, 0.0029609583f}};
    static const float rew[4] = {-0.1f, -0.1f, -0.025f, -0.4f};
    const double s0[2] = {-0.5, 0.0};
    set_phys(p, b, 0, s0, 2);
    for (int t = 0; t < 4; t++) {
        step_out o = step_f(p, b, acts[t]);
        get_phys(p, b, 0, s, 2);
        cr_assert(s[0] == (double)traj[t][0] && s[1] == (double)traj[t][1],
                  "step %d: (%.9g, %.9g)", t, s[0], s[1]);
        cr_assert(o.obs[0] == traj[t][0] && o.obs[1] == traj[t][1]);
        cr_assert_eq(o.reward, rew[t], "step %d reward %.9g", t, o.reward);
        cr_assert(!o.term && !o.trunc);
    }

    /* §3.5 C: bang-bang a = sign(v) (+1 at 0) from -0.5 terminates at step
     * 106 with return 89.4; with max_episode_steps=106 both flags are set. */
    for (int lim = 0; lim < 2; lim++) {
        env_batch *bb = make(p, lim ? "max_episode_steps=106" : NULL, 1);
        set_phys(p, bb, 0, s0, 2);
        float v = 0.0f;
        double ret = 0;
        for (int t = 1; t <= 106; t++) {
            step_out o = step_f(p, bb, v >= 0 ? 1.0f : -1.0f);
            v = o.obs[1];
            ret += o.reward;
            cr_assert_eq(o.term, t == 106, "step %d terminated %d", t, o.term);
            cr_assert_eq(o.trunc, lim && t == 106);
        }
        cr_assert(fabs(ret - 89.4) < 1e-4, "return %.9g", ret);
        p->destroy(bb);
    }

    /* NaN = 0 in force and penalty; ±inf clip the force, penalty is raw. */
    env_batch *bz = make(p, NULL, 1);
    float obsz[2];
    reset_seed(p, b, 8, obs);
    reset_seed(p, bz, 8, obsz);
    for (int t = 0; t < 3; t++) {
        step_out o1 = step_f(p, b, NAN), o2 = step_f(p, bz, 0.0f);
        cr_assert(o1.obs[0] == o2.obs[0] && o1.obs[1] == o2.obs[1] && o1.reward == 0.0f &&
                  o2.reward == 0.0f);
        o1 = step_f(p, b, INFINITY);
        o2 = step_f(p, bz, 1.0f);
        cr_assert(o1.obs[0] == o2.obs[0] && o1.obs[1] == o2.obs[1]);
        cr_assert(isinf(o1.reward) && o1.reward < 0, "reward %g", o1.reward);
    }
    p->destroy(bz);

    /* TimeLimit at 999 with no force: the car never reaches the goal
     * (gym_oracle.py "mcc seed 0, 999 steps": float32 state, the same with
     * numpy's or libm's cos). */
    reset_seed(p, b, 0, obs);
    for (int t = 1; t <= 999; t++) {
        step_out o = step_f(p, b, 0.0f);
        cr_assert(!o.term);
        cr_assert_eq(o.trunc, t == 999, "step %d truncated %d", t, o.trunc);
    }
    get_phys(p, b, 0, s, 2);
    cr_assert(s[0] == -0.5202518105506897 && s[1] == 0.004414697643369436, "(%.17g, %.17g)", s[0],
              s[1]);
    p->destroy(b);

    check_roundtrip_and_ranges(p);
    dlclose(dl);
}

/* ------------------------------------------------------------------------ */
/* Acrobot-v1                                                                */
/* ------------------------------------------------------------------------ */

Test(acrobot, reset_steps_limits_actions)
{
    void *dl;
    const env_plugin *p = load("acrobot", &dl);
    env_batch *b = make(p, NULL, 1);
    float obs[6];
    double s[4];

    /* Gymnasium reset = uniform(-0.1, 0.1, size=4).astype(float32):
     * /usr/bin/python3 -c "import numpy as np; G=lambda s: np.random.Generator(
     *   np.random.PCG64(np.random.SeedSequence(s))); [print(s, [repr(float(v)) for v
     *   in G(s).uniform(-0.1, 0.1, size=(4,)).astype(np.float32)]) for s in [0,3,42]]" */
    static const struct { uint64_t seed; double s[4]; } resets[] = {
        {0, {0.02739233709871769, -0.046042658388614655, -0.09180529415607452, -0.0966944694519043}},
        {3, {-0.08287016302347183, -0.05263789743185043, 0.06025489419698715, 0.01643240638077259}},
        {42, {0.05479120835661888, -0.01222431194037199, 0.07171958684921265, 0.039473604410886765}},
    };
    for (size_t k = 0; k < sizeof resets / sizeof resets[0]; k++) {
        reset_seed(p, b, resets[k].seed, obs);
        get_phys(p, b, 0, s, 4);
        for (int j = 0; j < 4; j++)
            cr_assert_eq(s[j], resets[k].s[j], "seed %llu [%d]: %.17g",
                         (unsigned long long)resets[k].seed, j, s[j]);
        cr_assert(obs[0] == (float)cos(s[0]) && obs[3] == (float)sin(s[1]) && obs[5] == (float)s[3]);
    }
    /* §3.5 A: reset(seed=123, options={"low": -0.2, "high": 0.2}). */
    env_batch *ba = make(p, "reset_low=-0.2;reset_high=0.2", 1);
    reset_seed(p, ba, 123, obs);
    static const float wa[6] = {0.997341f, 0.07287608f, 0.9841162f, -0.17752565f, -0.11185605f,
                                -0.12625128f};
    for (int k = 0; k < 6; k++)
        cr_assert(fabsf(obs[k] - wa[k]) <= 1e-7f, "obs[%d] %.9g", k, obs[k]);
    cr_assert(obs[4] == wa[4] && obs[5] == wa[5]);
    p->destroy(ba);

    /* §3.5 C: from float32 (0.05, -0.05, 0, 0), actions 2, 2, 0, 1. */
    static const int32_t acts[4] = {2, 2, 0, 1};
    static const double traj[4][4] = {
        {0.0297534284, -0.0059781823, -0.1967369727, 0.4290397003},
        {-0.0243786193, 0.1131533401, -0.3295174974, 0.7325860579},
        {-0.068369951, 0.204377794, -0.0994745774, 0.1589281513},
        {-0.0753029781, 0.2073870354, 0.0314518659, -0.1300339034},
    };
    const double s0[4] = {(float)0.05, (float)-0.05, 0, 0};
    set_phys(p, b, 0, s0, 4);
    for (int t = 0; t < 4; t++) {
        step_out o = step_i(p, b, acts[t]);
        get_phys(p, b, 0, s, 4);
        for (int k = 0; k < 4; k++)
            assert_near(s[k], traj[t][k], 1e-9, "acrobot state", t * 4 + k);
        cr_assert(o.reward == -1.0f && !o.term && !o.trunc);
    }

    /* 30 steps of actions t % 3 from seed 0, bit for bit with the oracle on
     * libm (gym_oracle.py "acro seed 0"; numpy's sin/cos give
     * (0.0014202429430645097, 0.16843717843562583, -0.07824582052542177,
     * 0.12284566221288551), within 1e-14). */
    static const double end30[4] = {0.001420242943064481, 0.1684371784356258, -0.07824582052542187,
                                    0.12284566221288615};
    reset_seed(p, b, 0, obs);
    for (int t = 0; t < 30; t++)
        step_i(p, b, t % 3);
    get_phys(p, b, 0, s, 4);
    for (int k = 0; k < 4; k++)
        {
        cr_assert_eq(s[k], end30[k], "acrobot 30 steps [%d]: %.17g", k, s[k]);
        assert_near(s[k], (double[]){0.0014202429430645097, 0.16843717843562583,
                                     -0.07824582052542177, 0.12284566221288551}[k],
                    1e-12, "acrobot 30 steps vs numpy", k);
    }

    /* Termination: from (3, 0, 0, 0) the tip is above the line after one
     * step; reward 0 on that step (gym_oracle.py "acro top", libm). */
    static const double top[4] = {2.982057837208604, 0.01400267051831374, -0.18343726539567606,
                                  0.14511760679397961};
    const double up[4] = {3.0, 0, 0, 0};
    set_phys(p, b, 0, up, 4);
    step_out o = step_i(p, b, 1);
    cr_assert(o.term && !o.trunc && o.reward == 0.0f);
    get_phys(p, b, 0, s, 4);
    for (int k = 0; k < 4; k++)
        cr_assert_eq(s[k], top[k], "acrobot top [%d]: %.17g", k, s[k]);
    /* Wrapping: θ1 just below π with a large speed wraps into [-π, π]. */
    const double spin[4] = {3.1, 0, 12.0, 0};
    set_phys(p, b, 0, spin, 4);
    step_i(p, b, 1);
    get_phys(p, b, 0, s, 4);
    cr_assert(s[0] >= -3.14159265358979323846 && s[0] < 0, "θ1 %.17g", s[0]);

    /* Out-of-range actions. */
    int32_t bad = 3;
    float rr;
    uint8_t te, tr;
    reset_seed(p, b, 1, obs);
    cr_assert_eq(p->step_range(b, 0, 1, &bad, obs, &rr, &te, &tr), ENV_EINVAL);
    cr_assert(strstr(p->last_error(b), "action 3 is outside Discrete(3)"), "%s", p->last_error(b));

    /* TimeLimit at 500: pumping with torque sign(θ̇1) from seed 0 does not
     * swing up in 500 steps (gym_oracle.py "acro pump"): bit for bit with
     * the oracle on libm, within 1e-12 of numpy's sin/cos run
     * (0.2787991842075838, 1.9106877778623241, 0.05842310366609593,
     * 0.4828647877894895). */
    static const double end500[4] = {0.2787991842075494, 1.9106877778624063, 0.0584231036660674,
                                     0.4828647877895451};
    reset_seed(p, b, 0, obs);
    for (int t = 1; t <= 500; t++) {
        get_phys(p, b, 0, s, 4);
        o = step_i(p, b, s[2] >= 0 ? 2 : 0);
        cr_assert(!o.term && o.reward == -1.0f, "step %d", t);
        cr_assert_eq(o.trunc, t == 500, "step %d truncated %d", t, o.trunc);
    }
    get_phys(p, b, 0, s, 4);
    for (int k = 0; k < 4; k++)
        cr_assert_eq(s[k], end500[k], "acrobot step 500 [%d]: %.17g", k, s[k]);
    p->destroy(b);

    check_roundtrip_and_ranges(p);
    dlclose(dl);
}
