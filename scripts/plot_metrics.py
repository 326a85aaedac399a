#!/usr/bin/env python3
"""Plots {dump_folder}/metrics.jsonl (written by run_train) as a PNG: loss (and validation loss)
and tokens/s per step. Dev-time helper: needs matplotlib (pip install matplotlib).

  python3 scripts/plot_metrics.py outputs/metrics.jsonl -o outputs/metrics.png
"""
import argparse
import json
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("metrics", type=Path, help="metrics.jsonl from run_train")
    p.add_argument("-o", "--output", type=Path, help="PNG to write (default: next to the metrics file)")
    args = p.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, loss, tps, vsteps, vloss = [], [], [], [], []
    for line in args.metrics.read_text().splitlines():
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
        raise SystemExit(f"error: {args.metrics} holds no training steps")

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    ax1.plot(steps, loss, label="train loss")
    if vsteps:
        ax1.plot(vsteps, vloss, "o-", label="validation loss")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(steps, tps, color="tab:green")
    ax2.set_ylabel("tokens/s per rank")
    ax2.set_xlabel("step")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    out = args.output or args.metrics.with_suffix(".png")
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
