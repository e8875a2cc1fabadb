#!/usr/bin/python3
"""torch_reference.py -- prints the PyTorch numbers hard-coded in test_nn.c.

Run with Debian's interpreter (the one that has torch):
    /usr/bin/python3 tests/nn/torch_reference.py
Each block names the C array it feeds. The models mirror nn.h's naming and
initialisation order, so the same seed gives the same parameters on both sides.
"""
import math

import torch
from torch import nn


def c_array(name, t, fmt="%.17g"):
    vals = ", ".join(fmt % v for v in t.detach().flatten().tolist())
    print("static const double %s[%d] = {%s};" % (name, t.numel(), vals))


# 1. Hand-set weights: Sequential(Linear(3,4), GELU(), Linear(4,2), Tanh()), float64.
torch.set_default_dtype(torch.float64)
seq = nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 2), nn.Tanh())
hand = {
    "0.weight": [[0.1, -0.2, 0.3], [0.4, 0.5, -0.6], [-0.7, 0.8, 0.9], [1.0, -1.1, 0.05]],
    "0.bias": [0.01, -0.02, 0.03, -0.04],
    "2.weight": [[0.2, -0.3, 0.4, -0.5], [0.6, 0.7, -0.8, 0.9]],
    "2.bias": [0.1, -0.1],
}
seq.load_state_dict({k: torch.tensor(v) for k, v in hand.items()}, strict=True)
x = torch.tensor([[1.0, 2.0, 3.0], [-0.5, 0.25, -1.5]])
print("/* state_dict keys: %s */" % ", ".join(seq.state_dict().keys()))
c_array("HAND_OUT", seq(x))

# 2. Seeded init, float32: torch.manual_seed(1234); Sequential(Linear(3,4), ReLU(), Linear(4,2)).
torch.set_default_dtype(torch.float32)
torch.manual_seed(1234)
seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
flat = torch.cat([p.detach().flatten() for p in seq.parameters()])
c_array("SEED_MLP_PARAMS", flat, "%.9g")
c_array("SEED_MLP_OUT", seq(torch.tensor([[1.0, 2.0, 3.0], [-0.5, 0.25, -1.5]])), "%.9g")

# 3. Seeded Embedding(5, 3), float32.
torch.manual_seed(7)
emb = nn.Embedding(5, 3)
c_array("SEED_EMB", emb.weight, "%.9g")


# 4. Seeded pre-norm block, float64, laid out like nn.h's nn_block.
class Attention(nn.Module):
    def __init__(self, c, h):
        super().__init__()
        self.h, self.d = h, c // h
        self.q_proj = nn.Linear(c, c)
        self.k_proj = nn.Linear(c, c)
        self.v_proj = nn.Linear(c, c)
        self.o_proj = nn.Linear(c, c)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = (p(x).view(b, t, self.h, self.d).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        att = q @ k.transpose(-2, -1) / math.sqrt(self.d)
        mask = torch.ones(t, t, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, c)
        return self.o_proj(y)


class Mlp(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc = nn.Linear(c, 4 * c)
        self.proj = nn.Linear(4 * c, c)

    def forward(self, x):
        return self.proj(nn.functional.gelu(self.fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, c, h):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c)
        self.attn = Attention(c, h)
        self.ln_2 = nn.LayerNorm(c)
        self.mlp = Mlp(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


torch.set_default_dtype(torch.float64)
torch.manual_seed(42)
block = Block(8, 2)
x = torch.randn(1, 4, 8)
print("/* block state_dict keys: %s */" % ", ".join(block.state_dict().keys()))
c_array("SEED_BLOCK_OUT", block(x))
