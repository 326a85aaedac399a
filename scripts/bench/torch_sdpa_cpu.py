#!/usr/bin/env python3
"""PyTorch baseline for scripts/bench_cpu_attention.sh (dev-time only: pip install torch).

Causal GQA attention forward and backward through F.scaled_dot_product_attention(is_causal=True)
on q [B, S, H, D], k/v [B, S, KV, D] float32, the layout titan.cpp's kernel takes (transposed views
to [B, H, S, D], as TorchTitan does). Two ways to do GQA, both timed, the faster one reported:
TorchTitan's repeat_kv before SDPA, and SDPA's own enable_gqa. Times are the best of --iters after
one warm-up, in CPU milliseconds of this process (robust to a shared machine's time slicing);
prints one line: `torch fwd X ms bwd Y ms (variant)`.
"""
import argparse
import time

import torch
import torch.nn.functional as F


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    B, S, H, KV, D = a.batch, a.seq, a.heads, a.kv_heads, a.head_dim
    q = torch.randn(B, S, H, D, requires_grad=True)
    k = torch.randn(B, S, KV, D, requires_grad=True)
    v = torch.randn(B, S, KV, D, requires_grad=True)
    dout = torch.randn(B, H, S, D).transpose(1, 2).contiguous().transpose(1, 2)  # grad of out's [B, H, S, D] view
    best = None
    for variant in ("repeat_kv", "enable_gqa"):
        fwd = bwd = float("inf")
        for it in range(a.iters + 1):
            for t in (q, k, v):
                t.grad = None
            t0 = time.process_time()
            qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            if variant == "repeat_kv":
                kt, vt = kt.repeat_interleave(H // KV, dim=1), vt.repeat_interleave(H // KV, dim=1)
                out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True)
            else:
                out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=H > KV)
            t1 = time.process_time()
            out.backward(dout)
            t2 = time.process_time()
            if it > 0:
                fwd, bwd = min(fwd, t1 - t0), min(bwd, t2 - t1)
        if best is None or fwd + bwd < best[0] + best[1]:
            best = (fwd, bwd, variant)
    print(f"torch fwd {best[0] * 1e3:.1f} ms bwd {best[1] * 1e3:.1f} ms ({best[2]})")


if __name__ == "__main__":
    main()
