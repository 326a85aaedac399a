"""Minimal safetensors writer shared by the dev-time reference scripts (no `safetensors` package).

Layout: u64 little-endian header length, JSON header {name: {dtype, shape, data_offsets}, plus
"__metadata__"}, padded with spaces to 8 bytes, then the raw tensor bytes.
"""
import json
import struct
from pathlib import Path

import torch

DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64",
          torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2"}


def write_safetensors(path: Path, tensors: dict, metadata: dict) -> None:
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        raw = t.view(torch.uint8) if t.dtype in (torch.float8_e4m3fn, torch.float8_e5m2) else t
        data = raw.contiguous().numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))
