/*
 * acrobot.c -- Acrobot-v1 (Gymnasium classic control) as an env.h plugin.
 *
 * Dynamics ("book" equations), reward, termination, reset and time limit
 * follow gymnasium/envs/classic_control/acrobot.py as transcribed in
 * specs/sac_envs.md §3.4: one classical RK4 step of 0.2 s on the state
 * augmented with the torque, then θ1, θ2 wrapped into [-π, π] and the
 * velocities bounded to ±4π, ±9π. All in double (built with
 * -ffp-contract=off), expressions in Gymnasium's evaluation order. The reset
 * state is float32-rounded U(-0.1, 0.1)⁴ as in Gymnasium; later states are
 * double. Observations: float32 [cos θ1, sin θ1, cos θ2, sin θ2, θ̇1, θ̇2].
 * Reward -1 per step, 0 on the terminating step. No torque noise.
 *
 * Config keys ("key=value;..."), besides max_episode_steps (default 500,
 * Acrobot-v1's registration) and seed (see plugin_common.h):
 *   reset_low, reset_high  every state value ~ U(low, high) at reset
 *                      (Gymnasium's reset options low/high; default ±0.1)
 *
 * Actions: Discrete(3), int32, torque -1, 0, +1. Any other value is
 * ENV_EINVAL (Gymnasium would raise IndexError or wrap a negative index),
 * and nothing in the range steps.
 *
 * The plugin machinery (config, batch, errors, state hooks, vtable) is
 * envs/plugin_common.h; this file is the environment.
 */
#include "plugin_common.h"

#include <math.h>

#define PI 3.14159265358979323846

#define DT 0.2
#define LINK_LENGTH_1 1.0
#define LINK_MASS_1 1.0
#define LINK_MASS_2 1.0
#define LINK_COM_POS_1 0.5
#define LINK_COM_POS_2 0.5
#define LINK_MOI 1.0
#define MAX_VEL_1 (4 * PI)
#define MAX_VEL_2 (9 * PI)

static const double avail_torque[3] = {-1.0, 0.0, 1.0};

/* Gymnasium's float32 bounds, widened to double. */
static const double obs_high[6] = {1.0, 1.0, 1.0, 1.0, (double)(float)MAX_VEL_1,
                                   (double)(float)MAX_VEL_2};
static const double obs_low[6] = {-1.0, -1.0, -1.0, -1.0, -(double)(float)MAX_VEL_1,
                                  -(double)(float)MAX_VEL_2};

enum { PARAM_RESET_LOW, PARAM_RESET_HIGH }; /* config values, in the order of params */

/* Gymnasium's maybe_parse_reset_bounds rejects low > high. */
static const envc_param params[] = {
    [PARAM_RESET_LOW] = {"reset_low", -0.1, -1e6, 1e6, "reset_high"},
    [PARAM_RESET_HIGH] = {"reset_high", 0.1, -1e6, 1e6, NULL},
};

/* Gymnasium reset: uniform(low, high, size=4).astype(float32).
 * s = (θ1, θ2, θ̇1, θ̇2). */
static void acrobot_reset(double *s, nprng *rng, const double *param)
{
    for (int k = 0; k < 4; k++)
        s[k] = (float)nprng_uniform(rng, param[PARAM_RESET_LOW], param[PARAM_RESET_HIGH]);
}

static void acrobot_observe(const double *s, float *obs)
{
    obs[0] = (float)cos(s[0]);
    obs[1] = (float)sin(s[0]);
    obs[2] = (float)cos(s[1]);
    obs[3] = (float)sin(s[1]);
    obs[4] = (float)s[2];
    obs[5] = (float)s[3];
}

/* numpy's float64 `x**2` calls libm pow(), which differs from the correctly
 * rounded x*x in the last bit for about 0.1% of inputs; Gymnasium writes
 * x**2, so this does too (built with -fno-builtin-pow so the compiler keeps
 * the call instead of folding it into x*x). */
static double pow2(double x)
{
    return pow(x, 2.0);
}

/* Gymnasium's _dsdt ("book"): d/dt of y = (θ1, θ2, θ̇1, θ̇2, torque), written
 * in the reference's evaluation order. */
static void dsdt(const double y[5], double dy[5])
{
    const double m1 = LINK_MASS_1, m2 = LINK_MASS_2, l1 = LINK_LENGTH_1;
    const double lc1 = LINK_COM_POS_1, lc2 = LINK_COM_POS_2, I1 = LINK_MOI, I2 = LINK_MOI;
    const double g = 9.8;
    double a = y[4], theta1 = y[0], theta2 = y[1], dtheta1 = y[2], dtheta2 = y[3];
    double d1 = m1 * pow2(lc1) + m2 * (pow2(l1) + pow2(lc2) + 2 * l1 * lc2 * cos(theta2)) + I1 + I2;
    double d2 = m2 * (pow2(lc2) + l1 * lc2 * cos(theta2)) + I2;
    double phi2 = m2 * lc2 * g * cos(theta1 + theta2 - PI / 2.0);
    double phi1 = -m2 * l1 * lc2 * pow2(dtheta2) * sin(theta2) -
                  2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * sin(theta2) +
                  (m1 * lc1 + m2 * l1) * g * cos(theta1 - PI / 2) + phi2;
    double ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * pow2(dtheta1) * sin(theta2) - phi2) /
                      (m2 * pow2(lc2) + I2 - pow2(d2) / d1);
    double ddtheta1 = -(d2 * ddtheta2 + phi1) / d1;
    dy[0] = dtheta1;
    dy[1] = dtheta2;
    dy[2] = ddtheta1;
    dy[3] = ddtheta2;
    dy[4] = 0.0;
}

/* Gymnasium's wrap(x, -π, π): add or subtract 2π until inside. Values too
 * large for the loop (only reachable through set_state, which rejects
 * non-finite ones) are first reduced with fmod so it always ends. */
static double wrap(double x, double m, double M)
{
    double diff = M - m;
    if (fabs(x) > 1e6)
        x = fmod(x, diff);
    while (x > M)
        x = x - diff;
    while (x < m)
        x = x + diff;
    return x;
}

static double bound(double x, double m, double M)
{
    double lo = m > x ? m : x; /* Python max(x, m) */
    return M < lo ? M : lo;    /* Python min(lo, M) */
}

/* action: int32 in {0, 1, 2} (checked by plugin_common.h). */
static void acrobot_step(double *s, const void *action, const double *param, double *reward,
                         int *terminated)
{
    (void)param;
    int32_t a = *(const int32_t *)action;
    /* rk4(_dsdt, [s, torque], [0, dt]): one classical Runge-Kutta step. */
    const double dt = DT - 0, dt2 = dt / 2.0;
    double y0[5] = {s[0], s[1], s[2], s[3], avail_torque[a]};
    double k1[5], k2[5], k3[5], k4[5], y[5];
    dsdt(y0, k1);
    for (int k = 0; k < 5; k++)
        y[k] = y0[k] + dt2 * k1[k];
    dsdt(y, k2);
    for (int k = 0; k < 5; k++)
        y[k] = y0[k] + dt2 * k2[k];
    dsdt(y, k3);
    for (int k = 0; k < 5; k++)
        y[k] = y0[k] + dt * k3[k];
    dsdt(y, k4);
    double ns[4];
    for (int k = 0; k < 4; k++)
        ns[k] = y0[k] + dt / 6.0 * (k1[k] + 2 * k2[k] + 2 * k3[k] + k4[k]);
    s[0] = wrap(ns[0], -PI, PI);
    s[1] = wrap(ns[1], -PI, PI);
    s[2] = bound(ns[2], -MAX_VEL_1, MAX_VEL_1);
    s[3] = bound(ns[3], -MAX_VEL_2, MAX_VEL_2);
    int term = -cos(s[0]) - cos(s[1] + s[0]) > 1.0;
    *terminated = term;
    *reward = term ? 0.0 : -1.0;
}

static const envc_desc envc_env = {
    .name = "acrobot",
    .version = "1.0",
    .summary = "Acrobot-v1: swing a two-link arm above a line (Discrete(3) torque, 500 steps)",
    .gym_id = "Acrobot-v1",
    .state_tag = 0x31524341544c52ull, /* "RLTACR1" little-endian */
    .max_episode_steps = 500,
    .obs = {ENV_SPACE_BOX, 6, 0, obs_low, obs_high},
    .act = {ENV_SPACE_DISCRETE, 1, 3, NULL, NULL},
    .state_dim = 4,
    .params = params,
    .n_params = sizeof params / sizeof params[0],
    .reset_one = acrobot_reset,
    .observe = acrobot_observe,
    .step_one = acrobot_step,
};

ENV_EXPORT const env_plugin *env_plugin_get(uint32_t host_abi_major)
{
    return envc_plugin_get(host_abi_major);
}
