#!/usr/bin/env python3
"""Plots {dump_folder}/metrics.jsonl (written by run_train) as a PNG: loss (and validation loss)
and tokens/s per step; several runs overlay for comparison. Dev-time helper: needs matplotlib
(pip install matplotlib).

  python3 scripts/plot_metrics.py outputs/metrics.jsonl -o outputs/metrics.png
  python3 scripts/plot_metrics.py bf16/metrics.jsonl f8/metrics.jsonl --labels bf16 float8 -o cmp.png
"""
import argparse
import json
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("metrics", type=Path, nargs="+", help="metrics.jsonl file(s) from run_train")
    p.add_argument("--labels", nargs="+", help="one label per file (default: the folder names)")
    p.add_argument("-o", "--output", type=Path, help="PNG to write (default: next to the first metrics file)")
    args = p.parse_args()
    labels = args.labels or [m.parent.name for m in args.metrics]
    if len(labels) != len(args.metrics):
        raise SystemExit("error: give one --labels entry per metrics file")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for path, label in zip(args.metrics, labels):
        steps, loss, tps, vsteps, vloss = [], [], [], [], []
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            if "validation_loss" in r:
                vsteps.append(r["step"])
                vloss.append(r["validation_loss"])
            else:
                steps.append(r["step"])
                loss.append(r["loss"])
                tps.append(r["tps"])
        if not steps:
            raise SystemExit(f"error: {path} holds no training steps")
        suffix = f" ({label})" if len(args.metrics) > 1 else ""
        ax1.plot(steps, loss, label="train loss" + suffix)
        if vsteps:
            ax1.plot(vsteps, vloss, "o-", label="validation loss" + suffix)
        ax2.plot(steps, tps, label=label)
    ax1.set_ylabel("loss")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.set_ylabel("tokens/s per rank")
    ax2.set_xlabel("step")
    ax2.grid(alpha=0.3)
    if len(args.metrics) > 1:
        ax2.legend()
    fig.tight_layout()
    out = args.output or args.metrics[0].with_suffix(".png")
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
