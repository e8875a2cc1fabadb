#!/usr/bin/python3
"""gpt_reference.py -- the PyTorch twin of trainer/models/gpt.h for test_gpt.

    /usr/bin/python3 tests/gpt/gpt_reference.py OUT.bin

The build runs it (tests/gpt/CMakeLists.txt) and test_gpt.c reads OUT.bin.
Two seeded float64 models (tied and untied head) are written with their
state_dict, a left-padded batch of ids with its mask, and the logits of the
twin's forward. The twin follows the padding convention of tensor.h:
position ids max(cumsum(mask) - 1, 0), no attention to masked keys, and a
query with no visible key gets a zero attention output.

File format (little-endian), a sequence of records ended by name length 0:
    u32 name_len, name bytes, u8 kind (0 = float64, 1 = int64), u32 ndim,
    i64 dims[ndim], data (row-major)
"""
import math
import struct
import sys

import torch
from torch import nn


class Attention(nn.Module):
    def __init__(self, c, h):
        super().__init__()
        self.h, self.d = h, c // h
        self.q_proj = nn.Linear(c, c)
        self.k_proj = nn.Linear(c, c)
        self.v_proj = nn.Linear(c, c)
        self.o_proj = nn.Linear(c, c)

    def forward(self, x, mask):
        b, t, c = x.shape
        q, k, v = (p(x).view(b, t, self.h, self.d).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        att = q @ k.transpose(-2, -1) / math.sqrt(self.d)
        allowed = torch.ones(t, t, dtype=torch.bool).tril() & mask.bool()[:, None, None, :]
        att = att.masked_fill(~allowed, float("-inf")).softmax(-1)
        att = torch.nan_to_num(att, nan=0.0)  # a query with no visible key: zeros
        y = (att @ v).transpose(1, 2).reshape(b, t, c)
        return self.o_proj(y)


class Mlp(nn.Module):
    def __init__(self, c, hidden):
        super().__init__()
        self.fc = nn.Linear(c, hidden)
        self.proj = nn.Linear(hidden, c)

    def forward(self, x):
        return self.proj(nn.functional.gelu(self.fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, c, h, hidden):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c)
        self.attn = Attention(c, h)
        self.ln_2 = nn.LayerNorm(c)
        self.mlp = Mlp(c, hidden)

    def forward(self, x, mask):
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab, context, n_layer, n_head, d_model, hidden, tie):
        super().__init__()
        self.tie = tie
        self.tok_emb = nn.Embedding(vocab, d_model)
        self.pos_emb = nn.Embedding(context, d_model)
        self.layers = nn.ModuleList(Block(d_model, n_head, hidden) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model)
        if not tie:
            self.lm_head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, ids, mask):
        pos = (mask.long().cumsum(1) - 1).clamp(min=0)
        x = self.tok_emb(ids) + self.pos_emb(pos)
        for blk in self.layers:
            x = blk(x, mask)
        x = self.ln_f(x)
        w = self.tok_emb.weight if self.tie else self.lm_head.weight
        return x @ w.T


def record(f, name, t):
    t = t.detach().contiguous()
    kind = 1 if t.dtype == torch.int64 else 0
    if kind == 0:
        t = t.to(torch.float64)
    f.write(struct.pack("<I", len(name)) + name.encode())
    f.write(struct.pack("<BI", kind, t.dim()))
    f.write(struct.pack("<%dq" % t.dim(), *t.shape))
    f.write(t.numpy().tobytes())


def main(out):
    torch.set_default_dtype(torch.float64)
    # Left-padded batch: full, 4 real, 1 real, no real token at all.
    lengths = [7, 4, 1, 0]
    T = 7
    mask = torch.zeros(len(lengths), T, dtype=torch.int64)
    for b, n in enumerate(lengths):
        mask[b, T - n:] = 1
    with open(out, "wb") as f:
        for prefix, seed, cfg in (("tied", 11, (11, 16, 2, 2, 8, 32, True)),
                                  ("untied", 12, (11, 16, 3, 2, 8, 12, False))):
            torch.manual_seed(seed)
            model = GPT(*cfg)
            with torch.no_grad():  # well away from LayerNorm's flat spots
                for p in model.parameters():
                    p.normal_(0.0, 0.5)
            ids = torch.randint(0, cfg[0], (len(lengths), T)) * mask  # pad id 0
            vocab, context, n_layer, n_head, d_model, hidden, tie = cfg
            record(f, prefix + "/config", torch.tensor(
                [vocab, context, n_layer, n_head, d_model, hidden, int(tie)], dtype=torch.int64))
            for k, v in model.state_dict().items():
                record(f, prefix + "/param/" + k, v)
            record(f, prefix + "/ids", ids)
            record(f, prefix + "/mask", mask)
            record(f, prefix + "/logits", model(ids, mask))
        f.write(struct.pack("<I", 0))


if __name__ == "__main__":
    main(sys.argv[1])
