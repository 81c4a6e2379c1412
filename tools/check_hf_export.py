#!/usr/bin/env python3
"""Checks that transformers loads what `kiln convert --to-format hf` writes, and computes the
same thing from it: converts SmolLM2's GGUF (`python3 tools/fetch_models.py smollm2`) to an HF
directory with the kiln binary, loads it with AutoModelForCausalLM / AutoTokenizer, and compares
token ids, top-16 logits and greedy continuations with the reference transformers computed from
the GGUF itself (crates/kiln-models/tests/fixtures/smollm2_reference.json).

    cargo build --release && python3 tools/check_hf_export.py [--kiln target/release/kiln]
Exit status 0 when everything agrees.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GGUF = os.path.join(ROOT, ".cache", "models", "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
REF = os.path.join(ROOT, "crates", "kiln-models", "tests", "fixtures", "smollm2_reference.json")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", default=os.path.join(ROOT, "target", "release", "kiln"))
    args = ap.parse_args()
    ref = json.load(open(REF))
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([args.kiln, "convert", "--from", GGUF, "--to", out, "--to-format", "hf"], check=True)
        tok = AutoTokenizer.from_pretrained(out)
        model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
        worst, ok = 0.0, True
        for case in ref["cases"]:
            ids = tok(case["prompt"], add_special_tokens=False)["input_ids"]
            if ids != case["ids"]:
                print(f"token ids differ for {case['prompt']!r}: {ids} vs {case['ids']}")
                ok = False
            x = torch.tensor([case["ids"]])
            with torch.no_grad():
                logits = model(x).logits[0]
                greedy = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=32, do_sample=False,
                                        pad_token_id=tok.eos_token_id)[0][x.shape[1]:].tolist()
            got = torch.gather(logits, 1, torch.tensor(case["top_ids"]))
            worst = max(worst, (got - torch.tensor(case["top_logits"])).abs().max().item())
            if greedy != case["greedy"]:
                print(f"greedy continuation differs for {case['prompt']!r}")
                ok = False
        for chat in ref["chats"]:
            if tok.apply_chat_template(chat["messages"], tokenize=False, add_generation_prompt=True) != chat["rendered"]:
                print("chat template renders differently")
                ok = False
        print(f"transformers on kiln's HF export: max |Δ top-16 logits| = {worst:.2e}")
        ok = ok and worst < 2e-3
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
