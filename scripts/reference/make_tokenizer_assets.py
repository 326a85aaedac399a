#!/usr/bin/env python3
"""Dev-time: builds the test tokenizer that ships with titan.cpp and the tokenizer golden file.

1. Trains a byte-level BPE (HF `tokenizers`, Llama 3's pre-tokenizer regex, 2000 tokens
   including <|begin_of_text|> and <|end_of_text|>) on the shipped synthetic corpus and writes
   tests/assets/tokenizer/tokenizer.json + tokenizer_config.json (model.hf_assets_path's default).
2. Writes the same vocabulary as a tiktoken rank file, tests/assets/tiktoken/tokenizer.model
   (base64 token bytes + rank per line, Llama 3's tokenizer.model format).
3. Encodes test strings with the real `tokenizers` and `tiktoken` packages and records the ids in
   tests/golden/tokenizers.json, which the C++ tests compare against.

Regenerate:  pip install tokenizers tiktoken && python3 scripts/reference/make_tokenizer_assets.py
"""
import base64
import json
from pathlib import Path

import tiktoken
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "assets" / "c4_test" / "c4_test.jsonl"
HF_DIR = ROOT / "tests" / "assets" / "tokenizer"
TT_DIR = ROOT / "tests" / "assets" / "tiktoken"
GOLDEN = ROOT / "tests" / "golden" / "tokenizers.json"
PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")
BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
TEXTS = [
    "Ada found a brass compass at the harbour.",
    "\"Where is the red notebook?\" asked Nils. Rosa pointed to the night market.",
    "Hello  world!!  It's 12345 or 678,9; we've won, I'LL see.",
    "Grüße aus Köln, 東京 and emoji 🚀🚀 — naïve café.",
    "\n\n  \tleading whitespace, trailing spaces   \n",
    f"{BOS}special tokens{EOS} inside text {BOS}",
    "zzzzqqqq xylophone unusualwords neverseen",
    "tabs\tand\r\nwindows line endings\r\n",
    "",
]


def main():
    texts = [json.loads(line)["text"] for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=[BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    HF_DIR.mkdir(parents=True, exist_ok=True)
    tok.save(str(HF_DIR / "tokenizer.json"))
    (HF_DIR / "tokenizer_config.json").write_text(json.dumps({"bos_token": BOS, "eos_token": EOS}, indent=2) + "\n")

    # tiktoken rank file: token bytes in id order (specials excluded; tiktoken appends them).
    byte_decoder = {c: b for b, c in bytes_to_unicode().items()}
    vocab = tok.get_vocab()
    ranks = {}
    for token, _id in sorted(vocab.items(), key=lambda kv: kv[1]):
        if token in (BOS, EOS):
            continue
        ranks[bytes(byte_decoder[c] for c in token)] = len(ranks)
    TT_DIR.mkdir(parents=True, exist_ok=True)
    with open(TT_DIR / "tokenizer.model", "w") as f:
        for b, r in ranks.items():
            f.write(f"{base64.b64encode(b).decode()} {r}\n")
    n = len(ranks)
    enc = tiktoken.Encoding("titan_test", pat_str=PATTERN, mergeable_ranks=ranks,
                            special_tokens={BOS: n, EOS: n + 1})

    cases = []
    for t in TEXTS:
        cases.append({"text": t, "hf": tok.encode(t).ids, "tiktoken": enc.encode(t, allowed_special="all")})
    meta = {"hf_vocab_size": tok.get_vocab_size(), "hf_bos": vocab[BOS], "hf_eos": vocab[EOS],
            "tiktoken_vocab_size": n + 2, "tiktoken_bos": n, "tiktoken_eos": n + 1,
            "generator": f"make_tokenizer_assets.py with tokenizers + tiktoken {tiktoken.__version__}"}
    GOLDEN.write_text(json.dumps({"meta": meta, "cases": cases}, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {HF_DIR}/tokenizer.json ({tok.get_vocab_size()} tokens), {TT_DIR}/tokenizer.model, {GOLDEN}")


def bytes_to_unicode():
    """GPT-2's byte -> printable unicode character map used by byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


if __name__ == "__main__":
    main()
