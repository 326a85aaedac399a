#!/usr/bin/env python3
"""Dev-time oracle for titan.cpp's float8 training numerics (not a CI dependency).

Uses the real torchao (emulate mode, CPU) to write tests/golden/float8.safetensors:
  cast.<case>.x                     float32 input [33, 48]
  cast.<case>.<cfg>.scale / .data   scale (float32) and float8 data (F8_E4M3 / F8_E5M2) for
      tw_e4m3   tensorwise, e4m3              tw_e5m2   tensorwise, e5m2
      row_e4m3  axiswise over dim -1 (rows), e4m3, power-of-2 scales
      col_e4m3  axiswise over dim 0 (columns), e4m3, power-of-2 scales
  linear.x, linear.w, linear.gy     input [3, 7, 48], weight [80, 48], grad of the output
  linear.<recipe>.y / .gx / .gw     Float8Linear (emulate=True) output and gradients, float32
Cases: a normal tensor, one spanning 1e-30..1e30 with zeros, and one holding inf and NaN.

It also writes tests/golden/float8_gemms.safetensors: the float8 operands torchao's emulated GEMMs
really received, captured at its float8 mm (emulate mode: torch.mm(a._data.float() / a._scale,
b._data.float() / b._scale).to(orig_dtype)), in scaled_mm's layout (titan ops.hpp):
  gemm.<case>.x [2, 8, 32], .w [48, 32], .gy [2, 8, 48]      Float8Linear's input, weight, grad
  gemm.<case>.<recipe>.<gemm>.a / .sa / .b / .sb              y[M, N] = (a[M, K] / sa) (b[N, K] / sb)^T,
      a and b float8 with the contraction dim last, sa [1] or [M, 1], sb [1] or [N, 1]
      <gemm>: output (y = x W^T), grad_input (dx = dy W), grad_weight (dW = dy^T x; absent when
      the recipe keeps it in high precision)
  gemm.<case>.<recipe>.y / .gx / .gw                          torchao's output and gradients
Cases: "general" (normal values) and "exact": values that are multiples of 2^-5 with magnitudes in
[0.25, 3.5] (zeros too), each tensor holding +-3.5 so that even tensorwise scales (448 / 3.5,
57344 / 3.5) are powers of two. Dequantizing is then exact and every product and partial sum of
every GEMM (the high-precision one included) is representable in float32, which the script
checks: any summation order gives the same bits, so titan.cpp must reproduce y, gx and gw bit for
bit, not just to float32 rounding.

Written for torch 2.15 and torchao 0.18 (the versions recorded in the files' metadata):
  python3 -m venv /tmp/f8venv && /tmp/f8venv/bin/pip install torch==2.15.0 torchao==0.18.0
  /tmp/f8venv/bin/python scripts/reference/make_float8_golden.py
"""
import json
from pathlib import Path

import torch
import torchao
from torchao.float8 import Float8LinearConfig
from torchao.float8.float8_linear import Float8Linear
from torchao.float8.float8_scaling_utils import hp_tensor_to_float8_dynamic
from torchao.float8.config import ScalingGranularity
from torchao.float8.float8_training_tensor import LinearMMConfig
import torchao.float8.float8_ops as float8_ops

from safetensors_io import write_safetensors

OUT = Path(__file__).resolve().parents[2] / "tests" / "golden" / "float8.safetensors"
GEMMS_OUT = OUT.with_name("float8_gemms.safetensors")
RECIPES = ("tensorwise", "rowwise", "rowwise_with_gw_hp")


def float8_linear(recipe, w):
    cfg = Float8LinearConfig.from_recipe_name(recipe)
    cfg = Float8LinearConfig(**{**cfg.__dict__, "emulate": True})
    lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    return Float8Linear.from_float(lin, config=cfg)


def capture_float8_mms():
    """Wraps torchao's float8 mm so that every call records its Float8TrainingTensor operands."""
    calls = []
    for op in (torch.ops.aten.mm.default, torch.ops.aten.matmul.default):
        inner = float8_ops.FLOAT8_OPS_TABLE[op]

        def wrapped(aten_op, args, kwargs=None, inner=inner):
            out = inner(aten_op, args, kwargs)
            calls.append((args[0], args[1], out))
            return out

        float8_ops.FLOAT8_OPS_TABLE[op] = wrapped
    return calls


def scale_vector(scale, rows):
    """A torchao scale (scalar, [rows, 1] or [1, rows]) as scaled_mm's [1] or [rows, 1]."""
    s = scale.float().reshape(-1)
    assert s.numel() in (1, rows)
    return s.reshape(1) if s.numel() == 1 else s.reshape(rows, 1)


def granularity(t):
    """The largest power of two p such that every value of float64 tensor t is a multiple of 1/p."""
    p = 1.0
    while not torch.all(torch.frac(t * p) == 0):
        p *= 2.0
        assert p < 2.0**60
    return p


def check_exact_gemm(a, b):
    """Every product and partial sum of a[M, K] b[N, K]^T is a float32 value in any summation order:
    products are multiples of 1/(pa pb) and every partial sum is below sum |a||b|."""
    a, b = a.double(), b.double()
    bound = (a.abs() @ b.abs().t()).max().item() * granularity(a) * granularity(b)
    assert bound < 2.0**24, f"a GEMM of the exact case is not exact in float32 ({bound:.3g} >= 2^24)"


def exact_values(shape, g):
    """Multiples of 2^-5 with magnitudes in [0.25, 3.5] (and a few zeros), one of them +-3.5."""
    mag = torch.randint(8, 113, shape, generator=g).double() / 32.0
    sign = torch.where(torch.rand(shape, generator=g) < 0.5, -1.0, 1.0)
    t = (mag * sign).float()
    flat = t.view(-1)
    flat[torch.randint(0, flat.numel(), (3,), generator=g)] = 0.0
    flat[torch.randint(0, flat.numel(), (1,), generator=g)] = -3.5 if torch.rand(1, generator=g).item() < 0.5 else 3.5
    return t


def make_gemm_golden(calls):
    g = torch.Generator().manual_seed(12)
    cases = {
        "general": (torch.randn(2, 8, 32, generator=g), torch.randn(48, 32, generator=g) * 0.2,
                    torch.randn(2, 8, 48, generator=g)),
        "exact": (exact_values((2, 8, 32), g), exact_values((48, 32), g), exact_values((2, 8, 48), g)),
    }
    out = {}
    for cname, (x, w, gy) in cases.items():
        out[f"gemm.{cname}.x"], out[f"gemm.{cname}.w"], out[f"gemm.{cname}.gy"] = x, w, gy
        for recipe in RECIPES:
            f8lin = float8_linear(recipe, w)
            xi = x.clone().requires_grad_(True)
            calls.clear()
            y = f8lin(xi)
            y.backward(gy)
            key = f"gemm.{cname}.{recipe}"
            names = ["output", "grad_input"] + ([] if recipe == "rowwise_with_gw_hp" else ["grad_weight"])
            assert len(calls) == len(names), f"{recipe}: {len(calls)} float8 GEMMs"
            for name, (a, b, res) in zip(names, calls):
                a8, b8 = a._data.contiguous(), b._data.t().contiguous()  # b [N, K]: K contiguous
                sa, sb = scale_vector(a._scale, a8.shape[0]), scale_vector(b._scale, b8.shape[0])
                out[f"{key}.{name}.a"], out[f"{key}.{name}.sa"] = a8, sa
                out[f"{key}.{name}.b"], out[f"{key}.{name}.sb"] = b8, sb
                deq_a, deq_b = a8.float() / sa, b8.float() / sb
                assert torch.equal(res, (deq_a @ deq_b.t()).to(res.dtype)), f"{key}.{name}: layout mix-up"
                if cname == "exact":
                    check_exact_gemm(deq_a, deq_b)
            if cname == "exact" and recipe == "rowwise_with_gw_hp":  # the high-precision dW = dy^T x
                check_exact_gemm(gy.reshape(-1, 48).t(), x.reshape(-1, 32).t())
            out[f"{key}.y"], out[f"{key}.gx"], out[f"{key}.gw"] = y.detach(), xi.grad, f8lin.weight.grad
    return out


def main():
    g = torch.Generator().manual_seed(8)
    cases = {}
    cases["normal"] = torch.randn(33, 48, generator=g) * 3.0
    wide = torch.randn(33, 48, generator=g) * (10.0 ** torch.randint(-30, 31, (33, 48), generator=g).float())
    wide[0, :] = 0.0  # an all-zero row: amax 0 -> EPS
    wide[:, 5] = 0.0  # an all-zero column
    cases["wide"] = wide
    special = torch.randn(33, 48, generator=g)
    special[2, 3] = float("inf")
    special[4, 7] = float("nan")
    cases["special"] = special

    out = {}
    cfgs = {
        "tw_e4m3": (torch.float8_e4m3fn, ScalingGranularity.TENSORWISE, None, False),
        "tw_e5m2": (torch.float8_e5m2, ScalingGranularity.TENSORWISE, None, False),
        "row_e4m3": (torch.float8_e4m3fn, ScalingGranularity.AXISWISE, -1, True),
        "col_e4m3": (torch.float8_e4m3fn, ScalingGranularity.AXISWISE, 0, True),
    }
    mm = LinearMMConfig()
    for cname, x in cases.items():
        out[f"cast.{cname}.x"] = x
        for name, (dt, gran, dim, pow2) in cfgs.items():
            f8 = hp_tensor_to_float8_dynamic(x, dt, mm, scaling_granularity=gran, axiswise_dim=dim,
                                             round_scales_to_power_of_2=pow2)
            out[f"cast.{cname}.{name}.scale"] = f8._scale.float().reshape(-1)
            out[f"cast.{cname}.{name}.data"] = f8._data

    x = torch.randn(3, 7, 48, generator=g)
    w = torch.randn(80, 48, generator=g) * 0.2
    gy = torch.randn(3, 7, 80, generator=g)
    out["linear.x"], out["linear.w"], out["linear.gy"] = x, w, gy
    for recipe in RECIPES:
        f8lin = float8_linear(recipe, w)
        xi = x.clone().requires_grad_(True)
        y = f8lin(xi)
        y.backward(gy)
        out[f"linear.{recipe}.y"] = y.detach()
        out[f"linear.{recipe}.gx"] = xi.grad
        out[f"linear.{recipe}.gw"] = f8lin.weight.grad
    meta = {"generator": f"make_float8_golden.py with torch {torch.__version__}, torchao {torchao.__version__}"}
    write_safetensors(OUT, out, meta)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    write_safetensors(GEMMS_OUT, make_gemm_golden(capture_float8_mms()), meta)
    print(f"wrote {GEMMS_OUT} ({GEMMS_OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
