/*
 * loss_cmd.h -- `rlt loss`: evaluate a registered loss on tensors stored in
 * HDF5 and write the loss, its gradients and metrics (see loss_cmd.c).
 */
#ifndef RLT_LOSS_CMD_H
#define RLT_LOSS_CMD_H

#include <stdio.h>

/* Runs loss NAME on IN.h5's root datasets, writes OUT.h5. Returns the process
 * exit code: 0, 1 (runtime failure) or 2 (unknown loss, setting or input). */
int loss_cmd_run(const char *name, const char *in_path, const char *out_path, const char *const *sets, int nsets);

/* Every registered loss with its inputs (symbolic shapes) and settings. */
void loss_cmd_help(FILE *out);

#endif /* RLT_LOSS_CMD_H */
