#!/usr/bin/env python3
"""Dev-time oracle for titan.cpp's TensorBoard event files (not a CI dependency).

Writes tests/golden/tensorboard.tfevents: a few TFRecord-framed tensorflow.Event protobufs made
by the `tensorboard` package itself (its event_pb2 / summary_pb2 messages and its RecordWriter),
with fixed wall times so the bytes are reproducible:
  1. file_version "brain.Event:2" at wall_time 1700000000.25 (step 0, so proto3 omits it)
  2. scalar "loss_metrics/global_avg_loss" = 3.25 at step 7, wall_time 1700000001.5
  3. scalar "mfu(%)" = 0.0 at step 300 (a oneof field: written although zero)
  4. scalar "lr" = -1.5e-4 at step 2**40 (a multi-byte varint), wall_time 1700000002.125
tests/unit/test_tensorboard.cpp encodes the same events with src/train/tensorboard.cpp and
compares the bytes.

Regenerate:  pip install tensorboard && python3 scripts/reference/make_tensorboard_golden.py
"""
import io
from pathlib import Path

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

OUT = Path(__file__).resolve().parents[2] / "tests" / "golden" / "tensorboard.tfevents"


def scalar(wall_time: float, step: int, tag: str, value: float) -> event_pb2.Event:
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
    return event_pb2.Event(wall_time=wall_time, step=step, summary=summary)


def main() -> None:
    events = [
        event_pb2.Event(wall_time=1700000000.25, file_version="brain.Event:2"),
        scalar(1700000001.5, 7, "loss_metrics/global_avg_loss", 3.25),
        scalar(1700000001.5, 300, "mfu(%)", 0.0),
        scalar(1700000002.125, 2**40, "lr", -1.5e-4),
    ]
    buf = io.BytesIO()
    writer = RecordWriter(buf)
    for e in events:
        writer.write(e.SerializeToString())
    OUT.write_bytes(buf.getvalue())
    print(f"wrote {OUT} ({len(buf.getvalue())} bytes)")


if __name__ == "__main__":
    main()
