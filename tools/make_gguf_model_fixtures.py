#!/usr/bin/env python3
"""Reference outputs of SmolLM2-135M-Instruct (Q4_1 GGUF, `python3 tools/fetch_models.py smollm2`)
from transformers, which loads a GGUF file by dequantising it with the `gguf` package (fp32
weights) and un-permuting llama.cpp's q/k row order; written to
crates/kiln-models/tests/fixtures/smollm2_reference.json for crates/kiln-models/tests/gguf_parity.rs.

For each prompt: the token ids (transformers' tokenizer rebuilt from the GGUF metadata), per
position the 16 largest logits (ids and values) and the log-sum-exp of all logits (so the test
checks the whole distribution without storing 49,152 floats per position), and the 32-token greedy
continuation. Also the chat template (from the GGUF metadata) rendered for two conversations.

    pip install gguf transformers torch
    python3 tools/fetch_models.py smollm2 && python3 tools/make_gguf_model_fixtures.py
"""

import json
import os

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIR = os.path.join(ROOT, ".cache", "models", "smollm2")
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = os.path.join(ROOT, "crates", "kiln-models", "tests", "fixtures", "smollm2_reference.json")

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "In 1776, the thirteen colonies declared",
    "<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n",
]
CHATS = [
    [{"role": "user", "content": "Hello! Who are you?"}],
    [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Name a prime number."},
        {"role": "assistant", "content": "7"},
        {"role": "user", "content": "Another one, bigger than 100."},
    ],
]


def main():
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(DIR, gguf_file=FILE)
    model = AutoModelForCausalLM.from_pretrained(DIR, gguf_file=FILE, torch_dtype=torch.float32).eval()
    cases = []
    for p in PROMPTS:
        ids = tok(p, add_special_tokens=False)["input_ids"]
        x = torch.tensor([ids])
        with torch.no_grad():
            logits = model(x).logits[0].float()
            greedy = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=32, do_sample=False,
                                    pad_token_id=tok.eos_token_id if tok.eos_token_id is not None else 0)[0]
        top = torch.topk(logits, 16, dim=-1)
        cases.append({
            "prompt": p,
            "ids": ids,
            "top_ids": top.indices.tolist(),
            "top_logits": top.values.tolist(),
            "logsumexp": torch.logsumexp(logits, dim=-1).tolist(),
            "greedy": greedy[len(ids):].tolist(),
        })
    chats = [{"messages": c, "rendered": tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True)}
             for c in CHATS]
    with open(OUT, "w") as f:
        json.dump({"source": f"transformers loading {FILE} (gguf package dequantisation, fp32)",
                   "cases": cases, "chats": chats}, f, ensure_ascii=False)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
