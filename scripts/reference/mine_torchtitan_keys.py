#!/usr/bin/env python3
"""Dev-time: every key TorchTitan's TOML-era JobConfig ever had, with the dates it existed.

Walks the history of torchtrain/config_manager.py, torchtitan/config_manager.py and
torchtitan/config/job_config.py in a TorchTitan clone up to (not including) the commit that
dropped TOML (#2386), extracts the keys of each version (argparse "--section.key" flags in the
early files, dataclass fields resolved from JobConfig in the later ones) and writes one TSV row
per key: full key, first and last commit date that had it, first/last commit, and the type of
the last version that had it (help texts are read but not written: they are TorchTitan's words).

  python3 scripts/reference/mine_torchtitan_keys.py /path/to/torchtitan > tests/assets/torchtitan/job_config_keys.tsv

tests/unit/test_config_compat.cpp checks that every key listed is a schema key or a row of the
compatibility table (src/config/aliases.cpp), and that every row of the table is listed.
"""
import ast
import re
import subprocess
import sys

FILES = ["torchtrain/config_manager.py", "torchtitan/config_manager.py", "torchtitan/config/job_config.py"]
STOP_SUBJECT = "Config System Refactor: TOML to Python Dataclass Registry"


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, text=True).stdout


def argparse_keys(src):
    """Keys of an argparse-era config_manager.py: {key: (kind, help)}."""
    out = {}
    tree = ast.parse(src)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            if not node.args or not isinstance(node.args[0], ast.Constant):
                continue
            flag = node.args[0].value
            if not isinstance(flag, str) or not flag.startswith("--") or "." not in flag:
                continue
            kind, help_text = "str", ""
            for kw in node.keywords:
                if kw.arg == "type" and isinstance(kw.value, ast.Name):
                    kind = kw.value.id
                elif kw.arg == "action" and isinstance(kw.value, ast.Constant) and "store" in str(kw.value.value):
                    kind = "bool"
                elif kw.arg == "help":
                    try:
                        help_text = ast.literal_eval(kw.value)
                    except Exception:
                        help_text = ast.unparse(kw.value)
            out[flag[2:].replace("-", "_")] = (kind, " ".join(str(help_text).split()))
    return out


def dataclass_keys(src):
    """Keys of a dataclass-era file: JobConfig's fields resolved recursively."""
    tree = ast.parse(src)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}

    def fields(cls):
        body = cls.body
        for i, st in enumerate(body):
            if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name):
                doc = ""
                if i + 1 < len(body) and isinstance(body[i + 1], ast.Expr) and isinstance(body[i + 1].value, ast.Constant):
                    doc = str(body[i + 1].value.value)
                yield st.target.id, ast.unparse(st.annotation), " ".join(doc.split())

    out = {}

    def walk(cls_name, prefix):
        for name, ann, doc in fields(classes[cls_name]):
            if ann in classes:
                walk(ann, prefix + name + ".")
            else:
                out[prefix + name] = (ann, doc)

    if "JobConfig" in classes:
        walk("JobConfig", "")
    return out


def main():
    repo = sys.argv[1]
    stop = None
    for line in git(repo, "log", "--format=%H %s", "--", *FILES).splitlines():
        if STOP_SUBJECT in line:
            stop = line.split()[0]
    revs = git(repo, "log", "--reverse", "--format=%H %ad", "--date=short", f"{stop}^", "--", *FILES).splitlines()
    seen = {}
    for line in revs:
        rev, date = line.split()
        keys = {}
        for f in FILES:
            try:
                src = git(repo, "show", f"{rev}:{f}")
            except subprocess.CalledProcessError:
                continue
            keys.update(argparse_keys(src))
            keys.update(dataclass_keys(src))
        for k, (kind, doc) in keys.items():
            if k not in seen:
                seen[k] = [date, date, rev[:9], rev[:9], kind, doc]
            else:
                seen[k][1], seen[k][3], seen[k][4], seen[k][5] = date, rev[:9], kind, doc
    print(f"# TorchTitan's TOML-era JobConfig keys, mined by scripts/reference/mine_torchtitan_keys.py (up to {stop[:9]}^)")
    print("# key\tfirst_date\tlast_date\tfirst_commit\tlast_commit\tkind")
    for k in sorted(seen):
        row = seen[k][:5]
        print("\t".join([k] + [re.sub(r"\s+", " ", str(x)) for x in row]))


if __name__ == "__main__":
    main()
