#!/usr/bin/env python3
"""Dev-time oracle for titan.cpp's delayed float8 scaling (not a CI dependency).

torchao removed delayed scaling after 0.9.0 (pytorch/ao#1753, "delete delayed scaling from
torchao.float8", first released in 0.10.0), so this script needs torchao 0.9.0 and the torch it
was built for (2.6):

    python3 -m venv /tmp/delayed_venv
    /tmp/delayed_venv/bin/pip install 'torch==2.6.0' 'torchao==0.9.0' safetensors numpy
    /tmp/delayed_venv/bin/python scripts/reference/make_float8_delayed_golden.py

It trains one Float8Linear (StatefulFloat8Linear: input, weight and grad_output all
ScalingType.DELAYED, DelayedScalingConfig(history_len=4), emulate=True, CPU) step by step, calling
torchao's sync_float8_amax_and_scale_history after each step.

torchao 0.9.0's sync never updates the layers' amax history buffers: it rolls the histories in a
torch.vstack() copy (float8_linear_utils.py, _update_history_stack on the stacked copy), takes the
new scales from that copy, and drops it, so each layer's fp8_amax_history_* keeps the value its
first step initialised ([a_1, 0, 0, 0]) and every later scale is fp8_max / max(a_k, a_1) whatever
history_len says. That is a bug (the function's docstring and its test promise a rolling
history), not a semantics to reproduce, so the main sequence below runs torchao's own sync and
then writes the rolled history back into the buffers with torchao's own _update_history_stack
(sync_and_keep_history): every cast, scale, initialisation and reduction is torchao's code, with
the history it meant to keep. The scales of the unmodified torchao are stored too
(as_released.scale.*), so the test can show what the release really does.

Written to tests/golden/float8_delayed.safetensors:

  w.<k>                   the weight used in step k (set before the step; no optimizer)
  x.<k>.<m>, gy.<k>.<m>   input [2, 4, 32] and output gradient [2, 4, 16] of micro-batch m of step k
  y.<k>.<m>, gx.<k>.<m>, gw.<k>.<m>   output, input gradient, weight gradient of that micro-batch
  history.<role>.<k>      fp8_amax_history_<role> after step k's sync, torchao's layout: [4],
                          newest first, zero-filled
  scale.<role>.<k>        fp8_scale_<role> after step k's sync (what step k + 1 casts with) [1]
  amax.<role>.<k>         fp8_amax_<role> after step k's sync (the amax that joined the history) [1]
  roles: input, weight, grad_output
  as_released.scale.<role>.<k>   fp8_scale_<role> after step k of the same run with torchao's sync
                          unmodified (same inputs)

The inputs change scale from step to step so that saturation (a tensor larger than its history
says), the history window (a large amax that keeps later small tensors' scales low until it
rolls out) and gradient accumulation (step 3: two micro-batches, the second smaller) all show.

  dp2.w.<k>, dp2.r<r>.{x,gy,y,gx,gw}.<k>, dp2.r<r>.{history,scale}.<role>.<k>
                          the same layer on 2 ranks (gloo, one micro-batch per step, 3 steps):
                          every rank sees its own input; amaxes are MAX-all-reduced by the sync
                          (and, in step 1, by torchao's amax initialisation).
"""
import os
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torchao
from torchao.float8 import Float8LinearConfig, convert_to_float8_training
from torchao.float8.config import CastConfig, DelayedScalingConfig, ScalingType
from torchao.float8.float8_linear_utils import _update_history_stack, sync_float8_amax_and_scale_history

from safetensors_io import write_safetensors

OUT = Path(__file__).resolve().parents[2] / "tests" / "golden" / "float8_delayed.safetensors"
HISTORY_LEN = 4
M_SHAPE, K, N = (2, 4), 32, 16
ROLES = ("input", "weight", "grad_output")

# Per step: weight factor, and per micro-batch (input factor, grad_output factor).
STEPS = [
    (1.0, [(1.0, 1.0)]),                # 1: no history yet (torchao initialises it from this step)
    (1.0, [(4.0, 0.01)]),               # 2: input 4x its history: saturates at 448
    (2.0, [(0.5, 1.0), (0.25, 1.0)]),   # 3: two micro-batches: which amax joins the history?
    (2.0, [(8.0, 100.0)]),              # 4: input and grad_output (e5m2) saturate
    (0.5, [(0.1, 1.0)]),                # 5-8: small inputs cast with the scale of step 4's amax
    (1.0, [(0.1, 1.0)]),
    (1.0, [(0.1, 1.0)]),
    (3.0, [(0.1, 1.0)]),
    (1.0, [(0.1, 1.0)]),                # 9: step 4's amax has left the 4-step window
]
DP_STEPS = [  # per step: weight factor, (input factor, grad_output factor) for rank 0 and rank 1
    (1.0, [(1.0, 1.0), (3.0, 0.5)]),
    (1.0, [(2.0, 1.0), (1.0, 2.0)]),
    (1.5, [(1.0, 0.3), (0.5, 1.0)]),
]


def config():
    # One CastConfig per operand: Float8LinearConfig fills a missing target_dtype in place, so a
    # shared instance would give grad_output e4m3 instead of e5m2.
    def delayed(dtype):
        return CastConfig(scaling_type=ScalingType.DELAYED, target_dtype=dtype)

    cfg = Float8LinearConfig(cast_config_input=delayed(torch.float8_e4m3fn), cast_config_weight=delayed(torch.float8_e4m3fn),
                             cast_config_grad_output=delayed(torch.float8_e5m2),
                             delayed_scaling_config=DelayedScalingConfig(history_len=HISTORY_LEN), emulate=True)
    assert cfg.cast_config_grad_output.target_dtype == torch.float8_e5m2
    assert cfg.cast_config_grad_output_for_grad_weight.target_dtype == torch.float8_e5m2
    return cfg


def make_model(w0):
    lin = torch.nn.Linear(K, N, bias=False)
    with torch.no_grad():
        lin.weight.copy_(w0)
    model = torch.nn.Sequential(lin)
    convert_to_float8_training(model, config=config())
    layer = model[0]
    assert type(layer).__name__ == "StatefulFloat8Linear", type(layer)
    return model, layer


def sync_and_keep_history(model, layer):
    """torchao's sync, then the rolled history it computed written back into the layer's buffers."""
    before = {r: getattr(layer, f"fp8_amax_history_{r}").detach().clone() for r in ROLES}
    sync_float8_amax_and_scale_history(model)
    for r in ROLES:
        history = getattr(layer, f"fp8_amax_history_{r}")
        assert torch.equal(history, before[r]), "torchao updated the history buffer itself: drop the write-back"
        with torch.no_grad():
            # The same call the sync makes on its stacked copy, here on the buffer (a [1, L] view).
            _update_history_stack(getattr(layer, f"fp8_amax_{r}").detach().reshape(1, 1), history.view(1, -1))


def run_micro(model, layer, x, gy):
    layer.weight.grad = None
    xi = x.clone().requires_grad_(True)
    y = model(xi)
    y.backward(gy)
    return y.detach().clone(), xi.grad.clone(), layer.weight.grad.clone()


def record_state(layer, out, prefix, k, with_amax=True):
    for role in ROLES:
        out[f"{prefix}history.{role}.{k}"] = getattr(layer, f"fp8_amax_history_{role}").detach().clone().float()
        out[f"{prefix}scale.{role}.{k}"] = getattr(layer, f"fp8_scale_{role}").detach().clone().float().reshape(1)
        if with_amax:
            out[f"{prefix}amax.{role}.{k}"] = getattr(layer, f"fp8_amax_{role}").detach().clone().float().reshape(1)


def single_process(g, out, keep_history=True):
    w0 = torch.randn(N, K, generator=g) * 0.2
    model, layer = make_model(w0)
    for k, (wf, micros) in enumerate(STEPS, start=1):
        w = w0 * wf
        with torch.no_grad():
            layer.weight.copy_(w)
        out[f"w.{k}"] = w
        for m, (xf, gf) in enumerate(micros):
            # A fresh pattern per micro-batch, scaled: its amax is about the factor times 2.5-3.
            x = torch.randn(*M_SHAPE, K, generator=g) * xf
            gy = torch.randn(*M_SHAPE, N, generator=g) * gf
            y, gx, gw = run_micro(model, layer, x, gy)
            out[f"x.{k}.{m}"], out[f"gy.{k}.{m}"] = x, gy
            out[f"y.{k}.{m}"], out[f"gx.{k}.{m}"], out[f"gw.{k}.{m}"] = y, gx, gw
        if keep_history:
            sync_and_keep_history(model, layer)
            record_state(layer, out, "", k)
        else:
            sync_float8_amax_and_scale_history(model)
            for role in ROLES:
                out[f"as_released.scale.{role}.{k}"] = getattr(layer, f"fp8_scale_{role}").detach().clone().float().reshape(1)


def dp_worker(rank, world, init_file, result_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    g = torch.Generator().manual_seed(99)  # the same stream on both ranks; each takes its own draws
    w0 = torch.randn(N, K, generator=g) * 0.2
    model, layer = make_model(w0)
    out = {}
    for k, (wf, per_rank) in enumerate(DP_STEPS, start=1):
        w = w0 * wf
        with torch.no_grad():
            layer.weight.copy_(w)
        draws = [(torch.randn(*M_SHAPE, K, generator=g), torch.randn(*M_SHAPE, N, generator=g)) for _ in range(world)]
        xf, gf = per_rank[rank]
        x, gy = draws[rank][0] * xf, draws[rank][1] * gf
        y, gx, gw = run_micro(model, layer, x, gy)
        p = f"dp2.r{rank}."
        if rank == 0:
            out[f"dp2.w.{k}"] = w
        out[p + f"x.{k}"], out[p + f"gy.{k}"] = x, gy
        out[p + f"y.{k}"], out[p + f"gx.{k}"], out[p + f"gw.{k}"] = y, gx, gw
        sync_and_keep_history(model, layer)
        record_state(layer, out, p, k, with_amax=False)
    torch.save(out, os.path.join(result_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


def main():
    torch.set_num_threads(1)
    out = {}
    single_process(torch.Generator().manual_seed(12), out)
    released = {}
    single_process(torch.Generator().manual_seed(12), released, keep_history=False)
    out.update({k: v for k, v in released.items() if k.startswith("as_released.")})
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(dp_worker, args=(2, os.path.join(tmp, "init"), tmp), nprocs=2, join=True)
        for r in range(2):
            out.update(torch.load(os.path.join(tmp, f"rank{r}.pt")))
    meta = {"generator": f"make_float8_delayed_golden.py with torch {torch.__version__}, torchao {torchao.__version__}",
            "history_len": str(HISTORY_LEN), "steps": str(len(STEPS)), "dp2_steps": str(len(DP_STEPS)),
            "micro_batches": ",".join(str(len(m)) for _, m in STEPS)}
    write_safetensors(OUT, out, meta)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(out)} tensors)")


if __name__ == "__main__":
    main()
