#!/usr/bin/env python3
"""Dev-time check that TensorBoard itself reads titan.cpp's event files (not a CI dependency).

Loads every event file under DUMP_FOLDER/tb (or --tb-folder) with tensorboard's own
EventAccumulator, and checks that
  - TorchTitan's tags are there (loss_metrics/global_avg_loss, grad_norm, lr, throughput(tps),
    tflops, mfu(%), memory/*, time_metrics/*),
  - for every step in DUMP_FOLDER/metrics.jsonl, loss, grad_norm and lr read back equal to the
    JSONL's values at float32 precision.
Prints one line per tag and exits 1 on any mismatch.

Usage:  pip install tensorboard
        ./build/apps/run_train --job.config_file configs/llama3_debugmodel_cpu.toml \\
            --training.steps 20 --metrics.enable_tensorboard --job.dump_folder /tmp/tb_run
        python3 scripts/reference/check_tensorboard_run.py /tmp/tb_run
"""
import argparse
import json
import struct
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

TAGS = [
    "loss_metrics/global_avg_loss", "loss_metrics/global_max_loss", "grad_norm", "lr", "throughput(tps)", "tflops",
    "mfu(%)", "time_metrics/end_to_end(s)", "time_metrics/data_loading(s)", "time_metrics/data_loading(%)",
    "memory/max_active(GiB)", "memory/max_active(%)", "memory/max_reserved(GiB)", "memory/max_reserved(%)",
]
JSONL = {"loss_metrics/global_avg_loss": "loss", "grad_norm": "grad_norm", "lr": "lr"}


def f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dump_folder", type=Path)
    ap.add_argument("--tb-folder", default="tb")
    args = ap.parse_args()
    files = sorted((args.dump_folder / args.tb_folder).rglob("events.out.tfevents.*"))
    if not files:
        print(f"FAIL: no event files under {args.dump_folder / args.tb_folder}")
        return 1
    rows = {}
    for line in (args.dump_folder / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "loss" in r:
            rows[r["step"]] = r
    bad = 0
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        tags = acc.Tags()["scalars"]
        print(f"{f}: {len(tags)} scalar tags")
        for tag in TAGS:
            if tag not in tags:
                print(f"  FAIL: tag {tag} missing")
                bad += 1
                continue
            events = acc.Scalars(tag)
            line = f"  {tag}: {len(events)} points, steps {events[0].step}..{events[-1].step}"
            if tag in JSONL:
                for e in events:
                    want = rows.get(e.step, {}).get(JSONL[tag])
                    if want is None or f32(want) != e.value:
                        print(f"  FAIL: {tag} at step {e.step} reads {e.value}, metrics.jsonl has {want}")
                        bad += 1
                line += ", equal to metrics.jsonl"
            print(line)
    print("ok" if bad == 0 else f"{bad} mismatches")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
