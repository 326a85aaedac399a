#!/usr/bin/env python3
"""Dev-time float64 oracle for titan.cpp's Llama 3 model (not a CI dependency).

A small, self-contained PyTorch implementation of the same model as src/models/llama3 (TorchTitan's
Llama 3: RMSNorm, RoPE on interleaved pairs with Llama 3.1 frequency scaling, GQA causal attention,
SwiGLU FFN, untied output), run in float64 on fixed float32 weights and tokens. It writes
tests/golden/llama3_tiny.safetensors holding:
  weights.<fqn>  float32   the weights (titan.cpp loads exactly these)
  tokens, targets int64    [batch, seq]; some targets are -100 (ignored by the loss)
  logits         float32   [batch * seq, vocab] from the float64 forward
  loss           float64   [1] mean cross-entropy over non-ignored targets
  grad.<fqn>     float32   d loss / d weight from the float64 backward
The model is debug-sized with GQA (n_kv_heads < n_heads), RoPE scaling on, and a sequence length
that is not a power of two.

Regenerate:  pip install torch && python3 scripts/reference/llama3_reference.py
"""
import math
from pathlib import Path

import torch

from safetensors_io import write_safetensors

OUT = Path(__file__).resolve().parents[2] / "tests" / "golden" / "llama3_tiny.safetensors"
ARGS = dict(dim=48, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=64, multiple_of=32, norm_eps=1e-5,
            rope_theta=500000.0, batch=2, seq_len=23)
SCALING = dict(scaling_factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192)


def ffn_hidden(dim: int, multiple_of: int) -> int:
    hidden = int(2 * (4 * dim) / 3)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


def rope_freqs(head_dim: int, seq_len: int, theta: float) -> torch.Tensor:
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    s = SCALING
    low_wavelen = s["original_max_position_embeddings"] / s["low_freq_factor"]
    high_wavelen = s["original_max_position_embeddings"] / s["high_freq_factor"]
    out = []
    for f in freqs.tolist():
        wavelen = 2 * math.pi / f
        if wavelen < high_wavelen:
            out.append(f)
        elif wavelen > low_wavelen:
            out.append(f / s["scaling_factor"])
        else:
            smooth = (s["original_max_position_embeddings"] / wavelen - s["low_freq_factor"]) / (
                s["high_freq_factor"] - s["low_freq_factor"])
            out.append((1 - smooth) * f / s["scaling_factor"] + smooth * f)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), torch.tensor(out, dtype=torch.float64))
    return torch.polar(torch.ones_like(angles), angles)  # complex128 [seq, head_dim / 2]


def rope(x: torch.Tensor, cis: torch.Tensor) -> torch.Tensor:
    # x [B, S, H, D]: pairs (x[2i], x[2i+1]) are complex numbers rotated by cis[s, i].
    xc = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * cis[None, :, None, :]).flatten(3)


def rmsnorm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def forward(W: dict, tokens: torch.Tensor, a: dict) -> torch.Tensor:
    B, S = tokens.shape
    H, KV = a["n_heads"], a["n_kv_heads"]
    D = a["dim"] // H
    cis = rope_freqs(D, S, a["rope_theta"])
    mask = torch.full((S, S), float("-inf"), dtype=torch.float64).triu(1)
    h = W["tok_embeddings.weight"][tokens]
    for i in range(a["n_layers"]):
        p = f"layers.{i}."
        x = rmsnorm(h, W[p + "attention_norm.weight"], a["norm_eps"])
        q = (x @ W[p + "attention.wq.weight"].T).view(B, S, H, D)
        k = (x @ W[p + "attention.wk.weight"].T).view(B, S, KV, D)
        v = (x @ W[p + "attention.wv.weight"].T).view(B, S, KV, D)
        q, k = rope(q, cis), rope(k, cis)
        k = k.repeat_interleave(H // KV, dim=2)
        v = v.repeat_interleave(H // KV, dim=2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, S, D]
        scores = q @ k.transpose(-1, -2) / math.sqrt(D) + mask
        o = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, S, H * D)
        h = h + o @ W[p + "attention.wo.weight"].T
        x = rmsnorm(h, W[p + "ffn_norm.weight"], a["norm_eps"])
        f = torch.nn.functional.silu(x @ W[p + "feed_forward.w1.weight"].T) * (x @ W[p + "feed_forward.w3.weight"].T)
        h = h + f @ W[p + "feed_forward.w2.weight"].T
    h = rmsnorm(h, W["norm.weight"], a["norm_eps"])
    return (h @ W["output.weight"].T).reshape(B * S, a["vocab_size"])


def shapes(a: dict) -> dict:
    D = a["dim"] // a["n_heads"]
    hid = ffn_hidden(a["dim"], a["multiple_of"])
    out = {"tok_embeddings.weight": (a["vocab_size"], a["dim"])}
    for i in range(a["n_layers"]):
        p = f"layers.{i}."
        out[p + "attention.wq.weight"] = (a["n_heads"] * D, a["dim"])
        out[p + "attention.wk.weight"] = (a["n_kv_heads"] * D, a["dim"])
        out[p + "attention.wv.weight"] = (a["n_kv_heads"] * D, a["dim"])
        out[p + "attention.wo.weight"] = (a["dim"], a["n_heads"] * D)
        out[p + "feed_forward.w1.weight"] = (hid, a["dim"])
        out[p + "feed_forward.w2.weight"] = (a["dim"], hid)
        out[p + "feed_forward.w3.weight"] = (hid, a["dim"])
        out[p + "attention_norm.weight"] = (a["dim"],)
        out[p + "ffn_norm.weight"] = (a["dim"],)
    out["norm.weight"] = (a["dim"],)
    out["output.weight"] = (a["vocab_size"], a["dim"])
    return out


def main() -> None:
    a = ARGS
    g = torch.Generator().manual_seed(20261123)
    W32 = {}
    for name, shape in shapes(a).items():
        if name.endswith("norm.weight"):
            W32[name] = 1.0 + 0.1 * torch.randn(shape, generator=g)  # not all ones: exercises dw paths
        elif name == "tok_embeddings.weight":
            W32[name] = torch.randn(shape, generator=g)
        else:
            W32[name] = 0.15 * torch.randn(shape, generator=g)
    tokens = torch.randint(0, a["vocab_size"], (a["batch"], a["seq_len"]), generator=g)
    targets = torch.randint(0, a["vocab_size"], (a["batch"], a["seq_len"]), generator=g)
    targets[0, 3] = -100
    targets[1, 10] = -100

    W = {k: v.double().requires_grad_(True) for k, v in W32.items()}
    logits = forward(W, tokens, a)
    loss = torch.nn.functional.cross_entropy(logits, targets.reshape(-1), ignore_index=-100)
    loss.backward()

    out = {f"weights.{k}": v for k, v in W32.items()}
    out["tokens"] = tokens
    out["targets"] = targets
    out["logits"] = logits.detach().float()
    out["loss"] = loss.detach().reshape(1)
    out.update({f"grad.{k}": v.grad.float() for k, v in W.items()})
    meta = {k: str(v) for k, v in a.items()}
    meta["generator"] = f"scripts/reference/llama3_reference.py with torch {torch.__version__}"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(OUT, out, meta)
    print(f"wrote {OUT}: loss {loss.item():.10f}, {sum(v.numel() for v in W32.values())} parameters")


if __name__ == "__main__":
    main()
