#!/usr/bin/env python3
"""sentence-transformers' encoding throughput: the baseline `kiln bench embed` measures in the
same run (the kiln binary embeds this script and runs it with `python3 -c`).

Reads a JSON list of sentences on stdin, loads the sentence-transformers model directory
`--model` on the CPU with `--threads` torch threads, encodes the first batch once as a warm-up,
then times `--repeats` full `model.encode(sentences, batch_size=--batch)` passes (tokenisation
included, as in kiln's timing). Prints one JSON line:

    {"sentence_transformers": version, "torch": version, "secs": median seconds per pass,
     "head": the first 8 embeddings (for kiln's agreement check)}
"""
import argparse
import json
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    sentences = json.load(sys.stdin)
    model = SentenceTransformer(args.model, device="cpu")
    with torch.inference_mode():
        model.encode(sentences[: args.batch], batch_size=args.batch, show_progress_bar=False)
        times, emb = [], None
        for _ in range(max(1, args.repeats)):
            t = time.perf_counter()
            emb = model.encode(sentences, batch_size=args.batch, convert_to_numpy=True, show_progress_bar=False)
            times.append(time.perf_counter() - t)
    print(
        json.dumps(
            {
                "sentence_transformers": sentence_transformers.__version__,
                "torch": torch.__version__,
                "secs": statistics.median(times),
                "head": emb[:8].tolist(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
