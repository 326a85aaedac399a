#!/usr/bin/env python3
"""PyTorch eager float32 baseline for scripts/bench_cpu_model.sh (dev-time only: pip install torch).

The same Llama 3 model as titan.cpp (TorchTitan's architecture: RMSNorm, RoPE with Llama 3.1
scaling, GQA causal attention through F.scaled_dot_product_attention, SwiGLU, untied output),
timed for one training step on `--threads` CPU threads: forward, backward, clip_grad_norm_ and
AdamW (foreach=False, like titan.cpp's per-parameter loop); --no-optimizer times forward + backward.
"""
import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
from llama3_reference import SCALING, ffn_hidden  # noqa: E402

FLAVORS = {"debugmodel": dict(dim=256, n_layers=6, n_heads=16, n_kv_heads=16, vocab_size=2048, multiple_of=256)}


def rope_cis(head_dim, seq_len, theta=500000.0):
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2).float() / head_dim))
    s = SCALING
    wavelen = 2 * math.pi / freqs
    low, high = s["original_max_position_embeddings"] / s["low_freq_factor"], s["original_max_position_embeddings"] / s["high_freq_factor"]
    smooth = (s["original_max_position_embeddings"] / wavelen - s["low_freq_factor"]) / (s["high_freq_factor"] - s["low_freq_factor"])
    scaled = torch.where(wavelen > low, freqs / s["scaling_factor"],
                         torch.where(wavelen < high, freqs, (1 - smooth) * freqs / s["scaling_factor"] + smooth * freqs))
    angles = torch.outer(torch.arange(seq_len).float(), scaled)
    return torch.polar(torch.ones_like(angles), angles)


class Block(torch.nn.Module):
    def __init__(self, a):
        super().__init__()
        d, h, kv = a["dim"], a["n_heads"], a["n_kv_heads"]
        hd, hid = d // h, ffn_hidden(d, a["multiple_of"])
        self.h, self.kv, self.hd = h, kv, hd
        self.wq, self.wk, self.wv = (torch.nn.Linear(d, n * hd, bias=False) for n in (h, kv, kv))
        self.wo = torch.nn.Linear(h * hd, d, bias=False)
        self.w1, self.w3 = torch.nn.Linear(d, hid, bias=False), torch.nn.Linear(d, hid, bias=False)
        self.w2 = torch.nn.Linear(hid, d, bias=False)
        self.attention_norm, self.ffn_norm = torch.nn.RMSNorm(d, eps=1e-5), torch.nn.RMSNorm(d, eps=1e-5)

    def rope(self, x, cis):
        xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
        return torch.view_as_real(xc * cis[None, :, None, :]).flatten(3)

    def forward(self, x, cis):
        B, S, _ = x.shape
        y = self.attention_norm(x)
        q = self.rope(self.wq(y).view(B, S, self.h, self.hd), cis).transpose(1, 2)
        k = self.rope(self.wk(y).view(B, S, self.kv, self.hd), cis).transpose(1, 2)
        v = self.wv(y).view(B, S, self.kv, self.hd).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.h != self.kv)
        h = x + self.wo(o.transpose(1, 2).reshape(B, S, -1))
        z = self.ffn_norm(h)
        return h + self.w2(F.silu(self.w1(z)) * self.w3(z))


class Model(torch.nn.Module):
    def __init__(self, a, seq):
        super().__init__()
        self.tok_embeddings = torch.nn.Embedding(a["vocab_size"], a["dim"])
        self.layers = torch.nn.ModuleList(Block(a) for _ in range(a["n_layers"]))
        self.norm = torch.nn.RMSNorm(a["dim"], eps=1e-5)
        self.output = torch.nn.Linear(a["dim"], a["vocab_size"], bias=False)
        self.register_buffer("cis", rope_cis(a["dim"] // a["n_heads"], seq))

    def forward(self, tokens):
        h = self.tok_embeddings(tokens)
        for layer in self.layers:
            h = layer(h, self.cis)
        return self.output(self.norm(h)).flatten(0, 1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--flavor", default="debugmodel")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-optimizer", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    a = FLAVORS[args.flavor]
    model = Model(a, args.seq)
    n = args.batch * args.seq
    tokens = (torch.arange(n) * 7919 % a["vocab_size"]).view(args.batch, args.seq)
    targets = (torch.arange(n) * 7919 + 1) % a["vocab_size"]
    opt = torch.optim.AdamW(model.parameters(), lr=8e-4, betas=(0.9, 0.95), weight_decay=0.1, foreach=False)
    times, loss = [], None
    for it in range(args.warmup + args.iters):
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(tokens), targets)
        loss.backward()
        if not args.no_optimizer:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        dt = time.perf_counter() - t0
        if it >= args.warmup:
            times.append(dt)
    mean = sum(times) / len(times)
    what = "fwd+bwd" if args.no_optimizer else "full step"
    print(f"pytorch {torch.__version__} eager f32 {args.flavor} batch {args.batch} seq {args.seq} threads {args.threads} {what}: "
          f"loss {loss.item():.4f}, mean {mean:.3f} s/step, best {min(times):.3f} s, {n / mean:.0f} tokens/s")


if __name__ == "__main__":
    main()
