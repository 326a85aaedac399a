#!/usr/bin/env python3
"""Generates the small test corpus that ships with titan.cpp (training.dataset = "c4_test").

The text is synthetic, produced here from the project's own word lists and a tiny grammar (no
third-party text), in C4's format: JSON lines with a "text" field. It is regular enough that a
language model's loss drops quickly, and varied enough not to be memorised in a few steps.
Deterministic: the same script always writes the same bytes.

  python3 scripts/make_test_corpus.py    # writes tests/assets/c4_test/c4_test.jsonl and c4_validation.jsonl
"""
import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "assets" / "c4_test"

NAMES = ["Ada", "Bruno", "Chloe", "Dmitri", "Esme", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kira", "Luca",
         "Mira", "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Sami", "Tove", "Umar", "Vera", "Wim", "Yara", "Zeno"]
PLACES = ["the harbour", "the old mill", "a quiet library", "the night market", "the mountain station",
          "the river bank", "a small bakery", "the observatory", "the train depot", "the glasshouse",
          "the workshop", "a crowded square", "the lighthouse", "the orchard", "the machine hall"]
OBJECTS = ["a brass compass", "the red notebook", "a wooden crate", "the spare key", "a paper lantern",
           "the torn map", "a jar of honey", "the silver watch", "a coil of rope", "the blue umbrella",
           "a loaf of bread", "the heavy ledger", "a box of gears", "the letter", "a folding chair"]
VERBS_T = ["found", "carried", "repaired", "painted", "counted", "borrowed", "described", "measured",
           "hid", "sold", "opened", "weighed", "returned", "copied", "cleaned"]
VERBS_I = ["waited", "laughed", "wandered", "listened", "hesitated", "worked late", "slept", "sang",
           "argued", "read quietly", "kept watch", "took notes"]
ADVERBS = ["slowly", "carefully", "at dawn", "before noon", "in the rain", "without a word", "twice",
           "after supper", "with great care", "in a hurry", "once more", "by lamplight"]
CONNECT = ["Then", "Later", "Meanwhile", "After that", "The next day", "Soon", "At last", "Before long"]
WEATHER = ["cold", "bright", "windy", "grey", "warm", "foggy", "still", "clear"]
NUMBERS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve"]


def sentence(rng):
    n, m = rng.choice(NAMES), rng.choice(NAMES)
    kind = rng.randrange(7)
    if kind == 0:
        return f"{n} {rng.choice(VERBS_T)} {rng.choice(OBJECTS)} at {rng.choice(PLACES)}."
    if kind == 1:
        return f"{n} {rng.choice(VERBS_I)} {rng.choice(ADVERBS)}."
    if kind == 2:
        return f"{rng.choice(CONNECT)}, {n} gave {rng.choice(OBJECTS)} to {m}."
    if kind == 3:
        return f"The morning at {rng.choice(PLACES)} was {rng.choice(WEATHER)}, and {n} {rng.choice(VERBS_I)}."
    if kind == 4:
        return f"{n} counted {rng.choice(NUMBERS)} lamps and {rng.choice(NUMBERS)} doors."
    if kind == 5:
        return f"\"Where is {rng.choice(OBJECTS)}?\" asked {n}. {m} pointed to {rng.choice(PLACES)}."
    return f"{n} and {m} {rng.choice(VERBS_T)} {rng.choice(OBJECTS)} {rng.choice(ADVERBS)}."


def document(rng):
    paragraphs = []
    for _ in range(rng.randint(1, 4)):
        paragraphs.append(" ".join(sentence(rng) for _ in range(rng.randint(2, 7))))
    return "\n\n".join(paragraphs)


def write(path, n_docs, seed):
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n_docs):
            f.write(json.dumps({"text": document(rng), "id": i}) + "\n")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {n_docs} documents)")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    write(OUT / "c4_test.jsonl", 4000, seed=1)
    write(OUT / "c4_validation.jsonl", 400, seed=2)


if __name__ == "__main__":
    main()
