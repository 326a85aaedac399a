#!/usr/bin/env python3
"""Writes the bad-input corpus of tokenizer files, .tokens files and tokenize_dataset inputs
(tests/bad_inputs/tokenizers, README.md there) and the fuzz seed corpora (tests/fuzz/corpus).
Standard library only; run from anywhere: python3 tests/bad_inputs/tokenizers/make_corpus.py"""
import base64
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def byte_symbols():
    """GPT-2's byte -> visible character map."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out, n = {}, 256
    for b in range(256):
        if b in printable:
            out[b] = chr(b)
        else:
            out[b] = chr(n)
            n += 1
    return out


def small_tokenizer():
    """A valid byte-level BPE tokenizer.json of a few KB: 2 specials, 256 byte symbols, 7 merges."""
    sym = byte_symbols()
    vocab = {"<|begin_of_text|>": 0, "<|end_of_text|>": 1}
    for b in range(256):
        vocab[sym[b]] = 2 + b
    merges = [["Ġ", "t"], ["h", "e"], ["Ġt", "he"], ["a", "b"], ["ab", "c"], ["i", "n"], ["in", "g"]]
    for l, r in merges:
        vocab.setdefault(l + r, len(vocab))
    added = [{"id": 0, "content": "<|begin_of_text|>", "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True},
             {"id": 1, "content": "<|end_of_text|>", "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True}]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


CONFIG = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}


def hf_cases():
    """name -> (tokenizer.json text, tokenizer_config.json text or None, expected message part)."""
    cases = {}

    def case(name, expect, mutate=None, config=None, raw=None):
        t = small_tokenizer()
        if mutate:
            mutate(t)
        text = raw if raw is not None else json.dumps(t, ensure_ascii=False, indent=1)
        cases[name] = (text, config, expect)

    def setv(key, value):
        return lambda t: t["model"]["vocab"].__setitem__(key, value)

    case("negative_vocab_id", "model.vocab['ab'] has id -1", setv("ab", -1))
    case("negative_added_id", "added_tokens[1].id has id -7", lambda t: t["added_tokens"][1].__setitem__("id", -7))
    case("huge_vocab_id", "has id 4294967296", setv("ab", 4294967296))
    case("huge_added_id", "added_tokens[0].id has id 2000000000",
         lambda t: t["added_tokens"][0].__setitem__("id", 2000000000))
    case("gap_vocab_id", "numbers its tokens with large gaps", setv("ab", 100000))
    case("string_vocab_id", "model.vocab['ab'] is the string '260', expected an integer", setv("ab", "260"))
    case("float_vocab_id", "model.vocab['ab'] is the number 260.5", setv("ab", 260.5))
    case("empty_vocab", "has an empty model.vocab", lambda t: t["model"].__setitem__("vocab", {}))
    case("vocab_is_list", "model.vocab that is a list", lambda t: t["model"].__setitem__("vocab", []))
    case("no_vocab", "has no model.vocab", lambda t: t["model"].pop("vocab"))
    case("duplicate_vocab_id", "both have id 258", setv("zz", 258))
    case("missing_byte_symbol", "has no token for byte 0x41", lambda t: t["model"]["vocab"].pop("A"))
    case("merge_one_part", "model.merges[3] = 'ab' is not two tokens separated by one space",
         lambda t: t["model"]["merges"].__setitem__(3, "ab"))
    case("merge_three_parts", "model.merges[0] = '\\xc4\\xa0 t x' is not two tokens",
         lambda t: t["model"]["merges"].__setitem__(0, "Ġ t x"))
    case("merge_unknown_part", "'zzz' is not in model.vocab", lambda t: t["model"]["merges"].append(["a", "zzz"]))
    case("merge_result_not_in_vocab", "the merged token 'ba' is not in model.vocab",
         lambda t: t["model"]["merges"].append(["b", "a"]))
    case("merge_is_number", "model.merges[2] is the number 5", lambda t: t["model"]["merges"].__setitem__(2, 5))
    case("merge_list_of_three", "model.merges[1] is a list", lambda t: t["model"]["merges"].__setitem__(1, ["h", "e", "x"]))
    case("merge_part_not_string", "model.merges[1] is a list", lambda t: t["model"]["merges"].__setitem__(1, ["h", 3]))
    case("merges_is_string", "a model.merges that is the string", lambda t: t["model"].__setitem__("merges", "a b"))
    case("no_merges", "has no model.merges", lambda t: t["model"].pop("merges"))
    case("duplicate_merge", "model.merges[7] = 'a b' repeats model.merges[3]",
         lambda t: t["model"]["merges"].append(["a", "b"]))
    case("added_id_conflict", "added_tokens[1] '<|end_of_text|>' has id 258, which model.vocab",
         lambda t: (t["added_tokens"][1].__setitem__("id", 258), t["model"]["vocab"].pop("<|end_of_text|>")))
    case("added_id_disagrees", "but model.vocab gives it id 1",
         lambda t: t["added_tokens"][1].__setitem__("id", 5000))
    case("added_content_missing", "added_tokens[0].content is missing", lambda t: t["added_tokens"][0].pop("content"))
    case("added_content_number", "added_tokens[0].content is the number 12",
         lambda t: t["added_tokens"][0].__setitem__("content", 12))
    case("added_content_empty", "added_tokens[1].content is the string ''",
         lambda t: t["added_tokens"][1].__setitem__("content", ""))
    case("added_no_id", "added_tokens[0] ('<|begin_of_text|>') has no \"id\"", lambda t: t["added_tokens"][0].pop("id"))
    case("added_duplicate", "added_tokens[2] '<|end_of_text|>' repeats added_tokens[1]",
         lambda t: t["added_tokens"].append(dict(t["added_tokens"][1])))
    case("added_is_object", "has added_tokens that is an object", lambda t: t.__setitem__("added_tokens", {}))
    case("added_entry_string", "added_tokens[0] is the string", lambda t: t["added_tokens"].__setitem__(0, "<s>"))
    case("top_level_list", "its top level is a list", raw="[1, 2, 3]")
    case("top_level_string", "its top level is the string", raw='"tokenizer"')
    case("not_json", "is not valid JSON: it breaks at line 1", raw="{ \"model\": ")
    case("not_json_garbage", "is not valid JSON", raw="\x7fELF\x02\x01\x01 binary junk")
    case("empty_file", "is not valid JSON", raw="")
    case("model_is_string", "has no \"model\" object", lambda t: t.__setitem__("model", "BPE"))
    case("no_model", "has no \"model\" object", lambda t: t.pop("model"))
    case("model_type_number", "model.type is the number 5, expected a string", lambda t: t["model"].__setitem__("type", 5))
    case("model_type_unigram", "has a Unigram model", lambda t: t["model"].__setitem__("type", "Unigram"))
    case("byte_fallback_string", "model.byte_fallback is the string 'yes', expected true or false",
         lambda t: t["model"].__setitem__("byte_fallback", "yes"))
    case("ignore_merges_number", "model.ignore_merges is the number 1", lambda t: t["model"].__setitem__("ignore_merges", 1))
    case("pre_tokenizer_number", "pre_tokenizer is the number 5", lambda t: t.__setitem__("pre_tokenizer", 5))
    case("pretokenizers_not_list", "pretokenizers is an object",
         lambda t: t["pre_tokenizer"].__setitem__("pretokenizers", {}))
    case("pre_step_type_list", "pre_tokenizer.pretokenizers[1].type is a list",
         lambda t: t["pre_tokenizer"]["pretokenizers"][1].__setitem__("type", []))
    case("split_regex_number", "pre_tokenizer.pretokenizers[0].pattern.Regex is the number 7",
         lambda t: t["pre_tokenizer"]["pretokenizers"][0]["pattern"].__setitem__("Regex", 7))
    case("split_regex_broken", "does not compile at offset",
         lambda t: t["pre_tokenizer"]["pretokenizers"][0]["pattern"].__setitem__("Regex", "(unclosed"))
    case("use_regex_string", "use_regex is the string 'no'",
         lambda t: t["pre_tokenizer"]["pretokenizers"][1].__setitem__("use_regex", "no"))
    case("long_token_cut", "... (5000 bytes)", setv("q" * 5000, -1))
    case("control_bytes_escaped", "model.vocab['\\x01\\x02\\x1b[31m'] has id -3", setv("\x01\x02\x1b[31m", -3))
    case("bos_not_in_vocab", "bos_token '<s>' is not in the vocabulary", config=json.dumps({"bos_token": "<s>"}))
    case("eos_not_in_vocab", "eos_token '</s>' is not in the vocabulary",
         config=json.dumps({"bos_token": "<|begin_of_text|>", "eos_token": "</s>"}))
    case("bos_is_number", "bos_token is the number 3", config=json.dumps({"bos_token": 3}))
    case("bos_object_no_content", "bos_token is an object", config=json.dumps({"bos_token": {"id": 0}}))
    case("config_not_json", "tokenizer_config.json' is not valid JSON", config="{ bos_token: ")
    case("config_is_list", "tokenizer_config.json' is a list", config="[]")
    return cases


def rank_file(tokens):
    return "".join(base64.b64encode(tok).decode() + " " + str(rank) + "\n" for tok, rank in tokens)


def byte_ranks():
    return [(bytes([b]), b) for b in range(256)]


def tiktoken_cases():
    """name -> (tokenizer.model bytes, expected message part)."""
    good = byte_ranks() + [(b"ab", 256), (b"abc", 257), (b" t", 258)]
    cases = {
        "no_byte_tokens": (rank_file([(b"ab", 0), (b"cd", 1), (b"ef", 2)]), "has no token for the single byte 0x00"),
        "one_byte_missing": (rank_file([(t, r if r < 0x41 else r - 1) for t, r in byte_ranks() if t != b"A"]),
                             "has no token for the single byte 0x41"),
        "duplicate_rank": (rank_file(good + [(b"xyz", 257)]), "repeats rank 257 of line 258"),
        "duplicate_token": (rank_file(good + [(b"ab", 259)]), "repeats the token of line 257 ('ab')"),
        "huge_rank": (rank_file(byte_ranks() + [(b"ab", 1073741823)]), "has rank 1073741823, but the file holds 257 tokens"),
        "rank_too_large": (rank_file(byte_ranks() + [(b"ab", 99999999999)]), "has rank 99999999999, but the file holds 257"),
        "rank_gap": (rank_file(byte_ranks() + [(b"ab", 300)]), "has rank 300, but the file holds 257 tokens"),
        "negative_rank": ("QQ== -1\n", "has no valid rank ('-1'"),
        "rank_not_number": ("QQ== abc\n", "has no valid rank ('abc'"),
        "rank_overflow": ("QQ== 99999999999999999999999\n", "has no valid rank"),
        "bad_base64": ("!!!! 0\n", "token '!!!!' is not valid base64"),
        "bad_base64_padding": ("QQ= 0\n", "token 'QQ=' is not valid base64"),
        "empty_token": (" 5\n", "token '' is not valid base64"),
        "no_space": ("QUJD\n", ":1 'QUJD' is not '<base64 token> <rank>'"),
        "empty_file": ("", "holds no tokens"),
        "blank_lines": ("\n\n\r\n\n", "holds no tokens"),
        "sentencepiece_binary": (b"\x0a\x0b\x0a\x05<unk>\x15\x00\x00\x00\x00\x18\x02\x0a\x09\x0a\x03<s>\x15", "is not '<base64 token> <rank>'"),
        "json_instead": (json.dumps({"model": {"type": "BPE"}}), "is not valid base64 of a non-empty token"),
        "long_line_cut": ("A" * 3000 + "\n", "... (3000 bytes)"),
    }
    return cases


def tokens_file(tokens, version=1, width=2, count=None, vocab=300, extra=b""):
    count = len(tokens) if count is None else count
    body = b"".join(struct.pack("<H" if width == 2 else "<I", t) for t in tokens)
    return b"TITANTOK" + struct.pack("<IIQQ", version, width, count, vocab) + body + extra


def tokens_cases():
    """name -> (.tokens bytes, expected message part); read with a tokenizer of 300 tokens."""
    return {
        "trailing_bytes": (tokens_file([1, 2, 3], count=2), "has 2 trailing bytes after the 2 tokens its header counts"),
        "appended_file": (tokens_file([5, 6], extra=tokens_file([7, 8])), "trailing bytes"),
        "odd_trailing_byte": (tokens_file([1, 2], extra=b"\x00"), "has 1 trailing bytes"),
        "truncated": (tokens_file([1, 2, 3], count=10), "is truncated: the header promises 10 tokens"),
        "huge_count": (tokens_file([1], count=2**63), "is truncated: the header promises 9223372036854775808 tokens"),
        "bad_magic": (b"NOTATOK!" + tokens_file([1])[8:], "does not start with TITANTOK"),
        "short_header": (b"TITANTOK\x01\x00", "shorter than the 32-byte header"),
        "empty_file": (b"", "0 bytes, shorter than the 32-byte header"),
        "version_2": (tokens_file([1, 2], version=2), "has format version 2"),
        "width_3": (tokens_file([], width=3), "says 3 bytes per token"),
        "width_zero": (tokens_file([], width=0), "says 0 bytes per token"),
        "token_out_of_range": (tokens_file([1, 299, 300]), "holds token 300 at position 2"),
        "vocab_zero": (tokens_file([0], vocab=0), "holds token 0 at position 0, outside its vocabulary of 0"),
        "vocab_too_big": (tokens_file([1], vocab=1000), "made by a tokenizer with 1000 tokens"),
        "negative_token_u32": (tokens_file([0xFFFFFFFF], width=4), "holds token -1 at position 0"),
        "jsonl_renamed": (b'{"text": "a JSON line renamed to .tokens"}\n', "does not start with TITANTOK"),
    }


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def main():
    # Flat files (tests/cli/check_bad_inputs.sh runs each through run_train): hf_*.json is a
    # tokenizer.json, tiktoken_*.model a rank file, tokens_*.tokens a dataset; FILE.expect holds a
    # part of the expected error line. Cases that need a folder (a tokenizer_config.json next to
    # the tokenizer.json, or a tokenizer.json that is a folder) are folders/<case>/ with an expect file.
    for old in os.listdir(HERE):
        if old.startswith(("hf_", "tiktoken_", "tokens_")):
            os.remove(os.path.join(HERE, old))
    for sub in ("folders", "tokenize_dataset"):
        shutil.rmtree(os.path.join(HERE, sub), ignore_errors=True)
    for name, (text, config, expect) in hf_cases().items():
        if config is None:
            write(os.path.join(HERE, "hf_" + name + ".json"), text)
            write(os.path.join(HERE, "hf_" + name + ".json.expect"), expect + "\n")
        else:
            d = os.path.join(HERE, "folders", name)
            write(os.path.join(d, "tokenizer.json"), text)
            write(os.path.join(d, "tokenizer_config.json"), config)
            write(os.path.join(d, "expect"), expect + "\n")
    write(os.path.join(HERE, "folders", "tokenizer_json_is_folder", "tokenizer.json", "README"), "a folder, not a file\n")
    write(os.path.join(HERE, "folders", "tokenizer_json_is_folder", "expect"), "is a folder, not a tokenizer file\n")
    for name, (data, expect) in tiktoken_cases().items():
        write(os.path.join(HERE, "tiktoken_" + name + ".model"), data)
        write(os.path.join(HERE, "tiktoken_" + name + ".model.expect"), expect + "\n")
    for name, (data, expect) in tokens_cases().items():
        write(os.path.join(HERE, "tokens_" + name + ".tokens"), data)
        write(os.path.join(HERE, "tokens_" + name + ".tokens.expect"), expect + "\n")
    # tokenize_dataset: an input that is already tokenized, a corpus to (not) overwrite.
    write(os.path.join(HERE, "tokenize_dataset", "already.tokens"), tokens_file([0, 5, 6, 1], vocab=258))
    write(os.path.join(HERE, "tokenize_dataset", "corpus.jsonl"), '{"text": "the first document"}\n{"text": "the second"}\n')

    # Fuzz seed corpora: valid files and a few broken ones (each < 20 KB).
    fuzz = os.path.join(ROOT, "tests", "fuzz", "corpus")
    for sub in ("tokenizer_json", "tiktoken", "tokens_header"):
        shutil.rmtree(os.path.join(fuzz, sub), ignore_errors=True)
    small = json.dumps(small_tokenizer(), ensure_ascii=False, indent=1)
    write(os.path.join(fuzz, "tokenizer_json", "valid_small.json"), small)
    write(os.path.join(fuzz, "tokenizer_json", "valid_small_compact.json"), json.dumps(small_tokenizer(), ensure_ascii=False))
    # tokenizer.json, a NUL byte, then tokenizer_config.json (fuzz_tokenizer_json splits there)
    write(os.path.join(fuzz, "tokenizer_json", "valid_with_config.bin"), small + "\0" + json.dumps(CONFIG))
    legacy = small_tokenizer()
    legacy["model"]["merges"] = [" ".join(m) for m in legacy["model"]["merges"]]
    legacy["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}
    write(os.path.join(fuzz, "tokenizer_json", "valid_legacy_merges_gpt2_regex.json"), json.dumps(legacy, ensure_ascii=False))
    for name in ("negative_vocab_id", "duplicate_merge", "merge_one_part", "added_id_disagrees", "split_regex_broken"):
        write(os.path.join(fuzz, "tokenizer_json", "bad_" + name + ".json"), hf_cases()[name][0])
    with open(os.path.join(ROOT, "tests", "assets", "tiktoken", "tokenizer.model"), "rb") as f:
        write(os.path.join(fuzz, "tiktoken", "valid_asset.model"), f.read())
    write(os.path.join(fuzz, "tiktoken", "valid_bytes_only.model"), rank_file(byte_ranks()))
    write(os.path.join(fuzz, "tiktoken", "valid_crlf.model"), rank_file(byte_ranks() + [(b"ab", 256)]).replace("\n", "\r\n"))
    for name in ("duplicate_rank", "rank_gap", "bad_base64", "no_byte_tokens"):
        write(os.path.join(fuzz, "tiktoken", "bad_" + name + ".model"), tiktoken_cases()[name][0])
    write(os.path.join(fuzz, "tokens_header", "valid_u16.tokens"), tokens_file([0, 5, 6, 299, 1]))
    write(os.path.join(fuzz, "tokens_header", "valid_u32.tokens"), tokens_file([0, 70000, 1], width=4, vocab=70001))
    write(os.path.join(fuzz, "tokens_header", "valid_empty.tokens"), tokens_file([]))
    for name in ("trailing_bytes", "truncated", "version_2", "token_out_of_range"):
        write(os.path.join(fuzz, "tokens_header", "bad_" + name + ".tokens"), tokens_cases()[name][0])


if __name__ == "__main__":
    main()
