#!/usr/bin/python3
"""bench_grpo.py -- the work of bench_grpo.c in eager PyTorch, written the way
TRL's GRPOTrainer does it, for a side-by-side comparison (run_bench_grpo.sh
runs both).

Per step, from policy logits [B,T,V] float32 (a fresh leaf each repetition):
  logits = logits / temperature                       (_get_per_token_logps_and_entropies)
  logp   = selective_log_softmax(logits, ids)         (trl/trainer/utils.py, float32 branch:
                                                        gather, then logsumexp one row of the
                                                        batch at a time, stacked)
  coef_1 = exp(logp - old); coef_2 = clamp(coef_1, 1 - eps, 1 + eps)
  loss   = sum(-min(coef_1 * A, coef_2 * A) * mask) / max(sum(mask), 1)    (loss_type dapo)
  loss.backward()

Same sizes, defaults, seeds, draw order, timing method (monotonic clock,
warm-up, best and median of --reps) and output format as bench_grpo.c:
"py <name> <unit> <value>". Peak RSS comes from resource.getrusage
(ru_maxrss). Run with /usr/bin/python3 (the python3 on PATH has no torch); the
malloc tuning of rt_tune_malloc() comes through GLIBC_TUNABLES
(run_bench_grpo.sh sets it).
"""
import argparse
import os
import resource
import sys
import time

import torch

# Defaults shared with bench_grpo.c: change both or neither.
DEFAULTS = dict(threads=2, reps=5, warmup=1, B=8, T=512, V=8192, seed=0)
FLOAT_DEFAULTS = dict(temperature=1.0, epsilon=0.2)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def selective_log_softmax(logits, index):
    """TRL's float32/float64 branch: log_softmax(x)[i] = x[i] - logsumexp(x),
    with the logsumexp taken one batch row at a time to bound peak memory."""
    selected_logits = torch.gather(logits, dim=-1, index=index.unsqueeze(-1)).squeeze(-1)
    logsumexp_values = torch.stack([torch.logsumexp(lg, dim=-1) for lg in logits])
    return selected_logits - logsumexp_values


def grpo_loss(logits, ids, old, adv, mask, temperature, eps):
    logits = logits / temperature
    logp = selective_log_softmax(logits, ids)
    coef_1 = torch.exp(logp - old)
    coef_2 = torch.clamp(coef_1, 1 - eps, 1 + eps)
    per_token_loss1 = coef_1 * adv.unsqueeze(1)
    per_token_loss2 = coef_2 * adv.unsqueeze(1)
    per_token_loss = -torch.min(per_token_loss1, per_token_loss2)
    return (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for key, value in DEFAULTS.items():
        p.add_argument("--" + key, type=int, default=value)
    for key, value in FLOAT_DEFAULTS.items():
        p.add_argument("--" + key, type=float, default=value)
    cfg = p.parse_args()

    torch.set_num_threads(cfg.threads)
    B, T, V = cfg.B, cfg.T, cfg.V
    print(f"py info threads {torch.get_num_threads()}")
    print(f"py info torch {torch.__version__} python {sys.version.split()[0]}")
    print(f"py info glibc_tunables {os.environ.get('GLIBC_TUNABLES') or '(unset)'}")
    print(f"py rss base_mb {peak_rss_mb():.1f}")

    g = torch.Generator().manual_seed(cfg.seed)
    logits = torch.randn(B, T, V, generator=g).mul_(2.0)  # in place: no second [B,T,V]
    ids = torch.randint(0, V, (B, T), generator=g)
    noise = torch.randn(B, T, generator=g)
    adv = torch.randn(B, generator=g)
    with torch.no_grad():
        old = selective_log_softmax(logits / cfg.temperature, ids) + 0.1 * noise
    lens = T - torch.arange(B) * (T // (2 * B))
    mask = (torch.arange(T).unsqueeze(0) < lens.unsqueeze(1)).float()
    print(f"py rss inputs_mb {peak_rss_mb():.1f}")

    times, best_fwd, loss_v, last_grad = [], float("inf"), 0.0, None
    for r in range(-cfg.warmup, cfg.reps):
        x = logits.detach().requires_grad_()
        t0 = time.perf_counter()
        loss = grpo_loss(x, ids, old, adv, mask, cfg.temperature, cfg.epsilon)
        t1 = time.perf_counter()
        loss.backward()
        grad = x.grad
        t2 = time.perf_counter()
        if r >= 0:
            times.append((t2 - t0) * 1e3)
            best_fwd = min(best_fwd, (t1 - t0) * 1e3)
        if r == cfg.reps - 1:
            loss_v = loss.item()
            last_grad = grad
        del x, loss, grad
    peak = peak_rss_mb()  # before the cross-check, whose abs() is one more [B,T,V]
    gsum = last_grad.abs().sum().item()
    times.sort()
    print(f"py grpo_step ms {times[0]:.2f}")
    print(f"py grpo_step_median ms {times[len(times) // 2]:.2f}")
    print(f"py grpo_fwd ms {best_fwd:.2f}")
    print(f"py check loss {loss_v:.9g}")
    print(f"py check grad_abs_sum {gsum:.9g}")
    print(f"py rss peak_mb {peak:.1f}", flush=True)


if __name__ == "__main__":
    main()
