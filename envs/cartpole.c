/*
 * cartpole.c -- CartPole-v1 (Gymnasium classic control) as an env.h plugin.
 *
 * Dynamics, reward, termination, reset and time limit follow
 * gymnasium/envs/classic_control/cartpole.py as transcribed in
 * specs/sac_envs.md §3.2: Euler integration in double (built with
 * -ffp-contract=off so nothing is fused), the old velocities move the
 * positions, reward 1 on every step including the terminating one.
 * The state (x, ẋ, θ, θ̇) is double; observations are its float32 cast.
 *
 * Config keys ("key=value;..."), besides max_episode_steps (default 500,
 * CartPole-v1's registration) and seed (see plugin_common.h):
 *   reset_low, reset_high  every state value ~ U(low, high) at reset
 *                      (Gymnasium's reset options low/high; default ±0.05)
 *
 * Actions: Discrete(2), int32; 1 pushes right (+10 N), 0 left. Any other
 * value is ENV_EINVAL (Gymnasium asserts), and nothing in the range steps.
 * Stepping after termination is ENV_EINVAL (Gymnasium would warn and give
 * reward 0); the host resets ended environments.
 *
 * The plugin machinery (config, batch, errors, state hooks, vtable) is
 * envs/plugin_common.h; this file is the environment.
 */
#include "plugin_common.h"

#include <math.h>

#define PI 3.14159265358979323846

#define GRAVITY 9.8
#define MASSCART 1.0
#define MASSPOLE 0.1
#define TOTAL_MASS (MASSPOLE + MASSCART)
#define LENGTH 0.5 /* half the pole's length */
#define POLEMASS_LENGTH (MASSPOLE * LENGTH)
#define FORCE_MAG 10.0
#define TAU 0.02
#define THETA_THRESHOLD (12 * 2 * PI / 360)
#define X_THRESHOLD 2.4

/* Gymnasium's float32 bounds, widened to double. */
static const double obs_high[4] = {(double)(float)(X_THRESHOLD * 2), INFINITY,
                                   (double)(float)(THETA_THRESHOLD * 2), INFINITY};
static const double obs_low[4] = {-(double)(float)(X_THRESHOLD * 2), -INFINITY,
                                  -(double)(float)(THETA_THRESHOLD * 2), -INFINITY};

enum { PARAM_RESET_LOW, PARAM_RESET_HIGH }; /* config values, in the order of params */

/* Gymnasium's maybe_parse_reset_bounds rejects low > high. */
static const envc_param params[] = {
    [PARAM_RESET_LOW] = {"reset_low", -0.05, -1e6, 1e6, "reset_high"},
    [PARAM_RESET_HIGH] = {"reset_high", 0.05, -1e6, 1e6, NULL},
};

/* Gymnasium reset: uniform(low, high, size=4) in the order x, ẋ, θ, θ̇. */
static void cartpole_reset(double *s, nprng *rng, const double *param)
{
    for (int k = 0; k < 4; k++)
        s[k] = nprng_uniform(rng, param[PARAM_RESET_LOW], param[PARAM_RESET_HIGH]);
}

static void cartpole_observe(const double *s, float *obs)
{
    for (int k = 0; k < 4; k++)
        obs[k] = (float)s[k];
}

/* action: int32 in {0, 1} (checked by plugin_common.h). */
static void cartpole_step(double *s, const void *action, const double *param, double *reward,
                          int *terminated)
{
    (void)param;
    int32_t a = *(const int32_t *)action;
    double x = s[0], x_dot = s[1], theta = s[2], theta_dot = s[3];
    double force = a == 1 ? FORCE_MAG : -FORCE_MAG;
    double costheta = cos(theta), sintheta = sin(theta);
    double temp = (force + POLEMASS_LENGTH * (theta_dot * theta_dot) * sintheta) / TOTAL_MASS;
    double thetaacc = (GRAVITY * sintheta - costheta * temp) /
                      (LENGTH * (4.0 / 3.0 - MASSPOLE * (costheta * costheta) / TOTAL_MASS));
    double xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS;
    /* Euler: the old velocities move the positions. */
    x = x + TAU * x_dot;
    x_dot = x_dot + TAU * xacc;
    theta = theta + TAU * theta_dot;
    theta_dot = theta_dot + TAU * thetaacc;
    s[0] = x;
    s[1] = x_dot;
    s[2] = theta;
    s[3] = theta_dot;
    *terminated = x < -X_THRESHOLD || x > X_THRESHOLD || theta < -THETA_THRESHOLD ||
                  theta > THETA_THRESHOLD;
    *reward = 1.0; /* also on the terminating step */
}

static const envc_desc envc_env = {
    .name = "cartpole",
    .version = "1.0",
    .summary = "CartPole-v1: balance a pole on a cart (Discrete(2) push, 500 steps)",
    .gym_id = "CartPole-v1",
    .state_tag = 0x3154524143544c52ull, /* "RLTCART1" little-endian */
    .max_episode_steps = 500,
    .obs = {ENV_SPACE_BOX, 4, 0, obs_low, obs_high},
    .act = {ENV_SPACE_DISCRETE, 1, 2, NULL, NULL},
    .state_dim = 4,
    .params = params,
    .n_params = sizeof params / sizeof params[0],
    .reset_one = cartpole_reset,
    .observe = cartpole_observe,
    .step_one = cartpole_step,
};

ENV_EXPORT const env_plugin *env_plugin_get(uint32_t host_abi_major)
{
    return envc_plugin_get(host_abi_major);
}
