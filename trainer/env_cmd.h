/*
 * env_cmd.h -- the environment commands of the rlt CLI (see env_cmd.c):
 *
 *   rlt envs [--env-path DIR]...
 *       every plugin on the search path: control environments with their gym
 *       id, spaces, time limit and file; text tasks with their summary,
 *       alphabet, limits and item 0 (broken files are listed with the
 *       reason);
 *   rlt env replay NAME --seed S --actions A.h5 --out T.h5 [--env-path DIR]...
 *                       [--set key=value]...
 *       steps one environment through the stored actions and writes the
 *       trajectory, to check a plugin against another implementation.
 *
 * Both take the arguments after the command words ("envs", "env replay") and
 * return the process exit code: 0 done, 1 runtime error (a plugin failed
 * while stepping, a file could not be written), 2 usage or input error
 * (unknown option, plugin not found or broken, bad actions file).
 */
#ifndef RLT_ENV_CMD_H
#define RLT_ENV_CMD_H

int env_cmd_list(int argc, char **argv);
int env_cmd_replay(int argc, char **argv);

#endif /* RLT_ENV_CMD_H */
