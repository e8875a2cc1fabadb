#!/usr/bin/python3
"""bench_ops.py -- the work of bench_ops.c in eager PyTorch, for a side-by-side
comparison of rlt's C binding with Python (run_bench.sh runs both).

Same sizes, same defaults, same timing method (monotonic clock, warm-up, best
of --reps repetitions), same seeds and draw order, so the final MLP loss can be
compared with the C program's. Output lines: "py <name> <unit> <value>" and
"py info <key> <value...>".

Run with /usr/bin/python3 (the python3 on PATH has no torch). The malloc
tuning of rt_tune_malloc() is applied from outside, through GLIBC_TUNABLES
(run_bench.sh sets it), since Python cannot call mallopt before it allocates.
"""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

# Defaults shared with bench_ops.c: change both or neither.
DEFAULTS = dict(threads=1, reps=7, iters=20000, warmup=2000, reset_every=64,
                mlp_steps=200, mlp_warmup=20, seed=0)
MLP_BATCH, MLP_IN, MLP_HIDDEN, MLP_CLASSES = 256, 64, 64, 10


# One loop per op with the expression written inline, as eager code is
# written: a lambda or a function call per op would add ~60 ns of Python call
# overhead that real code does not pay. Each result is freed when `y` is
# rebound, the eager-Python counterpart of the C loop's periodic scope reset.
def run_add(a, b, n):
    for _ in range(n):
        y = a + b
    return y


def run_mul(a, b, n):
    for _ in range(n):
        y = a * b
    return y


def run_matmul(a, b, n):
    for _ in range(n):
        y = a @ b
    return y


def run_add_out(a, b, n, out):
    for _ in range(n):
        torch.add(a, b, out=out)


def run_mul_out(a, b, n, out):
    for _ in range(n):
        torch.mul(a, b, out=out)


def run_matmul_out(a, b, n, out):
    for _ in range(n):
        torch.mm(a, b, out=out)


def bench_out(cfg, name, run, a, b):
    """The out= form into a preallocated [8,8] under no_grad (out= is not differentiable)."""
    out = torch.empty(8, 8)
    best = None
    with torch.no_grad():
        run(a, b, max(cfg.warmup, 1), out)
        for _ in range(cfg.reps):
            t0 = time.perf_counter_ns()
            run(a, b, cfg.iters, out)
            per_op = (time.perf_counter_ns() - t0) / cfg.iters
            best = per_op if best is None else min(best, per_op)
    print(f"py {name} ns_per_op {best:.1f}", flush=True)


def bench_binary(cfg, name, run, a, b, no_grad):
    """Print the best-of-reps ns per op of the loop run(a, b, n)."""
    ctx = torch.no_grad() if no_grad else torch.enable_grad()
    best = None
    with ctx:
        run(a, b, max(cfg.warmup, 1))
        for _ in range(cfg.reps):
            t0 = time.perf_counter_ns()
            run(a, b, cfg.iters)
            per_op = (time.perf_counter_ns() - t0) / cfg.iters
            best = per_op if best is None else min(best, per_op)
    print(f"py {name} ns_per_op {best:.1f}", flush=True)


def mlp_train_step(net, opt, x, labels):
    """Forward, cross-entropy, backward, Adam, zero_grad; returns the loss."""
    loss = F.cross_entropy(net(x), labels)
    loss.backward()
    opt.step()
    opt.zero_grad()  # torch 1.13: zeroes in place, like rt_optim_zero_grad
    return loss


def bench_mlp(cfg):
    # The model draws from the global generator seeded like rt_gen_new(seed);
    # nn.Linear draws weight then bias, as nn_mlp_init does.
    torch.manual_seed(cfg.seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(MLP_IN, MLP_HIDDEN), torch.nn.ReLU(),
        torch.nn.Linear(MLP_HIDDEN, MLP_HIDDEN), torch.nn.ReLU(),
        torch.nn.Linear(MLP_HIDDEN, MLP_CLASSES))
    data_gen = torch.Generator().manual_seed(cfg.seed + 1)
    x = torch.randn(MLP_BATCH, MLP_IN, generator=data_gen)                          # [256,64]
    labels = torch.randint(0, MLP_CLASSES, (MLP_BATCH,), generator=data_gen)        # [256] int64
    opt = torch.optim.Adam(net.parameters())  # torch defaults: lr 1e-3

    for _ in range(cfg.mlp_warmup):
        mlp_train_step(net, opt, x, labels)
    best = None
    for _ in range(cfg.reps):
        t0 = time.perf_counter_ns()
        for _ in range(cfg.mlp_steps):
            mlp_train_step(net, opt, x, labels)
        per_step = (time.perf_counter_ns() - t0) / cfg.mlp_steps
        best = per_step if best is None else min(best, per_step)
    final_loss = mlp_train_step(net, opt, x, labels).item()
    print(f"py mlp_step us_per_step {best / 1e3:.2f}")
    print(f"py mlp_step final_loss {final_loss:.9g}", flush=True)


def blas_library():
    """The libblas.so.3 this process mapped (libtorch_cpu links it)."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if "libblas.so" in path or "libopenblas" in path:
                    return os.path.realpath(path)
    except OSError:
        pass
    return "unknown"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for key, value in DEFAULTS.items():
        p.add_argument("--" + key.replace("_", "-"), type=int, default=value)
    p.add_argument("--only", default=None,
                   help="run only these benchmarks (comma-separated, e.g. add_8x8,mlp_step)")
    cfg = p.parse_args()
    for key in ("threads", "reps", "iters", "reset_every", "mlp_steps"):
        if getattr(cfg, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be >= 1")

    only = None if cfg.only is None else set(cfg.only.split(","))

    def selected(name):
        return only is None or name in only

    torch.set_num_threads(cfg.threads)
    print(f"py info threads {torch.get_num_threads()}")
    print(f"py info blas {blas_library()}")
    print(f"py info torch {torch.__version__} python {sys.version.split()[0]}")
    print(f"py info glibc_tunables {os.environ.get('GLIBC_TUNABLES', '(unset)')}")
    print(f"py info config reps={cfg.reps} iters={cfg.iters} warmup={cfg.warmup} "
          f"reset_every={cfg.reset_every} (n/a in Python) mlp_steps={cfg.mlp_steps} "
          f"mlp_warmup={cfg.mlp_warmup} seed={cfg.seed}", flush=True)

    gen = torch.Generator().manual_seed(cfg.seed + 1)
    a = torch.randn(8, 8, generator=gen)  # [8,8]
    b = torch.randn(8, 8, generator=gen)  # [8,8]
    ops = [("add", run_add), ("mul", run_mul), ("matmul", run_matmul)]
    for no_grad in (False, True):
        for name, run in ops:
            full_name = f"{name}_8x8{'_nograd' if no_grad else ''}"
            if selected(full_name):
                bench_binary(cfg, full_name, run, a, b, no_grad)
    for name, run in (("add_8x8_out", run_add_out), ("mul_8x8_out", run_mul_out),
                      ("matmul_8x8_out", run_matmul_out)):
        if selected(name):
            bench_out(cfg, name, run, a, b)
    if selected("mlp_step"):
        bench_mlp(cfg)


if __name__ == "__main__":
    main()
