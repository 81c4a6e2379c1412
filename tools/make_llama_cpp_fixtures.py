#!/usr/bin/env python3
"""Reference outputs of SmolLM2-135M-Instruct (Q4_1 GGUF) from llama.cpp (llama-cpp-python),
which keeps the weights quantized and multiplies them against activations quantized to 8 bits
(ggml's Q8_1/Q8_0 blocks) — the same scheme as kiln's quantized-in-memory path. Written to
crates/kiln-models/tests/fixtures/smollm2_llama_cpp.json for crates/kiln-models/tests/gguf_parity.rs.

For each prompt of tools/make_gguf_model_fixtures.py: llama.cpp's token ids and 32-token greedy
continuation, and — teacher-forced along the fp32 reference's sequence (prompt + its greedy
continuation, from smollm2_reference.json), one token per step as in decoding — the 16 largest
logits and the log-sum-exp at every position. An f32 KV cache, so the only approximation left is
the quantization itself.

    pip install llama-cpp-python   # builds llama.cpp from source (~5 min on 2 cores)
    python3 tools/fetch_models.py smollm2 && python3 tools/make_llama_cpp_fixtures.py
"""

import json
import os

import llama_cpp
import numpy as np
from llama_cpp import Llama

from make_gguf_model_fixtures import DIR, FILE, OUT as REFERENCE, PROMPTS, ROOT

OUT = os.path.join(ROOT, "crates", "kiln-models", "tests", "fixtures", "smollm2_llama_cpp.json")


def main():
    llm = Llama(model_path=os.path.join(DIR, FILE), n_ctx=256, n_batch=256, n_threads=2, logits_all=True,
                type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32, verbose=False)
    fp32 = {c["prompt"]: c for c in json.load(open(REFERENCE))["cases"]}
    cases = []
    for p in PROMPTS:
        ids = llm.tokenize(p.encode("utf-8"), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        greedy = []
        for _ in range(32):
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            greedy.append(nxt)
            llm.eval([nxt])
        seq = fp32[p]["ids"] + fp32[p]["greedy"]
        llm.reset()
        for t in seq:
            llm.eval([t])
        logits = np.array(llm.scores[: len(seq)], dtype=np.float64)
        top = np.argsort(-logits, axis=-1)[:, :16]
        m = logits.max(axis=-1, keepdims=True)
        cases.append({
            "prompt": p,
            "ids": ids,
            "greedy": greedy,
            "forced": seq,
            "top_ids": top.tolist(),
            "top_logits": np.take_along_axis(logits, top, axis=-1).tolist(),
            "logsumexp": (m[:, 0] + np.log(np.exp(logits - m).sum(axis=-1))).tolist(),
        })
    with open(OUT, "w") as f:
        json.dump({"source": f"llama.cpp {llama_cpp.__version__} (llama-cpp-python) on {FILE}, "
                             "weights quantized in memory, f32 KV cache", "cases": cases}, f, ensure_ascii=False)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
