"""Golden files for titan.cpp's HF interop, made with transformers (dev-time only).

Writes tests/golden/hf_tiny/{config.json, model.safetensors}: a small random LlamaForCausalLM
(float32; norms randomised too, so that every tensor matters), and tests/golden/hf_tiny_logits.safetensors:
fixed tokens and the model's logits. ctest's `hf_check` then loads the folder with titan.cpp and
compares its logits and an HF -> titan.cpp -> HF round trip.

With a built titan.cpp (`--build build`), it also proves the other direction: it exports the same
weights through titan.cpp (hf_check --export), loads that export into transformers and checks the
logits again.

With --llama2 it writes the same for a Llama 2 model (RoPE base 10000, no RoPE scaling):
tests/golden/hf_tiny_llama2/ and hf_tiny_llama2_logits.safetensors.

usage: python3 scripts/reference/make_hf_golden.py [--llama2] [--build build]
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).parent))
from safetensors_io import write_safetensors  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"


def logits_of(model_dir: Path, tokens: torch.Tensor) -> torch.Tensor:
    model = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, attn_implementation="eager")
    with torch.no_grad():
        return model(tokens.view(1, -1)).logits[0].float()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", help="titan.cpp build folder: also check titan.cpp's export in transformers")
    ap.add_argument("--llama2", action="store_true", help="a Llama 2 model: rope_theta 10000, no rope_scaling")
    args = ap.parse_args()
    rope = (dict(rope_theta=10000.0, rope_scaling=None) if args.llama2 else
            dict(rope_theta=500000.0, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}))
    golden = "hf_tiny_llama2" if args.llama2 else "hf_tiny"
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=128, max_position_embeddings=64, rms_norm_eps=1e-5, **rope,
        tie_word_embeddings=False, torch_dtype="float32")
    model = LlamaForCausalLM(config).float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.08)
    out = GOLDEN / golden
    model.save_pretrained(out, safe_serialization=True)
    for extra in ("generation_config.json",):
        (out / extra).unlink(missing_ok=True)
    tokens = torch.tensor([1, 17, 5, 99, 42, 3, 127, 64, 8, 15, 23, 77], dtype=torch.int64)
    logits = logits_of(out, tokens)
    write_safetensors(GOLDEN / f"{golden}_logits.safetensors", {"tokens": tokens, "logits": logits},
                      {"source": "transformers " + __import__("transformers").__version__ + ", LlamaForCausalLM eager, float32"})
    print(f"wrote {out} and {golden}_logits.safetensors ({tuple(logits.shape)} logits)")

    if args.build:
        tool = Path(args.build) / "apps" / "hf_check"
        subprocess.run([tool, out, "--check-logits", GOLDEN / f"{golden}_logits.safetensors", "--check-roundtrip"], check=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([tool, out, "--export", tmp], check=True)
            theirs = logits_of(Path(tmp), tokens)
            err = ((theirs - logits).abs().max() / logits.abs().max()).item()
            print(f"transformers on titan.cpp's export: max |diff| / max|logit| = {err:.3g}")
            assert err <= 1e-4, err
            print("config.json of the export:", json.dumps(json.loads((Path(tmp) / "config.json").read_text()))[:200], "...")


if __name__ == "__main__":
    main()
