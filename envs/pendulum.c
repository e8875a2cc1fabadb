/*
 * pendulum.c -- Pendulum-v1 (Gymnasium classic control) as an env.h plugin.
 *
 * Dynamics, reward, reset and time limit follow
 * gymnasium/envs/classic_control/pendulum.py as transcribed in
 * specs/sac_envs.md §3.1, with NumPy 1.x promotion: the float32 action is
 * widened to double and every quantity is computed in double (built with
 * -ffp-contract=off so nothing is fused). The state (θ, θ̇) is double and
 * θ is never wrapped; observations are float32 [cos θ, sin θ, θ̇].
 *
 * Config keys ("key=value;..."), besides max_episode_steps (default 200,
 * Pendulum-v1's registration) and seed (see plugin_common.h):
 *   g                  gravity (constructor argument, default 10.0)
 *   x_init, y_init     reset bounds: θ ~ U(-x_init, x_init), θ̇ ~ U(-y_init,
 *                      y_init) (Gymnasium's reset options; default π and 1)
 *
 * Actions: a NaN torque is treated as 0 (Gymnasium would propagate NaN into
 * the state forever); any other value is clipped to [-2, 2] as Gymnasium
 * does, so ±inf become ±2.
 *
 * The plugin machinery (config, batch, errors, state hooks, vtable) is
 * envs/plugin_common.h; this file is the environment.
 */
#include "plugin_common.h"

#include <math.h>

#define PI 3.14159265358979323846

static const double MAX_SPEED = 8.0, MAX_TORQUE = 2.0, DT = 0.05, MASS = 1.0, LENGTH = 1.0;

static const double obs_low[3] = {-1.0, -1.0, -8.0};
static const double obs_high[3] = {1.0, 1.0, 8.0};
static const double act_low[1] = {-2.0};
static const double act_high[1] = {2.0};

enum { PARAM_G, PARAM_X_INIT, PARAM_Y_INIT }; /* config values, in the order of params */

static const envc_param params[] = {
    [PARAM_G] = {"g", 10.0, -1e6, 1e6, NULL},
    [PARAM_X_INIT] = {"x_init", PI, -1e6, 1e6, NULL},
    [PARAM_Y_INIT] = {"y_init", 1.0, -1e6, 1e6, NULL},
};

/* numpy's float64 `x**2` calls libm pow(), which differs from the correctly
 * rounded x*x in the last bit for about 0.1% of inputs; Gymnasium writes
 * x**2, so this does too (built with -fno-builtin-pow so the compiler keeps
 * the call instead of folding it into x*x). */
static double pow2(double x)
{
    return pow(x, 2.0);
}

/* Python's ((x + π) % 2π) - π on floats (numpy divmod: the remainder takes
 * the sign of the divisor). */
static double angle_normalize(double x)
{
    double a = x + PI, b = 2 * PI;
    double m = fmod(a, b);
    if (m != 0.0) {
        if ((b < 0) != (m < 0))
            m += b;
    } else {
        m = copysign(0.0, b);
    }
    return m - PI;
}

/* Gymnasium reset: state = uniform(low=-[x, y], high=[x, y]), θ first.
 * s = (θ, θ̇). */
static void pendulum_reset(double *s, nprng *rng, const double *param)
{
    s[0] = nprng_uniform(rng, -param[PARAM_X_INIT], param[PARAM_X_INIT]);
    s[1] = nprng_uniform(rng, -param[PARAM_Y_INIT], param[PARAM_Y_INIT]);
}

static void pendulum_observe(const double *s, float *obs)
{
    obs[0] = (float)cos(s[0]);
    obs[1] = (float)sin(s[0]);
    obs[2] = (float)s[1];
}

static void pendulum_step(double *s, const void *action, const double *param, double *reward,
                          int *terminated)
{
    double u = *(const float *)action;
    if (isnan(u))
        u = 0.0;
    u = u < -MAX_TORQUE ? -MAX_TORQUE : u > MAX_TORQUE ? MAX_TORQUE : u;
    double th = s[0], thdot = s[1];
    /* u is a float widened to double: u*u is exact, as numpy's u**2 is. */
    double costs = pow2(angle_normalize(th)) + 0.1 * pow2(thdot) + 0.001 * (u * u); /* pre-step */
    double g = param[PARAM_G];
    double newthdot =
        thdot + (3 * g / (2 * LENGTH) * sin(th) + 3.0 / (MASS * (LENGTH * LENGTH)) * u) * DT;
    newthdot = newthdot < -MAX_SPEED ? -MAX_SPEED : newthdot > MAX_SPEED ? MAX_SPEED : newthdot;
    s[0] = th + newthdot * DT; /* semi-implicit: the new θ̇ moves θ */
    s[1] = newthdot;
    *reward = -costs;
    *terminated = 0;
}

static const envc_desc envc_env = {
    .name = "pendulum",
    .version = "1.0",
    .summary = "Pendulum-v1: swing a pendulum up and hold it (Box(1) torque, 200 steps)",
    .gym_id = "Pendulum-v1",
    .state_tag = 0x31444e4550544c52ull, /* "RLTPEND1" little-endian */
    .max_episode_steps = 200,
    .obs = {ENV_SPACE_BOX, 3, 0, obs_low, obs_high},
    .act = {ENV_SPACE_BOX, 1, 0, act_low, act_high},
    .state_dim = 2,
    .params = params,
    .n_params = sizeof params / sizeof params[0],
    .reset_one = pendulum_reset,
    .observe = pendulum_observe,
    .step_one = pendulum_step,
};

ENV_EXPORT const env_plugin *env_plugin_get(uint32_t host_abi_major)
{
    return envc_plugin_get(host_abi_major);
}
