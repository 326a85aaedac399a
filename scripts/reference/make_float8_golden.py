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

Regenerate:  pip install torch torchao && python3 scripts/reference/make_float8_golden.py
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

from safetensors_io import write_safetensors

OUT = Path(__file__).resolve().parents[2] / "tests" / "golden" / "float8.safetensors"


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
    for recipe in ("tensorwise", "rowwise", "rowwise_with_gw_hp"):
        cfg = Float8LinearConfig.from_recipe_name(recipe)
        cfg = Float8LinearConfig(**{**cfg.__dict__, "emulate": True})
        lin = torch.nn.Linear(48, 80, bias=False)
        with torch.no_grad():
            lin.weight.copy_(w)
        f8lin = Float8Linear.from_float(lin, config=cfg)
        xi = x.clone().requires_grad_(True)
        y = f8lin(xi)
        y.backward(gy)
        out[f"linear.{recipe}.y"] = y.detach()
        out[f"linear.{recipe}.gx"] = xi.grad
        out[f"linear.{recipe}.gw"] = f8lin.weight.grad
    meta = {"generator": f"make_float8_golden.py with torch {torch.__version__}, torchao {torchao.__version__}"}
    write_safetensors(OUT, out, meta)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
