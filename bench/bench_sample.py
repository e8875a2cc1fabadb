#!/usr/bin/python3
"""bench_sample.py -- the Python side of run_bench_sample.sh (issue 7): batched
sampling with a KV cache in eager PyTorch, to compare with bench_sample.c
(rollout/sampler.h's smp_generate on trainer/models/gpt.h's GPT).

The model is the same architecture as the C side (GPT-2 layout): token and
learned position embeddings, 4 pre-norm blocks (LayerNorm, causal
self-attention with separate q/k/v/o projections, LayerNorm, tanh-GELU MLP
4x wide), a final LayerNorm and a head tied to the token table; width 128, 4
heads, vocab 64, context 64, float32, GPT-2 initialisation (weights N(0,
0.02), residual projections N(0, 0.02/sqrt(2 * layers)), zero biases). The
weights are drawn from torch's generator seeded --seed, so they are not the
C side's numbers; the shapes and the work are the same.

The sampling loop is written the way a PyTorch user writes it (HF generate's
shape) under torch.inference_mode(): one forward of the prompts fills a
preallocated KV cache ([B, heads, P + new, head_dim] per layer, written in
place, attended up to the current length); then, per step, the last
position's logits are divided by the temperature, everything below the k-th
largest is set to -inf (top-k), softmax, torch.multinomial draws one token
per row, and that token goes through the model with the cache. No stop
tokens: every row gets --new tokens; tokens/s = batch * new / seconds.

Timing: time.perf_counter_ns around one generate() call; one untimed warm-up
call, then --reps timed calls, each printed, and the best. Cross-check
(untimed, one extra call): the mean log-prob of the sampled tokens under the
filtered distribution, close to -ln(top_k) for the freshly initialised model
(bench_sample.c prints its own).

Output: "py sample_t<T> rep_ms <ms>", "py sample_t<T> rep_tokens_per_s <v>",
"py sample_t<T> tokens_per_s <best>", "py check mean_logp <v>" and
"py info <key> <value...>" lines. Run with /usr/bin/python3 (the python3 on
PATH has no torch); run_bench_sample.sh sets GLIBC_TUNABLES to the malloc
settings of rt_tune_malloc().
"""
import argparse
import math
import os
import sys
import time

import torch
from torch import nn
import torch.nn.functional as F

# Defaults shared with bench_sample.c: change both or neither.
DEFAULTS = dict(threads=1, reps=5, batch=64, prompt=16, new=48, top_k=50, context=64, seed=0)
VOCAB, LAYERS, HEADS, WIDTH = 64, 4, 4, 128


class KVCache:
    """Preallocated keys and values of one layer: [B, H, max_len, D] each."""

    def __init__(self, batch, heads, max_len, head_dim):
        self.k = torch.empty(batch, heads, max_len, head_dim)
        self.v = torch.empty(batch, heads, max_len, head_dim)


class Attention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.o_proj = nn.Linear(width, width)

    def forward(self, x, cache, pos):
        b, t, c = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)  # [B,H,t,D]
        k = self.k_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        cache.k[:, :, pos:pos + t] = k
        cache.v[:, :, pos:pos + t] = v
        k = cache.k[:, :, :pos + t]  # [B,H,pos+t,D]
        v = cache.v[:, :, :pos + t]
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))  # [B,H,t,pos+t]
        if t > 1:  # the prefill: query i sees keys up to pos + i
            causal = torch.ones(t, pos + t, dtype=torch.bool).tril(diagonal=pos)
            att = att.masked_fill(~causal, float("-inf"))
        y = att.softmax(dim=-1) @ v  # [B,H,t,D]
        return self.o_proj(y.transpose(1, 2).reshape(b, t, c))


class Mlp(nn.Module):
    def __init__(self, width, hidden):
        super().__init__()
        self.fc = nn.Linear(width, hidden)
        self.proj = nn.Linear(hidden, width)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = Mlp(width, 4 * width)

    def forward(self, x, cache, pos):
        x = x + self.attn(self.ln_1(x), cache, pos)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab, context, layers, heads, width):
        super().__init__()
        self.heads, self.width = heads, width
        self.tok_emb = nn.Embedding(vocab, width)
        self.pos_emb = nn.Embedding(context, width)
        self.layers = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.init_gpt2(layers)

    def init_gpt2(self, layers):
        resid_std = 0.02 / math.sqrt(2 * layers)
        for name, p in self.named_parameters():
            if name.endswith(".bias"):
                nn.init.zeros_(p)
            elif "ln_" in name:
                nn.init.ones_(p)
            elif name.endswith("attn.o_proj.weight") or name.endswith("mlp.proj.weight"):
                nn.init.normal_(p, 0.0, resid_std)
            else:
                nn.init.normal_(p, 0.0, 0.02)

    def new_cache(self, batch, max_len):
        return [KVCache(batch, self.heads, max_len, self.width // self.heads) for _ in self.layers]

    def forward(self, ids, caches, pos):
        """ids [B,t] at positions pos..pos+t-1 -> logits [B,t,V]; appends to caches."""
        positions = torch.arange(pos, pos + ids.shape[1])
        x = self.tok_emb(ids) + self.pos_emb(positions)  # [B,t,C]
        for block, cache in zip(self.layers, caches):
            x = block(x, cache, pos)
        return F.linear(self.ln_f(x), self.tok_emb.weight)  # tied head


@torch.inference_mode()
def generate(model, prompts, new_tokens, temperature, top_k, generator, logps=None):
    """prompts [B,P] -> sampled tokens [B,new_tokens]. When logps is a list, the
    log-prob of every sampled token [B,1] is appended to it."""
    batch, prompt_len = prompts.shape
    caches = model.new_cache(batch, prompt_len + new_tokens)
    logits = model(prompts, caches, 0)[:, -1, :]  # [B,V]
    out = []
    for step in range(new_tokens):
        logits = logits / temperature
        if top_k > 0:
            kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # [B,1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = F.softmax(logits, dim=-1)
        token = torch.multinomial(probs, num_samples=1, generator=generator)  # [B,1]
        out.append(token)
        if logps is not None:
            logps.append(probs.gather(1, token).log())
        if step + 1 < new_tokens:
            logits = model(token, caches, prompt_len + step)[:, -1, :]
    return torch.cat(out, dim=1)


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
    p.add_argument("--temperature", type=float, default=1.0)
    cfg = p.parse_args()
    for key in ("threads", "reps", "batch", "prompt", "new", "context"):
        if getattr(cfg, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be >= 1")
    if not 0 <= cfg.top_k <= VOCAB:
        p.error(f"--top-k must be in [0, {VOCAB}]")
    if cfg.prompt + cfg.new > cfg.context:
        p.error(f"--prompt {cfg.prompt} + --new {cfg.new} exceed --context {cfg.context}")
    if not (cfg.temperature > 0 and math.isfinite(cfg.temperature)):
        p.error("--temperature must be a finite number > 0")

    torch.set_num_threads(cfg.threads)
    print(f"py info threads {torch.get_num_threads()}")
    print(f"py info blas {blas_library()}")
    print(f"py info torch {torch.__version__} python {sys.version.split()[0]}")
    print(f"py info glibc_tunables {os.environ.get('GLIBC_TUNABLES', '(unset)')}")
    print(f"py info config reps={cfg.reps} batch={cfg.batch} prompt={cfg.prompt} new={cfg.new} "
          f"top_k={cfg.top_k} temperature={cfg.temperature:g} context={cfg.context} seed={cfg.seed}",
          flush=True)

    torch.manual_seed(cfg.seed)
    model = GPT(VOCAB, cfg.context, LAYERS, HEADS, WIDTH).eval()
    gen = torch.Generator().manual_seed(cfg.seed)
    prompts = torch.randint(0, VOCAB, (cfg.batch, cfg.prompt), generator=gen)  # [B,P]

    name = f"sample_t{cfg.threads}"
    tokens = cfg.batch * cfg.new
    generate(model, prompts, cfg.new, cfg.temperature, cfg.top_k, gen)  # warm-up
    best = None
    for _ in range(cfg.reps):
        t0 = time.perf_counter_ns()
        sampled = generate(model, prompts, cfg.new, cfg.temperature, cfg.top_k, gen)
        ms = (time.perf_counter_ns() - t0) / 1e6
        assert sampled.shape == (cfg.batch, cfg.new)
        print(f"py {name} rep_ms {ms:.3f}")
        print(f"py {name} rep_tokens_per_s {tokens / (ms / 1e3):.0f}")
        best = ms if best is None else min(best, ms)
    print(f"py {name} tokens_per_s {tokens / (best / 1e3):.0f}")

    logps = []
    generate(model, prompts, cfg.new, cfg.temperature, cfg.top_k, gen, logps)  # untimed
    print(f"py check mean_logp {torch.cat(logps, dim=1).mean().item():.6f}", flush=True)


if __name__ == "__main__":
    main()
