#!/usr/bin/env python3
"""Dev-time oracle for titan.cpp's optimizer, clipping and LR schedule (not a CI dependency).

Writes tests/golden/optim.safetensors:
  adamw.p<i>.init / adamw.p<i>.grad<k> / adamw.p<i>.step<k>  torch.optim.AdamW (float32, foreach off)
      on three odd-shaped parameters for 4 steps with lr following the schedule below, gradients
      clipped with torch.nn.utils.clip_grad_norm_(max_norm=1.0) before each step
  adamw.norms                                                 the pre-clip total norms
  sched.<case>                                                TorchTitan's warmup-stable-decay factors
The schedule function is a transcription of TorchTitan's linear_warmup_stable_decay (its
build_lr_schedulers logic), kept here so CI never needs torchtitan.

Regenerate:  pip install torch && python3 scripts/reference/make_optim_golden.py
"""
import json
import math
from pathlib import Path

import torch

from safetensors_io import write_safetensors

OUT = Path(__file__).resolve().parents[2] / "tests" / "golden" / "optim.safetensors"


def tt_schedule(total, warmup, decay_ratio, decay_type, min_lr_factor):
    warmup = min(warmup, total)
    if decay_ratio is not None:
        decay = round(total * decay_ratio)
        if warmup + decay > total:
            decay = total - warmup
    else:
        decay = total - warmup
    stable = total + 1 - warmup - decay

    def f(step):
        if step < warmup:
            return (step + 1) / warmup
        if step < warmup + stable:
            return 1.0
        progress = (step + 1 - (warmup + stable)) / decay
        if decay_type == "linear":
            adj = 1 - progress
        elif decay_type == "sqrt":
            adj = 1 - math.sqrt(progress)
        else:
            adj = 0.5 * (1.0 + math.cos(math.pi * progress))
        return min_lr_factor + (1 - min_lr_factor) * adj

    return [f(s) for s in range(total)]


SCHEDULES = {
    "linear_wsd": (10, 2, 0.8, "linear", 0.0),
    "cosine_min": (12, 3, None, "cosine", 0.1),
    "sqrt_half": (9, 2, 0.5, "sqrt", 0.0),
    "warmup_too_long": (5, 8, None, "linear", 0.0),
    "decay_too_long": (10, 4, 0.9, "linear", 0.2),
}


def main():
    out = {}
    for name, args in SCHEDULES.items():
        out[f"sched.{name}"] = torch.tensor(tt_schedule(*args), dtype=torch.float64)

    g = torch.Generator().manual_seed(7)
    params = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in ((7, 5), (13,), (3, 4, 3))]
    for i, p in enumerate(params):
        out[f"adamw.p{i}.init"] = p.detach().clone()
    opt = torch.optim.AdamW(params, lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, foreach=False)
    factors = tt_schedule(*SCHEDULES["linear_wsd"])
    norms = []
    for k in range(4):
        for i, p in enumerate(params):
            p.grad = torch.randn(p.shape, generator=g) * (0.3 if k % 2 else 3.0)  # some steps clip, some do not
            out[f"adamw.p{i}.grad{k}"] = p.grad.clone()
        norms.append(torch.nn.utils.clip_grad_norm_(params, max_norm=1.0).item())
        for group in opt.param_groups:
            group["lr"] = 1e-2 * factors[k]
        opt.step()
        for i, p in enumerate(params):
            out[f"adamw.p{i}.step{k}"] = p.detach().clone()
    out["adamw.norms"] = torch.tensor(norms, dtype=torch.float64)
    meta = {"schedules": json.dumps(SCHEDULES), "generator": f"make_optim_golden.py with torch {torch.__version__}"}
    write_safetensors(OUT, out, meta)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
