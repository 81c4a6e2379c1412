"""PyTorch reference run for kiln's quality bar: the same model, data, batches and loop as a
`kiln train` run directory, trained by PyTorch eager for a wall-clock budget, then evaluated on
the same validation batches. kiln's bar: in the same budget, `kiln train` reaches a lower
validation loss than this script.

It reads the run directory that `kiln train` wrote (config.json, train.json, tokens.bin) and
mirrors kiln's loop exactly: batches drawn by kiln's counter-based generator (same windows in the
same order), AdamW with kiln's betas/eps and decay groups, linear warmup + cosine decay, global
gradient-norm clipping, the same validation batches. To be fair to PyTorch, the cosine schedule is
fitted to the budget: it first times a few steps, then sets the run length to the number of steps
that fit in the budget (so its learning rate decays to the floor, as kiln's does).

    kiln train --out runs/default            # prints "trained in S s" and the final val loss
    python3 tools/train_reference.py --run runs/default --budget S --threads 2

Prints a JSON line: {"steps", "train_secs", "val_loss", "tok_per_s", "torch"}.
"""

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import torch_gpt  # noqa: E402

M64 = (1 << 64) - 1


def mix(seed, a, b):
    """kiln_data::batches::mix (splitmix64 finaliser over seed ^ a·φ ^ b·c), in 64-bit arithmetic."""
    z = seed ^ ((a * 0x9E3779B97F4A7C15) & M64) ^ ((b * 0xC2B2AE3D27D4EB4F) & M64)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def read_tokens(path):
    """A kiln token file: b"KILNTOK1", u32 width (2 or 4), u32 count, then little-endian ids."""
    raw = np.fromfile(path, dtype=np.uint8)
    assert raw[:8].tobytes() == b"KILNTOK1", f"{path}: not a kiln token file"
    width, count = np.frombuffer(raw[8:16].tobytes(), dtype="<u4")
    dtype = "<u2" if width == 2 else "<u4"
    return np.frombuffer(raw[16:16 + int(count) * int(width)].tobytes(), dtype=dtype).astype(np.int64)


class Batcher:
    """kiln_data::Batcher: batch k of a split takes B windows at starts mix(seed, split<<40 | k, b)."""

    def __init__(self, tokens, val_fraction, batch, context, seed):
        self.tokens, self.batch, self.context, self.seed = tokens, batch, context, seed
        self.split_at = int(round(len(tokens) * (1.0 - val_fraction)))

    def get(self, split, index):
        lo, n = (0, self.split_at) if split == 0 else (self.split_at, len(self.tokens) - self.split_at)
        starts = n - self.context
        pos = [lo + mix(self.seed, (split << 40) | index, b) % starts for b in range(self.batch)]
        x = np.stack([self.tokens[p:p + self.context] for p in pos])
        y = np.stack([self.tokens[p + 1:p + 1 + self.context] for p in pos])
        return torch.from_numpy(x), torch.from_numpy(y)


def lr_at(step, max_lr, min_lr, warmup, total):
    """kiln_train::WarmupCosine::lr."""
    if step <= warmup:
        return max_lr * step / max(warmup, 1)
    if step >= total:
        return min_lr
    frac = (step - warmup) / max(total - warmup, 1)
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * frac))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a kiln run directory (config.json, train.json, tokens.bin)")
    ap.add_argument("--budget", type=float, required=True, help="training wall-clock seconds")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(1337)
    cfg = torch_gpt.load_config(os.path.join(args.run, "config.json"))
    with open(os.path.join(args.run, "train.json")) as f:
        tc = json.load(f)
    tokens = read_tokens(os.path.join(args.run, "tokens.bin"))
    # Split 0 = train, 1 = validation, as kiln's Split enum.
    data = Batcher(tokens, tc["val_fraction"], tc["batch_size"], cfg["n_positions"], tc["seed"])
    model = torch_gpt.GPT(cfg)
    opt = torch_gpt.make_optimizer(model, tc["max_lr"], tc["weight_decay"])
    accum = max(tc["grad_accum"], 1)

    def train_step(step, total):
        model.train()
        for micro in range(accum):
            x, y = data.get(0, step * accum + micro)
            _, loss = model(x, y)
            (loss / accum).backward()
        if tc["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc["grad_clip"])
        lr = lr_at(step + 1, tc["max_lr"], tc["min_lr"], tc["warmup_steps"], total)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        opt.zero_grad(set_to_none=True)

    # Time a few steps (with the preset's schedule), then fit the run length to the budget: the
    # first steps are slower (allocator and thread-pool warm-up), so only the later ones set the
    # pace, and the steps that remain are what fits in what is left of the budget.
    warm, probe = 10, 30
    start = time.perf_counter()
    for step in range(probe):
        if step == warm:
            paced = time.perf_counter()
        train_step(step, tc["steps"])
    now = time.perf_counter()
    per_step = (now - paced) / (probe - warm)
    total = probe + max(1, int((args.budget - (now - start)) / per_step))
    warmup = min(tc["warmup_steps"], total // 10)
    tc["warmup_steps"] = warmup
    step = probe
    while step < total and time.perf_counter() - start < args.budget:
        train_step(step, total)
        step += 1
    train_secs = time.perf_counter() - start

    model.eval()
    with torch.no_grad():
        losses = [model(*data.get(1, i))[1].item() for i in range(max(tc["eval_batches"], 1))]
    val = sum(losses) / len(losses)
    tok = step * accum * tc["batch_size"] * cfg["n_positions"]
    print(json.dumps({"steps": step, "planned_steps": total, "train_secs": train_secs, "val_loss": val,
                      "tok_per_s": tok / train_secs, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
