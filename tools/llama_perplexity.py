#!/usr/bin/env python3
"""llama.cpp's perplexity (the algorithm of its `llama-perplexity` tool) through llama-cpp-python,
for comparison with `kiln perplexity` on the same GGUF and text: tokens from llama.cpp's own
tokenizer, non-overlapping chunks of --ctx tokens, each evaluated from an empty cache (first token
replaced by BOS when the model adds one), the second half of each chunk scored.

    pip install llama-cpp-python   # builds llama.cpp from source (~5 min on 2 cores)
    python3 tools/llama_perplexity.py --model M.gguf --file text.txt --ctx 256 --chunks 8
    kiln perplexity --model M.gguf --file text.txt --ctx 256 --chunks 8
"""

import argparse
import math

import numpy as np
from llama_cpp import Llama


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--file", required=True)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--chunks", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    llm = Llama(model_path=a.model, n_ctx=a.ctx, n_batch=a.ctx, n_threads=a.threads, logits_all=True, verbose=False)
    text = open(a.file, encoding="utf-8").read().encode("utf-8")
    toks = llm.tokenize(text, add_bos=False, special=False)
    n = len(toks) // a.ctx if a.chunks <= 0 else min(a.chunks, len(toks) // a.ctx)
    add_bos = llm._model.add_bos_token() if hasattr(llm._model, "add_bos_token") else False
    first, nll, count = a.ctx // 2, 0.0, 0
    for c in range(n):
        chunk = toks[c * a.ctx:(c + 1) * a.ctx]
        if add_bos:
            chunk = [llm.token_bos()] + chunk[1:]
        llm.reset()
        llm.eval(chunk)
        logits = np.array(llm.scores[: a.ctx], dtype=np.float64)
        for i in range(first, a.ctx - 1):
            row = logits[i]
            m = row.max()
            nll += m + math.log(np.exp(row - m).sum()) - row[toks[c * a.ctx + i + 1]]
            count += 1
        print(f"[{c + 1}]{math.exp(nll / count):.4f}", end=" ", flush=True)
    print(f"\nPPL = {math.exp(nll / count):.4f} ({count} tokens scored, {n} chunks)")


if __name__ == "__main__":
    main()
