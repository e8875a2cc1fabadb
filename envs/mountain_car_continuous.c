/*
 * mountain_car_continuous.c -- MountainCarContinuous-v0 (Gymnasium classic
 * control) as an env.h plugin.
 *
 * Dynamics, reward, termination, reset and time limit follow
 * gymnasium/envs/classic_control/continuous_mountain_car.py as transcribed
 * in specs/sac_envs.md §3.3, with NumPy 1.x promotion: the step computes in
 * double (built with -ffp-contract=off) and Gymnasium re-stores the state as
 * float32 after every step, so this plugin rounds (p, v) to float after each
 * step too. The reset state is double [U(-0.6, -0.4), 0]. The reward
 * penalises the RAW action: 100 on reaching the goal, minus 0.1 a².
 *
 * Config keys ("key=value;..."), besides max_episode_steps (default 999, the
 * registration) and seed (see plugin_common.h):
 *   goal_velocity      constructor argument (default 0)
 *   reset_low, reset_high  position ~ U(low, high) at reset (Gymnasium's
 *                      reset options low/high; default -0.6, -0.4)
 *
 * Actions: a NaN action is treated as 0, in the force and in the penalty
 * (Gymnasium would turn the state into NaN for good); any other value is
 * clipped to [-1, 1] for the force and enters the penalty raw, as in
 * Gymnasium (so an infinite action gives reward -inf, not a crash).
 *
 * The plugin machinery (config, batch, errors, state hooks, vtable) is
 * envs/plugin_common.h; this file is the environment.
 */
#include "plugin_common.h"

#include <math.h>

#define MIN_ACTION (-1.0)
#define MAX_ACTION 1.0
#define MIN_POSITION (-1.2)
#define MAX_POSITION 0.6
#define MAX_SPEED 0.07
#define GOAL_POSITION 0.45
#define POWER 0.0015

/* Gymnasium's float32 bounds, widened to double. */
static const double obs_low[2] = {(double)(float)MIN_POSITION, (double)(float)-MAX_SPEED};
static const double obs_high[2] = {(double)(float)MAX_POSITION, (double)(float)MAX_SPEED};
static const double act_low[1] = {MIN_ACTION};
static const double act_high[1] = {MAX_ACTION};

enum { PARAM_GOAL_VELOCITY, PARAM_RESET_LOW, PARAM_RESET_HIGH }; /* in the order of params */

/* Gymnasium's maybe_parse_reset_bounds rejects low > high. */
static const envc_param params[] = {
    [PARAM_GOAL_VELOCITY] = {"goal_velocity", 0.0, -1e6, 1e6, NULL},
    [PARAM_RESET_LOW] = {"reset_low", -0.6, -1e6, 1e6, "reset_high"},
    [PARAM_RESET_HIGH] = {"reset_high", -0.4, -1e6, 1e6, NULL},
};

/* Gymnasium reset: [uniform(low, high), 0] in double. s = (position,
 * velocity). */
static void mountain_car_reset(double *s, nprng *rng, const double *param)
{
    s[0] = nprng_uniform(rng, param[PARAM_RESET_LOW], param[PARAM_RESET_HIGH]);
    s[1] = 0.0;
}

static void mountain_car_observe(const double *s, float *obs)
{
    obs[0] = (float)s[0];
    obs[1] = (float)s[1];
}

static void mountain_car_step(double *s, const void *action, const double *param, double *reward,
                              int *terminated)
{
    double a = *(const float *)action;
    if (isnan(a))
        a = 0.0;
    double position = s[0], velocity = s[1];
    double force = a < MIN_ACTION ? MIN_ACTION : a > MAX_ACTION ? MAX_ACTION : a;
    velocity += force * POWER - 0.0025 * cos(3 * position);
    if (velocity > MAX_SPEED)
        velocity = MAX_SPEED;
    if (velocity < -MAX_SPEED)
        velocity = -MAX_SPEED;
    position += velocity;
    if (position > MAX_POSITION)
        position = MAX_POSITION;
    if (position < MIN_POSITION)
        position = MIN_POSITION;
    if (position == MIN_POSITION && velocity < 0)
        velocity = 0;
    int term = position >= GOAL_POSITION && velocity >= param[PARAM_GOAL_VELOCITY];
    *terminated = term;
    *reward = (term ? 100.0 : 0.0) - (a * a) * 0.1; /* the raw action is penalised */
    s[0] = (float)position; /* Gymnasium stores the state as float32 */
    s[1] = (float)velocity;
}

static const envc_desc envc_env = {
    .name = "mountain_car_continuous",
    .version = "1.0",
    .summary =
        "MountainCarContinuous-v0: drive an underpowered car up a hill (Box(1) force, 999 steps)",
    .gym_id = "MountainCarContinuous-v0",
    .state_tag = 0x3143434d544c52ull, /* "RLTMCC1" little-endian */
    .max_episode_steps = 999,
    .obs = {ENV_SPACE_BOX, 2, 0, obs_low, obs_high},
    .act = {ENV_SPACE_BOX, 1, 0, act_low, act_high},
    .state_dim = 2,
    .params = params,
    .n_params = sizeof params / sizeof params[0],
    .reset_one = mountain_car_reset,
    .observe = mountain_car_observe,
    .step_one = mountain_car_step,
};

ENV_EXPORT const env_plugin *env_plugin_get(uint32_t host_abi_major)
{
    return envc_plugin_get(host_abi_major);
}
